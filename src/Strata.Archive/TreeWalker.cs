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
