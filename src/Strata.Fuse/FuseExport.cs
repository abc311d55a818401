using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Text;
using Strata.Native;
using Strata.Block;

namespace Strata.Fuse;

/// <summary>
/// Block devices as files of one FUSE mount, served by this process straight from <see cref="IBlockExports"/>
/// over /dev/fuse (the kernel's FUSE protocol 7.x, no libfuse): the mount's root lists every export, and
/// each file reads and writes its device. A loop device over such a file is a kernel block device backed by
/// a thin device, with one hop (kernel to this process) where nbdfuse takes two (kernel to nbdfuse, nbdfuse
/// to the NBD server). Files are opened with direct IO (no page cache of their own: the filesystem on the
/// loop device caches), parallel direct writes and async direct IO, so a loop device with direct IO keeps
/// many requests in flight; fsync flushes the device; fallocate punches holes (discards) and zeroes ranges.
/// Nothing is cached by the kernel (entry and attribute timeouts are zero), so a device made, grown or
/// removed shows at once. Worker threads each block in read(2) on the FUSE device and answer what they read.
/// </summary>
public sealed class FuseExport : IDisposable
{
    const ulong RootId = 1;
    const int MaxWrite = 1 << 20;
    const int BufferSize = MaxWrite + 4096;
    const int InHeader = 40, OutHeader = 16;

    // opcodes (linux/fuse.h)
    const uint Lookup = 1, Forget = 2, GetAttr = 3, SetAttr = 4, Open = 14, Read = 15, Write = 16, StatFs = 17, Release = 18,
        Fsync = 20, Flush = 25, Init = 26, OpenDir = 27, ReadDir = 28, ReleaseDir = 29, FsyncDir = 30, Interrupt = 36,
        Destroy = 38, BatchForget = 42, Fallocate = 43;

    const uint AsyncRead = 1 << 0, BigWrites = 1 << 5, AsyncDio = 1 << 15, ParallelDirops = 1 << 18, MaxPages = 1 << 22;
    const uint FopenDirectIo = 1 << 0, FopenParallelDirectWrites = 1 << 6;
    const uint FattrSize = 1 << 3;

    readonly IBlockExports _exports;
    readonly FileDescriptor _fd;
    readonly string _mountPoint;
    readonly uint _blockSize;
    readonly Action<string>? _log;
    readonly List<Thread> _threads = [];
    readonly object _nodesLock = new();
    readonly Dictionary<string, ulong> _idsByName = new(StringComparer.Ordinal);
    readonly Dictionary<ulong, string> _namesById = [];
    readonly ConcurrentDictionary<ulong, OpenFile> _handles = new();
    ulong _nextNode = RootId + 1;
    long _nextHandle;
    int _stopping;

    sealed record OpenFile(IBlockDevice Device, bool ReadOnly);

    FuseExport(IBlockExports exports, FileDescriptor fd, string mountPoint, uint blockSize, Action<string>? log)
    {
        _exports = exports;
        _fd = fd;
        _mountPoint = mountPoint;
        _blockSize = blockSize;
        _log = log;
    }

    public string MountPoint => _mountPoint;

    /// <summary>How many device files are open (a loop device over one holds it open).</summary>
    public int OpenFiles => _handles.Count;

