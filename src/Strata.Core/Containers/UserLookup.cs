using System.Globalization;
using System.Text;
using Strata.Native;

namespace Strata.Core.Containers;

/// <summary>
/// An image's User (the OCI config's <c>User</c>, Docker's USER: <c>uid</c>, <c>uid:gid</c>, <c>name</c> or
/// <c>name:group</c>, empty for root) as the numeric ids a runtime needs, looked up in the container's own
/// <c>/etc/passwd</c> and <c>/etc/group</c>, never the host's. A user given by name must be in the passwd file; the
/// user's line there gives the primary group (a uid with no line: group 0); a group given by number is taken as
/// is. Lines with too few fields are skipped; a user's line whose uid is not a number is corrupt. The files are
/// the image's and so untrusted: read inside the rootfs, regular files only, bounded.
/// </summary>
public static class UserLookup
{
    /// <summary>The most of /etc/passwd or /etc/group read.</summary>
    public const long MaxFile = 16 << 20;

    /// <summary>Resolves <paramref name="user"/> in the image whose tree is at <paramref name="rootfs"/>.</summary>
    public static (uint Uid, uint Gid) Resolve(string rootfs, string user)
    {
        if (user.Length == 0) return (0, 0);
        using var root = Posix.Open(rootfs, Posix.O_RDONLY | Posix.O_DIRECTORY);
        return Resolve(user, path => ReadInRoot(root, path));
    }

    /// <summary>Resolves <paramref name="user"/> given the lines of the image's files (<c>etc/passwd</c>,
    /// <c>etc/group</c>; an absent file has none), which <paramref name="readLines"/> reads when needed.</summary>
    public static (uint Uid, uint Gid) Resolve(string user, Func<string, string[]> readLines)
    {
        if (user.Length == 0) return (0, 0);
        string u = user, g = "";
        int colon = user.IndexOf(':');
        if (colon >= 0) (u, g) = (user[..colon], user[(colon + 1)..]);
        uint? uid = uint.TryParse(u, out var n) ? n : null, gid = null;
        foreach (var line in readLines("etc/passwd"))
        {
            var f = line.Split(':');
            if (f.Length < 4) continue;
            if ((uid is null && f[0] == u) || (uid is { } x && f[2] == x.ToString(CultureInfo.InvariantCulture)))
            {
                uid ??= uint.TryParse(f[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out var named) ? named
                    : throw StrataException.Corrupt($"the image's /etc/passwd gives user '{u}' the uid '{f[2]}', which is not a number");
                gid = uint.TryParse(f[3], out var pg) ? pg : null;
                break;
            }
        }
        if (uid is null) throw StrataException.NotFound($"user '{u}' is not in the image's /etc/passwd");
        if (g.Length > 0)
        {
            gid = uint.TryParse(g, out var ng) ? ng : null;
            if (gid is null)
                foreach (var line in readLines("etc/group"))
                {
                    var f = line.Split(':');
                    if (f.Length >= 3 && f[0] == g && uint.TryParse(f[2], out var found)) gid = found;
                }
            if (gid is null) throw StrataException.NotFound($"group '{g}' is not in the image's /etc/group");
        }
        return (uid.Value, gid ?? 0);
    }

    /// <summary>The lines of a file of the image (absent: none). The image made it: it may be a FIFO (which would keep
    /// the run waiting for a writer) or a device (/dev/zero has no end), and is read with a bound.</summary>
    static string[] ReadInRoot(FileDescriptor root, string path)
    {
        if (ConfinedFile.TryOpen(root, path, Posix.RESOLVE_IN_ROOT, out var file, out var kind) != 0) return [];
        if (file is null) throw StrataException.Corrupt($"the image's /{path} is a {ConfinedFile.Describe(kind)}, not a regular file");
        using (file)
        {
            var bytes = ConfinedFile.ReadAtMost(file, MaxFile) ?? throw StrataException.Corrupt($"the image's /{path} is more than {MaxFile} bytes");
            return Encoding.UTF8.GetString(bytes).Split('\n');
        }
    }
}
