using System.Text;
using Strata.Archive.Tar;
using Strata.Native;
using Strata.Testing;

namespace Strata.Archive.Tests;

/// <summary>Small helpers to build real trees: every call is one syscall on a real path.</summary>
static class Fs
{
    public const uint Dir0755 = 0x1ED /* 0755 */, File0644 = 0x1A4 /* 0644 */;

    public static string Write(string path, string content, uint mode = File0644, uint uid = 0, uint gid = 0) =>
        Write(path, Encoding.UTF8.GetBytes(content), mode, uid, gid);

    public static string Write(string path, byte[] content, uint mode = File0644, uint uid = 0, uint gid = 0)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, content);
        Chown(path, uid, gid);
        Chmod(path, mode);
        return path;
    }

    public static string Mkdir(string path, uint mode = Dir0755, uint uid = 0, uint gid = 0)
    {
        Directory.CreateDirectory(path);
        Chown(path, uid, gid);
        Chmod(path, mode);
        return path;
    }

    public static void Chown(string path, uint uid, uint gid) => Posix.LchownAt(FileDescriptor.Cwd, path, uid, gid);

    public static void Chmod(string path, uint mode) => Posix.ChmodAt(FileDescriptor.Cwd, path, mode);

    public static void Symlink(string path, string target) => Posix.SymlinkAt(target, FileDescriptor.Cwd, path);

    public static void HardLink(string existing, string path) => Posix.LinkAt(FileDescriptor.Cwd, existing, FileDescriptor.Cwd, path);

    public static void Xattr(string path, string name, byte[] value) => Posix.LsetXattr(path, name, value);

    public static void Xattr(string path, string name, string value) => Xattr(path, name, Encoding.UTF8.GetBytes(value));

    public static void Mknod(string path, FileKind kind, uint perms, uint major = 0, uint minor = 0)
    {
        Posix.MknodAt(FileDescriptor.Cwd, path, (uint)kind | perms, major, minor);
        Chmod(path, perms);
    }

    public static void SetMtime(string path, long seconds, uint nanos = 0) =>
        Posix.LutimesAt(FileDescriptor.Cwd, path, new UnixTime(seconds, nanos), new UnixTime(seconds, nanos));

    /// <summary>A copy that keeps owners, modes, xattrs, times and hardlinks (GNU cp -a).</summary>
    public static void CopyTree(string from, string to) => Shell.Run("cp", "-a", "--", from, to).Check("cp -a");

    /// <summary>Every path under a root as "kind path" lines (sorted), for exact structural assertions.</summary>
    public static List<string> Listing(string root) =>
        TreeSnapshot.Capture(root).Select(n => $"{KindChar(n.Kind)} {n.Path}").ToList();

    static char KindChar(FileKind k) => k switch
    {
        FileKind.Directory => 'd',
        FileKind.Regular => 'f',
        FileKind.Symlink => 'l',
        FileKind.CharDevice => 'c',
        FileKind.BlockDevice => 'b',
        FileKind.Fifo => 'p',
        _ => 's',
    };

    /// <summary>A valid VFS_CAP_REVISION_2 security.capability value (cap_net_bind_service, effective).</summary>
    public static readonly byte[] CapNetBindService = Convert.FromHexString("0100000200040000000000000000000000000000");
}

/// <summary>Builds tars in memory with our own <see cref="TarWriter"/> (which writes whatever it is given,
/// so hostile names and links are easy), plus raw hand-made headers for what TarWriter cannot express.</summary>
sealed class TarBuilder
{
    readonly MemoryStream _stream = new();
    readonly TarWriter _writer;

    public TarBuilder() => _writer = new TarWriter(_stream);

    public static readonly UnixTime Time = new(1_600_000_000, 0);

    public TarBuilder File(string name, string content, uint mode = Fs.File0644, uint uid = 0, uint gid = 0,
        List<KeyValuePair<string, byte[]>>? xattrs = null) =>
        File(name, Encoding.UTF8.GetBytes(content), mode, uid, gid, xattrs);

