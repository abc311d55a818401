// The fold of one overlay upper directory into the one above it: how a snapshot frozen into a container's chain is
// merged back (ploop's snapshot-delete), by renames where the snapshot goes away, by copies where it stays for others.
using Strata.Archive;
using Strata.Core.Drivers.Vfs;
using Strata.Native;

namespace Strata.Core.Drivers.Overlay;

/// <summary>
/// Folds upper directory L (a layer's changes) into upper directory U (those of a layer over it), U's entries winning,
/// so that U over L's parent shows what U over L showed. Per name in L, against U:
/// <list type="bullet">
/// <item>U lacks it: L's entry goes to U (renamed whole, or copied through a staging directory and renamed in), a
/// whiteout or an opaque directory included: it means in U what it meant in L.</item>
/// <item>both are directories, U's not opaque: the fold goes into them; U's becomes opaque if L's was (L's hid
/// the layers below, which U will sit on directly).</item>
/// <item>U's is a directory, not opaque, and L's anything else (a file, a whiteout): L's stopped the layers below,
/// so U's becomes opaque.</item>
/// <item>otherwise U's hides L's: nothing to do.</item>
/// </list>
/// When moving, L's entries are removed once U has what they meant. Every step leaves U over L showing the same tree,
/// so a fold cut short by a crash is finished by folding again: a copy is made whole in a staging directory beside U
/// (same filesystem), made durable, then renamed in; a directory that is not opaque goes in as itself alone (its
/// attributes) and is filled afterwards; opacity is set only once U holds everything of L's directory. The times of
/// U's directories the fold adds to are put back, as the container last saw them (those of a fold that is finished
/// after a crash are the ones it finds).
/// </summary>
sealed class UpperFold
{
    readonly bool _move;
    readonly FileDescriptor _uRoot;
    readonly FileDescriptor? _staging;
    readonly string _stagingPath;
    readonly TreeCopy _copy = new();
    readonly Dictionary<(ulong Dev, ulong Ino), string> _linked = [];
    int _temps;

    UpperFold(bool move, FileDescriptor uRoot, FileDescriptor? staging, string stagingPath)
    {
        _move = move;
        _uRoot = uRoot;
        _staging = staging;
        _stagingPath = stagingPath;
    }

    /// <summary>Folds <paramref name="lower"/> into <paramref name="upper"/> (both upper directories of one overlay
    /// chain, on one filesystem), moving its entries when <paramref name="move"/>, copying them otherwise through
    /// <paramref name="staging"/> (a directory on the same filesystem, outside both; made, emptied of what a fold cut
    /// short left, and removed at the end).</summary>
    public static void Run(string lower, string upper, bool move, string staging)
    {
        using var l = Posix.Open(lower, Posix.O_RDONLY | Posix.O_DIRECTORY);
        using var u = Posix.Open(upper, Posix.O_RDONLY | Posix.O_DIRECTORY);
        if (move)
        {
            new UpperFold(move, u, null, staging).Fold(l, u, "", 0);
            return;
        }
        if (Posix.TryLstat(staging, out _)) FileTree.Remove(staging);
        Posix.MkdirAt(FileDescriptor.Cwd, staging, Modes.OwnerOnly);
        using (var s = Posix.Open(staging, Posix.O_RDONLY | Posix.O_DIRECTORY))
            new UpperFold(move, u, s, staging).Fold(l, u, "", 0);
        FileTree.Remove(staging);
    }

