using Strata.Native;

namespace Strata.Core.Drivers.Btrfs;

/// <summary>
/// The btrfs driver (Docker's and containerd's btrfs): every layer is a subvolume, a child a snapshot of its parent's
/// subvolume: O(1) to make, sharing extents, and nothing to mount (a layer's tree is its subvolume). Only for a store on
/// btrfs. Layout under the store root:
/// <code>
/// btrfs/subvolumes/&lt;id&gt;   the layer's subvolume
/// btrfs/readonly/&lt;id&gt;     marks a read-only (image) layer: its subvolume gets btrfs's read-only flag once it has a
///                         child (from then on nothing may change it, and ApplyDiff, which needs a layer without
///                         children, is done with it)
/// </code>
/// Calls are the kernel's ioctls (subvolume create, snapshot, destroy, flags, qgroup limit), not the btrfs command.
/// <c>size=</c> on a read-write layer limits its exclusive space with a qgroup when quotas are on (<c>btrfs quota
/// enable</c>): what the container writes counts, what it shares with its image does not.
/// </summary>
public sealed class BtrfsDriver : IDriver, ILayerSnapshots
{
    const string SizeOption = "size";

    readonly string _home;
    readonly string _subvolumes;
    readonly string _readOnly;

    public BtrfsDriver(string root, IReadOnlyDictionary<string, string> options)
    {
        DriverOptions.RefuseAll("btrfs", options);
        if (!IsBtrfs(root))
            throw StrataException.Unsupported($"the btrfs driver needs the store on btrfs; {root} is on {FileSystems.Name(root)}");
        _home = Path.Combine(root, "btrfs");
        _subvolumes = Path.Combine(_home, "subvolumes");
        _readOnly = Path.Combine(_home, "readonly");
        LayerStore.MakeDir(_home, Modes.OwnerOnly);
        LayerStore.MakeDir(_subvolumes, Modes.OwnerOnly);
        LayerStore.MakeDir(_readOnly, Modes.OwnerOnly);
    }

    public string Name => "btrfs";

    /// <summary>Whether <paramref name="path"/> is on btrfs (statfs).</summary>
    public static bool IsBtrfs(string path) => Posix.FileSystemType(path) == Posix.BTRFS_SUPER_MAGIC;

    string Dir(string id) => Path.Combine(_subvolumes, id);

    public void Create(string id, string? parent, CreateOptions options)
    {
        DriverOptions.Only("btrfs layer", options.StorageOptions, SizeOption);
        long? size = null;
        if (options.StorageOptions.TryGetValue(SizeOption, out var sizeText))
        {
            if (options.Kind != LayerKind.ReadWrite) throw StrataException.Invalid("size= applies to read-write (container) layers only");
            size = ByteSize.Parse(sizeText, "size");
            if (size <= 0) throw StrataException.Invalid($"size '{sizeText}' must be larger than zero");
        }
        using var dir = Posix.Open(_subvolumes, Posix.O_RDONLY | Posix.O_DIRECTORY);
        FileDescriptor? source = parent is null ? null : Posix.Open(Dir(parent), Posix.O_RDONLY | Posix.O_DIRECTORY);
        using (source)
        {
            // the subvolume or snapshot is on disk when the ioctl returns (btrfs commits a transaction for it)
            if (source is null) Posix.BtrfsSubvolumeCreate(dir, id, Dir(id));
            else Posix.BtrfsSnapshot(source, dir, id, readOnly: false, Dir(id));
            try
            {
                using var subvolume = Posix.Open(Dir(id), Posix.O_RDONLY | Posix.O_DIRECTORY);
                if (source is null)
                {
                    Posix.Fchmod(subvolume, 0x1ED, Dir(id));
                    Posix.Fsync(subvolume, Dir(id));
                }
                if (size is { } bytes)
                {
                    int err = Posix.TryBtrfsLimitExclusive(subvolume, (ulong)bytes);
                    if (err == Errno.ENOTCONN) throw StrataException.Unsupported($"size= is not supported here: btrfs quotas are off on this filesystem ({Uuid()}): enable them with `btrfs quota enable` on its mount point");
                    if (err != 0) throw new ErrnoException(err, "BTRFS_IOC_QGROUP_LIMIT", Dir(id));
                }
                if (options.Kind == LayerKind.ReadOnly) AtomicFile.Write(Path.Combine(_readOnly, id), []);
                Posix.FsyncDirectory(_subvolumes); // the new subvolume's name on disk before the store records the layer
            }
            catch
            {
                try
                {
                    Remove(id);
                }
                catch (StrataException)
                {
                    // left for the store's sweep: the first error is the one to report
                }
                throw;
            }
            // a read-only layer is complete once it has a child: freeze it in btrfs too (after the snapshot, so a failed
            // child leaves its parent as it was; ApplyDiff, allowed again once the children are gone, thaws it)
            if (source is not null && File.Exists(Path.Combine(_readOnly, parent!)) && (Posix.BtrfsGetSubvolumeFlags(source, Dir(parent!)) & Posix.BTRFS_SUBVOL_RDONLY) == 0)
                Posix.BtrfsSetSubvolumeFlags(source, Posix.BTRFS_SUBVOL_RDONLY, Dir(parent!));
        }
    }

