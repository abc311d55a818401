using Strata.Native;

namespace Strata.Archive;

/// <summary>
/// Removal of whole trees, the one way every layer of Strata does it: never following a symlink,
/// and never removing anything on another mount (compared by statx mount id, which also catches
/// bind mounts of the same filesystem) — not even when the path to remove is itself a mount point —
/// so a mount leaked into a layer cannot take host data with it. Iterative, so a hostile
/// depth cannot overflow the stack.
/// </summary>
public static class FileTree
{
    /// <summary>Deeper trees are refused rather than walked (no path this deep fits in PATH_MAX anyway).</summary>
    public const int MaxDepth = 4096;

    /// <summary>Removes <paramref name="name"/> inside <paramref name="dir"/>, whatever it is; nothing when it does not exist.</summary>
    public static void RemoveAt(FileDescriptor dir, string name, string pathForErrors)
    {
        if (Posix.TryLstatAt(dir, name, out var st) != 0) return;
        ulong mount = Posix.Fstat(dir).MountId;
        if (st.MountId != mount) throw MountPoint(pathForErrors);
        if (!st.IsDirectory)
        {
            Posix.UnlinkAt(dir, name, directory: false);
            return;
        }
        using (var fd = Posix.OpenAt(dir, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW))
            RemoveChildren(fd, mount, pathForErrors);
        Posix.UnlinkAt(dir, name, directory: true);
    }

    /// <summary>Removes a path and everything under it; nothing when it does not exist.</summary>
    public static void Remove(string path)
    {
        string full = Path.GetFullPath(path);
        using var parent = Posix.Open(Path.GetDirectoryName(full) ?? "/", Posix.O_PATH | Posix.O_DIRECTORY);
        RemoveAt(parent, Path.GetFileName(full), path);
    }

    sealed class Frame(FileDescriptor fd, string path, string name, List<DirEntry> entries)
    {
        public FileDescriptor Fd { get; } = fd;
        public string Path { get; } = path;
        public string Name { get; } = name;
        public List<DirEntry> Entries { get; } = entries;
        public int Next { get; set; }
    }

    static void RemoveChildren(FileDescriptor top, ulong mount, string path)
    {
        var stack = new List<Frame> { new(top, path, "", Posix.ReadDir(top, path)) };
        try
        {
            while (stack.Count > 0)
            {
                var frame = stack[^1];
                if (frame.Next == frame.Entries.Count)
                {
                    stack.RemoveAt(stack.Count - 1);
                    if (stack.Count == 0) break;
                    frame.Fd.Dispose();
                    Posix.UnlinkAt(stack[^1].Fd, frame.Name, directory: true);
                    continue;
                }
                var e = frame.Entries[frame.Next++];
                bool isDir = e.Type == Posix.DT_DIR || (e.Type == 0 && Posix.LstatAt(frame.Fd, e.Name).IsDirectory);
                if (!isDir)
                {
                    Posix.UnlinkAt(frame.Fd, e.Name, directory: false);
                    continue;
                }
                string sub = frame.Path + "/" + e.Name;
                var fd = Posix.OpenAt(frame.Fd, e.Name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW);
                if (Posix.Fstat(fd).MountId != mount)
                {
                    fd.Dispose();
                    throw MountPoint(sub);
                }
                if (stack.Count >= MaxDepth)
                {
                    fd.Dispose();
                    throw StrataException.Invalid($"{path} is more than {MaxDepth} directories deep; refusing to walk it");
                }
                stack.Add(new Frame(fd, sub, e.Name, Posix.ReadDir(fd, sub)));
            }
        }
        finally
        {
            for (int i = 1; i < stack.Count; i++) stack[i].Fd.Dispose();
        }
    }

    static StrataException MountPoint(string path) => StrataException.InUse($"{path} is a mount point; unmount it before removing");
}
