// What each FUSE request does over IBlockExports: a flat directory with one file per device, whose reads, writes,
// fsyncs and fallocates go to the device, and, when the exports count IO, a .stats directory of read-only text files. Answer takes one request as the kernel wrote it and writes the whole
// reply; nothing here touches /dev/fuse, so the protocol is tested without a kernel.
using System.Collections.Concurrent;
using Strata.Block;
using Strata.Native;

namespace Strata.Fuse;

/// <summary>
/// The export's filesystem: the root (node 1) lists every device of <see cref="IBlockExports"/> as a regular file
/// of the device's size; an open file holds its device open until released. Read-only exports refuse opens for
/// writing (EROFS), and a handle opened for reading refuses writes (EBADF). Reads past the end return what is
/// there (0 bytes at or after the end); writes past the end fail with EFBIG. Malformed requests get EINVAL.
/// Exports that count IO (<see cref="IBlockExportStats"/>) also show the directory .stats (node 2) holding a file per
/// device, read-only, whose text is taken when it is opened (a read sees one moment, as a sysfs file does).
/// Called by many worker threads at once.
/// </summary>
sealed class FuseFileSystem(IBlockExports exports, uint blockSize, Action<string>? log)
{
    /// <summary>What <see cref="Answer"/> returns for a request that takes no reply.</summary>
    public const int NoReply = 0;

    /// <summary>An opcode method's result for a request that takes no reply (lengths are never negative, errors are
    /// negated errnos, above this).</summary>
    const int Silent = int.MinValue;

    readonly FuseNodes _nodes = new();
    readonly ConcurrentDictionary<ulong, OpenFile> _handles = new();
    long _nextHandle;

    /// <summary>An open device file, or an open statistics file (<paramref name="Text"/>, no device).</summary>
    sealed record OpenFile(IBlockDevice? Device, bool ReadOnly, byte[]? Text = null)
    {
        public IBlockDevice Blocks => Device ?? throw new ErrnoException(Errno.EBADF, "fuse", "a statistics file");
    }

    readonly IBlockExportStats? _stats = exports as IBlockExportStats;

    public int OpenFiles => _handles.Count;

    /// <summary>Answers one request (<paramref name="request"/>, header and body) into <paramref name="reply"/> (room for
    /// <see cref="FuseWire.BufferSize"/> bytes); returns the reply's length, or <see cref="NoReply"/>.</summary>
    public int Answer(ReadOnlySpan<byte> request, Span<byte> reply)
    {
        if (!FuseInHeader.TryRead(request, out var header))
        {
            log?.Invoke($"fuse: a request of {request.Length} bytes is shorter than its header; dropped");
            return NoReply;
        }
        int result;
        if (header.Length != request.Length) result = -Errno.EINVAL;
        else
        {
            try
            {
                result = Dispatch(header, request[FuseWire.InHeaderSize..], reply[FuseWire.OutHeaderSize..]);
            }
            catch (Exception ex)
            {
                result = -(ex is ErrnoException ee ? ee.Errno : ex is StrataException se ? ErrnoFor(se.Kind) : Errno.EIO);
                if (result == -Errno.EIO) log?.Invoke($"fuse: request {(uint)header.Opcode} failed: {ex.Message}");
            }
        }
        if (result == Silent) return NoReply;
        int length = Math.Max(result, 0);
        FuseWire.WriteOutHeader(reply, length, result < 0 ? -result : 0, header.Unique);
        return FuseWire.OutHeaderSize + length;
    }

    static int ErrnoFor(ErrorKind kind) => kind switch
    {
        ErrorKind.NoSpace => Errno.ENOSPC,
        ErrorKind.ReadOnly => Errno.EROFS,
        ErrorKind.NotFound => Errno.ENOENT,
        ErrorKind.InvalidArgument => Errno.EINVAL,
        _ => Errno.EIO,
    };

