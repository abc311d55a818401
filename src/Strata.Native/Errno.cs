using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>Linux errno values (the same on x86_64 and arm64).</summary>
public static class Errno
{
    public const int EPERM = 1, ENOENT = 2, EINTR = 4, EIO = 5, EBADF = 9, EAGAIN = 11, EACCES = 13, EBUSY = 16,
        EEXIST = 17, EXDEV = 18, ENOTDIR = 20, EISDIR = 21, EINVAL = 22, ETXTBSY = 26, ENOSPC = 28, EROFS = 30,
        EMLINK = 31, ERANGE = 34, ENAMETOOLONG = 36, ENOSYS = 38, ENOTEMPTY = 39, ELOOP = 40, ENODATA = 61,
        EOPNOTSUPP = 95, EDQUOT = 122, ENOTTY = 25, ENXIO = 6, ESRCH = 3, ENODEV = 19, EFBIG = 27, ENOTCONN = 107;

    public static int Last => Marshal.GetLastPInvokeError();

    public static ErrnoException Error(string operation, string? path) => new(Last, operation, path);

    /// <summary>Throws for a -1 result of <paramref name="operation"/>.</summary>
    public static void Check(int result, string operation, string? path)
    {
        if (result < 0) throw Error(operation, path);
    }

    public static long Check(long result, string operation, string? path)
    {
        if (result < 0) throw Error(operation, path);
        return result;
    }
}
