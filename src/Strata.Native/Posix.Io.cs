using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>Data: read, write, pread, pwrite, lseek (incl. SEEK_DATA/SEEK_HOLE), ftruncate, fallocate, fsync, fdatasync.</summary>
public static unsafe partial class Posix
{
    public const int SEEK_SET = 0, SEEK_CUR = 1, SEEK_END = 2, SEEK_DATA = 3, SEEK_HOLE = 4;

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint read(FileDescriptor fd, byte* buf, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint write(FileDescriptor fd, byte* buf, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint pread(FileDescriptor fd, byte* buf, nuint count, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint pwrite(FileDescriptor fd, byte* buf, nuint count, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial long lseek(int fd, long offset, int whence);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ftruncate(FileDescriptor fd, long length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(FileDescriptor fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fdatasync(FileDescriptor fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(FileDescriptor fd, int mode, long offset, long length);

    [LibraryImport("libc")]
    private static partial int posix_fadvise(FileDescriptor fd, long offset, long length, int advice);

    const int POSIX_FADV_WILLNEED = 3;
    const int POSIX_FADV_DONTNEED = 4;

    /// <summary>Starts reading a range into the page cache in the background (posix_fadvise WILLNEED). Best effort: false
    /// when the kernel refuses.</summary>
    public static bool Prefetch(FileDescriptor fd, long offset, long length) => posix_fadvise(fd, offset, length, POSIX_FADV_WILLNEED) == 0;

    /// <summary>Drops the page cache's clean pages of a range (posix_fadvise DONTNEED; dirty ones are written back first
    /// by the kernel where it can), so that the next read of it reaches the disk. Best effort: false when the kernel
    /// refuses.</summary>
    public static bool DropCache(FileDescriptor fd, long offset, long length) => posix_fadvise(fd, offset, length, POSIX_FADV_DONTNEED) == 0;

    public const int FALLOC_FL_KEEP_SIZE = 0x01, FALLOC_FL_PUNCH_HOLE = 0x02, FALLOC_FL_ZERO_RANGE = 0x10;

    /// <summary>Reads up to buffer.Length bytes; 0 means end of file.</summary>
    public static int Read(FileDescriptor fd, Span<byte> buffer, string pathForErrors)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                nint n = read(fd, p, (nuint)buffer.Length);
                if (n >= 0) return (int)n;
                if (Errno.Last != Errno.EINTR) throw Errno.Error("read", pathForErrors);
            }
        }
    }

    /// <summary>One read(2), EINTR retried: 0 and the count, or the errno (device files such as /dev/fuse).</summary>
    public static int TryRead(FileDescriptor fd, Span<byte> buffer, out int count)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                nint n = read(fd, p, (nuint)buffer.Length);
                count = (int)Math.Max(n, 0);
                if (n >= 0) return 0;
                if (Errno.Last != Errno.EINTR) return Errno.Last;
            }
        }
    }

    /// <summary>One write(2), EINTR retried: 0, or the errno (a message to a device such as /dev/fuse goes whole or not at all).</summary>
    public static int TryWrite(FileDescriptor fd, ReadOnlySpan<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                nint n = write(fd, p, (nuint)buffer.Length);
                if (n >= 0) return 0;
                if (Errno.Last != Errno.EINTR) return Errno.Last;
            }
        }
    }

    public static int Pread(FileDescriptor fd, Span<byte> buffer, long offset, string pathForErrors)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                nint n = pread(fd, p, (nuint)buffer.Length, offset);
                if (n >= 0) return (int)n;
                if (Errno.Last != Errno.EINTR) throw Errno.Error("read", pathForErrors);
            }
        }
    }

    /// <summary>The whole content of a small file: open, read, close and nothing else (no stat, no lock), for the
    /// store's many small records, which are read at every open.</summary>
    public static byte[] ReadFile(string path)
    {
        using var fd = Open(path, O_RDONLY);
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(4096); // reused: hundreds of records, one buffer
        int length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    var larger = System.Buffers.ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, length).CopyTo(larger);
                    System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
                int n = Read(fd, buffer.AsSpan(length), path);
                if (n == 0) break;
                length += n;
            }
            return buffer.AsSpan(0, length).ToArray();
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Writes all of <paramref name="buffer"/> at the current offset.</summary>
    public static void WriteAll(FileDescriptor fd, ReadOnlySpan<byte> buffer, string pathForErrors)
    {
        fixed (byte* p = buffer)
        {
            int done = 0;
            while (done < buffer.Length)
            {
                nint n = write(fd, p + done, (nuint)(buffer.Length - done));
                if (n < 0)
                {
                    if (Errno.Last == Errno.EINTR) continue;
                    throw Errno.Error("write", pathForErrors);
                }
                done += (int)n;
            }
        }
    }

    public static void PwriteAll(FileDescriptor fd, ReadOnlySpan<byte> buffer, long offset, string pathForErrors)
    {
        fixed (byte* p = buffer)
        {
            int done = 0;
            while (done < buffer.Length)
            {
                nint n = pwrite(fd, p + done, (nuint)(buffer.Length - done), offset + done);
                if (n < 0)
                {
                    if (Errno.Last == Errno.EINTR) continue;
                    throw Errno.Error("write", pathForErrors);
                }
                done += (int)n;
            }
        }
    }

    /// <summary>lseek(2); returns -1 with errno ENXIO for SEEK_DATA/SEEK_HOLE past the end, which callers treat as "none".</summary>
    public static long Seek(FileDescriptor fd, long offset, int whence) => lseek(fd.Value, offset, whence);

    public static void Ftruncate(FileDescriptor fd, long length, string pathForErrors) =>
        Errno.Check(ftruncate(fd, length), "truncate", pathForErrors);

    public static void Fsync(FileDescriptor fd, string pathForErrors) => Errno.Check(fsync(fd), "fsync", pathForErrors);

    public static void Fdatasync(FileDescriptor fd, string pathForErrors) => Errno.Check(fdatasync(fd), "fdatasync", pathForErrors);

    /// <summary>fallocate(2), reporting failure as errno (EOPNOTSUPP where the filesystem cannot) instead of throwing.</summary>
    public static int TryFallocate(FileDescriptor fd, int mode, long offset, long length)
    {
        int r;
        do r = fallocate(fd, mode, offset, length);
        while (r < 0 && Errno.Last == Errno.EINTR);
        return r < 0 ? Errno.Last : 0;
    }

    /// <summary>fsync of a directory, so that a rename or create inside it is durable.</summary>
    public static void FsyncDirectory(string path)
    {
        using var fd = Open(path, O_RDONLY | O_DIRECTORY);
        Fsync(fd, path);
    }
}