    /// <summary>A snapshot of the source's subvolume (O(1); btrfs writes the source's dirty data first), marked read-only
    /// as image layers are (the flag comes with its first child).</summary>
    public void CopyLayer(string source, string target)
    {
        using var dir = Posix.Open(_subvolumes, Posix.O_RDONLY | Posix.O_DIRECTORY);
        using var from = Posix.Open(Dir(source), Posix.O_RDONLY | Posix.O_DIRECTORY);
        Posix.BtrfsSnapshot(from, dir, target, readOnly: false, Dir(target));
        AtomicFile.Write(Path.Combine(_readOnly, target), []);
        Posix.FsyncDirectory(_subvolumes);
    }

    /// <summary>A snapshot of the source made beside the target and swapped with it in one rename (RENAME_EXCHANGE), then
    /// the old subvolume deleted: a crash leaves the target as it was or restored, and at most a .rollback-TARGET
    /// subvolume (never a layer id: ids start with a letter or digit), deleted by the target's next rollback or its
    /// removal. A size= limit (a qgroup) is not carried over.</summary>
    public void RestoreLayer(string target, string source)
    {
        string staging = RollbackStaging(target);
        using var dir = Posix.Open(_subvolumes, Posix.O_RDONLY | Posix.O_DIRECTORY);
        DeleteSubvolumeIfAny(dir, staging); // a crashed rollback's
        using (var from = Posix.Open(Dir(source), Posix.O_RDONLY | Posix.O_DIRECTORY))
            Posix.BtrfsSnapshot(from, dir, staging, readOnly: false, Dir(staging));
        Posix.RenameAt(dir, staging, dir, target, Posix.RENAME_EXCHANGE);
        Posix.FsyncDirectory(_subvolumes);
        var old = Posix.Open(Dir(staging), Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW);
        DeleteSubvolume(dir, staging, old, Dir(staging));
    }

    static string RollbackStaging(string id) => ".rollback-" + id;

    /// <summary>Lets a layer be written again (its read-only flag off), for an ApplyDiff the store allows only on a layer
    /// without children.</summary>
    internal void MakeWritable(string id)
    {
        using var subvolume = Posix.Open(Dir(id), Posix.O_RDONLY | Posix.O_DIRECTORY);
        if ((Posix.BtrfsGetSubvolumeFlags(subvolume, Dir(id)) & Posix.BTRFS_SUBVOL_RDONLY) != 0)
            Posix.BtrfsSetSubvolumeFlags(subvolume, 0, Dir(id));
    }

    /// <summary>Null when btrfs quotas are on for this filesystem (qgroups show in sysfs), else why size= cannot work.</summary>
    string? QuotaState()
    {
        string uuid = Uuid();
        return Directory.Exists($"/sys/fs/btrfs/{uuid}/qgroups") ? null
            : $"btrfs quotas are off on this filesystem ({uuid}): enable them with `btrfs quota enable` on its mount point";
    }

    string Uuid()
    {
        using var fd = Posix.Open(_subvolumes, Posix.O_RDONLY | Posix.O_DIRECTORY);
        return Posix.BtrfsFsid(fd, _subvolumes);
    }

    /// <summary>Deletes a layer's subvolume, with any subvolumes a container made inside it (deepest first).</summary>
    public void Remove(string id)
    {
        File.Delete(Path.Combine(_readOnly, id));
        using var dir = Posix.Open(_subvolumes, Posix.O_RDONLY | Posix.O_DIRECTORY);
        DeleteSubvolumeIfAny(dir, RollbackStaging(id)); // a crashed rollback's
        DeleteSubvolumeIfAny(dir, id);
    }

    /// <summary>Deletes the subvolume <paramref name="name"/> of <paramref name="parent"/> when there is one.</summary>
    void DeleteSubvolumeIfAny(FileDescriptor parent, string name)
    {
        if (Posix.TryOpenAt(parent, name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW, 0, out var subvolume) == 0)
            DeleteSubvolume(parent, name, subvolume!, Dir(name));
    }

