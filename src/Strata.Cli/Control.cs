using System.Buffers.Binary;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Strata.Core;

namespace Strata.Cli;

/// <summary>
/// The control socket (DESIGN decision 8): while `strata serve` owns a store, each `strata` command on that
/// root is sent to it and runs there, in the same command tree, on the daemon's open store — same
/// commands, same output, same exit codes. One POST per command to &lt;root&gt;/strata.sock. Request body:
/// four bytes of length (big-endian) and the arguments as a JSON array, then the command's input (stdin,
/// or the file of -i, which the client opens). Headers carry the working directory and, when stdout is a
/// terminal, its width. Response body: stdout, stderr and the exit code as frames of one byte of channel,
/// four of length (big-endian), then the bytes; the client writes the file of -o itself from stdout's
/// frames. Tars stream both ways. A client that hangs up stops its command at its next write.
/// </summary>
static class Control
{
    public const string SocketName = "strata.sock";
    const byte Stdout = 1, Stderr = 2, Exit = 3;
    const int MaxArgs = 1 << 20;

    /// <summary>`strata serve`: commands run on the daemon's store, under its shared lock.</summary>
    public static void MapStore(WebApplication app, Strata.Daemon.StoreHost host) => Map(app, work => host.Use(store => work(store, null)));

    /// <summary>`strata pool serve`: pool commands run on the served pool.</summary>
    public static void MapPool(WebApplication app, Strata.Thin.PoolDirectory pool) => Map(app, work => work(null, pool));

    static void Map(WebApplication app, Func<Func<LayerStore?, Strata.Thin.PoolDirectory?, int>, int> run) =>
        app.MapPost("/v1/command", async context =>
        {
            var input = context.Request.Body;
            string[]? args = null;
            var length = new byte[4];
            if (await ReadExactlyAsync(input, length) && BinaryPrimitives.ReadInt32BigEndian(length) is > 0 and <= MaxArgs and var n)
            {
                var json = new byte[n];
                try
                {
                    if (await ReadExactlyAsync(input, json)) args = JsonSerializer.Deserialize(json, CliJson.Default.StringArray);
                }
                catch (JsonException)
                {
                }
            }
            // JSON's null is a valid string element to the parser, but no argument: the command line parser would crash on it
            if (args is null || Array.IndexOf(args, null) >= 0)
            {
                context.Response.StatusCode = 400;
                return;
            }
            var headers = context.Request.Headers;
            string cwd = headers["Strata-Cwd"].ToString() is { Length: > 0 } c && Path.IsPathRooted(c) ? c : "/";
            bool tty = int.TryParse(headers["Strata-Width"].ToString(), out int width);
            bool filesAtClient = headers["Strata-Files"] == "client";
            bool errTty = headers["Strata-Err-Tty"] == "1";
            context.Response.ContentType = "application/octet-stream";
            var body = new Strata.Daemon.ClientStream(context.Response.Body, context.RequestAborted);
            int code;
            try
            {
                code = await Task.Run(() => run((store, pool) =>
                {
                    using var outw = new StreamWriter(new FrameStream(body, Stdout), new UTF8Encoding(false), 1 << 16) { AutoFlush = false };
                    using var errw = new StreamWriter(new FrameStream(body, Stderr), new UTF8Encoding(false), 1 << 12) { AutoFlush = true };
                    Io.Current = new Io
                    {
                        Out = outw,
                        Err = errw,
                        BinaryOut = () => tty && !filesAtClient ? null : new FrameStream(body, Stdout), // never a tar to a terminal
                        In = () => input,
                        Cwd = cwd,
                        Store = store,
                        Pool = pool,
                        OutIsTerminal = tty,
                        Width = tty ? width : null,
                        FilesAtClient = filesAtClient,
                        ErrIsTerminal = errTty,
                    };
                    int result = Runner.Run(Commands.Build().Parse(args));
                    outw.Flush();
                    errw.Flush();
                    return result;
                }));
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                return; // the client hung up: its command stopped at its next write
            }
            var exit = new byte[9];
            exit[0] = Exit;
            BinaryPrimitives.WriteInt32BigEndian(exit.AsSpan(1), 4);
            BinaryPrimitives.WriteInt32BigEndian(exit.AsSpan(5), code);
            await body.WriteAsync(exit);
        });