    /// <summary>Mounts the export at <paramref name="mountPoint"/> (an empty directory; root only, mode 0700) and starts
    /// <paramref name="threads"/> workers. <paramref name="blockSize"/> is reported as the files' preferred IO size,
    /// which a loop device takes as its discard granularity.</summary>
    public static FuseExport Mount(string mountPoint, IBlockExports exports, uint blockSize, Action<string>? log = null, int threads = 8)
    {
        int err = Posix.TryOpenAt(FileDescriptor.Cwd, "/dev/fuse", Posix.O_RDWR, 0, out var fd);
        if (err != 0) throw new ErrnoException(err, "open", "/dev/fuse", "FUSE is not available (load the fuse module)");
        var export = new FuseExport(exports, fd!, mountPoint, blockSize, log);
        try
        {
            string data = $"fd={fd!.Value},rootmode=40000,user_id=0,group_id=0";
            err = Posix.TryMount("strata", mountPoint, "fuse.strata", Posix.MS_NOSUID | Posix.MS_NODEV | Posix.MS_NOEXEC, data);
            if (err != 0) throw new ErrnoException(err, "mount fuse", mountPoint);
            for (int i = 0; i < threads; i++)
            {
                var t = new Thread(export.Serve) { IsBackground = true, Name = $"fuse-{i}" };
                export._threads.Add(t);
                t.Start();
            }
            return export;
        }
        catch
        {
            fd!.Dispose();
            throw;
        }
    }