    /// <summary>Deletes the subvolume <paramref name="name"/> of the directory <paramref name="parent"/>, open as
    /// <paramref name="subvolume"/> (which this disposes). Everything goes through descriptors opened without following
    /// symlinks, so a tree that changes meanwhile cannot point the walk elsewhere.</summary>
    static void DeleteSubvolume(FileDescriptor parent, string name, FileDescriptor subvolume, string path)
    {
        using (subvolume)
        {
            // its read-only flag would keep the names of nested subvolumes in it from going
            if ((Posix.BtrfsGetSubvolumeFlags(subvolume, path) & Posix.BTRFS_SUBVOL_RDONLY) != 0)
                Posix.BtrfsSetSubvolumeFlags(subvolume, 0, path);
            int err = Posix.TryBtrfsSubvolumeDelete(parent, name);
            if (err == Errno.ENOTEMPTY)
            {
                DeleteNested(subvolume, path, Posix.Fstat(subvolume).MountId);
                err = Posix.TryBtrfsSubvolumeDelete(parent, name);
            }
            if (err != 0) throw new ErrnoException(err, "BTRFS_IOC_SNAP_DESTROY", path);
        }
    }

    /// <summary>Finds the subvolumes below the directory <paramref name="dir"/> (directories whose inode is a subvolume
    /// root's, on the same mount) and deletes them.</summary>
    static void DeleteNested(FileDescriptor dir, string path, ulong mountId)
    {
        foreach (var e in Posix.ReadDir(dir, path))
        {
            if (e.Type != 4 /* DT_DIR */ || e.Name is "." or "..") continue;
            if (Posix.TryOpenAt(dir, e.Name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW, 0, out var child) != 0) continue;
            string childPath = Path.Combine(path, e.Name);
            var st = Posix.Fstat(child!);
            if (st.MountId != mountId)
            {
                child!.Dispose(); // a mount: not ours to walk
                continue;
            }
            if (st.Inode == Posix.BtrfsSubvolumeRootInode) DeleteSubvolume(dir, e.Name, child!, childPath);
            else
                using (child) DeleteNested(child!, childPath, mountId);
        }
    }

    /// <summary>Whether the btrfs driver works at <paramref name="root"/>: a subvolume made, snapshotted and both deleted
    /// in its tmp/ (deleting needs CAP_SYS_ADMIN in the filesystem's namespace, or user_subvol_rm_allowed).</summary>
    public static bool Works(string root)
    {
        string tmp = Path.Combine(root, "tmp");
        string a = $"btrfs-probe-{Guid.NewGuid():N}", b = a + "-snap";
        try
        {
            LayerStore.MakeDir(tmp, Modes.OwnerOnly);
            using var dir = Posix.Open(tmp, Posix.O_RDONLY | Posix.O_DIRECTORY);
            Posix.BtrfsSubvolumeCreate(dir, a, Path.Combine(tmp, a));
            try
            {
                using (var src = Posix.Open(Path.Combine(tmp, a), Posix.O_RDONLY | Posix.O_DIRECTORY)) Posix.BtrfsSnapshot(src, dir, b, readOnly: false, Path.Combine(tmp, b));
                return Posix.TryBtrfsSubvolumeDelete(dir, b) == 0;
            }
            finally
            {
                Posix.TryBtrfsSubvolumeDelete(dir, b);
                Posix.TryBtrfsSubvolumeDelete(dir, a);
            }
        }
        catch (StrataException)
        {
            return false;
        }
    }

    public bool Exists(string id) => Posix.TryLstat(Dir(id), out var st) && st.IsDirectory;

    public MountSpec Mount(string id) => new("bind", Dir(id), []);

    public bool OwnsMountPoint(string path, out string? layerId)
    {
        layerId = null;
        return false;
    }

    public IReadOnlyCollection<string> List() =>
        Posix.ReadDir(_subvolumes).Select(e => e.Name).Where(LayerId.IsValid).ToList();

    public IReadOnlyList<StatusField> Status()
    {
        string? whyNot = QuotaState();
        return
        [
            new("Backing Filesystem", "btrfs"),
            new("Filesystem UUID", Uuid()),
            new("Quotas", whyNot is null ? "enabled (size= limits a container's exclusive space)" : "disabled (size= refused)"),
            StatusField.Count("Subvolumes", List().Count),
        ];
    }

    public IReadOnlyDictionary<string, string> Metadata(string id) => new Dictionary<string, string> { ["Dir"] = Dir(id) };

    public void Cleanup() { }

    public IDiffer Differ(IDiffer generic) => new BtrfsDiffer(this, generic);

    public void Dispose() { }
}

/// <summary>The generic differ, except that applying a diff first lifts the layer's read-only flag: the store applies
/// only to a layer without children, and one that had a child (now gone) still carries the flag.</summary>
sealed class BtrfsDiffer(BtrfsDriver driver, IDiffer generic) : IDiffer
{
    public List<Strata.Archive.Change> Changes(string id, string? against) => generic.Changes(id, against);
    public Strata.Archive.DiffResult Diff(string id, string? against, Stream output) => generic.Diff(id, against, output);
    public long DiffSize(string id, string? against) => generic.DiffSize(id, against);

    public long ApplyDiff(string id, Stream diff)
    {
        driver.MakeWritable(id);
        return generic.ApplyDiff(id, diff);
    }
}