    /// <summary>Sends a command to the daemon that owns the store or pool <paramref name="route"/> names; null when none answers
    /// there (then the command runs in this process, which takes the store's or pool's lock itself).</summary>
    public static int? TryForward(Route route, string[] args, Stream? stdout = null, Stream? stderr = null)
    {
        string socket = route.Socket;
        if (!File.Exists(socket)) return null;
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
        };
        using var http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(route.ExtraArgs is { } extra ? [.. args, .. extra] : args, CliJson.Default.StringArray);
        if (json.Length > MaxArgs) throw StrataException.Invalid($"the command line is too long for the daemon ({json.Length} bytes of arguments; at most {MaxArgs})");
        var head = new byte[4 + json.Length];
        BinaryPrimitives.WriteInt32BigEndian(head, json.Length);
        json.CopyTo(head, 4);
        using var input = !route.ReadsInput ? null
            : route.InputFile is { } file ? Commands.OpenFile(Path.GetFullPath(file))
            : Console.OpenStandardInput(1 << 20);
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://strata/v1/command")
        {
            Content = new StreamContent(input is null ? new MemoryStream(head) : new PrefixedStream(head, input), 1 << 20),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        request.Headers.Add("Strata-Cwd", Environment.CurrentDirectory);
        request.Headers.Add("Strata-Files", "client");
        if (stdout is null && !Console.IsOutputRedirected) request.Headers.Add("Strata-Width", TerminalWidth().ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (stderr is null && !Console.IsErrorRedirected) request.Headers.Add("Strata-Err-Tty", "1");
        HttpResponseMessage response;
        try
        {
            response = http.Send(request, HttpCompletionOption.ResponseHeadersRead);
        }
        catch (HttpRequestException ex) when (ex.InnerException is SocketException { SocketErrorCode: SocketError.AccessDenied })
        {
            throw new StrataException(ErrorKind.PermissionDenied, $"permission denied on {socket}: the daemon that owns {route.Owner} takes commands from root only");
        }
        catch (HttpRequestException ex) when (ex.InnerException is SocketException)
        {
            return null; // a socket left by a daemon that is gone
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode) throw new StrataException(ErrorKind.Io, $"the daemon at {socket} refused the command ({(int)response.StatusCode})");
            using var frames = response.Content.ReadAsStream();
            if (route.OutputFile is { } path)
                return OutputFile.Write(path, file => Receive(frames, socket, file, stderr), code => code == 0); // no file from a failed command
            if (stdout is not null) return Receive(frames, socket, stdout, stderr);
            using var console = Console.OpenStandardOutput();
            return Receive(frames, socket, console, stderr);
        }
    }

    static int TerminalWidth()
    {
        try
        {
            return Console.WindowWidth;
        }
        catch (IOException)
        {
            return 80;
        }
    }

    /// <summary>Copies the reply's frames to <paramref name="stdout"/> and stderr until the exit code.</summary>
    static int Receive(Stream frames, string socket, Stream stdout, Stream? errors)
    {
        using var console = errors is null ? Console.OpenStandardError() : null;
        var stderr = errors ?? console!;
        var header = new byte[5];
        var buffer = new byte[1 << 16];
        while (true)
        {
            if (!ReadExactly(frames, header)) throw new StrataException(ErrorKind.Io, $"the daemon at {socket} ended the command without an exit code");
            int length = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1));
            if (header[0] == Exit)
            {
                if (length != 4 || !ReadExactly(frames, buffer.AsSpan(0, 4))) throw new StrataException(ErrorKind.Io, "malformed reply from the daemon");
                return BinaryPrimitives.ReadInt32BigEndian(buffer);
            }
            var target = header[0] == Stderr ? stderr : stdout;
            while (length > 0)
            {
                int n = frames.Read(buffer, 0, Math.Min(length, buffer.Length));
                if (n == 0) throw new StrataException(ErrorKind.Io, "the daemon's reply was cut short");
                target.Write(buffer, 0, n);
                length -= n;
            }
            target.Flush();
        }
    }

    static async Task<bool> ReadExactlyAsync(Stream s, Memory<byte> buffer)
    {
        try
        {
            await s.ReadExactlyAsync(buffer);
            return true;
        }
        catch (EndOfStreamException)
        {
            return false;
        }
    }

    static bool ReadExactly(Stream s, Span<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = s.Read(buffer[done..]);
            if (n == 0) return false;
            done += n;
        }
        return true;
    }

    /// <summary>Writes everything given to it as frames of one channel; never closes the response.</summary>
    sealed class FrameStream(Stream body, byte channel) : Stream
    {
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> data)
        {
            Span<byte> header = stackalloc byte[5];
            while (data.Length > 0)
            {
                int n = Math.Min(data.Length, 1 << 20);
                header[0] = channel;
                BinaryPrimitives.WriteInt32BigEndian(header[1..], n);
                body.Write(header);
                body.Write(data[..n]);
                data = data[n..];
            }
        }

        public override void Flush() => body.Flush();
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    /// <summary>The arguments' bytes, then the command's input.</summary>
    sealed class PrefixedStream(byte[] head, Stream rest) : Stream
    {
        int _done;

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_done == head.Length) return rest.Read(buffer);
            int n = Math.Min(buffer.Length, head.Length - _done);
            head.AsSpan(_done, n).CopyTo(buffer);
            _done += n;
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
        {
            if (_done == head.Length) return await rest.ReadAsync(buffer, ct);
            return Read(buffer.Span);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

        public override void Flush() { }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