    void Serve()
    {
        var request = GC.AllocateUninitializedArray<byte>(BufferSize, pinned: true);
        var reply = GC.AllocateUninitializedArray<byte>(BufferSize, pinned: true);
        while (true)
        {
            int err = Posix.TryRead(_fd, request, out int n);
            if (err == Errno.ENOENT || err == Errno.EAGAIN) continue; // a request interrupted before we read it
            if (err == Errno.ENODEV) return; // unmounted: the connection is gone
            if (err != 0)
            {
                // a worker that quit would leave the kernel's requests unanswered (and their loop devices hung) while
                // the mount stays: log, and go on reading after a pause
                _log?.Invoke($"fuse: read from /dev/fuse failed: {new ErrnoException(err, "read", "/dev/fuse").Message}");
                Thread.Sleep(100);
                continue;
            }
            if (n < InHeader) continue;
            var msg = request.AsSpan(0, n);
            uint opcode = BinaryPrimitives.ReadUInt32LittleEndian(msg[4..]);
            ulong unique = BinaryPrimitives.ReadUInt64LittleEndian(msg[8..]);
            ulong node = BinaryPrimitives.ReadUInt64LittleEndian(msg[16..]);
            var body = msg[InHeader..];
            int length;
            int error = 0;
            try
            {
                length = Handle(opcode, node, body, reply.AsSpan(OutHeader), ref error);
            }
            catch (Exception ex)
            {
                error = ex is ErrnoException ee ? ee.Errno : ex is StrataException se ? ErrnoFor(se.Kind) : Errno.EIO;
                if (error == Errno.EIO) _log?.Invoke($"fuse: request {opcode} failed: {ex.Message}");
                length = 0;
            }
            if (length < 0) continue; // no reply (forget, interrupt)
            if (error != 0) length = 0;
            BinaryPrimitives.WriteUInt32LittleEndian(reply, (uint)(OutHeader + length));
            BinaryPrimitives.WriteInt32LittleEndian(reply.AsSpan(4), -error);
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(8), unique);
            err = Posix.TryWrite(_fd, reply.AsSpan(0, OutHeader + length));
            if (err == Errno.ENODEV) return;
            // ENOENT: the request was interrupted meanwhile, and the kernel no longer waits for the answer
            if (err != 0 && err != Errno.ENOENT) _log?.Invoke($"fuse: reply to request {opcode} failed: errno {err}");
        }
    }

    static int ErrnoFor(ErrorKind kind) => kind switch
    {
        ErrorKind.NoSpace => Errno.ENOSPC,
        ErrorKind.ReadOnly => Errno.EROFS,
        ErrorKind.NotFound => Errno.ENOENT,
        ErrorKind.InvalidArgument => Errno.EINVAL,
        _ => Errno.EIO,
    };

    /// <summary>Answers one request into <paramref name="output"/> (after the header); returns the answer's length,
    /// or -1 when the request takes no answer. Errors go in <paramref name="error"/> (a positive errno).</summary>
    int Handle(uint opcode, ulong node, ReadOnlySpan<byte> body, Span<byte> output, ref int error)
    {
        switch (opcode)
        {
            case Init:
                return InitReply(body, output);
            case Lookup:
            {
                string name = Encoding.UTF8.GetString(body[..Math.Max(0, body.IndexOf((byte)0))]);
                if (node != RootId || !TrySize(name, out long size))
                {
                    error = Errno.ENOENT;
                    return 0;
                }
                output[..128].Clear();
                BinaryPrimitives.WriteUInt64LittleEndian(output, NodeOf(name));
                BinaryPrimitives.WriteUInt64LittleEndian(output[8..], 1); // generation
                // entry_valid, attr_valid and their nanoseconds stay 0: nothing is cached
                WriteFileAttr(output[40..], NodeOf(name), size);
                return 128;
            }
            case Forget:
            case BatchForget:
            case Interrupt:
                return -1;
            case GetAttr:
            case SetAttr:
            {
                if (opcode == SetAttr && (BinaryPrimitives.ReadUInt32LittleEndian(body) & FattrSize) != 0)
                {
                    error = Errno.EPERM; // a device's size changes through the pool, not truncate
                    return 0;
                }
                output[..104].Clear();
                if (node == RootId)
                {
                    WriteDirAttr(output[16..]);
                    return 104;
                }
                if (NameOf(node) is not { } name || !TrySize(name, out long size))
                {
                    error = Errno.ENOENT;
                    return 0;
                }
                WriteFileAttr(output[16..], node, size);
                return 104;
            }
            case Open:
            {
                if (NameOf(node) is not { } name)
                {
                    error = Errno.ENOENT;
                    return 0;
                }
                uint flags = BinaryPrimitives.ReadUInt32LittleEndian(body);
                bool writing = (flags & 3) != 0;
                if (writing && _exports.ReadOnly(name))
                {
                    error = Errno.EROFS;
                    return 0;
                }
                var device = _exports.Open(name);
                if (device is null)
                {
                    error = Errno.ENOENT;
                    return 0;
                }
                ulong fh = (ulong)Interlocked.Increment(ref _nextHandle);
                _handles[fh] = new OpenFile(device, !writing);
                output[..16].Clear();
                BinaryPrimitives.WriteUInt64LittleEndian(output, fh);
                BinaryPrimitives.WriteUInt32LittleEndian(output[8..], FopenDirectIo | FopenParallelDirectWrites);
                return 16;
            }
            case Read:
            {
                var h = HandleOf(body);
                long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(body[8..]);
                int size = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(body[16..]), (uint)MaxWrite);
                long deviceSize = h.Device.Size;
                if (offset < 0 || offset >= deviceSize) return 0;
                int n = (int)Math.Min(size, deviceSize - offset);
                h.Device.Read(offset, output[..n]);
                return n;
            }
            case Write:
            {
                var h = HandleOf(body);
                if (h.ReadOnly)
                {
                    error = Errno.EBADF;
                    return 0;
                }
                long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(body[8..]);
                int size = (int)BinaryPrimitives.ReadUInt32LittleEndian(body[16..]);
                if (size > body.Length - 40)
                {
                    error = Errno.EINVAL;
                    return 0;
                }
                if (offset < 0 || offset + size > h.Device.Size)
                {
                    error = Errno.EFBIG;
                    return 0;
                }
                h.Device.Write(offset, body.Slice(40, size));
                output[..8].Clear();
                BinaryPrimitives.WriteUInt32LittleEndian(output, (uint)size);
                return 8;
            }
            case Fsync:
                HandleOf(body).Device.Flush();
                return 0;
            case Flush:
            case FsyncDir:
            case ReleaseDir:
                return 0;
            case Release:
            {
                ulong fh = BinaryPrimitives.ReadUInt64LittleEndian(body);
                if (_handles.TryRemove(fh, out var h)) h.Device.Dispose();
                return 0;
            }
            case Fallocate:
            {
                var h = HandleOf(body);
                long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(body[8..]);
                long length = (long)BinaryPrimitives.ReadUInt64LittleEndian(body[16..]);
                int mode = (int)BinaryPrimitives.ReadUInt32LittleEndian(body[24..]);
                long size = h.Device.Size;
                if (h.ReadOnly)
                {
                    error = Errno.EBADF;
                    return 0;
                }
                if (offset < 0 || length <= 0 || offset > size)
                {
                    error = Errno.EINVAL;
                    return 0;
                }
                length = Math.Min(length, size - offset);
                if (mode == (Posix.FALLOC_FL_PUNCH_HOLE | Posix.FALLOC_FL_KEEP_SIZE)) h.Device.Discard(offset, length);
                else if ((mode & ~Posix.FALLOC_FL_KEEP_SIZE) == Posix.FALLOC_FL_ZERO_RANGE) h.Device.WriteZeroes(offset, length);
                else if (mode is 0 or Posix.FALLOC_FL_KEEP_SIZE) { } // allocation: a thin device allocates on write
                else error = Errno.EOPNOTSUPP;
                return 0;
            }
            case OpenDir:
                if (node != RootId)
                {
                    error = Errno.ENOTDIR;
                    return 0;
                }
                output[..16].Clear();
                return 16;
            case ReadDir:
                return ReadDirReply(body, output);
            case StatFs:
            {
                output[..80].Clear();
                var names = _exports.Names();
                BinaryPrimitives.WriteUInt64LittleEndian(output[24..], (ulong)names.Count + 1); // files
                BinaryPrimitives.WriteUInt32LittleEndian(output[40..], _blockSize); // bsize
                BinaryPrimitives.WriteUInt32LittleEndian(output[44..], 255); // namelen
                BinaryPrimitives.WriteUInt32LittleEndian(output[48..], _blockSize); // frsize
                return 80;
            }
            case Destroy:
                return 0;
            default:
                error = Errno.ENOSYS;
                return 0;
        }
    }

    int InitReply(ReadOnlySpan<byte> body, Span<byte> output)
    {
        uint major = BinaryPrimitives.ReadUInt32LittleEndian(body);
        uint minor = BinaryPrimitives.ReadUInt32LittleEndian(body[4..]);
        uint readahead = BinaryPrimitives.ReadUInt32LittleEndian(body[8..]);
        uint offered = BinaryPrimitives.ReadUInt32LittleEndian(body[12..]);
        output[..64].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(output, 7);
        if (major != 7 || minor < 28)
        {
            _log?.Invoke($"fuse: the kernel speaks FUSE {major}.{minor}; Strata needs 7.28 or later");
            return 64; // the kernel ends the connection on a major it cannot take; otherwise it sees our minor and gives up
        }
        BinaryPrimitives.WriteUInt32LittleEndian(output[4..], Math.Min(minor, 31u));
        BinaryPrimitives.WriteUInt32LittleEndian(output[8..], readahead);
        BinaryPrimitives.WriteUInt32LittleEndian(output[12..], offered & (AsyncRead | BigWrites | AsyncDio | ParallelDirops | MaxPages));
        BinaryPrimitives.WriteUInt16LittleEndian(output[16..], 64); // max_background
        BinaryPrimitives.WriteUInt16LittleEndian(output[18..], 48); // congestion_threshold
        BinaryPrimitives.WriteUInt32LittleEndian(output[20..], MaxWrite);
        BinaryPrimitives.WriteUInt32LittleEndian(output[24..], 1); // time_gran
        BinaryPrimitives.WriteUInt16LittleEndian(output[28..], MaxWrite / 4096); // max_pages
        return 64;
    }

    int ReadDirReply(ReadOnlySpan<byte> body, Span<byte> output)
    {
        long start = (long)BinaryPrimitives.ReadUInt64LittleEndian(body[8..]);
        int room = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(body[16..]), (uint)output.Length);
        var entries = new List<(string Name, ulong Node, uint Type)> { (".", RootId, 4), ("..", RootId, 4) };
        foreach (var name in _exports.Names()) entries.Add((name, NodeOf(name), 8));
        int used = 0;
        for (long i = Math.Max(0, start); i < entries.Count; i++)
        {
            var (name, nodeId, type) = entries[(int)i];
            int nameLength = Encoding.UTF8.GetByteCount(name);
            int size = (24 + nameLength + 7) & ~7;
            if (used + size > room) break;
            var e = output.Slice(used, size);
            e.Clear();
            BinaryPrimitives.WriteUInt64LittleEndian(e, nodeId);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], (ulong)(i + 1));
            BinaryPrimitives.WriteUInt32LittleEndian(e[16..], (uint)nameLength);
            BinaryPrimitives.WriteUInt32LittleEndian(e[20..], type);
            Encoding.UTF8.GetBytes(name, e[24..]);
            used += size;
        }
        return used;
    }

    OpenFile HandleOf(ReadOnlySpan<byte> body) =>
        _handles.TryGetValue(BinaryPrimitives.ReadUInt64LittleEndian(body), out var h) ? h : throw new ErrnoException(Errno.EBADF, "fuse", "handle");

    bool TrySize(string name, out long size)
    {
        size = 0;
        if (name.Length == 0 || name is "." or "..") return false;
        using var device = _exports.Open(name);
        if (device is null) return false;
        size = device.Size;
        return true;
    }

    ulong NodeOf(string name)
    {
        lock (_nodesLock)
        {
            if (_idsByName.TryGetValue(name, out var id)) return id;
            id = _nextNode++;
            _idsByName[name] = id;
            _namesById[id] = name;
            return id;
        }
    }

    string? NameOf(ulong node)
    {
        lock (_nodesLock) return _namesById.GetValueOrDefault(node);
    }

    static void WriteDirAttr(Span<byte> attr)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(attr, RootId);
        BinaryPrimitives.WriteUInt32LittleEndian(attr[60..], 0x41C0); // S_IFDIR | 0700
        BinaryPrimitives.WriteUInt32LittleEndian(attr[64..], 2); // nlink
        BinaryPrimitives.WriteUInt32LittleEndian(attr[80..], 4096); // blksize
    }

    void WriteFileAttr(Span<byte> attr, ulong node, long size)
    {
        attr[..88].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(attr, node);
        BinaryPrimitives.WriteUInt64LittleEndian(attr[8..], (ulong)size);
        BinaryPrimitives.WriteUInt64LittleEndian(attr[16..], (ulong)(size / 512)); // blocks: what it can hold, not what is mapped
        BinaryPrimitives.WriteUInt32LittleEndian(attr[60..], 0x8180); // S_IFREG | 0600
        BinaryPrimitives.WriteUInt32LittleEndian(attr[64..], 1); // nlink
        BinaryPrimitives.WriteUInt32LittleEndian(attr[80..], _blockSize); // blksize
    }

    /// <summary>Unmounts (lazily: a loop device still holding a file keeps the connection until it lets go) and
    /// waits up to <paramref name="wait"/> for the workers; whatever is still open is dropped when the process ends.</summary>
    public void Dispose() => Dispose(TimeSpan.FromSeconds(5));

    public void Dispose(TimeSpan wait)
    {
        if (Interlocked.Exchange(ref _stopping, 1) != 0) return;
        Posix.TryUnmount(_mountPoint, Posix.MNT_DETACH);
        var deadline = DateTime.UtcNow + wait;
        foreach (var t in _threads)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !t.Join(left)) break;
        }
        foreach (var fh in _handles.Keys)
            if (_handles.TryRemove(fh, out var h)) h.Device.Dispose();
        if (_threads.All(t => !t.IsAlive)) _fd.Dispose();
    }
}
