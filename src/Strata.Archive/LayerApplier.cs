using Strata.Archive.Tar;
using Strata.Native;

namespace Strata.Archive;

/// <summary>
/// Applies an OCI layer tar onto a directory, safely by construction: every member's parent is
/// resolved by the kernel with openat2(RESOLVE_IN_ROOT), so no symlink — from a lower layer or
/// from this tar — can lead outside the target, and the final component is always created or
/// replaced with *at calls that never follow it. On top of that, hostile shapes are refused with a
/// one-line error: absolute names, '..', duplicates, writing through a symlink the same tar made,
/// hardlinks that leave the layer, bad whiteouts. Returns the regular-file bytes written.
/// The caller owns atomicity: on error the target is left part-applied and must be discarded.
/// </summary>
public static class LayerApplier
{
    /// <param name="below">For <see cref="WhiteoutFormat.Overlay"/>: what the layers below show at a path (see
    /// <see cref="OverlayChanges.Lower.Below"/>). Whiteouts and opaque markers are written only where something is
    /// hidden, and directories the tar implies without naming them take the attributes of the directory
    /// below (as overlayfs copy-up does). Null: write every whiteout, make implied directories 0755.</param>
    public static long Apply(Stream tar, string targetRoot, WhiteoutFormat format = WhiteoutFormat.Oci, Func<string, FileStat?>? below = null)
    {
        if (!Posix.HasOpenAt2)
            throw StrataException.Unsupported("this kernel lacks openat2(2) (Linux 5.6+), which safe layer extraction needs");
        using var session = new ApplySession(targetRoot, format, below);
        using var reader = new TarReader(tar);
        while (reader.Next() is { } entry) session.Apply(entry, reader);
        session.Finish();
        return session.Size;
    }
}

sealed class ApplySession : IDisposable
{
    const ulong Resolve = Posix.RESOLVE_IN_ROOT | Posix.RESOLVE_NO_MAGICLINKS | Posix.RESOLVE_NO_XDEV;
    const int Chunk = 64 * 1024;

    readonly FileDescriptor _root;
    readonly WhiteoutFormat _format;
    readonly Func<string, FileStat?>? _below;
    /// <summary>Paths named by members of this tar (duplicates are refused).</summary>
    readonly HashSet<string> _seen = new(StringComparer.Ordinal);
    /// <summary>Paths this layer put in place, named or implied (an ancestor that holds a new member is part of this
    /// layer even when the tar does not name it, so an opaque marker later in the tar must keep it); an opaque
    /// directory keeps exactly these.</summary>
    readonly PathTree _created = new();
    readonly HashSet<string> _symlinks = new(StringComparer.Ordinal);
    readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> _symlinkLookup;
    readonly List<(string Path, UnixTime Mtime)> _dirTimes = [];
    string? _cachedDir;
    FileDescriptor? _cachedFd;

    public long Size { get; private set; }

