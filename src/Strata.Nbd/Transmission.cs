using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using Strata.Block;

namespace Strata.Nbd;

/// <summary>
/// One connection's transmission phase, run the way nbdkit runs it: <see cref="Workers"/> threads take turns to
/// read the next request off the socket (blocking receives into one buffer, so one receive often brings many
/// requests and the next worker finds its request without a system call), carry it out at once, and send its
/// reply. Requests thus run concurrently and are answered in the order they finish, matched by cookie. A
/// finished reply is queued; whichever worker finds no one else sending sends every queued reply with one
/// sendmsg. Requests, their reply headers and their buffers are pooled: nothing is allocated per request on the
/// read and write paths.
/// (The first version parsed requests from a System.IO.Pipelines reader and ran each on the thread pool: every
/// request then cost a hand-over to another thread, and 4 KiB random reads reached 0.57x nbdkit's rate.)
/// Replies are simple, or structured when negotiated (reads as OFFSET_DATA and OFFSET_HOLE chunks, holes being
/// unallocated ranges; BLOCK_STATUS; errors as ERROR chunks). Out-of-range requests get their error and the
/// connection goes on; a malformed request (bad magic, oversized payload) ends it, after the requests in flight.
/// </summary>
sealed class Transmission(Socket socket, IBlockDevice device, bool readOnly, bool structured, bool baseAllocation, Action<string>? log)
{
    /// <summary>Threads per connection: how many of its requests run at once.</summary>
    public const int Workers = 8;
    const int MaxHoles = 7;
    const int BufferSize = 256 << 10;

    readonly long _size = device.Size; // what the client was told: a resize shows at its next connection
    readonly object _receiveLock = new();
    readonly byte[] _buffer = new byte[BufferSize];
    int _start, _end;       // the received bytes not parsed yet
    bool _closed;           // no more requests: the client left, said DISC or sent garbage
    readonly ConcurrentQueue<Request> _free = new();
    readonly ConcurrentQueue<Request> _done = new();
    readonly List<ArraySegment<byte>> _segments = [];
    readonly List<Request> _sending = [];
    int _sender;            // 1 while a worker sends replies
    const long MaxQueuedBytes = 64L << 20;
    readonly object _queueSignal = new();
    long _queuedBytes;      // replies queued or being sent (under _queueSignal)
    volatile bool _broken;  // a send failed: the client is gone

    sealed class Request
    {
        public ushort Flags, Type;
        public ulong Cookie, Offset;
        public uint Length;
        public byte[]? Payload;      // a write's data (rented)
        public byte[]? Data;         // a read's data or a block status (rented)
        public int DataLength;
        public uint Error;
        public readonly byte[] Head = new byte[32 * (2 * MaxHoles + 2)]; // the reply's headers
        public readonly (int Start, int Length)[] Holes = new (int, int)[MaxHoles];
        public int HoleCount;
    }

    /// <summary>Serves requests until the client leaves; returns once every request read has been answered.</summary>
    public void Run()
    {
        var others = new Thread[Workers - 1];
        for (int i = 0; i < others.Length; i++)
        {
            others[i] = new Thread(Work) { IsBackground = true, Name = "nbd worker" };
            others[i].Start();
        }
        Work();
        foreach (var t in others) t.Join();
    }

    void Work()
    {
        while (true)
        {
            Request? r;
            lock (_receiveLock)
            {
                if (_closed) return;
                try
                {
                    r = Next();
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    r = null;
                }
                if (r is null)
                {
                    _closed = true;
                    return;
                }
            }
            Execute(r);
        }
    }

