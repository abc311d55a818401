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
public sealed class BtrfsDriver : IDriver
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
        LayerStore.MakeDir(_home, 0x1C0);
        LayerStore.MakeDir(_subvolumes, 0x1C0);
        LayerStore.MakeDir(_readOnly, 0x1C0);
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
            if (QuotaState() is { } whyNot) throw StrataException.Unsupported($"size= is not supported here: {whyNot}");
        }
        using var dir = Posix.Open(_subvolumes, Posix.O_RDONLY | Posix.O_DIRECTORY);
        if (parent is null)
        {
            Posix.BtrfsSubvolumeCreate(dir, id, Dir(id));
            Posix.ChmodAt(FileDescriptor.Cwd, Dir(id), 0x1ED);
        }
        else
        {
            using var source = Posix.Open(Dir(parent), Posix.O_RDONLY | Posix.O_DIRECTORY);
            // a read-only layer is complete once it has a child: freeze it in btrfs too
            if (File.Exists(Path.Combine(_readOnly, parent)) && (Posix.BtrfsGetSubvolumeFlags(source, Dir(parent)) & Posix.BTRFS_SUBVOL_RDONLY) == 0)
                Posix.BtrfsSetSubvolumeFlags(source, Posix.BTRFS_SUBVOL_RDONLY, Dir(parent));
            Posix.BtrfsSnapshot(source, dir, id, readOnly: false, Dir(id));
        }
        try
        {
            if (size is { } bytes)
            {
                using var subvolume = Posix.Open(Dir(id), Posix.O_RDONLY | Posix.O_DIRECTORY);
                Posix.BtrfsLimitExclusive(subvolume, (ulong)bytes, Dir(id));
            }
            if (options.Kind == LayerKind.ReadOnly) AtomicFile.Write(Path.Combine(_readOnly, id), [], durable: false);
            Posix.FsyncDirectory(_subvolumes); // the new subvolume's name on disk before the store records the layer
        }
        catch
        {
            Remove(id);
            throw;
        }
    }

    /// <summary>Null when btrfs quotas are on for this filesystem (qgroups exist in sysfs), else why size= cannot work.</summary>
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
        if (!Posix.TryLstat(Dir(id), out _)) return;
        using var dir = Posix.Open(_subvolumes, Posix.O_RDONLY | Posix.O_DIRECTORY);
        DeleteSubvolume(dir, _subvolumes, id);
    }

    static void DeleteSubvolume(FileDescriptor parentDir, string parentPath, string name)
    {
        string path = Path.Combine(parentPath, name);
        using (var subvolume = Posix.Open(path, Posix.O_RDONLY | Posix.O_DIRECTORY))
        {
            // its read-only flag would keep the names of nested subvolumes in it from going
            if ((Posix.BtrfsGetSubvolumeFlags(subvolume, path) & Posix.BTRFS_SUBVOL_RDONLY) != 0)
                Posix.BtrfsSetSubvolumeFlags(subvolume, 0, path);
        }
        int err = Posix.TryBtrfsSubvolumeDelete(parentDir, name);
        if (err == Errno.ENOTEMPTY)
        {
            DeleteNested(path);
            err = Posix.TryBtrfsSubvolumeDelete(parentDir, name);
        }
        if (err != 0 && err != Errno.ENOENT) throw new ErrnoException(err, "BTRFS_IOC_SNAP_DESTROY", path);
    }

    /// <summary>Finds the subvolumes below <paramref name="path"/> (directories whose inode is a subvolume root's) and deletes them.</summary>
    static void DeleteNested(string path)
    {
        using var dir = Posix.Open(path, Posix.O_RDONLY | Posix.O_DIRECTORY);
        var self = Posix.Lstat(path);
        foreach (var e in Posix.ReadDir(dir, path))
        {
            if (e.Type != 4 /* DT_DIR */) continue;
            string child = Path.Combine(path, e.Name);
            if (!Posix.TryLstat(child, out var st) || st.MountId != self.MountId) continue; // a mount: not ours to walk
            if (st.Inode == Posix.BtrfsSubvolumeRootInode) DeleteSubvolume(dir, path, e.Name);
            else DeleteNested(child);
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

    public IReadOnlyList<KeyValuePair<string, string>> Status()
    {
        string? whyNot = QuotaState();
        return
        [
            new("Backing Filesystem", "btrfs"),
            new("Filesystem UUID", Uuid()),
            new("Quotas", whyNot is null ? "enabled (size= limits a container's exclusive space)" : "disabled (size= refused)"),
            new("Subvolumes", List().Count.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ];
    }

    public IReadOnlyDictionary<string, string> Metadata(string id) => new Dictionary<string, string> { ["Dir"] = Dir(id) };

    public void Cleanup() { }

    public IDiffer Differ(IDiffer generic) => generic;

    public void Dispose() { }
}
