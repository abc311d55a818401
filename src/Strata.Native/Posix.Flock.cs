using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>flock(2): advisory whole-file locks, released when the descriptor closes (also on crash).</summary>
public static partial class Posix
{
    const int LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int flock(FileDescriptor fd, int operation);

    /// <summary>Takes an exclusive lock without waiting; false when another process holds it.</summary>
    public static bool TryLockExclusive(FileDescriptor fd, string pathForErrors) => TryLock(fd, LOCK_EX, pathForErrors);

    /// <summary>Takes a shared lock without waiting (many holders at once, none while an exclusive one is held); false
    /// when another process holds it exclusively. Works on a descriptor opened read-only.</summary>
    public static bool TryLockShared(FileDescriptor fd, string pathForErrors) => TryLock(fd, LOCK_SH, pathForErrors);

    static bool TryLock(FileDescriptor fd, int kind, string pathForErrors)
    {
        while (true)
        {
            if (flock(fd, kind | LOCK_NB) == 0) return true;
            int e = Errno.Last;
            if (e == Errno.EINTR) continue;
            if (e == Errno.EAGAIN) return false;
            throw new ErrnoException(e, "flock", pathForErrors);
        }
    }
}
