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
/// </summary>
public static class TreeChanges
{
    public static List<Change> Compute(string layerRoot, string? parentRoot)
    {
        var changes = new List<Change>();
        Compare(layerRoot, parentRoot, "", changes);
        changes.Sort(static (a, b) => string.CompareOrdinal(a.Path, b.Path));
        return changes;
    }

    /// <summary>Compares directory <paramref name="rel"/> in both trees; true when anything below it changed.</summary>
    static bool Compare(string layerRoot, string? parentRoot, string rel, List<Change> changes)
    {
        string layerDir = Full(layerRoot, rel);
        var mine = Posix.ReadDir(layerDir);
        List<DirEntry> theirs = [];
        if (parentRoot is not null)
        {
            string parentDir = Full(parentRoot, rel);
            if (Posix.TryLstat(parentDir, out var pst) && pst.IsDirectory) theirs = Posix.ReadDir(parentDir);
        }
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
            string path = LayerPath.Join(rel, mine[i].Name);
            var st = Posix.Lstat(Full(layerRoot, path));
            if (cmp < 0)
            {
                AddAll(layerRoot, path, st, changes);
                any = true;
                i++;
                continue;
            }
            var pst2 = Posix.Lstat(Full(parentRoot!, path));
            bool changed = Differs(st, pst2, Full(layerRoot, path), Full(parentRoot!, path));
            bool inner = false;
            if (st.IsDirectory)
            {
                inner = pst2.IsDirectory ? Compare(layerRoot, parentRoot, path, changes) : AddChildren(layerRoot, path, changes);
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

    static void AddAll(string root, string path, FileStat st, List<Change> changes)
    {
        changes.Add(new Change(path, ChangeKind.Add));
        if (st.IsDirectory) AddChildren(root, path, changes);
    }

    static bool AddChildren(string root, string dir, List<Change> changes)
    {
        var entries = Posix.ReadDir(Full(root, dir));
        foreach (var e in entries)
        {
            string path = LayerPath.Join(dir, e.Name);
            bool isDir = e.Type == 4 || (e.Type == 0 && Posix.Lstat(Full(root, path)).IsDirectory);
            changes.Add(new Change(path, ChangeKind.Add));
            if (isDir) AddChildren(root, path, changes);
        }
        return entries.Count > 0;
    }

    static bool Differs(in FileStat a, in FileStat b, string pathA, string pathB)
    {
        if (a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid) return true;
        if (a.Kind is FileKind.CharDevice or FileKind.BlockDevice && (a.RdevMajor != b.RdevMajor || a.RdevMinor != b.RdevMinor)) return true;
        if (!a.IsDirectory && (a.Size != b.Size || a.Mtime != b.Mtime)) return true;
        if (a.IsSymlink && Posix.ReadLink(pathA) != Posix.ReadLink(pathB)) return true;
        return !XattrsEqual(LayerXattrs.ContentOnly(Posix.LgetXattrs(pathA)), LayerXattrs.ContentOnly(Posix.LgetXattrs(pathB)));
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
        foreach (var c in changes)
        {
            if (c.Kind == ChangeKind.Delete) continue;
            var st = Posix.Lstat(Full(layerRoot, c.Path));
            if (!st.IsRegular) continue;
            if (st.Nlink > 1 && !inodes.Add((st.Device, st.Inode))) continue;
            size += st.Size;
        }
        return size;
    }

    internal static string Full(string root, string rel) => rel.Length == 0 ? root : root + "/" + rel;
}