    public ApplySession(string rootPath, WhiteoutFormat format, Func<string, FileStat?>? below)
    {
        _format = format;
        _below = below;
        _root = Posix.Open(rootPath, Posix.O_PATH | Posix.O_DIRECTORY);
        _symlinkLookup = _symlinks.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    public void Apply(TarEntry e, TarReader reader)
    {
        string path = LayerPath.Normalize(e.Name);
        if (path.Length == 0) return; // the root entry ("./"): the layer root belongs to the store
        string parent = LayerPath.Parent(path), name = LayerPath.Base(path);

        if (Whiteouts.IsWhiteout(name))
        {
            ApplyWhiteout(path, parent, name);
            return;
        }
        // members under a reserved ".wh..wh.*" directory (aufs hardlink bookkeeping) are never content
        if (UnderMetaDirectory(parent)) return;
        if (!_seen.Add(path)) throw Fail(path, "appears twice in the tar");
        CheckNotThroughOwnSymlink(path, path);
        if (e.Xattrs?.Find(kv => !LayerXattrs.IsContent(kv.Key)) is { Key: { } reserved })
            throw Fail(path, $"carries xattr '{reserved}', which belongs to the overlay driver, not to layer content");
        var dir = OpenParent(parent, path, create: true)!;
        _created.Add(path);
        switch (e.Type)
        {
            case TarEntryType.Directory: ApplyDirectory(dir, path, name, e); break;
            case TarEntryType.Regular: ApplyFile(dir, path, name, e, reader); break;
            case TarEntryType.Symlink: ApplySymlink(dir, path, name, e); break;
            case TarEntryType.HardLink: ApplyHardLink(dir, path, name, e); break;
            default: ApplyNode(dir, path, name, e); break;
        }
    }

    /// <summary>Whether a directory path has a component named like ".wh..wh.plnk" (reserved by the OCI spec).</summary>
    static bool UnderMetaDirectory(string dirPath) =>
        dirPath.StartsWith(Whiteouts.MetaPrefix, StringComparison.Ordinal) ||
        dirPath.Contains("/" + Whiteouts.MetaPrefix, StringComparison.Ordinal);

    void ApplyDirectory(FileDescriptor dir, string path, string name, TarEntry e)
    {
        bool overWhiteout = false;
        if (Posix.TryLstatAt(dir, name, out var st) == 0 && !st.IsDirectory)
        {
            overWhiteout = _format == WhiteoutFormat.Overlay && IsOverlayWhiteout(st);
            RemoveAt(dir, name, st);
            st = default;
        }
        bool existed = st.IsDirectory;
        if (!existed) Posix.MkdirAt(dir, name, e.Mode & 0x1FF);
        using (var fd = Posix.OpenAt(dir, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW))
        {
            Posix.SetOwnerAndMode(fd, e.Uid, e.Gid, e.Mode, path);
            if (existed) DropStaleXattrs(fd, e, path);
            SetXattrs(fd, e, path);
            // a directory made where an earlier apply deleted one must not show the old one's children (overlayfs's mkdir does the same)
            if (overWhiteout && (_below is null || _below(path) is { IsDirectory: true }))
                Posix.FsetXattr(fd, Whiteouts.OverlayOpaqueXattr, "y"u8, path);
        }
        _dirTimes.Add((path, e.Mtime));
    }

    void ApplyFile(FileDescriptor dir, string path, string name, TarEntry e, TarReader reader)
    {
        ReplaceExisting(dir, name);
        using var fd = Posix.OpenAt(dir, name, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL | Posix.O_NOFOLLOW, e.Mode & 0x1FF);
        long offset = 0, written = 0;
        while (true)
        {
            var data = reader.ReadDataInPlace(1 << 20);
            if (data.IsEmpty) break;
            // runs of 64 KiB zeros become holes, so sparse files stay sparse across diff and apply
            int runStart = 0;
            for (int at = 0; at < data.Length; at += Chunk)
            {
                var piece = data.Slice(at, Math.Min(Chunk, data.Length - at));
                if (piece.Length == Chunk && !piece.ContainsAnyExcept((byte)0))
                {
                    if (at > runStart) Posix.PwriteAll(fd, data[runStart..at], offset + runStart, path);
                    runStart = at + piece.Length;
                }
            }
            if (runStart < data.Length)
            {
                Posix.PwriteAll(fd, data[runStart..], offset + runStart, path);
                written = offset + data.Length;
            }
            offset += data.Length;
        }
        if (written < e.Size) Posix.Ftruncate(fd, e.Size, path);
        Posix.SetOwnerAndMode(fd, e.Uid, e.Gid, e.Mode, path);
        SetXattrs(fd, e, path);
        Posix.Futimes(fd, e.Mtime, e.Mtime, path);
        Size += e.Size;
    }

    void ApplySymlink(FileDescriptor dir, string path, string name, TarEntry e)
    {
        if (e.LinkName.Length == 0) throw Fail(path, "is a symlink with an empty target");
        ReplaceExisting(dir, name);
        Posix.SymlinkAt(e.LinkName, dir, name);
        _symlinks.Add(path);
        FinishByName(dir, path, name, e, chmod: false);
    }

    void ApplyHardLink(FileDescriptor dir, string path, string name, TarEntry e)
    {
        string target = LayerPath.Normalize(e.LinkName, "hardlink target of " + path);
        if (target.Length == 0 || target == path) throw Fail(path, $"is a hardlink to '{e.LinkName}', which is not a file");
        CheckNotThroughOwnSymlink(target, path);
        using var targetDir = OpenDir(LayerPath.Parent(target), path);
        string targetName = LayerPath.Base(target);
        if (targetDir is null || Posix.TryLstatAt(targetDir, targetName, out var tst) != 0)
            throw Fail(path, _format == WhiteoutFormat.Overlay
                ? $"is a hardlink to '{e.LinkName}', which is not in this layer (an overlay layer cannot link to a file of the layers below)"
                : $"is a hardlink to '{e.LinkName}', which does not exist in this layer or below");
        if (tst.IsDirectory) throw Fail(path, $"is a hardlink to directory '{e.LinkName}'");
        ReplaceExisting(dir, name);
        int err = Posix.TryLinkAt(targetDir, targetName, dir, name);
        if (err != 0) throw new ErrnoException(err, "link", path);
    }

    void ApplyNode(FileDescriptor dir, string path, string name, TarEntry e)
    {
        uint kind = e.Type switch
        {
            TarEntryType.CharDevice => (uint)FileKind.CharDevice,
            TarEntryType.BlockDevice => (uint)FileKind.BlockDevice,
            _ => (uint)FileKind.Fifo,
        };
        if (_format == WhiteoutFormat.Overlay && e.Type == TarEntryType.CharDevice && e.DevMajor == 0 && e.DevMinor == 0)
            throw Fail(path, "is a 0:0 character device, which overlayfs reads as a deletion: an overlay layer cannot hold one");
        ReplaceExisting(dir, name);
        Posix.MknodAt(dir, name, kind | (e.Mode & 0xFFF), e.DevMajor, e.DevMinor);
        FinishByName(dir, path, name, e, chmod: true);
    }

    /// <summary>Owner, mode, xattrs and times of a member that cannot be opened for writing (symlinks, nodes).</summary>
    void FinishByName(FileDescriptor dir, string path, string name, TarEntry e, bool chmod)
    {
        Posix.LchownAt(dir, name, e.Uid, e.Gid);
        if (chmod) Posix.ChmodNoFollowAt(dir, name, e.Mode);
        if (e.Xattrs is not null)
        {
            foreach (var (k, v) in e.Xattrs) SetXattr(() => Posix.LsetXattrAt(dir, name, k, v), k, path);
        }
        Posix.LutimesAt(dir, name, e.Mtime, e.Mtime);
    }

    /// <summary>A directory entry over an existing directory takes the entry's attributes, so xattrs the entry
    /// lacks go — except the ones the kernel or the overlay driver own rather than the layer.</summary>
    static void DropStaleXattrs(FileDescriptor fd, TarEntry e, string path)
    {
        foreach (var (key, _) in Posix.FgetXattrs(fd, path))
        {
            if (!LayerXattrs.IsContent(key) || key == "security.selinux") continue;
            if (e.Xattrs is not null && e.Xattrs.Exists(kv => kv.Key == key)) continue;
            Posix.FremoveXattr(fd, key, path);
        }
    }

    void SetXattrs(FileDescriptor fd, TarEntry e, string path)
    {
        if (e.Xattrs is null) return;
        foreach (var (k, v) in e.Xattrs) SetXattr(() => Posix.FsetXattr(fd, k, v, path), k, path);
    }

    void SetXattr(Action set, string key, string path)
    {
        try
        {
            set();
        }
        catch (ErrnoException ex) when (ex.Errno == Errno.EOPNOTSUPP)
        {
            throw new StrataException(ErrorKind.Unsupported, $"tar: member '{path}': the target filesystem does not support xattr '{key}'");
        }
    }

    void ApplyWhiteout(string path, string parent, string name)
    {
        if (name == Whiteouts.OpaqueMarker)
        {
            if (!_seen.Add(path)) throw Fail(path, "appears twice in the tar");
            ApplyOpaque(parent, path);
            return;
        }
        if (name.StartsWith(Whiteouts.MetaPrefix, StringComparison.Ordinal)) return; // aufs bookkeeping, never content
        string victim = name[Whiteouts.Prefix.Length..];
        if (victim.Length == 0 || victim == "." || victim == "..")
            throw Fail(path, $"is not a valid whiteout (it names '{victim}')");
        string target = LayerPath.Join(parent, victim);
        if (!_seen.Add(target) || !_seen.Add(path)) throw Fail(path, "whiteout names a path that appears twice in the tar");
        CheckNotThroughOwnSymlink(target, path);
        if (_format == WhiteoutFormat.Overlay)
        {
            // nothing below to hide: a whiteout there would only show up as a broken entry in listings, and
            // making its parent would shadow whatever is below under that name (a symlink such as /lib)
            bool hides = _below is null || _below(target) is not null;
            var dir = OpenParent(parent, path, create: hides);
            if (dir is not null) ReplaceExisting(dir, victim);
            if (hides) Posix.MknodAt(dir!, victim, (uint)FileKind.CharDevice, 0, 0);
            _created.Add(target);
            return;
        }
        var d = OpenParent(parent, path, create: false);
        if (d is null) return;
        ReplaceExisting(d, victim);
    }

    void ApplyOpaque(string dirPath, string markerPath)
    {
        CheckNotThroughOwnSymlink(markerPath, markerPath);
        if (_format == WhiteoutFormat.Overlay)
        {
            bool hides = _below is null || _below(dirPath) is { IsDirectory: true };
            if (dirPath.Length == 0)
            {
                if (!hides) return; // nothing below the root to hide
                throw Fail(markerPath, "marks the layer root opaque, which overlay cannot express");
            }
            var parent = OpenParent(LayerPath.Parent(dirPath), markerPath, create: true)!;
            string name = LayerPath.Base(dirPath);
            if (Posix.TryLstatAt(parent, name, out var st) != 0) Posix.MkdirAt(parent, name, 0x1ED /* 0755 */);
            else if (!st.IsDirectory) throw Fail(markerPath, "marks a non-directory opaque");
            _created.Add(dirPath);
            using var fd = Posix.OpenAt(parent, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW);
            HideLower(fd, dirPath, 0); // what an earlier apply left in the upper dir goes too
            Invalidate();
            if (!hides) return;
            Posix.FsetXattr(fd, Whiteouts.OverlayOpaqueXattr, "y"u8, dirPath);
            // whiteouts written before the marker are now redundant, and overlayfs would list them
            DropWhiteouts(fd, dirPath, 0);
            return;
        }
        // listing needs a readable descriptor: getdents on an O_PATH one fails with EBADF
        using var dir = OpenDir(dirPath, markerPath, Posix.O_RDONLY);
        if (dir is null) return;
        HideLower(dir, dirPath, 0);
        Invalidate();
    }

    static bool IsOverlayWhiteout(in FileStat st) => st.Kind == FileKind.CharDevice && st.RdevMajor == 0 && st.RdevMinor == 0;

    /// <summary>Removes the 0:0 character devices (overlay whiteouts) under a directory.</summary>
    static void DropWhiteouts(FileDescriptor dir, string dirPath, int depth)
    {
        TreeWalker.CheckDepth(depth, dirPath);
        foreach (var child in Posix.ReadDir(dir, dirPath))
        {
            if (Posix.TryLstatAt(dir, child.Name, out var st) != 0) continue;
            if (IsOverlayWhiteout(st)) Posix.UnlinkAt(dir, child.Name, directory: false);
            else if (st.IsDirectory)
            {
                using var sub = Posix.OpenAt(dir, child.Name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW);
                DropWhiteouts(sub, LayerPath.Join(dirPath, child.Name), depth + 1);
            }
        }
    }

    /// <summary>Removes everything under a directory that this layer did not put there.</summary>
    void HideLower(FileDescriptor dir, string dirPath, int depth)
    {
        TreeWalker.CheckDepth(depth, dirPath);
        foreach (var child in Posix.ReadDir(dir, dirPath))
        {
            string childPath = LayerPath.Join(dirPath, child.Name);
            if (Posix.TryLstatAt(dir, child.Name, out var st) != 0) continue;
            if (!_created.Contains(childPath))
            {
                RemoveAt(dir, child.Name, st);
                continue;
            }
            if (!st.IsDirectory) continue;
            using var sub = Posix.OpenAt(dir, child.Name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW);
            HideLower(sub, childPath, depth + 1);
        }
    }

    void CheckNotThroughOwnSymlink(string path, string member)
    {
        if (_symlinks.Count == 0) return;
        for (int i = path.IndexOf('/'); i >= 0; i = path.IndexOf('/', i + 1))
        {
            if (_symlinkLookup.Contains(path.AsSpan(0, i)))
                throw Fail(member, $"writes through symlink '{path[..i]}' created earlier in the same tar");
        }
    }

    /// <summary>The directory that will hold <paramref name="member"/>, resolved inside the root (cached: tars are ordered
    /// by directory). With <paramref name="create"/>, missing directories are made (0755, root-owned) as tar does; the
    /// caller marks what it puts there as created, and with it the directories made.</summary>
    FileDescriptor? OpenParent(string dirPath, string member, bool create)
    {
        if (dirPath.Length == 0) return _root;
        if (_cachedDir == dirPath) return _cachedFd;
        var fd = OpenDir(dirPath, member);
        if (fd is null)
        {
            if (!create) return null;
            fd = MakeDirs(dirPath, member);
        }
        _cachedFd?.Dispose();
        _cachedDir = dirPath;
        _cachedFd = fd;
        return fd;
    }

    /// <summary>Opens a directory inside the root (O_PATH unless <paramref name="access"/> says otherwise); null when it does not exist.</summary>
    FileDescriptor? OpenDir(string dirPath, string member, int access = Posix.O_PATH)
    {
        if (dirPath.Length == 0) return Posix.OpenAt(_root, ".", access | Posix.O_DIRECTORY);
        int err = Posix.TryOpenAt2(_root, dirPath, access | Posix.O_DIRECTORY, Resolve, out var fd);
        return err switch
        {
            0 => fd,
            Errno.ENOENT => null,
            Errno.ENOTDIR => throw Fail(member, $"needs '{dirPath}' to be a directory, and it is not"),
            Errno.ELOOP => throw Fail(member, $"lies under '{dirPath}', which is a symlink loop"),
            _ => throw new ErrnoException(err, "resolve", LayerPath.Display(dirPath)),
        };
    }

    FileDescriptor MakeDirs(string dirPath, string member)
    {
        var parent = LayerPath.Parent(dirPath);
        using var up = parent.Length == 0 ? null : OpenDir(parent, member) ?? MakeDirs(parent, member);
        string name = LayerPath.Base(dirPath);
        int err = Posix.TryMkdirAt(up ?? _root, name, 0x1ED /* 0755 */);
        if (err != 0 && err != Errno.EEXIST) throw new ErrnoException(err, "mkdir", LayerPath.Display(dirPath));
        if (err == 0 && _format == WhiteoutFormat.Overlay && _below?.Invoke(dirPath) is { IsDirectory: true } lower)
        {
            // an upper directory hides the attributes of the one below: keep them, as copy-up does
            using var made = Posix.OpenAt(up ?? _root, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW);
            Posix.SetOwnerAndMode(made, lower.Uid, lower.Gid, lower.Permissions, dirPath);
            _dirTimes.Add((dirPath, lower.Mtime));
        }
        // EEXIST and still not there: a symlink (from a lower layer) to a path missing inside the root
        return OpenDir(dirPath, member) ?? throw Fail(member, $"lies under '{dirPath}', a symlink to a directory that does not exist in the layer");
    }

    void ReplaceExisting(FileDescriptor dir, string name)
    {
        if (Posix.TryLstatAt(dir, name, out var st) == 0) RemoveAt(dir, name, st);
    }

    /// <summary>Removes one name. The cached parent directory may lie under a removed directory or be reached
    /// through a removed symlink, so it is dropped then, unless it is <paramref name="dir"/> itself, which the
    /// caller is still using and which the removal cannot affect.</summary>
    void RemoveAt(FileDescriptor dir, string name, in FileStat st)
    {
        if (st.IsDirectory) FileTree.RemoveAt(dir, name, name);
        else Posix.UnlinkAt(dir, name, directory: false);
        if ((st.IsDirectory || st.IsSymlink) && !ReferenceEquals(dir, _cachedFd)) Invalidate();
    }

    void Invalidate()
    {
        _cachedFd?.Dispose();
        _cachedFd = null;
        _cachedDir = null;
    }

    /// <summary>Directory mtimes are set last, deepest first, because creating children changes them.</summary>
    public void Finish()
    {
        Invalidate();
        var done = new HashSet<string>(StringComparer.Ordinal);
        for (int i = _dirTimes.Count - 1; i >= 0; i--)
        {
            var (path, mtime) = _dirTimes[i];
            if (!done.Add(path)) continue; // the tar named a directory it had implied before: its own time wins
            int err = Posix.TryOpenAt2(_root, path, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW, Resolve, out var fd);
            if (err != 0) continue; // removed by a later whiteout
            using (fd) Posix.Futimes(fd!, mtime, mtime, path);
        }
    }

    static StrataException Fail(string member, string what) =>
        StrataException.Invalid($"tar: member '{LayerPath.Shorten(member)}' {what}");

    public void Dispose()
    {
        Invalidate();
        _root.Dispose();
    }
}
