using Strata.Native;

namespace Strata.Archive;

/// <summary>
/// The native overlay diff: the changes of an overlayfs upper directory against the stack of lower
/// directories it is mounted over, read from the upper directory plus lookups of the same names
/// below (O(size of the change), not O(size of the image)). The result is exactly what
/// <see cref="TreeChanges.Compute"/> reports for the mounted layer against its mounted parent:
/// 0/0 character devices in the upper dir are deletions (when the name exists below), an upper
/// directory carrying <c>trusted.overlay.opaque</c> deletes every name below it that it does not
/// itself hold, and entries are compared with the same rules. Valid only for upper dirs written by
/// overlayfs without redirect_dir, metacopy or index (the driver mounts them off and probes for it).
/// </summary>
public static class OverlayChanges
{
    public static List<Change> Compute(string upperRoot, IReadOnlyList<string> lowerRoots)
    {
        var changes = new List<Change>();
        var open = new List<FileDescriptor>();
        try
        {
            using var upper = Posix.Open(upperRoot, Posix.O_RDONLY | Posix.O_DIRECTORY);
            foreach (var l in lowerRoots) open.Add(Posix.Open(l, Posix.O_RDONLY | Posix.O_DIRECTORY));
            var view = new LowerView([.. open], owns: false);
            Compare(upper, view, "", opaque: false, changes, 0);
        }
        finally
        {
            foreach (var fd in open) fd.Dispose();
        }
        changes.Sort(static (a, b) => string.CompareOrdinal(a.Path, b.Path));
        return changes;
    }

    /// <summary>Opens the directories of a layer (its upper dir over <paramref name="lowerRoots"/>, top first) for
    /// <see cref="Lower.Below"/> lookups while a diff is applied into the upper dir.</summary>
    public static Lower OpenLower(string upperRoot, IReadOnlyList<string> lowerRoots)
    {
        var fds = new List<FileDescriptor>();
        try
        {
            fds.Add(Posix.Open(upperRoot, Posix.O_RDONLY | Posix.O_DIRECTORY));
            foreach (var l in lowerRoots) fds.Add(Posix.Open(l, Posix.O_RDONLY | Posix.O_DIRECTORY));
            return new Lower(fds);
        }
        catch
        {
            foreach (var fd in fds) fd.Dispose();
            throw;
        }
    }

    /// <summary>A layer's upper dir and the lower stack below it, opened once for many lookups.</summary>
    public sealed class Lower : IDisposable
    {
        readonly FileDescriptor _upper;
        readonly List<FileDescriptor> _roots;

        internal Lower(List<FileDescriptor> fds)
        {
            _upper = fds[0];
            _roots = fds[1..];
        }

        /// <summary>What the layer's parent shows at <paramref name="path"/> as seen from the upper dir: the entry of
        /// the merged lower stack, or null when there is none or when an opaque directory of the upper dir
        /// above it hides the stack. A deletion needs a whiteout, and an opaque marker an xattr, only where
        /// this is not null: overlayfs lists whiteouts in directories that have nothing below them.</summary>
        public FileStat? Below(string path)
        {
            if (_roots.Count == 0) return null;
            string[] parts = path.Length == 0 ? [] : path.Split('/');
            FileDescriptor? dir = null;
            try
            {
                var at = _upper;
                for (int i = 0; i < parts.Length - 1; i++)
                {
                    if (Posix.TryLstatAt(at, parts[i], out var st) != 0 || !st.IsDirectory) break;
                    var next = TreeWalker.OpenDir(at, parts[i], path);
                    dir?.Dispose();
                    dir = next;
                    at = next;
                    if (IsOpaque(Posix.FgetXattrs(next, path))) return null;
                }
            }
            finally
            {
                dir?.Dispose();
            }
            if (parts.Length == 0) return Posix.LstatAt(_roots[0], ".");
            var view = new LowerView([.. _roots], owns: false);
            try
            {
                for (int i = 0; i < parts.Length - 1; i++)
                {
                    if (view.Lookup(parts[i]) is not { } found || !found.Stat.IsDirectory) return null;
                    var child = view.Child(parts[i], found, path);
                    view.Dispose();
                    view = child;
                }
                return view.Lookup(parts[^1])?.Stat;
            }
            finally
            {
                view.Dispose();
            }
        }

        public void Dispose()
        {
            _upper.Dispose();
            foreach (var fd in _roots) fd.Dispose();
        }
    }

