using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>Ownership, permissions and timestamps: fchownat, fchmodat, fchmod, fchown, utimensat, futimens.</summary>
public static unsafe partial class Posix
{
    [StructLayout(LayoutKind.Sequential)]
    struct Timespec
    {
        public long Sec;
        public long Nsec;
    }

    const long UTIME_OMIT = (1L << 30) - 2;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int fchownat(FileDescriptor dirfd, string path, uint uid, uint gid, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int fchmodat(FileDescriptor dirfd, string path, uint mode, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fchmod(FileDescriptor fd, uint mode);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fchown(FileDescriptor fd, uint uid, uint gid);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int utimensat(FileDescriptor dirfd, string path, Timespec* times, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int futimens(FileDescriptor fd, Timespec* times);

    [LibraryImport("libc")]
    private static partial uint umask(uint mask);

    /// <summary>lchown semantics: a final symlink is changed itself.</summary>
    public static void LchownAt(FileDescriptor dir, string path, uint uid, uint gid) =>
        Errno.Check(fchownat(dir, path, uid, gid, AT_SYMLINK_NOFOLLOW), "chown", path);

    /// <summary>chmod of a non-symlink (Linux cannot chmod a symlink).</summary>
    public static void ChmodAt(FileDescriptor dir, string path, uint mode) =>
        Errno.Check(fchmodat(dir, path, mode & 0xFFF, 0), "chmod", path);

    /// <summary>chmod of a path's final component without ever following it: a symlink is left alone
    /// (it has no mode of its own), anything else is changed through its O_PATH descriptor.</summary>
    public static void ChmodNoFollowAt(FileDescriptor dir, string name, uint mode)
    {
        using var fd = OpenAt(dir, name, O_PATH | O_NOFOLLOW);
        if (Fstat(fd).IsSymlink) return;
        Errno.Check(fchmodat(FileDescriptor.Cwd, $"/proc/self/fd/{fd.Value}", mode & 0xFFF, 0), "chmod", name);
    }

    public static void Fchmod(FileDescriptor fd, uint mode, string pathForErrors) =>
        Errno.Check(fchmod(fd, mode & 0xFFF), "chmod", pathForErrors);

    /// <summary>Gives an open file exactly this owner and these permission bits, with only the calls needed:
    /// a file just created by root usually has both already. Owner first, since chown clears setuid/setgid.</summary>
    public static void SetOwnerAndMode(FileDescriptor fd, uint uid, uint gid, uint mode, string pathForErrors)
    {
        var st = Fstat(fd);
        bool chowned = st.Uid != uid || st.Gid != gid;
        if (chowned) Fchown(fd, uid, gid, pathForErrors);
        if (chowned || st.Permissions != (mode & 0xFFF)) Fchmod(fd, mode, pathForErrors);
    }

    public static void Fchown(FileDescriptor fd, uint uid, uint gid, string pathForErrors) =>
        Errno.Check(fchown(fd, uid, gid), "chown", pathForErrors);

    /// <summary>Sets atime and mtime of a path without following a final symlink.</summary>
    public static void LutimesAt(FileDescriptor dir, string path, UnixTime atime, UnixTime mtime)
    {
        Timespec* t = stackalloc Timespec[2];
        t[0] = new Timespec { Sec = atime.Seconds, Nsec = atime.Nanoseconds };
        t[1] = new Timespec { Sec = mtime.Seconds, Nsec = mtime.Nanoseconds };
        Errno.Check(utimensat(dir, path, t, AT_SYMLINK_NOFOLLOW), "utimes", path);
    }

    public static void Futimes(FileDescriptor fd, UnixTime atime, UnixTime mtime, string pathForErrors)
    {
        Timespec* t = stackalloc Timespec[2];
        t[0] = new Timespec { Sec = atime.Seconds, Nsec = atime.Nanoseconds };
        t[1] = new Timespec { Sec = mtime.Seconds, Nsec = mtime.Nanoseconds };
        Errno.Check(futimens(fd, t), "utimes", pathForErrors);
    }

    public static uint SetUmask(uint mask) => umask(mask);
}
