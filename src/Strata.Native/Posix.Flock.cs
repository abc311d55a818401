using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>flock(2): advisory whole-file locks, released when the descriptor closes (also on crash).</summary>
public static partial class Posix
{
    const int LOCK_EX = 2, LOCK_NB = 4;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int flock(FileDescriptor fd, int operation);

    /// <summary>Takes an exclusive lock without waiting; false when another process holds it.</summary>
    public static bool TryLockExclusive(FileDescriptor fd, string pathForErrors)
    {
        while (true)
        {
            if (flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
            int e = Errno.Last;
            if (e == Errno.EINTR) continue;
            if (e == Errno.EAGAIN) return false;
            throw new ErrnoException(e, "flock", pathForErrors);
        }
    }
}
