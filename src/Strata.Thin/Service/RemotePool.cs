using System.Net;
using System.Net.Sockets;
using System.Runtime.ExceptionServices;
using System.Text.Json;

namespace Strata.Thin.Service;

/// <summary>No server took the call (nothing listens on the socket): the call never ran, so it may be run elsewhere.</summary>
public sealed class PoolUnreachableException(string message, Exception inner) : StrataException(ErrorKind.Io, message, inner);

/// <summary>
/// <see cref="IPoolService"/> on a pool that `strata pool serve` owns, through its control socket
/// (POOL/<see cref="PoolWire.SocketName"/>; <see cref="PoolWire"/> describes the protocol): one POST per call. The
/// server's errors come back as its <see cref="StrataException"/> (same kind, same message); a call no server took
/// throws <see cref="PoolUnreachableException"/>. A failure of the caller's own streams (the output of a read or a dump,
/// the input of a write) is thrown as it is, not blamed on the server. Calls that stream (read, write, dump), check and
/// the device listing take as long as they take; the others get the call timeout given (none: they wait as long as the
/// server takes, as a command does).
/// </summary>
public sealed class RemotePool : IPoolService
{
    /// <summary>What the thin driver gives a server for a call: a stuck server fails the command instead of hanging it.</summary>
    public static readonly TimeSpan DriverCallTimeout = TimeSpan.FromMinutes(5);

    readonly HttpClient _http;
    readonly TimeSpan? _callTimeout;

    public RemotePool(string controlSocket, TimeSpan? callTimeout = null)
    {
        Socket = controlSocket;
        _callTimeout = callTimeout;
        var handler = Strata.Native.UnixSocketHttp.Handler(controlSocket);
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    }

    /// <summary>The control socket of the pool in <paramref name="poolDir"/>.</summary>
    public static RemotePool ForPool(string poolDir, TimeSpan? callTimeout = null) => new(Path.Combine(poolDir, PoolWire.SocketName), callTimeout);

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

    public ThinDeviceInfo Rollback(string name, string snapshot, string? owner = null, bool force = false) => Call(new RollbackCall(name, snapshot, owner, force));

    public ThinDeviceInfo Device(string name) => Call(new DeviceCall(name));

    public IReadOnlyList<string> DeviceNames() => Call(new DeviceNamesCall());

    public IReadOnlyList<ThinDeviceInfo> Devices() => Call(new DevicesCall(), bounded: false);

    public PoolInfo Status() => Call(new StatusCall());

    public IReadOnlyList<string> SuperblockProblems() => Call(new SuperblockProblemsCall());

    public string Attach(string name) => Call(new AttachCall(name));

    public void Detach(string name) => Call(new DetachCall(name));

    public string? Attached(string name) => Call(new AttachedCall(name));

    public void Read(string name, long offset, long length, Stream to) => Call(new ReadCall(name, offset, length), output: to, bounded: false);

    public long Write(string name, long offset, Stream from) => Call(new WriteCall(name, offset), input: from, bounded: false);

    public PoolCheck Check() => Call(new CheckCall(), bounded: false);

    public void Dump(Stream to) => Call(new DumpCall(), output: to, bounded: false);

    public Space.SpaceInfo ChangeDisks(DiskChange change) => Call(new DisksCall(change), bounded: false);

    public Space.ScrubReport Scrub(bool repair) => Call(new ScrubCall(repair), bounded: false);

    public PoolStats Stats(IReadOnlyList<string>? names = null) => Call(new StatsCall(names?.ToList()));

    T Call<T>(PoolCall<T> call, Stream? input = null, Stream? output = null, bool bounded = true)
    {
        string op = PoolWire.NameOf(call);
        using var timeout = bounded && _callTimeout is { } limit ? new CancellationTokenSource(limit) : null;
        using var message = new HttpRequestMessage(HttpMethod.Post, "http://strata" + PoolWire.Endpoint)
        {
            Content = new CallContent(PoolWire.EncodeCall(call), input is null ? null : new CallersStream(input)),
        };
        try
        {
            using var response = _http.Send(message, HttpCompletionOption.ResponseHeadersRead, timeout?.Token ?? default);
            if (response.StatusCode == HttpStatusCode.NotFound)
                throw new StrataException(ErrorKind.Unsupported,
                    $"the pool server at {Socket} speaks another version of the pool's protocol (it has no {PoolWire.Endpoint}): it runs another strata; stop it (SIGTERM) once nothing uses its devices, and the next call starts one of this version");
            if (!response.IsSuccessStatusCode)
                throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} refused the call ({(int)response.StatusCode})");
            using var body = response.Content.ReadAsStream();
            return PoolWire.ReadReply(body, call, output is null ? null : new CallersStream(output));
        }
        catch (Exception ex) when (CallersFailure(ex) is { } own)
        {
            ExceptionDispatchInfo.Throw(own); // the caller's stream failed (a closed pipe, a full disk): its own error
            throw;
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
            throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} did not answer a '{op}' call within {_callTimeout!.Value.TotalMinutes:0} minutes", ex);
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

    /// <summary>The failure of a caller's stream that <paramref name="ex"/> carries (HttpClient wraps what its content
    /// throws), if that is what it is.</summary>
    static Exception? CallersFailure(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
            if (ex is CallersStreamException own) return own.InnerException;
        return null;
    }

    sealed class CallersStreamException(Exception inner) : Exception(inner.Message, inner);

    /// <summary>The caller's input or output, whose failures are marked as the caller's own.</summary>
    sealed class CallersStream(Stream inner) : Stream
    {
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            try
            {
                return inner.Read(buffer);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or StrataException)
            {
                throw new CallersStreamException(ex);
            }
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            try
            {
                inner.Write(buffer);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or StrataException)
            {
                throw new CallersStreamException(ex);
            }
        }

        public override void Flush() => inner.Flush();
        public override bool CanRead => inner.CanRead;
        public override bool CanSeek => false;
        public override bool CanWrite => inner.CanWrite;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

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
