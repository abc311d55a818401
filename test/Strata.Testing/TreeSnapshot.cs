using System.Security.Cryptography;
using System.Text;
using Strata.Native;
using Xunit;

namespace Strata.Testing;

/// <summary>How precisely to compare modification times.</summary>
public enum MtimePrecision { Ignore, Seconds, Nanoseconds }

/// <summary>Everything observable about one path of a tree, for comparisons in tests.</summary>
public sealed record NodeInfo(string Path, FileKind Kind, uint Permissions, uint Uid, uint Gid, long Size, string Content,
    string Xattrs, UnixTime Mtime, string LinkGroup, long AllocatedBytes)
{
    public string Describe(MtimePrecision p) =>
        $"{Path} {Kind} {Convert.ToString(Permissions, 8)} {Uid}:{Gid} size={Size} {Content} xattrs[{Xattrs}] link={LinkGroup}" +
        (p switch { MtimePrecision.Seconds => $" mtime={Mtime.Seconds}", MtimePrecision.Nanoseconds => $" mtime={Mtime.Seconds}.{Mtime.Nanoseconds:D9}", _ => "" });
}

/// <summary>A tree captured path by path (content hashed, hardlink groups named by their first path).</summary>
public static class TreeSnapshot
{
    public static List<NodeInfo> Capture(string root, bool includeRoot = false)
    {
        var list = new List<NodeInfo>();
        var groups = new Dictionary<(ulong, ulong), string>();
        if (includeRoot) list.Add(Info(root, "", groups));
        Walk(root, "", list, groups);
        return list;
    }

    static void Walk(string root, string rel, List<NodeInfo> list, Dictionary<(ulong, ulong), string> groups)
    {
        foreach (var e in Posix.ReadDir(rel.Length == 0 ? root : root + "/" + rel))
        {
            if (rel.Length == 0 && e.Name == "lost+found") continue;
            string path = rel.Length == 0 ? e.Name : rel + "/" + e.Name;
            var info = Info(root, path, groups);
            list.Add(info);
            if (info.Kind == FileKind.Directory) Walk(root, path, list, groups);
        }
    }

    static NodeInfo Info(string root, string path, Dictionary<(ulong, ulong), string> groups)
    {
        string full = path.Length == 0 ? root : root + "/" + path;
        var st = Posix.Lstat(full);
        string content = st.Kind switch
        {
            FileKind.Regular => Hash(full),
            FileKind.Symlink => "-> " + Posix.ReadLink(full),
            FileKind.CharDevice or FileKind.BlockDevice => $"dev {st.RdevMajor}:{st.RdevMinor}",
            _ => "",
        };
        string group = "";
        if (st.IsRegular && st.Nlink > 1)
        {
            if (!groups.TryGetValue((st.Device, st.Inode), out var first)) groups[(st.Device, st.Inode)] = first = path;
            group = first;
        }
        var xattrs = string.Join(",", Posix.LgetXattrs(full).Select(kv => kv.Key + "=" + Convert.ToHexString(kv.Value)));
        return new NodeInfo(path, st.Kind, st.Permissions, st.Uid, st.Gid, st.IsDirectory ? 0 : st.Size, content, xattrs, st.Mtime, group, st.Blocks * 512);
    }

    /// <summary>Content hash, read with our own syscalls: .NET's File API cannot open names that are not UTF-8.</summary>
    static string Hash(string path)
    {
        using var fd = Posix.Open(path, Posix.O_RDONLY | Posix.O_NOFOLLOW);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buf = new byte[1 << 16];
        for (int n; (n = Posix.Read(fd, buf, path)) > 0;) sha.AppendData(buf, 0, n);
        return Convert.ToHexString(sha.GetHashAndReset())[..16];
    }

    /// <summary>Asserts two trees hold the same paths with the same attributes; on failure prints both sides of each difference.</summary>
    public static void AssertSame(string expectedRoot, string actualRoot, MtimePrecision mtime = MtimePrecision.Seconds) =>
        AssertSame(Capture(expectedRoot), Capture(actualRoot), mtime);

    public static void AssertSame(IReadOnlyList<NodeInfo> expected, IReadOnlyList<NodeInfo> actual, MtimePrecision mtime = MtimePrecision.Seconds)
    {
        var e = expected.ToDictionary(n => n.Path, n => n.Describe(mtime));
        var a = actual.ToDictionary(n => n.Path, n => n.Describe(mtime));
        var report = new StringBuilder();
        foreach (var (path, d) in e)
        {
            if (!a.TryGetValue(path, out var other)) report.AppendLine($"missing: {d}");
            else if (other != d) report.AppendLine($"differs:\n  expected {d}\n  actual   {other}");
        }
        foreach (var (path, d) in a)
            if (!e.ContainsKey(path)) report.AppendLine($"extra:   {d}");
        Assert.True(report.Length == 0, "trees differ:\n" + report);
    }
}
