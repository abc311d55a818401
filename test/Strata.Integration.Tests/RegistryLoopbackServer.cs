// The HTTP/1.1 server under the test registry's helpers (token issuer, fault server): one loopback port, one handler.
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Strata.Integration.Tests;

/// <summary>A minimal HTTP/1.1 server on 127.0.0.1 (a port the kernel picks) that hands every request to one async
/// handler: one request per connection, answered with "Connection: close" and the connection then closed, so a handler
/// that writes less body than its Content-Length cuts the response short. Request headers keep every line (HttpListener
/// keeps only the last of repeated headers, which loses a client's several Accept lines); request bodies, by
/// Content-Length or chunked, are read whole before the handler runs, "Expect: 100-continue" answered first. A handler
/// that throws before answering gives 500 with the exception's message. Dispose stops listening, closes the connections
/// and waits for their handlers.</summary>
sealed class RegistryLoopbackServer : IDisposable
{
    readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    readonly Func<LoopbackRequest, LoopbackResponse, Task> _handler;
    readonly CancellationTokenSource _stop = new();
    readonly Task _accepting;
    readonly Dictionary<Socket, Task> _connections = [];

    public RegistryLoopbackServer(Func<LoopbackRequest, LoopbackResponse, Task> handler)
    {
        _handler = handler;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = Task.Run(AcceptAsync);
    }

    public int Port { get; }

    /// <summary>"127.0.0.1:PORT".</summary>
    public string Host => $"127.0.0.1:{Port}";

    /// <summary>A loopback port free now (another process may take it before it is bound).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            lock (_connections)
            {
                foreach (var done in _connections.Where(c => c.Value.IsCompleted).Select(c => c.Key).ToList()) _connections.Remove(done);
                _connections[socket] = Task.Run(() => ServeAsync(socket));
            }
        }
    }

    async Task ServeAsync(Socket socket)
    {
        await using var stream = new NetworkStream(socket, ownsSocket: true);
        var response = new LoopbackResponse(stream);
        try
        {
            var request = await LoopbackRequest.ReadAsync(stream, _stop.Token);
            if (request is null) return;
            response.IsHead = request.Method == "HEAD";
            try
            {
                await _handler(request, response);
            }
            catch (Exception e) when (!response.Started && e is not IOException)
            {
                response.Status = HttpStatusCode.InternalServerError;
                await response.SendAsync(Encoding.UTF8.GetBytes(e.GetType().Name + ": " + e.Message), "text/plain; charset=utf-8");
            }
            if (!response.Started) await response.SendAsync([], null);
            await stream.FlushAsync();
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception)
        {
            // the client went away, the request was malformed, the server is stopping, or the handler failed after it
            // started answering: drop the connection (the client sees the response cut)
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _accepting.Wait(TimeSpan.FromSeconds(10));
        Task[] pending;
        lock (_connections)
        {
            foreach (var socket in _connections.Keys) socket.Dispose();
            pending = [.. _connections.Values];
        }
        Task.WaitAll(pending, TimeSpan.FromSeconds(10));
        _stop.Dispose();
    }
}

/// <summary>One HTTP/1.1 request as read off the wire: method, target (path and query), every header line in order,
/// and the whole body.</summary>
sealed record LoopbackRequest
{
    public required string Method { get; init; }

    /// <summary>The request target as sent: path and query.</summary>
    public required string Target { get; init; }

    public required IReadOnlyList<KeyValuePair<string, string>> HeaderLines { get; init; }

    public required byte[] Body { get; init; }

    /// <summary>The target's path, without the query.</summary>
    public string Path => Target.Split('?')[0];

    /// <summary>The query's parameters, decoded; repeated names keep every value.</summary>
    public System.Collections.Specialized.NameValueCollection Query =>
        System.Web.HttpUtility.ParseQueryString(Target.Contains('?') ? Target[(Target.IndexOf('?') + 1)..] : "");

    /// <summary>The values of every line of header <paramref name="name"/>, in order.</summary>
    public IEnumerable<string> Headers(string name) =>
        HeaderLines.Where(h => h.Key.Equals(name, StringComparison.OrdinalIgnoreCase)).Select(h => h.Value);

    /// <summary>The first value of header <paramref name="name"/>, or null.</summary>
    public string? Header(string name) => Headers(name).FirstOrDefault();

