using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace Strata.Thin.Service;

/// <summary>No server took the call (nothing listens on the socket): the call never ran, so it may be run elsewhere.</summary>
public sealed class PoolUnreachableException(string message, Exception inner) : StrataException(ErrorKind.Io, message, inner);

/// <summary>
/// <see cref="IPoolService"/> on a pool that `strata pool serve` owns, through its control socket
/// (POOL/<see cref="PoolWire.SocketName"/>; <see cref="PoolWire"/> describes the protocol): one POST per call. The
/// server's errors come back as its <see cref="StrataException"/> (same kind, same message); a call no server took
/// throws <see cref="PoolUnreachableException"/>. Calls that stream (read, write, dump) and check take as long as
/// they take; the others get <see cref="CallTimeout"/>.
/// </summary>
public sealed class RemotePool : IPoolService
{
    static readonly TimeSpan CallTimeout = TimeSpan.FromMinutes(5);

    readonly HttpClient _http;

    public RemotePool(string controlSocket)
    {
        Socket = controlSocket;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(controlSocket), ct);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
        };
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    }

    /// <summary>The control socket of the pool in <paramref name="poolDir"/>.</summary>
    public static RemotePool ForPool(string poolDir) => new(Path.Combine(poolDir, PoolWire.SocketName));

    public string Socket { get; }

    /// <summary>Whether a server answers on the socket.</summary>
    public bool Answers()
    {
        if (!File.Exists(Socket)) return false;
        try
        {
            SuperblockProblems();
            return true;
        }
        catch (PoolUnreachableException)
        {
            return false;
        }
    }

    public ThinDeviceInfo Create(string name, long size, string? owner = null) => Call(new CreateCall(name, size, owner));

    public ThinDeviceInfo Snapshot(string source, string name, string? owner = null) => Call(new SnapshotCall(source, name, owner));

    public bool Delete(string name, bool defer = false, string? owner = null, bool force = false) => Call(new DeleteCall(name, defer, owner, force));

    public ThinDeviceInfo Resize(string name, long size) => Call(new ResizeCall(name, size));

    public ThinDeviceInfo Device(string name) => Call(new DeviceCall(name));

    public IReadOnlyList<string> DeviceNames() => Call(new DeviceNamesCall());

    public IReadOnlyList<ThinDeviceInfo> Devices() => Call(new DevicesCall());

    public PoolInfo Status() => Call(new StatusCall());

    public IReadOnlyList<string> SuperblockProblems() => Call(new SuperblockProblemsCall());

    public string Attach(string name) => Call(new AttachCall(name));

    public void Detach(string name) => Call(new DetachCall(name));

    public string? Attached(string name) => Call(new AttachedCall(name));

    public void Read(string name, long offset, long length, Stream to) => Call(new ReadCall(name, offset, length), output: to, bounded: false);

    public long Write(string name, long offset, Stream from) => Call(new WriteCall(name, offset), input: from, bounded: false);

    public PoolCheck Check() => Call(new CheckCall(), bounded: false);

    public void Dump(Stream to) => Call(new DumpCall(), output: to, bounded: false);

    T Call<T>(PoolCall<T> call, Stream? input = null, Stream? output = null, bool bounded = true)
    {
        string op = PoolWire.NameOf(call);
        using var timeout = bounded ? new CancellationTokenSource(CallTimeout) : null;
        using var message = new HttpRequestMessage(HttpMethod.Post, "http://strata" + PoolWire.Endpoint) { Content = new CallContent(PoolWire.EncodeCall(call), input) };
        try
        {
            using var response = _http.Send(message, HttpCompletionOption.ResponseHeadersRead, timeout?.Token ?? default);
            if (!response.IsSuccessStatusCode)
                throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} refused the call ({(int)response.StatusCode})");
            using var body = response.Content.ReadAsStream();
            return PoolWire.ReadReply(body, call, output);
        }
        catch (HttpRequestException ex) when (ex.InnerException is SocketException { SocketErrorCode: SocketError.AccessDenied })
        {
            throw new StrataException(ErrorKind.PermissionDenied, $"permission denied on {Socket}: the server that owns pool {Path.GetDirectoryName(Socket)} takes calls from root only");
        }
        catch (HttpRequestException ex) when (ex.HttpRequestError == HttpRequestError.ConnectionError)
        {
            throw new PoolUnreachableException($"no pool server answers at {Socket}: {ex.InnerException?.Message ?? ex.Message}", ex);
        }
        catch (HttpRequestException ex)
        {
            throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} failed during a '{op}' call: {ex.InnerException?.Message ?? ex.Message}", ex);
        }
        catch (OperationCanceledException ex) when (timeout?.IsCancellationRequested == true)
        {
            throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} did not answer a '{op}' call within {CallTimeout.TotalMinutes:0} minutes", ex);
        }
        catch (EndOfStreamException ex)
        {
            throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} ended its reply to a '{op}' call early: {ex.Message}", ex);
        }
        catch (IOException ex)
        {
            throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} failed during a '{op}' call: {ex.Message}", ex);
        }
        catch (Exception ex) when (ex is JsonException or InvalidDataException)
        {
            throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} sent a malformed reply: {ex.Message}", ex);
        }
    }

    public void Dispose() => _http.Dispose();

    /// <summary>A request body: the call, then the input of a write (sent chunked, as it is read).</summary>
    sealed class CallContent(byte[] head, Stream? input) : HttpContent
    {
        protected override void SerializeToStream(Stream stream, TransportContext? context, CancellationToken ct)
        {
            stream.Write(head);
            input?.CopyTo(stream, 1 << 20);
        }

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken ct)
        {
            await stream.WriteAsync(head, ct);
            if (input is not null) await input.CopyToAsync(stream, 1 << 20, ct);
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => SerializeToStreamAsync(stream, context, default);

        protected override bool TryComputeLength(out long length)
        {
            length = head.Length;
            return input is null;
        }
    }
}
