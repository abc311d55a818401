using System.Runtime.InteropServices;
using System.Text;

namespace Strata.Native;

/// <summary>Names: symlinkat, readlinkat, linkat, unlinkat, renameat2, mknodat.</summary>
public static unsafe partial class Posix
{
    public const uint RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int symlinkat(string target, FileDescriptor newdirfd, string linkpath);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial nint readlinkat(FileDescriptor dirfd, string path, byte* buf, nuint size);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int linkat(FileDescriptor olddirfd, string oldpath, FileDescriptor newdirfd, string newpath, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int unlinkat(FileDescriptor dirfd, string path, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int renameat2(FileDescriptor olddirfd, string oldpath, FileDescriptor newdirfd, string newpath, uint flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int mknodat(FileDescriptor dirfd, string path, uint mode, ulong dev);

    public static void SymlinkAt(string target, FileDescriptor dir, string path) =>
        Errno.Check(symlinkat(target, dir, path), "symlink", path);

    public static string ReadLinkAt(FileDescriptor dir, string path)
    {
        int size = 256;
        while (true)
        {
            byte[] buf = new byte[size];
            nint n;
            fixed (byte* p = buf) n = readlinkat(dir, path, p, (nuint)size);
            if (n < 0) throw Errno.Error("readlink", path);
            if (n < size) return PathEncoding.Decode(buf.AsSpan(0, (int)n));
            size *= 4;
        }
    }

    public static string ReadLink(string path) => ReadLinkAt(FileDescriptor.Cwd, path);

    /// <summary>The canonical absolute path of an existing file (symlinks resolved), as the kernel names it
    /// in /proc/self/mountinfo.</summary>
    public static string RealPath(string path)
    {
        using var fd = Open(path, O_PATH);
        return ReadLink($"/proc/self/fd/{fd.Value}");
    }

    /// <summary>linkat(2) without following a final symlink in <paramref name="oldPath"/>; returns errno.</summary>
    public static int TryLinkAt(FileDescriptor oldDir, string oldPath, FileDescriptor newDir, string newPath) =>
        linkat(oldDir, oldPath, newDir, newPath, 0) < 0 ? Errno.Last : 0;

    public static void LinkAt(FileDescriptor oldDir, string oldPath, FileDescriptor newDir, string newPath) =>
        Errno.Check(linkat(oldDir, oldPath, newDir, newPath, 0), "link", newPath);

    public static int TryUnlinkAt(FileDescriptor dir, string path, bool directory) =>
        unlinkat(dir, path, directory ? AT_REMOVEDIR : 0) < 0 ? Errno.Last : 0;

    public static void UnlinkAt(FileDescriptor dir, string path, bool directory) =>
        Errno.Check(unlinkat(dir, path, directory ? AT_REMOVEDIR : 0), "unlink", path);

    public static void RenameAt(FileDescriptor oldDir, string oldPath, FileDescriptor newDir, string newPath, uint flags = 0) =>
        Errno.Check(renameat2(oldDir, oldPath, newDir, newPath, flags), "rename", oldPath);

    public static int TryRenameAt(FileDescriptor oldDir, string oldPath, FileDescriptor newDir, string newPath, uint flags = 0) =>
        renameat2(oldDir, oldPath, newDir, newPath, flags) < 0 ? Errno.Last : 0;

    public static void Rename(string oldPath, string newPath, uint flags = 0) =>
        RenameAt(FileDescriptor.Cwd, oldPath, FileDescriptor.Cwd, newPath, flags);

    /// <summary>mknodat(2): <paramref name="mode"/> carries the file type bits.</summary>
    public static void MknodAt(FileDescriptor dir, string path, uint mode, uint major, uint minor) =>
        Errno.Check(mknodat(dir, path, mode, MakeDev(major, minor)), "mknod", path);
}
