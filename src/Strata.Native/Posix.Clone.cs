using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>Copy offload: the FICLONE ioctl (reflink) and copy_file_range(2).</summary>
public static unsafe partial class Posix
{
    /// <summary>_IOW(0x94, 9, int)</summary>
    public const ulong FICLONE = 0x40049409;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(FileDescriptor fd, ulong request, int arg);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint copy_file_range(FileDescriptor fdIn, long* offIn, FileDescriptor fdOut, long* offOut, nuint len, uint flags);

    /// <summary>Makes <paramref name="dest"/> share all of <paramref name="source"/>'s extents; returns errno
    /// (EOPNOTSUPP, EXDEV or EINVAL when the filesystem cannot).</summary>
    public static int TryClone(FileDescriptor dest, FileDescriptor source) =>
        ioctl(dest, FICLONE, source.Value) < 0 ? Errno.Last : 0;

    /// <summary>copy_file_range of [offset, offset+length); returns bytes copied (less at end of file) or -errno.</summary>
    public static long CopyFileRange(FileDescriptor source, FileDescriptor dest, long offset, long length)
    {
        long inOff = offset, outOff = offset, done = 0;
        while (done < length)
        {
            nint n = copy_file_range(source, &inOff, dest, &outOff, (nuint)Math.Min(length - done, 1L << 30), 0);
            if (n < 0)
            {
                int e = Errno.Last;
                if (e == Errno.EINTR) continue;
                return done > 0 ? done : -e;
            }
            if (n == 0) break;
            done += n;
        }
        return done;
    }
}
