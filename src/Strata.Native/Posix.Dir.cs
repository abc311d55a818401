using System.Runtime.InteropServices;
using System.Text;

namespace Strata.Native;

/// <summary>One directory entry: its name and the d_type the filesystem reported (0 when unknown).</summary>
public readonly record struct DirEntry(string Name, byte Type);

/// <summary>mkdirat(2) and directory listing through fdopendir(3)/readdir(3).</summary>
public static unsafe partial class Posix
{
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int mkdirat(FileDescriptor dirfd, string path, uint mode);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint fdopendir(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial byte* readdir(nint dir);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int closedir(nint dir);

    public static void MkdirAt(FileDescriptor dir, string path, uint mode) =>
        Errno.Check(mkdirat(dir, path, mode), "mkdir", path);

    public static int TryMkdirAt(FileDescriptor dir, string path, uint mode) =>
        mkdirat(dir, path, mode) < 0 ? Errno.Last : 0;

    /// <summary>The entries of a directory, without "." and "..", sorted by ordinal name.</summary>
    public static List<DirEntry> ReadDir(string path)
    {
        using var fd = Open(path, O_RDONLY | O_DIRECTORY);
        return ReadDir(fd, path);
    }

    /// <summary>The entries of an open directory (the descriptor stays open), sorted by ordinal name.</summary>
    public static List<DirEntry> ReadDir(FileDescriptor dirFd, string pathForErrors)
    {
        // a fresh descriptor of our own: works from an O_PATH one, starts at offset 0, close-on-exec
        using var own = OpenAt(dirFd, ".", O_RDONLY | O_DIRECTORY);
        int copy = (int)own.DangerousGetHandle();
        own.SetHandleAsInvalid();
        nint d = fdopendir(copy);
        if (d == 0)
        {
            var e = Errno.Error("opendir", pathForErrors);
            close(copy);
            throw e;
        }
        var list = new List<DirEntry>();
        try
        {
            while (true)
            {
                Marshal.SetLastPInvokeError(0);
                byte* ent = readdir(d);
                if (ent == null)
                {
                    int err = Errno.Last;
                    if (err != 0) throw new ErrnoException(err, "readdir", pathForErrors);
                    break;
                }
                ushort reclen = *(ushort*)(ent + 16);
                byte type = ent[18];
                byte* name = ent + 19;
                int len = new ReadOnlySpan<byte>(name, reclen - 19).IndexOf((byte)0);
                if (len == 1 && name[0] == '.') continue;
                if (len == 2 && name[0] == '.' && name[1] == '.') continue;
                list.Add(new DirEntry(PathEncoding.Decode(new ReadOnlySpan<byte>(name, len)), type));
            }
        }
        finally
        {
            closedir(d);
        }
        list.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        return list;
    }
}
