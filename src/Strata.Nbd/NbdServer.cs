using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Strata.Native;
using Strata.Block;

namespace Strata.Nbd;

/// <summary>
/// An NBD server over <see cref="IBlockDevice"/>s, on a unix socket or loopback TCP. Per connection: the options
/// phase (fixed newstyle, NO_ZEROES) answers EXPORT_NAME, GO, INFO (with EXPORT and BLOCK_SIZE), LIST, ABORT,
/// STRUCTURED_REPLY and LIST/SET_META_CONTEXT for base:allocation, and ERR_UNSUP for every other option; then
/// <see cref="Transmission"/> runs the requests. FLUSH commits the pool (covering writes completed on every
/// connection: CAN_MULTI_CONN).
/// </summary>
public sealed class NbdServer(IBlockExports exports, Action<string>? log = null) : IAsyncDisposable
{
    readonly CancellationTokenSource _stop = new();
    readonly List<Socket> _listeners = [];
    readonly List<Task> _loops = [];
    readonly HashSet<Task> _connections = [];
    readonly HashSet<Socket> _clients = [];

    /// <summary>Listens on a new unix socket at <paramref name="path"/> (0600), which must not exist: a socket left
    /// by a server that is gone is the caller's to remove, after making sure no one answers there.</summary>
    public void ListenUnix(string path)
    {
        if (File.Exists(path) || Directory.Exists(path)) throw StrataException.Exists($"{path} exists: another server may be listening there");
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
            // a thread of its own, blocking IO: a request costs its system calls and no hand-over between threads
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_connections)
            {
                _connections.Add(done.Task);
                _clients.Add(client);
                if (_stop.IsCancellationRequested) client.Shutdown(SocketShutdown.Receive); // came in as the server stopped
            }
            var thread = new Thread(() =>
            {
                try
                {
                    new NbdConnection(client, exports, log).Run();
                }
                catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or EndOfStreamException)
                {
                    if (!_stop.IsCancellationRequested) log?.Invoke($"connection closed: {ex.Message}");
                }
                finally
                {
                    client.Dispose();
                    lock (_connections)
                    {
                        _connections.Remove(done.Task);
                        _clients.Remove(client);
                    }
                    done.SetResult();
                }
            }) { IsBackground = true, Name = "nbd connection" };
            thread.Start();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        foreach (var l in _listeners) l.Dispose();
        Task[] pending;
        lock (_connections)
        {
            // blocked receives return: each connection finishes the requests it has and ends
            foreach (var c in _clients)
            {
                try
                {
                    c.Shutdown(SocketShutdown.Receive);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                }
            }
            pending = [.. _connections, .. _loops];
        }
        var all = Task.WhenAll(pending.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
        if (await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(10))) != all)
        {
            // a client that stopped reading its replies holds a worker in a send: cut it off
            lock (_connections)
                foreach (var c in _clients)
                {
                    try
                    {
                        c.Shutdown(SocketShutdown.Both);
                    }
                    catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                    {
                    }
                }
            await all;
        }
        _stop.Dispose();
    }
}

/// <summary>One client: its handshake, then its requests.</summary>
sealed class NbdConnection(Socket socket, IBlockExports exports, Action<string>? log)
{
    readonly NetworkStream _stream = new(socket, ownsSocket: false);
    bool _noZeroes;
    bool _structured;       // STRUCTURED_REPLY negotiated
    bool _baseAllocation;   // base:allocation selected by SET_META_CONTEXT

    /// <summary>Runs the connection on the calling thread, with blocking IO (see <see cref="Transmission"/>), until
    /// the client leaves or the server shuts the socket down.</summary>
    public void Run()
    {
        var (device, readOnly) = Handshake();
        if (device is null) return;
        using (device) new Transmission(socket, device, readOnly, _structured, _baseAllocation, log).Run();
    }

    // ---- handshake ----