    static bool Compare(FileDescriptor upperDir, LowerView view, string rel, bool opaque, List<Change> changes, int depth)
    {
        TreeWalker.CheckDepth(depth, rel);
        bool any = false;
        var mine = Posix.ReadDir(upperDir, rel);
        var names = new HashSet<string>(mine.Count, StringComparer.Ordinal);
        foreach (var e in mine)
        {
            names.Add(e.Name);
            string path = LayerPath.Join(rel, e.Name);
            var st = Posix.LstatAt(upperDir, e.Name);
            var below = view.Lookup(e.Name);
            if (IsWhiteout(st))
            {
                if (below is not null)
                {
                    changes.Add(new Change(path, ChangeKind.Delete));
                    any = true;
                }
                continue;
            }
            if (below is not { } lower)
            {
                changes.Add(new Change(path, ChangeKind.Add));
                if (st.IsDirectory)
                {
                    using var sub = TreeWalker.OpenDir(upperDir, e.Name, path);
                    AddChildren(sub, path, changes, depth + 1);
                }
                any = true;
                continue;
            }
            bool changed = TreeChanges.Differs(st, lower.Stat, upperDir, lower.Dir, e.Name);
            bool inner = false;
            if (st.IsDirectory)
            {
                using var sub = TreeWalker.OpenDir(upperDir, e.Name, path);
                if (lower.Stat.IsDirectory)
                {
                    using var childView = view.Child(e.Name, lower, path);
                    // below an opaque directory nothing of the lower stack shows, opaque marker or not
                    inner = Compare(sub, childView, path, opaque || IsOpaque(Posix.LgetXattrsAt(upperDir, e.Name)), changes, depth + 1);
                }
                else inner = AddChildren(sub, path, changes, depth + 1);
            }
            if (changed || inner)
            {
                changes.Add(new Change(path, ChangeKind.Modify));
                any = true;
            }
        }
        if (opaque)
        {
            foreach (var name in view.Names())
            {
                if (names.Contains(name)) continue;
                changes.Add(new Change(LayerPath.Join(rel, name), ChangeKind.Delete));
                any = true;
            }
        }
        return any;
    }

    /// <summary>Everything under a directory that is new in the upper layer (whiteouts there hide nothing).</summary>
    static bool AddChildren(FileDescriptor dir, string path, List<Change> changes, int depth)
    {
        TreeWalker.CheckDepth(depth, path);
        bool any = false;
        foreach (var e in Posix.ReadDir(dir, path))
        {
            var st = Posix.LstatAt(dir, e.Name);
            if (IsWhiteout(st)) continue;
            string child = LayerPath.Join(path, e.Name);
            changes.Add(new Change(child, ChangeKind.Add));
            any = true;
            if (st.IsDirectory)
            {
                using var sub = TreeWalker.OpenDir(dir, e.Name, child);
                AddChildren(sub, child, changes, depth + 1);
            }
        }
        return any;
    }

    static bool IsWhiteout(in FileStat st) => st.Kind == FileKind.CharDevice && st.RdevMajor == 0 && st.RdevMinor == 0;

    static bool IsOpaque(List<KeyValuePair<string, byte[]>> xattrs) => Whiteouts.IsOverlayOpaque(xattrs);

    readonly record struct Found(FileStat Stat, FileDescriptor Dir, int Layer);

    /// <summary>One directory of the lower stack as overlayfs merges it: the same directory in each layer
    /// that contributes to it, top first (a layer stops the stack below it with a whiteout, a
    /// non-directory or an opaque directory).</summary>
    sealed class LowerView(List<FileDescriptor> dirs, bool owns) : IDisposable
    {
        readonly List<FileDescriptor> dirs = dirs;
        public void Dispose()
        {
            if (owns) foreach (var fd in dirs) fd.Dispose();
        }

        public Found? Lookup(string name)
        {
            for (int i = 0; i < dirs.Count; i++)
            {
                if (Posix.TryLstatAt(dirs[i], name, out var st) != 0) continue;
                return IsWhiteout(st) ? null : new Found(st, dirs[i], i);
            }
            return null;
        }

        public LowerView Child(string name, Found top, string path)
        {
            var sub = new LowerView([], owns: true);
            try
            {
                for (int i = top.Layer; i < dirs.Count; i++)
                {
                    if (Posix.TryLstatAt(dirs[i], name, out var st) != 0) continue;
                    if (!st.IsDirectory) break; // a whiteout or a file ends the stack
                    var fd = TreeWalker.OpenDir(dirs[i], name, path);
                    sub.dirs.Add(fd);
                    if (IsOpaque(Posix.FgetXattrs(fd, path))) break;
                }
                return sub;
            }
            catch
            {
                sub.Dispose();
                throw;
            }
        }

        /// <summary>The names the merged directory shows.</summary>
        public IEnumerable<string> Names()
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var shown = new List<string>();
            foreach (var dir in dirs)
                foreach (var e in Posix.ReadDir(dir, "lower dir"))
                {
                    if (!seen.Add(e.Name)) continue;
                    if (e.Type is 2 /* DT_CHR */ or 0 && IsWhiteout(Posix.LstatAt(dir, e.Name))) continue;
                    shown.Add(e.Name);
                }
            return shown;
        }
    }
}
