namespace Strata.Native;

/// <summary>One line of /proc/self/mountinfo.</summary>
public sealed record MountEntry(int Id, int ParentId, string MountPoint, string Type, string Source, string Options);

/// <summary>The mounts this process can see (proc(5), /proc/self/mountinfo), paths unescaped and decoded losslessly.</summary>
public static class MountTable
{
    public static List<MountEntry> Read(string file = "/proc/self/mountinfo")
    {
        var mounts = new List<MountEntry>();
        foreach (var line in Split(File.ReadAllBytes(file), (byte)'\n'))
        {
            var f = Split(line, (byte)' ');
            int dash = f.FindIndex(x => x.Length == 1 && x[0] == (byte)'-');
            if (f.Count < 7 || dash < 6 || f.Count < dash + 4) continue;
            mounts.Add(new MountEntry(
                int.Parse(f[0]), int.Parse(f[1]), Unescape(f[4]),
                Unescape(f[dash + 1]), Unescape(f[dash + 2]), Unescape(f[dash + 3])));
        }
        return mounts;
    }

    /// <summary>Mount points at or below <paramref name="dir"/>, deepest first (the order to unmount them in).</summary>
    public static List<string> Below(string dir, IEnumerable<MountEntry>? table = null)
    {
        string prefix = dir.TrimEnd('/') + "/";
        return (table ?? Read()).Select(m => m.MountPoint)
            .Where(p => p == dir || p.StartsWith(prefix, StringComparison.Ordinal))
            .Distinct()
            .OrderByDescending(p => p.Length)
            .ToList();
    }

    public static bool IsMountPoint(string path, IEnumerable<MountEntry>? table = null) =>
        (table ?? Read()).Any(m => m.MountPoint == path);

    static List<byte[]> Split(ReadOnlySpan<byte> bytes, byte separator)
    {
        var parts = new List<byte[]>();
        while (bytes.Length > 0)
        {
            int i = bytes.IndexOf(separator);
            var part = i < 0 ? bytes : bytes[..i];
            if (part.Length > 0) parts.Add(part.ToArray());
            bytes = i < 0 ? [] : bytes[(i + 1)..];
        }
        return parts;
    }

    /// <summary>The kernel writes space, tab, newline and backslash in paths as \ooo octal escapes.</summary>
    static string Unescape(byte[] field)
    {
        var bytes = new List<byte>(field.Length);
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == (byte)'\\' && i + 3 < field.Length && IsOctal(field[i + 1]) && IsOctal(field[i + 2]) && IsOctal(field[i + 3]))
            {
                bytes.Add((byte)(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) | (field[i + 3] - '0')));
                i += 3;
            }
            else bytes.Add(field[i]);
        }
        return PathEncoding.Decode(bytes.ToArray());
    }

    static bool IsOctal(byte b) => b is >= (byte)'0' and <= (byte)'7';
}
