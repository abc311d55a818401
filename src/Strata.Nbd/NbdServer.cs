using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Strata.Native;
using Strata.Thin;

namespace Strata.Nbd;

/// <summary>What an NBD server exports: devices by name, opened for one connection's transmission phase.</summary>
public interface INbdExports
{
    IReadOnlyList<string> Names();

    /// <summary>The device named <paramref name="name"/>, open until disposed; null when there is none.</summary>
    IBlockDevice? Open(string name);

    bool ReadOnly(string name);
}

/// <summary>
/// An NBD server (fixed newstyle handshake; simple replies) over <see cref="IBlockDevice"/>s, on a unix socket
/// or loopback TCP. Per connection: the options phase answers EXPORT_NAME, GO, INFO (with EXPORT and
/// BLOCK_SIZE), LIST and ABORT, and ERR_UNSUP for every other option; then requests are read in order and
/// run concurrently, their replies written whole, one at a time, in the order they finish (matched by cookie).
/// Requests out of range get EINVAL and the connection goes on; a malformed request closes that connection
/// only. FLUSH commits the pool (covering writes done on every connection: CAN_MULTI_CONN).
/// </summary>
public sealed class NbdServer(INbdExports exports, Action<string>? log = null) : IAsyncDisposable
{
    readonly CancellationTokenSource _stop = new();
    readonly List<Socket> _listeners = [];
    readonly List<Task> _loops = [];
    readonly HashSet<Task> _connections = [];

    public void ListenUnix(string path)
    {
        if (File.Exists(path) || Directory.Exists(path))
        {
            // a socket left by a killed server; anything else is not ours to remove
            if ((File.GetAttributes(path) & FileAttributes.Directory) != 0) throw StrataException.Exists($"{path} is a directory");
            File.Delete(path);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        uint oldMask = Posix.SetUmask(0x3F); // 0600 from the first moment
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
        }
        finally
        {
            Posix.SetUmask(oldMask);
        }
        Listen(socket);
    }

    public IPEndPoint ListenTcp(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        socket.Bind(endpoint);
        Listen(socket);
        return (IPEndPoint)socket.LocalEndPoint!;
    }

    void Listen(Socket socket)
    {
        socket.Listen(64);
        _listeners.Add(socket);
        _loops.Add(Task.Run(() => AcceptLoop(socket)));
    }

    async Task AcceptLoop(Socket listener)
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            if (client.ProtocolType == ProtocolType.Tcp) client.NoDelay = true;
            Task task = null!;
            task = Task.Run(async () =>
            {
                try
                {
                    await new NbdConnection(client, exports, log).RunAsync(_stop.Token);
                }
                catch (Exception ex)
                {
                    log?.Invoke($"connection closed: {ex.Message}");
                }
                finally
                {
                    client.Dispose();
                    lock (_connections) _connections.Remove(task);
                }
            });
            lock (_connections) _connections.Add(task);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        foreach (var l in _listeners) l.Dispose();
        Task[] pending;
        lock (_connections) pending = [.. _connections, .. _loops];
        await Task.WhenAll(pending.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
        _stop.Dispose();
    }
}

/// <summary>One client: its handshake, then its requests.</summary>
sealed class NbdConnection(Socket socket, INbdExports exports, Action<string>? log)
{
    readonly NetworkStream _stream = new(socket, ownsSocket: false);
    readonly SemaphoreSlim _replyLock = new(1, 1);
    bool _noZeroes;
    bool _structured;       // STRUCTURED_REPLY negotiated
    bool _baseAllocation;   // base:allocation selected by SET_META_CONTEXT

    public async Task RunAsync(CancellationToken stop)
    {
        var (device, readOnly) = await HandshakeAsync(stop);
        if (device is null) return;
        using (device) await TransmitAsync(device, readOnly, stop);
    }

    // ---- handshake ----

