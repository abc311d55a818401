using Strata.Native;
using Strata.Block;

namespace Strata.Thin;

/// <summary>A block store on a regular file or a block device, through pread/pwrite (safe from many threads),
/// fdatasync, and fallocate hole punching for discards.</summary>
public sealed class FileBlockStore : IBlockStore
{
    readonly FileDescriptor _fd;
    readonly bool _isDevice;
    long _length;

    FileBlockStore(string path, FileDescriptor fd, bool isDevice, long length)
    {
        Name = path;
        _fd = fd;
        _isDevice = isDevice;
        _length = length;
    }

    public string Name { get; }

    /// <summary>A block device (its size is its own: it cannot be grown from here).</summary>
    public bool IsDevice => _isDevice;

    public long Length => Interlocked.Read(ref _length);

    /// <summary>Creates a new sparse file of <paramref name="length"/> bytes (never an existing one), or takes a
    /// block device as it is (its own size then counts, and <paramref name="length"/> is ignored).</summary>
    public static FileBlockStore Create(string path, long length)
    {
        if (Posix.TryLstat(path, out var st) && st.Kind == FileKind.BlockDevice) return Open(path);
        var fd = Posix.Open(path, Posix.O_RDWR | Posix.O_CREAT | Posix.O_EXCL, 0x180);
        try
        {
            Posix.Ftruncate(fd, length, path);
            Posix.Fsync(fd, path);
            return new FileBlockStore(path, fd, isDevice: false, length);
        }
        catch
        {
            fd.Dispose();
            File.Delete(path);
            throw;
        }
    }

    public static FileBlockStore Open(string path) => Open(path, Posix.O_RDWR);

    /// <summary>Opens a file or block device for reading only (O_RDONLY): nothing through it can change it; writes,
    /// discards and flushes fail.</summary>
    public static FileBlockStore OpenReadOnly(string path) => Open(path, Posix.O_RDONLY);

    static FileBlockStore Open(string path, int flags)
    {
        var fd = Posix.Open(path, flags);
        try
        {
            var st = Posix.Fstat(fd);
            if (!st.IsRegular && st.Kind != FileKind.BlockDevice)
                throw StrataException.Invalid($"{path} is neither a regular file nor a block device");
            long length = st.Kind == FileKind.BlockDevice ? Posix.Seek(fd, 0, Posix.SEEK_END) : st.Size;
            if (length < 0) throw Errno.Error("lseek", path);
            return new FileBlockStore(path, fd, st.Kind == FileKind.BlockDevice, length);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    public void Read(long offset, Span<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        int done = 0;
        while (done < buffer.Length)
        {
            int n = Posix.Pread(_fd, buffer[done..], offset + done, Name);
            if (n == 0)
            {
                buffer[done..].Clear(); // a file shorter than its recorded length (grown by another process? never): zeros
                return;
            }
            done += n;
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        CheckRange(offset, data.Length);
        Posix.PwriteAll(_fd, data, offset, Name);
    }

    public void Flush() => Posix.Fdatasync(_fd, Name);

    public bool Discard(long offset, long length)
    {
        CheckRange(offset, length);
        return Posix.TryFallocate(_fd, Posix.FALLOC_FL_PUNCH_HOLE | Posix.FALLOC_FL_KEEP_SIZE, offset, length) == 0;
    }

    public bool IsHole(long offset, long length)
    {
        if (_isDevice || length <= 0) return false;
        long data = Posix.Seek(_fd, offset, Posix.SEEK_DATA);
        if (data < 0) return Errno.Last == Errno.ENXIO; // no data from offset to the end
        return data >= offset + length;
    }

    public void DropCache(long offset, long length)
    {
        CheckRange(offset, length);
        Posix.DropCache(_fd, offset, length);
    }

    public void Prefetch(long offset, long length)
    {
        CheckRange(offset, length);
        Posix.Prefetch(_fd, offset, length);
    }

    public void Grow(long length)
    {
        if (length <= Length) return;
        if (_isDevice) throw StrataException.Unsupported($"{Name} is a block device: grow the device, not the pool's view of it");
        Posix.Ftruncate(_fd, length, Name);
        Posix.Fsync(_fd, Name);
        Interlocked.Exchange(ref _length, length);
    }

    void CheckRange(long offset, long count)
    {
        if (offset < 0 || count < 0 || offset + count > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{Name}: {count} bytes at {offset} are outside its {Length} bytes");
    }

    public void Dispose() => _fd.Dispose();
}