    /// <summary>The next request (its write payload read too); null when the connection ends (under the receive lock).</summary>
    Request? Next()
    {
        if (!Fill(28)) return null;
        var header = _buffer.AsSpan(_start, 28);
        if (BinaryPrimitives.ReadUInt32BigEndian(header) != Nbd.RequestMagic)
        {
            log?.Invoke("bad request magic: closing the connection");
            return null;
        }
        ushort flags = BinaryPrimitives.ReadUInt16BigEndian(header[4..]);
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(header[6..]);
        ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(header[8..]);
        ulong offset = BinaryPrimitives.ReadUInt64BigEndian(header[16..]);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header[24..]);
        _start += 28;
        if (type == Nbd.CmdDisc) return null; // the requests in flight are answered first (Run waits for them)
        if (type == Nbd.CmdWrite && length > Nbd.MaxPayload)
        {
            log?.Invoke($"a write of {length} bytes: closing the connection");
            return null;
        }
        if (!_free.TryDequeue(out var r)) r = new Request();
        r.Flags = flags;
        r.Type = type;
        r.Cookie = cookie;
        r.Offset = offset;
        r.Length = length;
        r.Payload = r.Data = null;
        r.DataLength = 0;
        r.Error = 0;
        r.HoleCount = 0;
        if (type == Nbd.CmdWrite)
        {
            // what the buffer holds, then the rest straight into the payload
            var payload = r.Payload = ArrayPool<byte>.Shared.Rent((int)length);
            int buffered = Math.Min(_end - _start, (int)length);
            _buffer.AsSpan(_start, buffered).CopyTo(payload);
            _start += buffered;
            bool whole = false;
            try
            {
                for (int got = buffered; got < length;)
                {
                    int n = socket.Receive(payload, got, (int)length - got, SocketFlags.None);
                    if (n == 0) return null; // the client left mid-payload
                    got += n;
                }
                whole = true;
            }
            finally
            {
                if (!whole)
                {
                    ArrayPool<byte>.Shared.Return(payload);
                    r.Payload = null;
                    _free.Enqueue(r);
                }
            }
        }
        return r;
    }

    /// <summary>Receives until the buffer holds <paramref name="count"/> unparsed bytes; false at the end of the stream.</summary>
    bool Fill(int count)
    {
        if (_end - _start >= count) return true;
        if (_start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }
        while (_end < count)
        {
            int n = socket.Receive(_buffer, _end, _buffer.Length - _end, SocketFlags.None);
            if (n == 0) return false;
            _end += n;
        }
        return true;
    }

    void Execute(Request r)
    {
        try
        {
            r.Error = Run(r);
        }
        catch (StrataException ex)
        {
            r.Error = r.Type == Nbd.CmdFlush ? Nbd.EIO : ex.Kind switch // a flush that failed lost writes: EIO, whatever the cause
            {
                ErrorKind.NoSpace => Nbd.ENOSPC,
                ErrorKind.InvalidArgument => Nbd.EINVAL,
                ErrorKind.ReadOnly => Nbd.EPERM,
                _ => Nbd.EIO,
            };
            log?.Invoke($"request {r.Type} at {r.Offset}+{r.Length}: {ex.Message}");
        }
        catch (Exception ex)
        {
            // the server's boundary: one request's failure, whatever it is, is its client's EIO, not the end of
            // the process (these threads are not the thread pool's: an exception escaping one ends the process)
            r.Error = Nbd.EIO;
            if (ex is not (IOException or ObjectDisposedException)) log?.Invoke($"request {r.Type} at {r.Offset}+{r.Length} failed: {ex.GetType().Name}: {ex.Message}");
        }
        if (r.Payload is not null)
        {
            ArrayPool<byte>.Shared.Return(r.Payload);
            r.Payload = null;
        }
        if (r.Error != 0 && r.Data is not null)
        {
            ArrayPool<byte>.Shared.Return(r.Data);
            r.Data = null;
        }
        // a client that does not read its replies stops the workers here (as nbdkit's block on their send lock),
        // not after the server has queued its memory away
        long size = 32 + r.DataLength;
        lock (_queueSignal)
        {
            while (_queuedBytes > MaxQueuedBytes && !_broken) Monitor.Wait(_queueSignal, 100);
            _queuedBytes += size;
        }
        _done.Enqueue(r);
        SendReplies();
    }

    /// <summary>Carries out one request; returns its NBD error (0: done).</summary>
    uint Run(Request r)
    {
        ulong offset = r.Offset;
        uint length = r.Length;
        bool inRange = offset <= (ulong)_size && length <= (ulong)_size - offset;
        bool fua = (r.Flags & Nbd.CmdFlagFua) != 0;
        switch (r.Type)
        {
            case Nbd.CmdRead:
                if (!inRange || length > Nbd.MaxPayload) return Nbd.EINVAL;
                r.Data = ArrayPool<byte>.Shared.Rent((int)length);
                r.DataLength = (int)length;
                if (structured && (r.Flags & Nbd.CmdFlagDf) == 0) r.HoleCount = device.ReadSparse((long)offset, r.Data.AsSpan(0, (int)length), r.Holes);
                else device.Read((long)offset, r.Data.AsSpan(0, (int)length));
                return 0;
            case Nbd.CmdWrite:
                if (readOnly) return Nbd.EPERM;
                if (!inRange) return Nbd.ENOSPC;
                device.Write((long)offset, r.Payload.AsSpan(0, (int)length), fua);
                return 0;
            case Nbd.CmdFlush:
                device.Flush();
                return 0;
            case Nbd.CmdTrim:
                if (readOnly) return Nbd.EPERM;
                if (!inRange) return Nbd.EINVAL;
                device.Discard((long)offset, length);
                if (fua) device.Flush();
                return 0;
            case Nbd.CmdWriteZeroes:
                if (readOnly) return Nbd.EPERM;
                if (!inRange) return Nbd.ENOSPC;
                if ((r.Flags & Nbd.CmdFlagNoHole) != 0)
                {
                    // the zeros must be allocated: written, which is not fast
                    if ((r.Flags & Nbd.CmdFlagFastZero) != 0) return Nbd.ENOTSUP;
                    var zeros = ArrayPool<byte>.Shared.Rent((int)Math.Min(length, 1u << 20));
                    try
                    {
                        Array.Clear(zeros);
                        for (ulong done = 0; done < length; done += (ulong)zeros.Length)
                            device.Write((long)(offset + done), zeros.AsSpan(0, (int)Math.Min((ulong)zeros.Length, length - done)));
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(zeros);
                    }
                }
                else device.WriteZeroes((long)offset, length); // unmapping: fast
                if (fua) device.Flush();
                return 0;
            case Nbd.CmdCache:
                return inRange ? 0 : Nbd.EINVAL;
            case Nbd.CmdBlockStatus:
                if (!structured || !baseAllocation || !inRange || length == 0) return Nbd.EINVAL;
                (r.Data, r.DataLength) = BlockStatus((long)offset, length, (r.Flags & Nbd.CmdFlagReqOne) != 0);
                return 0;
            default:
                return Nbd.EINVAL;
        }
    }

    /// <summary>The base:allocation descriptors of [offset, offset+length): mapped ranges are 0, the rest
    /// HOLE|ZERO (a write there needs a fresh block, so may fail with ENOSPC; so may a write to a block
    /// shared with a snapshot, which this context cannot tell). Context id, then (u32 length, u32 flags) pairs.</summary>
    (byte[], int) BlockStatus(long offset, uint length, bool one)
    {
        var allocated = device.Allocated(offset, length);
        var payload = ArrayPool<byte>.Shared.Rent(4 + 8 * (2 * allocated.Count + 1));
        BinaryPrimitives.WriteUInt32BigEndian(payload, Nbd.BaseAllocationId);
        int size = 4;
        long at = offset, end = offset + length;
        void Add(long l, uint flags)
        {
            BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(size), (uint)l);
            BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(size + 4), flags);
            size += 8;
        }
        foreach (var (o, l) in allocated)
        {
            if (one && size > 4) break;
            if (o > at) Add(o - at, Nbd.StateHole | Nbd.StateZero);
            if (one && size > 4) break;
            Add(l, 0);
            at = o + l;
        }
        if (at < end && !(one && size > 4)) Add(end - at, Nbd.StateHole | Nbd.StateZero);
        return (payload, size);
    }

    // ---- replies ----

    /// <summary>Sends the queued replies unless another thread is at it (it will send ours too: it looks at the
    /// queue again after letting go).</summary>
    void SendReplies()
    {
        while (Interlocked.CompareExchange(ref _sender, 1, 0) == 0)
        {
            try
            {
                while (_done.TryDequeue(out var r))
                {
                    _sending.Add(r);
                    AddReply(r);
                    if (_segments.Count >= 256 || _sending.Count >= 64) Flush();
                }
                Flush();
            }
            finally
            {
                Interlocked.Exchange(ref _sender, 0); // a full fence: the look at the queue below cannot move before it
            }
            if (_done.IsEmpty) return; // else: queued after our last look, and its thread saw us sending
        }
    }

    void Flush()
    {
        if (_sending.Count == 0) return;
        try
        {
            if (!_broken) socket.Send(_segments);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            _broken = true; // the client is gone: nothing more is sent, and the next receive ends the connection
        }
        _segments.Clear();
        long sent = 0;
        foreach (var r in _sending) sent += 32 + r.DataLength;
        lock (_queueSignal)
        {
            _queuedBytes -= sent;
            Monitor.PulseAll(_queueSignal);
        }
        foreach (var r in _sending)
        {
            if (r.Data is not null) ArrayPool<byte>.Shared.Return(r.Data);
            r.Data = null;
            _free.Enqueue(r);
        }
        _sending.Clear();
    }

    /// <summary>Adds a request's reply to the segments of the next send: its headers go to its own Head.</summary>
    void AddReply(Request r)
    {
        var head = r.Head;
        if (!structured)
        {
            BinaryPrimitives.WriteUInt32BigEndian(head, Nbd.SimpleReplyMagic);
            BinaryPrimitives.WriteUInt32BigEndian(head.AsSpan(4), r.Error);
            BinaryPrimitives.WriteUInt64BigEndian(head.AsSpan(8), r.Cookie);
            _segments.Add(new ArraySegment<byte>(head, 0, 16));
            if (r.Error == 0 && r.Type == Nbd.CmdRead) _segments.Add(new ArraySegment<byte>(r.Data!, 0, r.DataLength));
            return;
        }
        if (r.Error != 0)
        {
            int at = Chunk(head, 0, r.Cookie, Nbd.ReplyFlagDone, Nbd.ChunkError, 6);
            BinaryPrimitives.WriteUInt32BigEndian(head.AsSpan(at), r.Error);
            BinaryPrimitives.WriteUInt16BigEndian(head.AsSpan(at + 4), 0); // no message
            _segments.Add(new ArraySegment<byte>(head, 0, at + 6));
            return;
        }
        switch (r.Type)
        {
            case Nbd.CmdRead:
            {
                // data and holes in order; the last chunk says DONE
                int used = 0, data = 0;
                if (r.DataLength == 0)
                {
                    _segments.Add(new ArraySegment<byte>(head, 0, Chunk(head, 0, r.Cookie, Nbd.ReplyFlagDone, Nbd.ChunkNone, 0)));
                    break;
                }
                for (int h = 0; h <= r.HoleCount; h++)
                {
                    int dataEnd = h < r.HoleCount ? r.Holes[h].Start : r.DataLength;
                    if (dataEnd > data)
                    {
                        bool last = h == r.HoleCount;
                        int at = Chunk(head, used, r.Cookie, last ? Nbd.ReplyFlagDone : (ushort)0, Nbd.ChunkOffsetData, 8 + dataEnd - data);
                        BinaryPrimitives.WriteUInt64BigEndian(head.AsSpan(at), r.Offset + (ulong)data);
                        _segments.Add(new ArraySegment<byte>(head, used, at + 8 - used));
                        _segments.Add(new ArraySegment<byte>(r.Data!, data, dataEnd - data));
                        used = at + 8;
                    }
                    if (h == r.HoleCount) break;
                    var (start, length) = r.Holes[h];
                    bool lastHole = h == r.HoleCount - 1 && start + length == r.DataLength;
                    int holeAt = Chunk(head, used, r.Cookie, lastHole ? Nbd.ReplyFlagDone : (ushort)0, Nbd.ChunkOffsetHole, 12);
                    BinaryPrimitives.WriteUInt64BigEndian(head.AsSpan(holeAt), r.Offset + (ulong)start);
                    BinaryPrimitives.WriteUInt32BigEndian(head.AsSpan(holeAt + 8), (uint)length);
                    _segments.Add(new ArraySegment<byte>(head, used, holeAt + 12 - used));
                    used = holeAt + 12;
                    data = start + length;
                    if (lastHole) break;
                }
                break;
            }
            case Nbd.CmdBlockStatus:
            {
                int at = Chunk(head, 0, r.Cookie, Nbd.ReplyFlagDone, Nbd.ChunkBlockStatus, r.DataLength);
                _segments.Add(new ArraySegment<byte>(head, 0, at));
                _segments.Add(new ArraySegment<byte>(r.Data!, 0, r.DataLength));
                break;
            }
            default:
                _segments.Add(new ArraySegment<byte>(head, 0, Chunk(head, 0, r.Cookie, Nbd.ReplyFlagDone, Nbd.ChunkNone, 0)));
                break;
        }
    }

    /// <summary>Writes a structured reply chunk's header at <paramref name="at"/>; returns where its payload starts.</summary>
    static int Chunk(byte[] head, int at, ulong cookie, ushort flags, ushort type, int payloadLength)
    {
        BinaryPrimitives.WriteUInt32BigEndian(head.AsSpan(at), Nbd.StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(head.AsSpan(at + 4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(head.AsSpan(at + 6), type);
        BinaryPrimitives.WriteUInt64BigEndian(head.AsSpan(at + 8), cookie);
        BinaryPrimitives.WriteUInt32BigEndian(head.AsSpan(at + 16), (uint)payloadLength);
        return at + 20;
    }
}