    (IBlockDevice?, bool) Handshake()
    {
        var hello = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(hello, Nbd.NbdMagic);
        BinaryPrimitives.WriteUInt64BigEndian(hello.AsSpan(8), Nbd.IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(16), Nbd.FlagFixedNewstyle | Nbd.FlagNoZeroes);
        _stream.Write(hello);
        var flags = new byte[4];
        _stream.ReadExactly(flags);
        uint clientFlags = BinaryPrimitives.ReadUInt32BigEndian(flags);
        if ((clientFlags & Nbd.FlagFixedNewstyle) == 0 || (clientFlags & ~3u) != 0) return (null, false); // not a client we can talk to
        _noZeroes = (clientFlags & Nbd.FlagNoZeroes) != 0;
        var header = new byte[16];
        for (int options = 0; options < 10_000; options++)
        {
            _stream.ReadExactly(header);
            if (BinaryPrimitives.ReadUInt64BigEndian(header) != Nbd.IHaveOpt) return (null, false);
            uint option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            if (length > 64 * 1024) return (null, false); // no option needs this much: a confused or hostile client
            var data = new byte[length];
            _stream.ReadExactly(data);
            switch (option)
            {
                case Nbd.OptExportName:
                {
                    string name = Encoding.UTF8.GetString(data);
                    if (exports.Open(name) is not { } dev) return (null, false); // the protocol can only hang up here
                    try
                    {
                        bool ro = exports.ReadOnly(name);
                        var reply = new byte[_noZeroes ? 10 : 134];
                        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)dev.Size);
                        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), TransmissionFlags(ro));
                        _stream.Write(reply);
                        return (dev, ro);
                    }
                    catch
                    {
                        dev.Dispose(); // a device left open could never be removed
                        throw;
                    }
                }
                case Nbd.OptAbort:
                    OptionReply(option, Nbd.RepAck, []);
                    return (null, false);
                case Nbd.OptList:
                    if (length != 0)
                    {
                        OptionReply(option, Nbd.RepErrInvalid, []);
                        break;
                    }
                    foreach (var n in exports.Names())
                    {
                        var nameBytes = Encoding.UTF8.GetBytes(n);
                        var entry = new byte[4 + nameBytes.Length];
                        BinaryPrimitives.WriteUInt32BigEndian(entry, (uint)nameBytes.Length);
                        nameBytes.CopyTo(entry, 4);
                        OptionReply(option, Nbd.RepServer, entry);
                    }
                    OptionReply(option, Nbd.RepAck, []);
                    break;
                case Nbd.OptInfo or Nbd.OptGo:
                {
                    if (length < 6 || BinaryPrimitives.ReadUInt32BigEndian(data) is var nameLength && nameLength > length - 6
                        || 4 + nameLength + 2 + 2 * BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + (int)nameLength)) != length)
                    {
                        OptionReply(option, Nbd.RepErrInvalid, []);
                        break;
                    }
                    string name = Encoding.UTF8.GetString(data, 4, (int)nameLength);
                    var dev = exports.Open(name);
                    if (dev is null)
                    {
                        OptionReply(option, Nbd.RepErrUnknown, Encoding.UTF8.GetBytes($"no export named '{name}'"));
                        break;
                    }
                    bool keep = false;
                    try
                    {
                        bool ro = exports.ReadOnly(name);
                        var export = new byte[12];
                        BinaryPrimitives.WriteUInt16BigEndian(export, Nbd.InfoExport);
                        BinaryPrimitives.WriteUInt64BigEndian(export.AsSpan(2), (ulong)dev.Size);
                        BinaryPrimitives.WriteUInt16BigEndian(export.AsSpan(10), TransmissionFlags(ro));
                        OptionReply(option, Nbd.RepInfo, export);
                        var sizes = new byte[14];
                        BinaryPrimitives.WriteUInt16BigEndian(sizes, Nbd.InfoBlockSize);
                        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(2), 1);
                        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(6), 4096);
                        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(10), Nbd.MaxPayload);
                        OptionReply(option, Nbd.RepInfo, sizes);
                        OptionReply(option, Nbd.RepAck, []);
                        keep = option == Nbd.OptGo;
                        if (keep) return (dev, ro);
                    }
                    finally
                    {
                        if (!keep) dev.Dispose(); // INFO, or a client gone mid-reply
                    }
                    break;
                }
                case Nbd.OptStructuredReply:
                    if (length != 0)
                    {
                        OptionReply(option, Nbd.RepErrInvalid, []);
                        break;
                    }
                    _structured = true;
                    OptionReply(option, Nbd.RepAck, []);
                    break;
                case Nbd.OptListMetaContext or Nbd.OptSetMetaContext:
                {
                    if (!_structured || ParseMetaQueries(data) is not { } query)
                    {
                        OptionReply(option, Nbd.RepErrInvalid, []);
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
                        OptionReply(option, Nbd.RepMetaContext, reply);
                    }
                    OptionReply(option, Nbd.RepAck, []);
                    break;
                }
                default:
                    // STARTTLS and anything newer: not offered
                    OptionReply(option, Nbd.RepErrUnsup, []);
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

    void OptionReply(uint option, uint type, byte[] data)
    {
        var header = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(header, Nbd.OptReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(16), (uint)data.Length);
        data.CopyTo(header, 20);
        _stream.Write(header);
    }
}
