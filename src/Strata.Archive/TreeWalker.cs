using Strata.Native;

namespace Strata.Archive;

/// <summary>
/// Opens the directories of one tree by relative path, one component at a time with O_NOFOLLOW,
/// keeping the chain of the last directory open (changes and tar members come in path order, so
/// most lookups reuse it). A component that a concurrent writer — a running container — swapped
/// for a symlink makes the lookup fail instead of leading out of the tree.
/// </summary>
public sealed class TreeWalker : IDisposable
{
    readonly List<(string Path, FileDescriptor Fd)> _chain = [];

    public TreeWalker(string root) => _chain.Add(("", Posix.Open(root, Posix.O_RDONLY | Posix.O_DIRECTORY)));

    public FileDescriptor Root => _chain[0].Fd;

    /// <summary>The open directory at <paramref name="dirPath"/> (canonical <see cref="LayerPath"/>); owned by the walker.</summary>
    public FileDescriptor Dir(string dirPath)
    {
        while (_chain.Count > 1 && !IsWithin(dirPath, _chain[^1].Path))
        {
            _chain[^1].Fd.Dispose();
            _chain.RemoveAt(_chain.Count - 1);
        }
        var (have, fd) = _chain[^1];
        while (have.Length < dirPath.Length)
        {
            int start = have.Length == 0 ? 0 : have.Length + 1;
            int end = dirPath.IndexOf('/', start);
            if (end < 0) end = dirPath.Length;
            string name = dirPath[start..end];
            have = dirPath[..end];
            fd = OpenDir(fd, name, have);
            _chain.Add((have, fd));
        }
        return fd;
    }

    /// <summary>Recursive walks (changes, copies, opaque directories) refuse trees deeper than this, so a hostile
    /// layer cannot exhaust the stack or the descriptor table; no path this deep fits in PATH_MAX anyway.</summary>
    public const int MaxDepth = 1024;

    public static void CheckDepth(int depth, string path)
    {
        if (depth > MaxDepth)
            throw StrataException.Invalid($"{LayerPath.Display(path)} is more than {MaxDepth} directories deep; refusing to walk it");
    }

    /// <summary>Opens the regular file that <paramref name="expected"/> describes, and checks it still is that file:
    /// a running container may have swapped it for a FIFO (opening would block), a device node (its bytes would
    /// be read) or a symlink meanwhile. The caller owns the result.</summary>
    public static FileDescriptor OpenFile(FileDescriptor dir, string name, in FileStat expected, string pathForErrors)
    {
        int err = Posix.TryOpenAt(dir, name, Posix.O_RDONLY | Posix.O_NOFOLLOW | Posix.O_NONBLOCK | Posix.O_NOCTTY, 0, out var fd);
        if (err is Errno.ELOOP or Errno.ENOENT) throw Changed(pathForErrors);
        if (err != 0) throw new ErrnoException(err, "open", LayerPath.Display(pathForErrors));
        var st = Posix.Fstat(fd!);
        if (!st.IsRegular || st.Inode != expected.Inode || st.Device != expected.Device)
        {
            fd!.Dispose();
            throw Changed(pathForErrors);
        }
        return fd!;
    }

    static StrataException Changed(string path) =>
        StrataException.Invalid($"{LayerPath.Display(path)} changed while it was read (by a running container?)");

    /// <summary>Opens a subdirectory without following a symlink; the caller owns the result.</summary>
    public static FileDescriptor OpenDir(FileDescriptor parent, string name, string pathForErrors)
    {
        int err = Posix.TryOpenAt(parent, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW, 0, out var fd);
        if (err == 0) return fd!;
        if (err is Errno.ELOOP or Errno.ENOTDIR)
            throw StrataException.Invalid($"{LayerPath.Display(pathForErrors)} stopped being a directory while it was read (changed by a running container?)");
        throw new ErrnoException(err, "open", LayerPath.Display(pathForErrors));
    }

    static bool IsWithin(string path, string dir) =>
        dir.Length == 0 || path == dir || (path.Length > dir.Length && path[dir.Length] == '/' && path.StartsWith(dir, StringComparison.Ordinal));

    public void Dispose()
    {
        foreach (var (_, fd) in _chain) fd.Dispose();
        _chain.Clear();
    }
}
