using System.Runtime.InteropServices;
using System.Text;

namespace Strata.Native;

/// <summary>Extended attributes by path (never following a final symlink) and by descriptor.</summary>
public static unsafe partial class Posix
{
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial nint llistxattr(string path, byte* list, nuint size);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial nint lgetxattr(string path, string name, byte* value, nuint size);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int lsetxattr(string path, string name, byte* value, nuint size, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int fsetxattr(FileDescriptor fd, string name, byte* value, nuint size, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial nint flistxattr(FileDescriptor fd, byte* list, nuint size);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial nint fgetxattr(FileDescriptor fd, string name, byte* value, nuint size);

    /// <summary>All extended attributes of a path (not following a final symlink), sorted by name.
    /// Filesystems without xattr support yield an empty list.</summary>
    public static List<KeyValuePair<string, byte[]>> LgetXattrs(string path) => ReadXattrs(
        buf => { fixed (byte* p = buf) return llistxattr(path, p, (nuint)buf.Length); },
        (name, buf) => { fixed (byte* p = buf) return lgetxattr(path, name, p, (nuint)buf.Length); },
        path);

    /// <summary>Xattrs of <paramref name="name"/> inside an open directory, never following it: through the
    /// directory's /proc/self/fd entry, which works for every file type (symlinks and device nodes included).</summary>
    public static List<KeyValuePair<string, byte[]>> LgetXattrsAt(FileDescriptor dir, string name) =>
        LgetXattrs($"/proc/self/fd/{dir.Value}/{name}");

    public static void LsetXattrAt(FileDescriptor dir, string name, string key, ReadOnlySpan<byte> value) =>
        LsetXattr($"/proc/self/fd/{dir.Value}/{name}", key, value);

    public static List<KeyValuePair<string, byte[]>> FgetXattrs(FileDescriptor fd, string pathForErrors) => ReadXattrs(
        buf => { fixed (byte* p = buf) return flistxattr(fd, p, (nuint)buf.Length); },
        (name, buf) => { fixed (byte* p = buf) return fgetxattr(fd, name, p, (nuint)buf.Length); },
        pathForErrors);

    static List<KeyValuePair<string, byte[]>> ReadXattrs(Func<byte[], nint> list, Func<string, byte[], nint> get, string path)
    {
        var result = new List<KeyValuePair<string, byte[]>>();
        byte[]? names = ReadSized(list, "listxattr", path);
        if (names is null) return result;
        foreach (var name in SplitNames(names))
        {
            byte[]? value = ReadSized(buf => get(name, buf), "getxattr", path, isValue: true);
            if (value is not null) result.Add(new(name, value));
        }
        result.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        return result;
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int lremovexattr(string path, string name);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int fremovexattr(FileDescriptor fd, string name);

    public static void LremoveXattr(string path, string name) =>
        Errno.Check(lremovexattr(path, name), $"removexattr {name} on", path);

    public static void FremoveXattr(FileDescriptor fd, string name, string pathForErrors) =>
        Errno.Check(fremovexattr(fd, name), $"removexattr {name} on", pathForErrors);

    public static void LsetXattr(string path, string name, ReadOnlySpan<byte> value)
    {
        fixed (byte* p = value)
            Errno.Check(lsetxattr(path, name, p, (nuint)value.Length, 0), $"setxattr {name} on", path);
    }

    public static void FsetXattr(FileDescriptor fd, string name, ReadOnlySpan<byte> value, string pathForErrors)
    {
        fixed (byte* p = value)
            Errno.Check(fsetxattr(fd, name, p, (nuint)value.Length, 0), $"setxattr {name} on", pathForErrors);
    }

    /// <summary>The size-query-then-read dance of the *xattr calls, retried when the data grows in between.
    /// Null means "nothing": no attribute list (or no xattr support), or — for a value — a name that vanished.</summary>
    static byte[]? ReadSized(Func<byte[], nint> call, string op, string path, bool isValue = false)
    {
        for (int attempt = 0; attempt < 8; attempt++)
        {
            nint size = call([]);
            if (size < 0)
            {
                int e = Errno.Last;
                if (e == Errno.EOPNOTSUPP || (isValue && e == Errno.ENODATA)) return null;
                throw new ErrnoException(e, op, path);
            }
            if (size == 0) return isValue ? [] : null;
            var buf = new byte[size];
            nint n = call(buf);
            if (n >= 0) return n == buf.Length ? buf : buf[..(int)n];
            int err = Errno.Last;
            if (err == Errno.ERANGE) continue;
            if (isValue && err == Errno.ENODATA) return null;
            throw new ErrnoException(err, op, path);
        }
        throw new ErrnoException(Errno.ERANGE, op, path);
    }

    static IEnumerable<string> SplitNames(byte[] list)
    {
        int start = 0;
        for (int i = 0; i < list.Length; i++)
        {
            if (list[i] != 0) continue;
            if (i > start) yield return PathEncoding.Decode(list.AsSpan(start, i - start));
            start = i + 1;
        }
    }
}