    public TarBuilder File(string name, byte[] content, uint mode = Fs.File0644, uint uid = 0, uint gid = 0,
        List<KeyValuePair<string, byte[]>>? xattrs = null)
    {
        _writer.WriteHeader(new TarEntry { Name = name, Type = TarEntryType.Regular, Size = content.Length, Mode = mode, Uid = uid, Gid = gid, Mtime = Time, Xattrs = xattrs });
        _writer.WriteData(content);
        _writer.Pad(content.Length);
        return this;
    }

    public TarBuilder Dir(string name, uint mode = Fs.Dir0755, uint uid = 0, uint gid = 0) =>
        Entry(new TarEntry { Name = name, Type = TarEntryType.Directory, Mode = mode, Uid = uid, Gid = gid, Mtime = Time });

    public TarBuilder Symlink(string name, string target) =>
        Entry(new TarEntry { Name = name, Type = TarEntryType.Symlink, LinkName = target, Mode = 0x1FF /* 0777 */, Mtime = Time });

    public TarBuilder HardLink(string name, string target) =>
        Entry(new TarEntry { Name = name, Type = TarEntryType.HardLink, LinkName = target, Mode = Fs.File0644, Mtime = Time });

    public TarBuilder Whiteout(string name) => File(name, "");

    public TarBuilder Entry(TarEntry e)
    {
        _writer.WriteHeader(e);
        return this;
    }

    /// <summary>The finished archive (end-of-archive marker included).</summary>
    public byte[] Bytes()
    {
        _writer.Finish();
        _writer.Dispose();
        return _stream.ToArray();
    }

    /// <summary>The archive without the end marker, so raw blocks can follow.</summary>
    public byte[] BytesWithoutEnd()
    {
        var all = Bytes();
        return all[..^(2 * TarFormat.BlockSize)];
    }
}

/// <summary>Hand-made ustar headers, for shapes TarWriter refuses or cannot produce.</summary>
static class RawTar
{
    public static byte[] Header(string name, byte type = (byte)'0', long size = 0, string link = "", uint mode = Fs.File0644)
    {
        var b = new byte[TarFormat.BlockSize];
        Encoding.UTF8.GetBytes(name).CopyTo(b, TarFormat.NameOff);
        TarFormat.TryWriteOctal(b.AsSpan(TarFormat.ModeOff, 8), mode);
        TarFormat.TryWriteOctal(b.AsSpan(TarFormat.UidOff, 8), 0);
        TarFormat.TryWriteOctal(b.AsSpan(TarFormat.GidOff, 8), 0);
        TarFormat.TryWriteOctal(b.AsSpan(TarFormat.SizeOff, 12), size);
        TarFormat.TryWriteOctal(b.AsSpan(TarFormat.MtimeOff, 12), 1_600_000_000);
        b[TarFormat.TypeOff] = type;
        Encoding.UTF8.GetBytes(link).CopyTo(b, TarFormat.LinkOff);
        "ustar\u000000"u8.CopyTo(b.AsSpan(TarFormat.MagicOff));
        TarFormat.WriteChecksum(b);
        return b;
    }

    /// <summary>Overwrites a numeric field with GNU base-256 bytes (first byte 0x80 | high bits) and re-checksums.</summary>
    public static byte[] WithBase256(byte[] header, int offset, int length, ReadOnlySpan<byte> bigEndianValue)
    {
        var field = header.AsSpan(offset, length);
        field.Clear();
        bigEndianValue.CopyTo(field[(length - bigEndianValue.Length)..]);
        field[0] |= 0x80;
        TarFormat.WriteChecksum(header);
        return header;
    }

    public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    public static byte[] End => new byte[2 * TarFormat.BlockSize];

    public static byte[] Data(string content)
    {
        var bytes = Encoding.UTF8.GetBytes(content);
        var padded = new byte[(bytes.Length + TarFormat.BlockSize - 1) / TarFormat.BlockSize * TarFormat.BlockSize];
        bytes.CopyTo(padded, 0);
        return padded;
    }
}

static class Apply
{
    public static long Tar(byte[] tar, string target, WhiteoutFormat format = WhiteoutFormat.Oci) =>
        LayerApplier.Apply(new MemoryStream(tar), target, format);

    public static List<TarEntry> ReadAll(byte[] tar)
    {
        using var reader = new TarReader(new MemoryStream(tar));
        var list = new List<TarEntry>();
        while (reader.Next() is { } e) list.Add(e);
        return list;
    }
}