    /// <summary>Reads one request, or null when the client closed the connection before sending one.</summary>
    public static async Task<LoopbackRequest?> ReadAsync(Stream stream, CancellationToken cancel)
    {
        var reader = new LineReader(stream);
        string? requestLine = await reader.ReadLineAsync(cancel);
        if (requestLine is null) return null;
        string[] parts = requestLine.Split(' ');
        if (parts.Length != 3 || !parts[2].StartsWith("HTTP/1.", StringComparison.Ordinal)) throw new InvalidDataException($"bad request line: {requestLine}");
        var headers = new List<KeyValuePair<string, string>>();
        for (string? line; (line = await reader.ReadLineAsync(cancel)) is { Length: > 0 };)
        {
            if (headers.Count == MaxHeaders) throw new InvalidDataException($"more than {MaxHeaders} header lines");
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0) throw new InvalidDataException($"bad header line: {line}");
            headers.Add(new(line[..colon].Trim(), line[(colon + 1)..].Trim()));
        }
        var request = new LoopbackRequest { Method = parts[0], Target = parts[1], HeaderLines = headers, Body = [] };
        if (request.Header("Expect") is { } expect && expect.Equals("100-continue", StringComparison.OrdinalIgnoreCase))
            await stream.WriteAsync("HTTP/1.1 100 Continue\r\n\r\n"u8.ToArray(), cancel);
        byte[] body;
        if (request.Header("Transfer-Encoding") is { } encoding && encoding.Contains("chunked", StringComparison.OrdinalIgnoreCase))
            body = await reader.ReadChunkedAsync(MaxBody, cancel);
        else if (request.Header("Content-Length") is { } length)
        {
            if (!long.TryParse(length, out long n) || n < 0 || n > MaxBody) throw new InvalidDataException($"bad Content-Length: {length}");
            body = new byte[n];
            await reader.ReadExactlyAsync(body, cancel);
        }
        else body = [];
        return request with { Body = body };
    }

    const long MaxBody = 256L << 20;
    const int MaxHeaders = 256;

    /// <summary>CRLF lines and counted bytes from a stream, through one buffer.</summary>
    sealed class LineReader(Stream stream)
    {
        readonly byte[] _buffer = new byte[16 * 1024];
        int _start, _end;

        async ValueTask<bool> FillAsync(CancellationToken cancel)
        {
            if (_start > 0)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }
            if (_end == _buffer.Length) throw new InvalidDataException("header line too long");
            int n = await stream.ReadAsync(_buffer.AsMemory(_end), cancel);
            _end += n;
            return n > 0;
        }

        /// <summary>The next line without its CRLF; null at end of stream before any byte of it.</summary>
        public async ValueTask<string?> ReadLineAsync(CancellationToken cancel)
        {
            while (true)
            {
                int lf = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
                if (lf >= 0)
                {
                    string line = Encoding.Latin1.GetString(_buffer, _start, lf - _start).TrimEnd('\r');
                    _start = lf + 1;
                    return line;
                }
                if (!await FillAsync(cancel))
                {
                    if (_end == _start) return null;
                    throw new InvalidDataException("connection closed inside a line");
                }
            }
        }

        public async ValueTask ReadExactlyAsync(Memory<byte> destination, CancellationToken cancel)
        {
            int buffered = Math.Min(_end - _start, destination.Length);
            _buffer.AsMemory(_start, buffered).CopyTo(destination);
            _start += buffered;
            if (buffered < destination.Length) await stream.ReadExactlyAsync(destination[buffered..], cancel);
        }

        public async ValueTask<byte[]> ReadChunkedAsync(long max, CancellationToken cancel)
        {
            using var body = new MemoryStream();
            while (true)
            {
                string line = await ReadLineAsync(cancel) ?? throw new InvalidDataException("connection closed inside a chunked body");
                string hex = line.Split(';')[0].Trim();
                if (!long.TryParse(hex, System.Globalization.NumberStyles.HexNumber, null, out long size) || size < 0 || body.Length + size > max)
                    throw new InvalidDataException($"bad chunk size: {line}");
                if (size == 0) break;
                byte[] chunk = new byte[size];
                await ReadExactlyAsync(chunk, cancel);
                body.Write(chunk);
                if (await ReadLineAsync(cancel) is not "") throw new InvalidDataException("chunk not followed by CRLF");
            }
            // trailers, up to the empty line
            while (await ReadLineAsync(cancel) is { Length: > 0 })
            {
            }
            return body.ToArray();
        }
    }
}

