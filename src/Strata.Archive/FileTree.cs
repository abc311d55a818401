using Strata.Native;

namespace Strata.Archive;

/// <summary>
/// Removal of whole trees, the one way every layer of Strata does it: never following a symlink,
/// and never descending into another mount (compared by statx mount id, which also catches bind
/// mounts of the same filesystem), so a mount leaked into a layer cannot take host data with it.
/// </summary>
public static class FileTree
{
    /// <summary>Removes <paramref name="name"/> inside <paramref name="dir"/>, whatever it is; nothing when it does not exist.</summary>
    public static void RemoveAt(FileDescriptor dir, string name, string pathForErrors)
    {
        if (Posix.TryLstatAt(dir, name, out var st) != 0) return;
        if (!st.IsDirectory)
        {
            Posix.UnlinkAt(dir, name, directory: false);
            return;
        }
        using (var fd = Posix.OpenAt(dir, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW))
        {
            ulong mount = Posix.Fstat(fd).MountId;
            RemoveChildren(fd, mount, pathForErrors);
        }
        Posix.UnlinkAt(dir, name, directory: true);
    }

    /// <summary>Removes a path and everything under it; nothing when it does not exist.</summary>
    public static void Remove(string path) => RemoveAt(FileDescriptor.Cwd, path, path);

    static void RemoveChildren(FileDescriptor dir, ulong mount, string path)
    {
        foreach (var e in Posix.ReadDir(dir, path))
        {
            bool isDir = e.Type == Posix.DT_DIR || (e.Type == 0 && Posix.LstatAt(dir, e.Name).IsDirectory);
            if (!isDir)
            {
                Posix.UnlinkAt(dir, e.Name, directory: false);
                continue;
            }
            string sub = path + "/" + e.Name;
            using (var fd = Posix.OpenAt(dir, e.Name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW))
            {
                if (Posix.Fstat(fd).MountId != mount)
                    throw StrataException.InUse($"{sub} is a mount point; unmount it before removing");
                RemoveChildren(fd, mount, sub);
            }
            Posix.UnlinkAt(dir, e.Name, directory: true);
        }
    }
}