    /// <summary>Returns the reply body's length, a negated errno, or <see cref="Silent"/>.</summary>
    int Dispatch(FuseInHeader header, ReadOnlySpan<byte> body, Span<byte> output) => header.Opcode switch
    {
        FuseOpcode.Init => Init(body, output),
        FuseOpcode.Lookup => Lookup(header.Node, body, output),
        FuseOpcode.GetAttr => GetAttr(header.Node, output),
        FuseOpcode.SetAttr => SetAttr(header.Node, body, output),
        FuseOpcode.Open => Open(header.Node, body, output),
        FuseOpcode.Read => Read(body, output),
        FuseOpcode.Write => Write(body, output),
        FuseOpcode.Fsync => Fsync(body),
        FuseOpcode.Fallocate => Fallocate(body),
        FuseOpcode.Release => Release(body),
        FuseOpcode.OpenDir => OpenDir(header.Node, output),
        FuseOpcode.ReadDir => ReadDir(header.Node, body, output),
        FuseOpcode.StatFs => StatFs(output),
        FuseOpcode.Flush or FuseOpcode.FsyncDir or FuseOpcode.ReleaseDir or FuseOpcode.Destroy => 0,
        FuseOpcode.Forget or FuseOpcode.BatchForget or FuseOpcode.Interrupt => Silent,
        _ => -Errno.ENOSYS,
    };

    int Init(ReadOnlySpan<byte> body, Span<byte> output)
    {
        if (!FuseInitIn.TryRead(body, out var init)) return -Errno.EINVAL;
        if (init.Major != 7 || init.Minor < FuseWire.MinMinor)
        {
            log?.Invoke($"fuse: the kernel speaks FUSE {init.Major}.{init.Minor}; Strata needs 7.{FuseWire.MinMinor} or later");
            return FuseReply.Init(output, 7); // the kernel ends the connection on a major it cannot take; otherwise it sees our minor and gives up
        }
        const uint wanted = FuseWire.AsyncRead | FuseWire.BigWrites | FuseWire.AsyncDio | FuseWire.ParallelDirops | FuseWire.MaxPages;
        return FuseReply.Init(output, 7, Math.Min(init.Minor, FuseWire.MaxMinor), init.MaxReadahead, init.Flags & wanted);
    }

    int Lookup(ulong node, ReadOnlySpan<byte> body, Span<byte> output)
    {
        if (!FuseName.TryRead(body, out string name)) return -Errno.EINVAL;
        if (node == FuseWire.RootId && name == FuseNodes.StatsDir && _stats is not null) return FuseReply.Entry(output, StatsDirAttr);
        if (node == FuseNodes.StatsDirId && _stats is not null && StatsText(name) is { } text) return FuseReply.Entry(output, StatsAttr(_nodes.NodeOf("/" + name), text));
        if (node != FuseWire.RootId || !TrySize(name, out long size)) return -Errno.ENOENT;
        return FuseReply.Entry(output, FileAttr(_nodes.NodeOf(name), size));
    }

    int GetAttr(ulong node, Span<byte> output)
    {
        if (node == FuseWire.RootId) return FuseReply.Attr(output, new FuseAttr(FuseWire.RootId, 0, 0, FuseWire.DirMode, 2, 4096));
        if (node == FuseNodes.StatsDirId && _stats is not null) return FuseReply.Attr(output, StatsDirAttr);
        if (_nodes.NameOf(node) is not { } name) return -Errno.ENOENT;
        if (name.StartsWith('/')) return StatsText(name[1..]) is { } text ? FuseReply.Attr(output, StatsAttr(node, text)) : -Errno.ENOENT;
        if (!TrySize(name, out long size)) return -Errno.ENOENT;
        return FuseReply.Attr(output, FileAttr(node, size));
    }

    static readonly FuseAttr StatsDirAttr = new(FuseNodes.StatsDirId, 0, 0, FuseWire.DirMode, 2, 4096);