    void Fold(FileDescriptor l, FileDescriptor u, string rel, int depth)
    {
        TreeWalker.CheckDepth(depth, rel);
        var times = Posix.Fstat(u);
        bool added = false;
        foreach (var e in Posix.ReadDir(l, rel))
        {
            string name = e.Name, path = Join(rel, name);
            if (_move)
            {
                // the common case in one call: U lacks it, and L's goes over whole (what mv does in three)
                int err = Posix.TryRenameAt(l, name, u, name, Posix.RENAME_NOREPLACE);
                if (err == 0)
                {
                    added = true;
                    continue;
                }
                if (err != Errno.EEXIST) throw new ErrnoException(err, "rename", path);
            }
            var ls = Posix.LstatAt(l, name);
            if (Posix.TryLstatAt(u, name, out var us) != 0)
            {
                Add(l, name, ls, u, path, depth);
                added = true;
                continue;
            }
            if (us.IsDirectory && !Whiteouts.IsOverlayOpaque(Posix.LgetXattrsAt(u, name)))
            {
                if (ls.IsDirectory)
                {
                    using (var ld = Posix.OpenAt(l, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW))
                    using (var ud = Posix.OpenAt(u, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW))
                    {
                        Fold(ld, ud, path, depth + 1);
                        if (Whiteouts.IsOverlayOpaque(Posix.FgetXattrs(ld, path))) MakeOpaque(ud, path);
                    }
                }
                else
                {
                    using var ud = Posix.OpenAt(u, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW);
                    MakeOpaque(ud, path);
                }
            }
            if (_move) FileTree.RemoveAt(l, name, path); // U has what it meant
        }
        if (added) Posix.Futimes(u, times.Atime, times.Mtime, rel.Length == 0 ? "/" : rel);
    }

    /// <summary>Gives U the entry it lacks: L's renamed in, or a copy made whole in the staging directory, synced, and
    /// renamed in (a directory that is not opaque as itself alone, then filled by folding into it).</summary>
    void Add(FileDescriptor l, string name, in FileStat ls, FileDescriptor u, string path, int depth)
    {
        if (_move)
        {
            Posix.RenameAt(l, name, u, name, Posix.RENAME_NOREPLACE);
            return;
        }
        if (ls.Kind == FileKind.Regular && ls.Nlink > 1 && _linked.TryGetValue((ls.Device, ls.Inode), out var first))
        {
            Posix.LinkAt(_uRoot, first, u, name); // one name more of a file this fold copied already
            return;
        }
        var staging = _staging!;
        string temp = _temps++.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (ls.IsDirectory)
        {
            Posix.MkdirAt(staging, temp, Modes.OwnerOnly);
            using var ld = Posix.OpenAt(l, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW);
            bool opaque = Whiteouts.IsOverlayOpaque(Posix.FgetXattrs(ld, path));
            using (var td = Posix.OpenAt(staging, temp, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW))
            {
                if (opaque) _copy.Copy(ld, td, path); // hides what is below: whole or not at all
                else TreeCopy.CopyAttributes(ld, td, ls, path);
            }
            if (opaque) Posix.SyncFileSystem(_stagingPath);
            Posix.RenameAt(staging, temp, u, name, Posix.RENAME_NOREPLACE);
            if (opaque) return;
            using var ud = Posix.OpenAt(u, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW);
            Fold(ld, ud, path, depth + 1);
            return;
        }
        _copy.CopyNode(l, name, ls, staging, temp, path);
        if (ls.Kind == FileKind.Regular)
        {
            // the data durable before the name: after a power cut the name never stands for an empty file
            using var f = Posix.OpenAt(staging, temp, Posix.O_RDONLY | Posix.O_NOFOLLOW);
            Posix.Fsync(f, path);
        }
        Posix.RenameAt(staging, temp, u, name, Posix.RENAME_NOREPLACE);
        if (ls.Kind == FileKind.Regular && ls.Nlink > 1) _linked[(ls.Device, ls.Inode)] = path;
    }

    static void MakeOpaque(FileDescriptor dir, string path)
    {
        if (!Whiteouts.IsOverlayOpaque(Posix.FgetXattrs(dir, path))) Posix.FsetXattr(dir, Whiteouts.OverlayOpaqueXattr, "y"u8, path);
    }

    static string Join(string rel, string name) => rel.Length == 0 ? name : rel + "/" + name;
}
