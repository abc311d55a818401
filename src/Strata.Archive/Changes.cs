using Strata.Native;

namespace Strata.Archive;

/// <summary>Kinds of change, numbered as Docker's graphdriver protocol numbers them.</summary>
public enum ChangeKind
{
    Modify = 0,
    Add = 1,
    Delete = 2,
}

/// <summary>One changed path (canonical <see cref="LayerPath"/> form) between a layer and its parent.</summary>
public readonly record struct Change(string Path, ChangeKind Kind)
{
    /// <summary>The `docker diff` line: "A /path", "C /path" or "D /path".</summary>
    public override string ToString() => $"{Kind switch { ChangeKind.Add => 'A', ChangeKind.Delete => 'D', _ => 'C' }} {LayerPath.Display(Path)}";
}

/// <summary>
/// The generic ("naive") diff: compares two mounted trees. A path is Added when only the layer has
/// it, Deleted when only the parent has it (children of a deleted directory are not listed), and
/// Modified when type, permission bits, owner, device number, xattrs or (for non-directories) size,
/// mtime or symlink target differ. A directory containing any change is reported Modified too, as
/// `docker diff` does. Results are sorted by path (ordinal), so a parent precedes its children.
/// Both trees are walked through directory descriptors, never following a symlink, so a tree that
/// a running container changes meanwhile cannot lead the walk outside it.
/// </summary>
public static class TreeChanges
{
    public static List<Change> Compute(string layerRoot, string? parentRoot)
    {
        var changes = new List<Change>();
        using var layer = Posix.Open(layerRoot, Posix.O_RDONLY | Posix.O_DIRECTORY);
        using var parent = parentRoot is null ? null : Posix.Open(parentRoot, Posix.O_RDONLY | Posix.O_DIRECTORY);
        Compare(layer, parent, "", changes, 0);
        changes.Sort(static (a, b) => string.CompareOrdinal(a.Path, b.Path));
        return changes;
    }

    /// <summary>Compares directory <paramref name="rel"/> in both trees; true when anything below it changed.</summary>
    static bool Compare(FileDescriptor mineDir, FileDescriptor? theirDir, string rel, List<Change> changes, int depth)
    {
        TreeWalker.CheckDepth(depth, rel);
        var mine = Posix.ReadDir(mineDir, rel);
        var theirs = theirDir is null ? [] : Posix.ReadDir(theirDir, rel);
        bool any = false;
        int i = 0, j = 0;
        while (i < mine.Count || j < theirs.Count)
        {
            int cmp = i == mine.Count ? 1 : j == theirs.Count ? -1 : string.CompareOrdinal(mine[i].Name, theirs[j].Name);
            if (cmp > 0)
            {
                changes.Add(new Change(LayerPath.Join(rel, theirs[j].Name), ChangeKind.Delete));
                any = true;
                j++;
                continue;
            }
            string name = mine[i].Name, path = LayerPath.Join(rel, name);
            if (cmp < 0)
            {
                changes.Add(new Change(path, ChangeKind.Add));
                if (IsDirectory(mineDir, mine[i])) AddChildren(mineDir, name, path, changes, depth + 1);
                any = true;
                i++;
                continue;
            }
            var st = Posix.LstatAt(mineDir, name);
            var pst = Posix.LstatAt(theirDir!, name);
            bool changed = Differs(st, pst, mineDir, theirDir!, name);
            bool inner = false;
            if (st.IsDirectory)
            {
                using var sub = TreeWalker.OpenDir(mineDir, name, path);
                if (pst.IsDirectory)
                {
                    using var theirSub = TreeWalker.OpenDir(theirDir!, name, path);
                    inner = Compare(sub, theirSub, path, changes, depth + 1);
                }
                else inner = AddChildren(sub, path, changes, depth + 1);
            }
            if (changed || inner)
            {
                changes.Add(new Change(path, ChangeKind.Modify));
                any = true;
            }
            i++;
            j++;
        }
        return any;
    }

    static bool IsDirectory(FileDescriptor dir, DirEntry e) =>
        e.Type == Posix.DT_DIR || (e.Type == 0 && Posix.LstatAt(dir, e.Name).IsDirectory);

    static bool AddChildren(FileDescriptor parent, string name, string path, List<Change> changes, int depth)
    {
        using var dir = TreeWalker.OpenDir(parent, name, path);
        return AddChildren(dir, path, changes, depth);
    }

    static bool AddChildren(FileDescriptor dir, string path, List<Change> changes, int depth)
    {
        TreeWalker.CheckDepth(depth, path);
        var entries = Posix.ReadDir(dir, path);
        foreach (var e in entries)
        {
            string child = LayerPath.Join(path, e.Name);
            changes.Add(new Change(child, ChangeKind.Add));
            if (IsDirectory(dir, e)) AddChildren(dir, e.Name, child, changes, depth + 1);
        }
        return entries.Count > 0;
    }

    internal static bool Differs(in FileStat a, in FileStat b, FileDescriptor dirA, FileDescriptor dirB, string name)
    {
        if (a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid) return true;
        if (a.Kind is FileKind.CharDevice or FileKind.BlockDevice && (a.RdevMajor != b.RdevMajor || a.RdevMinor != b.RdevMinor)) return true;
        if (!a.IsDirectory && (a.Size != b.Size || a.Mtime != b.Mtime)) return true;
        if (a.IsSymlink && Posix.ReadLinkAt(dirA, name) != Posix.ReadLinkAt(dirB, name)) return true;
        return !XattrsEqual(LayerXattrs.ContentOnly(Posix.LgetXattrsAt(dirA, name)), LayerXattrs.ContentOnly(Posix.LgetXattrsAt(dirB, name)));
    }

    static bool XattrsEqual(List<KeyValuePair<string, byte[]>> a, List<KeyValuePair<string, byte[]>> b)
    {
        if (a.Count != b.Count) return false;
        for (int k = 0; k < a.Count; k++)
            if (a[k].Key != b[k].Key || !a[k].Value.AsSpan().SequenceEqual(b[k].Value)) return false;
        return true;
    }

    /// <summary>Bytes of regular-file content a set of changes carries (hardlinked files counted once):
    /// what Docker's DiffSize reports and what applying the diff returns.</summary>
    public static long Size(string layerRoot, IEnumerable<Change> changes)
    {
        long size = 0;
        var inodes = new HashSet<(ulong, ulong)>();
        using var tree = new TreeWalker(layerRoot);
        foreach (var c in changes)
        {
            if (c.Kind == ChangeKind.Delete) continue;
            var st = Posix.LstatAt(tree.Dir(LayerPath.Parent(c.Path)), LayerPath.Base(c.Path));
            if (!st.IsRegular) continue;
            if (st.Nlink > 1 && !inodes.Add((st.Device, st.Inode))) continue;
            size += st.Size;
        }
        return size;
    }
}