    static FuseAttr StatsAttr(ulong node, byte[] text) => new(node, (ulong)text.Length, 0, FuseWire.ReadOnlyFileMode, 1, 4096);

    byte[]? StatsText(string name) =>
        name.Length == 0 || name is "." or ".." || _stats?.StatsText(name) is not { } text ? null : System.Text.Encoding.UTF8.GetBytes(text);

    int SetAttr(ulong node, ReadOnlySpan<byte> body, Span<byte> output)
    {
        if (!FuseSetAttrIn.TryRead(body, out var setAttr)) return -Errno.EINVAL;
        if ((setAttr.Valid & FuseWire.FattrSize) != 0) return -Errno.EPERM; // a device's size changes through the pool, not truncate
        return GetAttr(node, output); // times and modes are not kept: the attributes stay as they are
    }

    int Open(ulong node, ReadOnlySpan<byte> body, Span<byte> output)
    {
        if (!FuseOpenIn.TryRead(body, out var open)) return -Errno.EINVAL;
        if (_nodes.NameOf(node) is not { } name) return -Errno.ENOENT;
        if (name.StartsWith('/'))
        {
            if (open.Writing) return -Errno.EACCES;
            if (StatsText(name[1..]) is not { } text) return -Errno.ENOENT;
            ulong th = (ulong)Interlocked.Increment(ref _nextHandle);
            _handles[th] = new OpenFile(null, ReadOnly: true, text);
            return FuseReply.Open(output, th, FuseWire.FopenDirectIo); // direct: every read comes here, whatever size the kernel saw
        }
        if (open.Writing && exports.ReadOnly(name)) return -Errno.EROFS;
        if (exports.Open(name) is not { } device) return -Errno.ENOENT;
        ulong fh = (ulong)Interlocked.Increment(ref _nextHandle);
        _handles[fh] = new OpenFile(device, !open.Writing);
        return FuseReply.Open(output, fh, FuseWire.FopenDirectIo | FuseWire.FopenParallelDirectWrites);
    }

    int Read(ReadOnlySpan<byte> body, Span<byte> output)
    {
        if (!FuseReadIn.TryRead(body, out var read)) return -Errno.EINVAL;
        var file = FileOf(read.Handle);
        long size = file.Text?.Length ?? file.Blocks.Size;
        if (read.Offset >= (ulong)size) return 0;
        int n = (int)Math.Min(Math.Min(read.Size, (uint)FuseWire.MaxWrite), (ulong)size - read.Offset);
        n = Math.Min(n, output.Length);
        if (file.Text is { } text) text.AsSpan((int)read.Offset, n).CopyTo(output);
        else file.Blocks.Read((long)read.Offset, output[..n]);
        return n;
    }

    int Write(ReadOnlySpan<byte> body, Span<byte> output)
    {
        if (!FuseWriteIn.TryRead(body, out var write, out var data)) return -Errno.EINVAL;
        var file = FileOf(write.Handle);
        if (file.ReadOnly) return -Errno.EBADF;
        long size = file.Blocks.Size;
        if (write.Offset > (ulong)size || (ulong)data.Length > (ulong)size - write.Offset) return -Errno.EFBIG;
        file.Blocks.Write((long)write.Offset, data);
        return FuseReply.Written(output, write.Size);
    }

    int Fsync(ReadOnlySpan<byte> body)
    {
        if (!FuseHandleIn.TryRead(body, 16, out var fsync)) return -Errno.EINVAL;
        var file = FileOf(fsync.Handle);
        if (file.Device is null) return 0; // nothing to make durable
        file.Device.Flush();
        return 0;
    }