    async Task<(IBlockDevice?, bool)> HandshakeAsync(CancellationToken stop)
    {
        var hello = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(hello, Nbd.NbdMagic);
        BinaryPrimitives.WriteUInt64BigEndian(hello.AsSpan(8), Nbd.IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(16), Nbd.FlagFixedNewstyle | Nbd.FlagNoZeroes);
        await _stream.WriteAsync(hello, stop);
        var flags = new byte[4];
        await _stream.ReadExactlyAsync(flags, stop);
        uint clientFlags = BinaryPrimitives.ReadUInt32BigEndian(flags);
        if ((clientFlags & Nbd.FlagFixedNewstyle) == 0 || (clientFlags & ~3u) != 0) return (null, false); // not a client we can talk to
        _noZeroes = (clientFlags & Nbd.FlagNoZeroes) != 0;
        var header = new byte[16];
        for (int options = 0; options < 10_000; options++)
        {
            await _stream.ReadExactlyAsync(header, stop);
            if (BinaryPrimitives.ReadUInt64BigEndian(header) != Nbd.IHaveOpt) return (null, false);
            uint option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            if (length > 64 * 1024) return (null, false); // no option needs this much: a confused or hostile client
            var data = new byte[length];
            await _stream.ReadExactlyAsync(data, stop);
            switch (option)
            {
                case Nbd.OptExportName:
                {
                    string name = Encoding.UTF8.GetString(data);
                    if (exports.Open(name) is not { } dev) return (null, false); // the protocol can only hang up here
                    bool ro = exports.ReadOnly(name);
                    var reply = new byte[_noZeroes ? 10 : 134];
                    BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)dev.Size);
                    BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), TransmissionFlags(ro));
                    await _stream.WriteAsync(reply, stop);
                    return (dev, ro);
                }
                case Nbd.OptAbort:
                    await OptionReplyAsync(option, Nbd.RepAck, [], stop);
                    return (null, false);
                case Nbd.OptList:
                    if (length != 0)
                    {
                        await OptionReplyAsync(option, Nbd.RepErrInvalid, [], stop);
                        break;
                    }
                    foreach (var n in exports.Names())
                    {
                        var nameBytes = Encoding.UTF8.GetBytes(n);
                        var entry = new byte[4 + nameBytes.Length];
                        BinaryPrimitives.WriteUInt32BigEndian(entry, (uint)nameBytes.Length);
                        nameBytes.CopyTo(entry, 4);
                        await OptionReplyAsync(option, Nbd.RepServer, entry, stop);
                    }
                    await OptionReplyAsync(option, Nbd.RepAck, [], stop);
                    break;
                case Nbd.OptInfo or Nbd.OptGo:
                {
                    if (length < 6 || BinaryPrimitives.ReadUInt32BigEndian(data) is var nameLength && nameLength > length - 6
                        || 4 + nameLength + 2 + 2 * BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + (int)nameLength)) != length)
                    {
                        await OptionReplyAsync(option, Nbd.RepErrInvalid, [], stop);
                        break;
                    }
                    string name = Encoding.UTF8.GetString(data, 4, (int)nameLength);
                    var dev = exports.Open(name);
                    if (dev is null)
                    {
                        await OptionReplyAsync(option, Nbd.RepErrUnknown, Encoding.UTF8.GetBytes($"no export named '{name}'"), stop);
                        break;
                    }
                    bool ro = exports.ReadOnly(name);
                    var export = new byte[12];
                    BinaryPrimitives.WriteUInt16BigEndian(export, Nbd.InfoExport);
                    BinaryPrimitives.WriteUInt64BigEndian(export.AsSpan(2), (ulong)dev.Size);
                    BinaryPrimitives.WriteUInt16BigEndian(export.AsSpan(10), TransmissionFlags(ro));
                    await OptionReplyAsync(option, Nbd.RepInfo, export, stop);
                    var sizes = new byte[14];
                    BinaryPrimitives.WriteUInt16BigEndian(sizes, Nbd.InfoBlockSize);
                    BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(2), 1);
                    BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(6), 4096);
                    BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(10), Nbd.MaxPayload);
                    await OptionReplyAsync(option, Nbd.RepInfo, sizes, stop);
                    await OptionReplyAsync(option, Nbd.RepAck, [], stop);
                    if (option == Nbd.OptGo) return (dev, ro);
                    dev.Dispose();
                    break;
                }
                case Nbd.OptStructuredReply:
                    if (length != 0)
                    {
                        await OptionReplyAsync(option, Nbd.RepErrInvalid, [], stop);
                        break;
                    }
                    _structured = true;
                    await OptionReplyAsync(option, Nbd.RepAck, [], stop);
                    break;
                case Nbd.OptListMetaContext or Nbd.OptSetMetaContext:
                {
                    if (!_structured || ParseMetaQueries(data) is not { } query)
                    {
                        await OptionReplyAsync(option, Nbd.RepErrInvalid, [], stop);
                        break;
                    }
                    // the one context offered: base:allocation (a LIST with no query, or "base:", lists it too)
                    bool match = query.Queries.Count == 0 && option == Nbd.OptListMetaContext
                        || query.Queries.Any(q => q == Nbd.BaseAllocation || option == Nbd.OptListMetaContext && q == "base:");
                    if (option == Nbd.OptSetMetaContext) _baseAllocation = match && exports.Names().Contains(query.Export);
                    if (match)
                    {
                        var name = Encoding.UTF8.GetBytes(Nbd.BaseAllocation);
                        var reply = new byte[4 + name.Length];
                        BinaryPrimitives.WriteUInt32BigEndian(reply, option == Nbd.OptSetMetaContext ? Nbd.BaseAllocationId : 0);
                        name.CopyTo(reply, 4);
                        await OptionReplyAsync(option, Nbd.RepMetaContext, reply, stop);
                    }
                    await OptionReplyAsync(option, Nbd.RepAck, [], stop);
                    break;
                }
                default:
                    // STARTTLS and anything newer: not offered
                    await OptionReplyAsync(option, Nbd.RepErrUnsup, [], stop);
                    break;
            }
        }
        return (null, false);
    }

    /// <summary>A meta-context option's export name and queries; null when malformed.</summary>
    static (string Export, List<string> Queries)? ParseMetaQueries(byte[] data)
    {
        if (data.Length < 8) return null;
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > data.Length - 8) return null;
        string export = Encoding.UTF8.GetString(data, 4, (int)nameLength);
        int at = 4 + (int)nameLength;
        uint count = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
        at += 4;
        var queries = new List<string>();
        for (uint i = 0; i < count; i++)
        {
            if (at + 4 > data.Length) return null;
            uint length = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
            at += 4;
            if (length > data.Length - at) return null;
            queries.Add(Encoding.UTF8.GetString(data, at, (int)length));
            at += (int)length;
        }
        return at == data.Length ? (export, queries) : null;
    }

    static ushort TransmissionFlags(bool readOnly) => (ushort)(Nbd.TxHasFlags | Nbd.TxSendFlush | Nbd.TxSendFua | Nbd.TxSendTrim
        | Nbd.TxSendWriteZeroes | Nbd.TxCanMultiConn | Nbd.TxSendCache | Nbd.TxSendFastZero | (readOnly ? Nbd.TxReadOnly : 0));

    async Task OptionReplyAsync(uint option, uint type, byte[] data, CancellationToken stop)
    {
        var header = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(header, Nbd.OptReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(16), (uint)data.Length);
        data.CopyTo(header, 20);
        await _stream.WriteAsync(header, stop);
    }

    // ---- transmission ----

    async Task TransmitAsync(IBlockDevice device, bool readOnly, CancellationToken stop)
    {
        var header = new byte[28];
        var inflight = new List<Task>();
        try
        {
            while (true)
            {
                await _stream.ReadExactlyAsync(header, stop);
                if (BinaryPrimitives.ReadUInt32BigEndian(header) != Nbd.RequestMagic)
                {
                    log?.Invoke("bad request magic: closing the connection");
                    return;
                }
                ushort flags = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4));
                ushort type = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6));
                ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
                ulong offset = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(16));
                uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(24));
                if (type == Nbd.CmdDisc) return;
                byte[]? payload = null;
                if (type == Nbd.CmdWrite)
                {
                    if (length > Nbd.MaxPayload)
                    {
                        log?.Invoke($"a write of {length} bytes: closing the connection");
                        return;
                    }
                    payload = ArrayPool<byte>.Shared.Rent((int)length);
                    await _stream.ReadExactlyAsync(payload.AsMemory(0, (int)length), stop);
                }
                else if (type == Nbd.CmdRead && length > Nbd.MaxPayload)
                {
                    await SimpleReplyAsync(cookie, Nbd.EINVAL, null, 0, stop);
                    continue;
                }
                var request = Task.Run(() => ExecuteAsync(device, readOnly, flags, type, cookie, offset, length, payload, stop));
                inflight.Add(request);
                if (inflight.Count > 64) inflight.RemoveAll(t => t.IsCompleted);
            }
        }
        catch (EndOfStreamException)
        {
            // the client went away
        }
        catch (IOException)
        {
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            await Task.WhenAll(inflight.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
        }
    }

    async Task ExecuteAsync(IBlockDevice device, bool readOnly, ushort flags, ushort type, ulong cookie, ulong offset, uint length, byte[]? payload, CancellationToken stop)
    {
        byte[]? data = null;
        uint error = 0;
        try
        {
            bool inRange = offset <= (ulong)device.Size && length <= (ulong)device.Size - offset;
            switch (type)
            {
                case Nbd.CmdRead:
                    if (!inRange) { error = Nbd.EINVAL; break; }
                    data = ArrayPool<byte>.Shared.Rent((int)length);
                    device.Read((long)offset, data.AsSpan(0, (int)length));
                    break;
                case Nbd.CmdWrite:
                    if (readOnly) { error = Nbd.EPERM; break; }
                    if (!inRange) { error = Nbd.ENOSPC; break; }
                    device.Write((long)offset, payload.AsSpan(0, (int)length), (flags & Nbd.CmdFlagFua) != 0);
                    break;
                case Nbd.CmdFlush:
                    device.Flush();
                    break;
                case Nbd.CmdTrim:
                    if (readOnly) { error = Nbd.EPERM; break; }
                    if (!inRange) { error = Nbd.EINVAL; break; }
                    device.Discard((long)offset, length);
                    if ((flags & Nbd.CmdFlagFua) != 0) device.Flush();
                    break;
                case Nbd.CmdWriteZeroes:
                    if (readOnly) { error = Nbd.EPERM; break; }
                    if (!inRange) { error = Nbd.ENOSPC; break; }
                    if ((flags & Nbd.CmdFlagNoHole) != 0)
                    {
                        // the zeros must be allocated: write them
                        var zeros = new byte[Math.Min(length, 1u << 20)];
                        for (ulong done = 0; done < length; done += (ulong)zeros.Length)
                            device.Write((long)(offset + done), zeros.AsSpan(0, (int)Math.Min((ulong)zeros.Length, length - done)));
                    }
                    else device.WriteZeroes((long)offset, length);
                    if ((flags & Nbd.CmdFlagFua) != 0) device.Flush();
                    break;
                case Nbd.CmdCache:
                    if (!inRange) error = Nbd.EINVAL;
                    break;
                case Nbd.CmdBlockStatus:
                    if (!_structured || !_baseAllocation) { error = Nbd.EINVAL; break; }
                    if (!inRange || length == 0) { error = Nbd.EINVAL; break; }
                    data = BlockStatus(device, (long)offset, length, (flags & Nbd.CmdFlagReqOne) != 0, out int statusLength);
                    length = (uint)statusLength;
                    break;
                default:
                    error = Nbd.EINVAL;
                    break;
            }
        }
        catch (StrataException ex)
        {
            error = ex.Kind switch
            {
                ErrorKind.NoSpace => Nbd.ENOSPC,
                ErrorKind.InvalidArgument => Nbd.EINVAL,
                ErrorKind.ReadOnly => Nbd.EPERM,
                _ => Nbd.EIO,
            };
            log?.Invoke($"request {type} at {offset}+{length}: {ex.Message}");
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
            error = Nbd.EIO;
        }
        finally
        {
            if (payload is not null) ArrayPool<byte>.Shared.Return(payload);
        }
        try
        {
            if (!_structured) await SimpleReplyAsync(cookie, error, error == 0 ? data : null, (int)length, stop);
            else if (error != 0) await ChunkAsync(cookie, Nbd.ChunkError, ErrorPayload(error), 0, 0, stop);
            else if (type == Nbd.CmdRead) await ChunkAsync(cookie, Nbd.ChunkOffsetData, data, (int)length, offset, stop);
            else if (type == Nbd.CmdBlockStatus) await ChunkAsync(cookie, Nbd.ChunkBlockStatus, data, (int)length, null, stop);
            else await ChunkAsync(cookie, Nbd.ChunkNone, null, 0, null, stop);
        }
        catch (Exception)
        {
            // the client is gone: nothing to tell it
        }
        finally
        {
            if (data is not null) ArrayPool<byte>.Shared.Return(data);
        }
    }

    /// <summary>The base:allocation descriptors of [offset, offset+length): mapped ranges are 0, the rest
    /// HOLE|ZERO (a write there needs a fresh block, so may fail with ENOSPC; so may a write to a block
    /// shared with a snapshot, which this context cannot tell). Context id, then (u32 length, u32 flags) pairs.</summary>
    static byte[] BlockStatus(IBlockDevice device, long offset, uint length, bool one, out int size)
    {
        var descriptors = new List<(uint Length, uint Flags)>();
        long at = offset, end = offset + length;
        foreach (var (o, l) in device.Allocated(offset, length))
        {
            if (o > at) descriptors.Add(((uint)(o - at), Nbd.StateHole | Nbd.StateZero));
            descriptors.Add(((uint)l, 0));
            at = o + l;
        }
        if (at < end) descriptors.Add(((uint)(end - at), Nbd.StateHole | Nbd.StateZero));
        if (one) descriptors.RemoveRange(1, descriptors.Count - 1);
        size = 4 + 8 * descriptors.Count;
        var payload = ArrayPool<byte>.Shared.Rent(size);
        BinaryPrimitives.WriteUInt32BigEndian(payload, Nbd.BaseAllocationId);
        for (int i = 0; i < descriptors.Count; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(4 + i * 8), descriptors[i].Length);
            BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(8 + i * 8), descriptors[i].Flags);
        }
        return payload;
    }

    static byte[] ErrorPayload(uint error)
    {
        var payload = new byte[6];
        BinaryPrimitives.WriteUInt32BigEndian(payload, error);
        return payload; // no message (length 0)
    }

    /// <summary>One structured reply chunk with the DONE flag: the whole reply to its request. For OFFSET_DATA,
    /// <paramref name="offset"/> precedes the data.</summary>
    async Task ChunkAsync(ulong cookie, ushort type, byte[]? data, int length, ulong? offset, CancellationToken stop)
    {
        int payloadLength = (data is null ? 0 : type == Nbd.ChunkError ? data.Length : length) + (offset is null ? 0 : 8);
        var header = new byte[20 + (offset is null ? 0 : 8)];
        BinaryPrimitives.WriteUInt32BigEndian(header, Nbd.StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(4), Nbd.ReplyFlagDone);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(16), (uint)payloadLength);
        if (offset is { } o) BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(20), o);
        await _replyLock.WaitAsync(stop);
        try
        {
            await _stream.WriteAsync(header, stop);
            if (data is not null) await _stream.WriteAsync(data.AsMemory(0, type == Nbd.ChunkError ? data.Length : length), stop);
        }
        finally
        {
            _replyLock.Release();
        }
    }

    async Task SimpleReplyAsync(ulong cookie, uint error, byte[]? data, int length, CancellationToken stop)
    {
        var header = new byte[16];
        BinaryPrimitives.WriteUInt32BigEndian(header, Nbd.SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(4), error);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(8), cookie);
        await _replyLock.WaitAsync(stop);
        try
        {
            await _stream.WriteAsync(header, stop);
            if (data is not null) await _stream.WriteAsync(data.AsMemory(0, length), stop);
        }
        finally
        {
            _replyLock.Release();
        }
    }
}