/// <summary>The answer to a <see cref="LoopbackRequest"/>: set <see cref="Status"/> and <see cref="Headers"/>, then
/// <see cref="SendAsync"/> a whole body, or <see cref="StartAsync"/> and write the body to the stream it returns (a
/// handler may write less than it announced: the connection closes after the handler, cutting the body). To a HEAD
/// request only the head is written.</summary>
sealed class LoopbackResponse(Stream stream)
{
    public HttpStatusCode Status { get; set; } = HttpStatusCode.OK;

    /// <summary>Header lines to send, in order (Content-Length and Connection are added).</summary>
    public List<KeyValuePair<string, string>> Headers { get; } = [];

    public bool Started { get; private set; }

    internal bool IsHead { get; set; }

    public void AddHeader(string name, string value) => Headers.Add(new(name, value));

    /// <summary>Writes the status line and headers, announcing <paramref name="contentLength"/> bytes of body (none
    /// announced when null: the closing connection ends the body); returns the stream the body goes to.</summary>
    public async Task<Stream> StartAsync(long? contentLength)
    {
        if (Started) throw new InvalidOperationException("the response has started");
        Started = true;
        var head = new StringBuilder($"HTTP/1.1 {(int)Status} {ReasonPhrase(Status)}\r\n");
        foreach (var (name, value) in Headers) head.Append(name).Append(": ").Append(value).Append("\r\n");
        if (contentLength is { } length) head.Append("Content-Length: ").Append(length).Append("\r\n");
        head.Append("Connection: close\r\n\r\n");
        await stream.WriteAsync(Encoding.Latin1.GetBytes(head.ToString()));
        return IsHead ? Stream.Null : stream;
    }

    /// <summary>Sends <paramref name="body"/> whole (with Content-Type <paramref name="contentType"/> when given).</summary>
    public async Task SendAsync(byte[] body, string? contentType)
    {
        if (contentType is not null) AddHeader("Content-Type", contentType);
        var output = await StartAsync(body.Length);
        await output.WriteAsync(body);
    }

    public Task SendTextAsync(string text, string contentType = "text/plain; charset=utf-8") => SendAsync(Encoding.UTF8.GetBytes(text), contentType);

    /// <summary>A registry error as distribution writes one: {"errors":[{"code","message"}]}.</summary>
    public Task SendErrorAsync(HttpStatusCode status, string code, string message)
    {
        Status = status;
        var body = new System.Text.Json.Nodes.JsonObject
        {
            ["errors"] = new System.Text.Json.Nodes.JsonArray(new System.Text.Json.Nodes.JsonObject { ["code"] = code, ["message"] = message }),
        };
        return SendTextAsync(body.ToJsonString(), "application/json; charset=utf-8");
    }

    static string ReasonPhrase(HttpStatusCode status) => status switch
    {
        HttpStatusCode.OK => "OK",
        HttpStatusCode.Created => "Created",
        HttpStatusCode.Accepted => "Accepted",
        HttpStatusCode.NoContent => "No Content",
        HttpStatusCode.PartialContent => "Partial Content",
        HttpStatusCode.MovedPermanently => "Moved Permanently",
        HttpStatusCode.Found => "Found",
        HttpStatusCode.SeeOther => "See Other",
        HttpStatusCode.TemporaryRedirect => "Temporary Redirect",
        HttpStatusCode.PermanentRedirect => "Permanent Redirect",
        HttpStatusCode.BadRequest => "Bad Request",
        HttpStatusCode.Unauthorized => "Unauthorized",
        HttpStatusCode.Forbidden => "Forbidden",
        HttpStatusCode.NotFound => "Not Found",
        HttpStatusCode.RequestedRangeNotSatisfiable => "Range Not Satisfiable",
        HttpStatusCode.TooManyRequests => "Too Many Requests",
        HttpStatusCode.InternalServerError => "Internal Server Error",
        HttpStatusCode.BadGateway => "Bad Gateway",
        HttpStatusCode.ServiceUnavailable => "Service Unavailable",
        HttpStatusCode.GatewayTimeout => "Gateway Timeout",
        _ => "Status",
    };
}