    /// <summary>Punching a hole discards, zeroing a range writes zeroes, plain allocation does nothing (a thin device
    /// allocates on write); other modes are not supported. The range is clipped to the device.</summary>
    int Fallocate(ReadOnlySpan<byte> body)
    {
        if (!FuseFallocateIn.TryRead(body, out var fallocate)) return -Errno.EINVAL;
        var file = FileOf(fallocate.Handle);
        if (file.ReadOnly) return -Errno.EBADF;
        long size = file.Blocks.Size;
        if (fallocate.Offset > (ulong)size || fallocate.Length == 0 || fallocate.Length > long.MaxValue) return -Errno.EINVAL;
        long offset = (long)fallocate.Offset, length = Math.Min((long)fallocate.Length, size - offset);
        int mode = fallocate.Mode;
        if (mode == (Posix.FALLOC_FL_PUNCH_HOLE | Posix.FALLOC_FL_KEEP_SIZE)) file.Blocks.Discard(offset, length);
        else if ((mode & ~Posix.FALLOC_FL_KEEP_SIZE) == Posix.FALLOC_FL_ZERO_RANGE) file.Blocks.WriteZeroes(offset, length);
        else if (mode is not (0 or Posix.FALLOC_FL_KEEP_SIZE)) return -Errno.EOPNOTSUPP;
        return 0;
    }

    int Release(ReadOnlySpan<byte> body)
    {
        if (!FuseHandleIn.TryRead(body, 24, out var release)) return -Errno.EINVAL;
        if (_handles.TryRemove(release.Handle, out var file)) file.Device?.Dispose();
        return 0;
    }

    int OpenDir(ulong node, Span<byte> output) =>
        node == FuseWire.RootId || node == FuseNodes.StatsDirId && _stats is not null ? FuseReply.Open(output, 0, 0) : -Errno.ENOTDIR;

    /// <summary>".", "..", (in the root, .stats when the exports count IO,) then the devices in the order
    /// <see cref="IBlockExports.Names"/> gives them; an entry's offset is its index + 1, where the next READDIR starts.</summary>
    int ReadDir(ulong node, ReadOnlySpan<byte> body, Span<byte> output)
    {
        if (!FuseReadIn.TryRead(body, out var read)) return -Errno.EINVAL;
        int room = (int)Math.Min(read.Size, (uint)output.Length);
        bool stats = node == FuseNodes.StatsDirId;
        var entries = new List<(string Name, ulong Node, uint Type)> { (".", node, FuseWire.DirentDir), ("..", FuseWire.RootId, FuseWire.DirentDir) };
        if (!stats && _stats is not null) entries.Add((FuseNodes.StatsDir, FuseNodes.StatsDirId, FuseWire.DirentDir));
        foreach (var name in exports.Names()) entries.Add((name, _nodes.NodeOf(stats ? "/" + name : name), FuseWire.DirentFile));
        int used = 0;
        for (ulong i = read.Offset; i < (ulong)entries.Count; i++)
        {
            var (name, id, type) = entries[(int)i];
            int n = FuseReply.DirEntry(output[used..room], id, i + 1, type, name);
            if (n == 0) break;
            used += n;
        }
        return used;
    }

    int StatFs(Span<byte> output) => FuseReply.StatFs(output, (ulong)exports.Names().Count + 1, blockSize);

    /// <summary>Closes every file still open (the mount is gone).</summary>
    public void CloseAll()
    {
        foreach (var fh in _handles.Keys)
            if (_handles.TryRemove(fh, out var file)) file.Device?.Dispose();
    }

    OpenFile FileOf(ulong handle) =>
        _handles.TryGetValue(handle, out var file) ? file : throw new ErrnoException(Errno.EBADF, "fuse", "handle");

    /// <summary>blocks is what the file can hold, not what is mapped; blksize is the device's block size, which a loop
    /// device takes as its discard granularity.</summary>
    FuseAttr FileAttr(ulong node, long size) => new(node, (ulong)size, (ulong)(size / 512), FuseWire.FileMode, 1, blockSize);

    bool TrySize(string name, out long size)
    {
        size = 0;
        if (name.Length == 0 || name is "." or "..") return false;
        using var device = exports.Open(name);
        if (device is null) return false;
        size = device.Size;
        return true;
    }
}
