using System.Globalization;
using Strata.Native;
using Strata.Thin;

namespace Strata.Core.Drivers.Thin;

/// <summary>
/// The thin driver (Docker's devicemapper, on Strata's own pool): every layer is a thin device holding a real
/// filesystem (ext4 or xfs) that the kernel mounts; a layer is a snapshot of its parent's device, or of the base
/// device (made once per pool, with the empty filesystem on it) when it has no parent, so copy-on-write happens per
/// pool block (64 KiB), not per file. Layout under the store root:
/// <code>
/// thin/                  the store's pool (`strata pool` commands on this root see it): pool.json, data, metadata
/// thin/dev/&lt;id&gt;          the pool server's FUSE export: one file per device (see <see cref="PoolServer"/>)
/// thin/mnt/&lt;id&gt;/         where the store mounts layer &lt;id&gt;; thin/mnt/.grow-&lt;id&gt; while size= grows one
/// </code>
/// A mount attaches the device's file to a loop device with direct IO and autoclear: the loop device goes away by
/// itself when its filesystem is unmounted (or a command dies between attach and mount), so no attach state is
/// kept anywhere. A device still open when its layer is removed (its filesystem held by a mount namespace elsewhere)
/// is deleted when the last user lets go (deferred removal), not refused as busy.
///
/// Every device the driver makes carries an owner in the pool ("layer ID", or the driver itself for the base), so
/// that `strata pool device rm` on the same pool refuses it, naming the layer, as lvremove refuses a volume in use;
/// the pool only compares the text. A device deleted all the same (--force) leaves its layer broken: the store lists
/// it so, and every use of it fails with one line saying so (<see cref="OnLayerDevice"/>); removing it works.
/// </summary>
public sealed class ThinDriver : IDriver, IMountHooks, IRecoveringDriver
{
    /// <summary>The device every layer without parent starts from, and its name while mkfs makes it.</summary>
    public const string BaseDevice = "strata-base", BaseStaging = "strata-base.new";
    const string SizeOption = "size";
    /// <summary>The owner the pool records for the base device and its staging device.</summary>
    const string BaseOwner = "the thin driver (the base of its layers)";

    /// <summary>The owner the pool records for layer <paramref name="id"/>'s device.</summary>
    static string OwnerOf(string id) => $"layer {id}";

    readonly string _home;
    readonly string _mnt;
    readonly ThinOptions _options;
    readonly PoolServer _server;
    readonly Dictionary<string, string> _attaching = new(StringComparer.Ordinal);
    bool _ready;

    public ThinDriver(string root, IReadOnlyDictionary<string, string> options)
    {
        _options = ThinOptions.Parse(options);
        _home = Path.Combine(root, "thin");
        _mnt = Path.Combine(_home, "mnt");
        LayerStore.MakeDir(_home, 0x1C0);
        LayerStore.MakeDir(_mnt, 0x1C0);
        _server = new PoolServer(_home);
        UsesKernelNbd = _options.Attach switch
        {
            "nbd" => true,
            "fuse" => false,
            _ => File.Exists("/sys/block/nbd0/size"),
        };
    }

    public string Name => "thin";

    string MountDir(string id) => Path.Combine(_mnt, id);

    string DeviceFile(string id) => Path.Combine(_server.DeviceDir, id);

    bool PoolExists => PoolDirectory.Exists(_home);

    PoolReply Call(PoolRequest request) => _server.Call(request);

    // ---- the pool and its base device ----

    /// <summary>Makes the pool (on first use) and the base device with its filesystem (once per pool).</summary>
    void EnsureReady()
    {
        if (_ready) return;
        if (!PoolExists)
        {
            var poolOptions = new PoolOptions { AutoextendThreshold = 100, DiscardFreed = _options.BlkDiscard };
            using var _ = PoolDirectory.Create(_home, _options.DataSize, _options.MetadataSize, _options.BlockSize, _options.DataDevice, _options.MetadataDevice, poolOptions);
        }
        var names = Call(new PoolRequest { Op = "devices" }).Names ?? [];
        // left by a crash mid-mkfs, or between the base's snapshot and this delete
        if (names.Contains(BaseStaging)) Call(new PoolRequest { Op = "delete", Name = BaseStaging, Defer = true, Owner = BaseOwner });
        if (!names.Contains(BaseDevice))
        {
            Call(new PoolRequest { Op = "create", Name = BaseStaging, Size = _options.BaseSize, Owner = BaseOwner });
            try
            {
                using (var attached = Attach(BaseStaging))
                {
                    FileSystemTools.Make(_options.FileSystem, attached.Device, _options.MkfsArgs);
                    EmptyRoot(attached.Device);
                }
                // the base appears whole or not at all: a snapshot of the formatted device, made in one commit
                Call(new PoolRequest { Op = "snapshot", Source = BaseStaging, Name = BaseDevice, Owner = BaseOwner });
            }
            finally
            {
                Call(new PoolRequest { Op = "delete", Name = BaseStaging, Defer = true, Owner = BaseOwner });
            }
        }
        _ready = true;
    }

    /// <summary>A layer without parent starts empty: mkfs.ext4's lost+found goes (e2fsck makes it again should it need
    /// one), and the root gets mode 0755.</summary>
    void EmptyRoot(string device)
    {
        string dir = Path.Combine(_mnt, ".base");
        LayerStore.MakeDir(dir, 0x1C0);
        try
        {
            Mount(device, dir);
            try
            {
                string lostFound = Path.Combine(dir, "lost+found");
                if (Directory.Exists(lostFound)) Directory.Delete(lostFound);
                Posix.ChmodAt(FileDescriptor.Cwd, dir, 0x1ED);
            }
            finally
            {
                UnmountScratch(dir);
            }
        }
        finally
        {
            Directory.Delete(dir);
        }
    }

    /// <summary>A loop device over a device's file in the FUSE export, with direct IO and autoclear: it lives while the
    /// returned handle, or a mount made before the handle is disposed, holds it.</summary>
    Attachment Attach(string id)
    {
        _server.EnsureRunning(fuse: !UsesKernelNbd);
        if (UsesKernelNbd)
        {
            // the server gives the device to the kernel's nbd module (the same device again if it still holds it);
            // letting go asks it to detach, which it does once nothing holds the device (a mount made meanwhile does)
            string nbd = Call(new PoolRequest { Op = "attach", Name = id }).Path!;
            return new Attachment(nbd, () => Call(new PoolRequest { Op = "detach", Name = id }));
        }
        string file = DeviceFile(id);
        // a loop device still bound to the file (its filesystem alive in another mount namespace, or detached lazily
        // but still in use) is the one to mount again: a second loop device would be a second, independent instance
        // of the same filesystem on the same blocks, and the two would corrupt it
        foreach (var bound in Posix.LoopDevicesOf(file))
            if (Posix.TryOpenAt(FileDescriptor.Cwd, bound, Posix.O_RDWR, 0, out var held) == 0)
            {
                if (Posix.LoopDevicesOf(file).Contains(bound)) return new Attachment(bound, held!.Dispose);
                held!.Dispose(); // it was detached meanwhile and may serve another file now
            }
        int err = Posix.TryOpenAt(FileDescriptor.Cwd, file, Posix.O_RDWR, 0, out var backing);
        if (err == Errno.ENOENT && !_server.ExportMounted)
            throw StrataException.Unsupported($"{_server.DeviceDir} is not the pool server's FUSE export: a `strata pool serve` without --fuse owns pool {_home}; stop it and the thin driver starts its own");
        if (err == Errno.ENOENT) throw StrataException.NotFound($"thin device {id} does not exist in pool {_home}");
        if (err != 0) throw new ErrnoException(err, "open", file);
        using (backing)
        {
            var (path, fd) = Posix.AttachLoop(backing!, file, Posix.LO_FLAGS_AUTOCLEAR | Posix.LO_FLAGS_DIRECT_IO);
            return new Attachment(path, fd.Dispose);
        }
    }

    /// <summary>A device attached to the kernel, held until disposed: a loop device with autoclear (it goes once nothing
    /// else holds it) or an nbd device (detached by the server once nothing holds it).</summary>
    sealed class Attachment(string device, Action release) : IDisposable
    {
        int _released;
        public string Device => device;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) release();
        }
    }

    /// <summary>Whether devices reach the kernel through its nbd module (thin.attach=nbd, or auto where /dev/nbd* exist
    /// when the store opens) rather than the FUSE export and a loop device.</summary>
    public bool UsesKernelNbd { get; }

    /// <summary>Whether something is mounted on <paramref name="dir"/> in this mount namespace (statx mount ids: no
    /// read of the mount table on the create and remove paths).</summary>
    bool MountedHere(string dir) =>
        Posix.TryLstat(dir, out var st) && Posix.TryLstat(Path.GetDirectoryName(dir)!, out var parent) && st.MountId != parent.MountId;

    // ---- IDriver ----

    public void Create(string id, string? parent, CreateOptions options)
    {
        DriverOptions.Only("thin layer", options.StorageOptions, SizeOption);
        if (id is BaseDevice or BaseStaging) throw StrataException.Invalid($"layer id '{id}' is the thin driver's base device; use another id");
        long? size = null;
        if (options.StorageOptions.TryGetValue(SizeOption, out var sizeText))
        {
            if (options.Kind != LayerKind.ReadWrite) throw StrataException.Invalid("size= applies to read-write (container) layers only");
            size = ByteSize.Parse(sizeText, "size");
        }
        EnsureReady();
        RequireFreeSpace();
        var origin = parent is null ? Snapshot(BaseDevice, id) : OnLayerDevice(parent, () => Snapshot(parent, id));
        try
        {
            if (size is { } bytes && bytes != origin.Size)
            {
                if (bytes < origin.Size)
                    throw StrataException.Invalid($"size {sizeText} is smaller than the layer's filesystem ({ByteSize.Format(origin.Size)}, thin.basesize or its parent's size): thin devices grow, never shrink");
                Call(new PoolRequest { Op = "resize", Name = id, Size = bytes });
                Grow(id);
            }
        }
        catch
        {
            Call(new PoolRequest { Op = "delete", Name = id, Defer = true, Owner = OwnerOf(id) });
            throw;
        }
    }

    /// <summary>Runs <paramref name="call"/> on layer <paramref name="id"/>'s device; a device that is gone (deleted from
    /// the pool under the store: `strata pool device rm --force`) makes the call fail saying the layer is broken.</summary>
    T OnLayerDevice<T>(string id, Func<T> call)
    {
        try
        {
            return call();
        }
        catch (StrataException ex) when (ex.Kind == ErrorKind.NotFound)
        {
            // not in the filter: it runs before the failed call lets go of the pool (its lock), and Exists opens it again
            if (Exists(id)) throw;
            throw StrataException.Corrupt($"layer {id} is broken: its thin device is gone from pool {_home} (deleted with `strata pool device rm --force`?); `strata layer rm {id}` removes the layer");
        }
    }

    /// <summary>Snapshots a device. A parent mounted meanwhile (a container committed while it runs) is frozen for the
    /// moment of the snapshot, so the copy is a clean filesystem (journal flushed), not a crash image.</summary>
    ThinDeviceInfo Snapshot(string source, string id)
    {
        PoolReply Take() => Call(new PoolRequest { Op = "snapshot", Source = source, Name = id, Owner = OwnerOf(id) });
        string dir = MountDir(source);
        if (source == BaseDevice) return Take().Device!;
        if (MountedHere(dir)) return Frozen(dir, Take).Device!;
        if (!PoolExists || !AttachedElsewhere(source)) return Take().Device!;
        // its filesystem lives on elsewhere (another mount namespace holds it): reach it through a mount of the same
        // loop device (the same filesystem instance) to freeze it
        string scratch = Path.Combine(_mnt, ".freeze-" + id);
        LayerStore.MakeDir(scratch, 0x1C0);
        try
        {
            using (var attached = Attach(source)) Mount(attached.Device, scratch);
            try
            {
                return Frozen(scratch, Take).Device!;
            }
            finally
            {
                Mounter.Unmount(scratch, detach: true);
            }
        }
        finally
        {
            Directory.Delete(scratch);
        }
    }

    /// <summary>Whether a device is attached to the kernel (a loop device over its file, or an nbd device of the server)
    /// though not mounted here: its filesystem may be alive in another mount namespace.</summary>
    bool AttachedElsewhere(string id)
    {
        if (!UsesKernelNbd) return Posix.LoopDevicesOf(DeviceFile(id)).Count > 0;
        return _server.ServerAlive() && Call(new PoolRequest { Op = "attached", Name = id }).Path is not null;
    }

    /// <summary>Runs <paramref name="work"/> with the filesystem mounted at <paramref name="dir"/> frozen (its journal
    /// flushed, writes held). A command killed meanwhile would leave it frozen, so a marker (thin/frozen) names it
    /// for as long as it is: the next store open thaws what the marker names (<see cref="Recover"/>).</summary>
    T Frozen<T>(string dir, Func<T> work)
    {
        using var fd = Posix.Open(dir, Posix.O_RDONLY | Posix.O_DIRECTORY);
        AtomicFile.Write(FrozenMarker, System.Text.Encoding.UTF8.GetBytes(dir), durable: false);
        Posix.Freeze(fd, dir);
        try
        {
            return work();
        }
        finally
        {
            Posix.Thaw(fd, dir);
            File.Delete(FrozenMarker);
        }
    }

    string FrozenMarker => Path.Combine(_home, "frozen");

    /// <summary>Unmounts a scratch mount of the driver's own after making what it wrote durable.</summary>
    static void UnmountScratch(string dir)
    {
        Posix.SyncFileSystem(dir);
        Mounter.Unmount(dir);
    }

    /// <summary>Grows a layer's filesystem to its device's new size: ext4 offline (resize2fs on the unmounted device:
    /// the snapshot's filesystem was cleanly unmounted), xfs online (xfs_growfs needs it mounted).</summary>
    void Grow(string id)
    {
        using var attached = Attach(id);
        if (_options.FileSystem != "xfs")
        {
            FileSystemTools.Grow(_options.FileSystem, attached.Device, null);
            return;
        }
        string dir = Path.Combine(_mnt, ".grow-" + id);
        LayerStore.MakeDir(dir, 0x1C0);
        try
        {
            Mount(attached.Device, dir);
            try
            {
                FileSystemTools.Grow(_options.FileSystem, attached.Device, dir);
            }
            finally
            {
                UnmountScratch(dir);
            }
        }
        finally
        {
            Directory.Delete(dir);
        }
    }

    void Mount(string device, string target) =>
        Mounter.Mount(new MountSpec(_options.FileSystem, device, MountOptions()) { Target = target });

    List<string> MountOptions()
    {
        // ext4: the inode tables of a fresh filesystem read as zeros on a thin device already, so the background
        // thread that zeroes them would only copy blocks up in every layer. xfs: snapshots share the UUID.
        var options = new List<string> { _options.FileSystem == "xfs" ? "nouuid" : "noinit_itable" };
        options.AddRange(_options.MountOptions);
        return options;
    }

    void RequireFreeSpace()
    {
        if (_options.MinFreeSpacePercent == 0) return;
        var status = Call(new PoolRequest { Op = "status" }).Status!;
        long total = status.DataBytes;
        if (status.DataBytesAvailable * 100 < total * _options.MinFreeSpacePercent)
            throw new StrataException(ErrorKind.NoSpace,
                $"thin pool {_home} has {ByteSize.Format(status.DataBytesAvailable)} of {ByteSize.Format(total)} available, below thin.min_free_space={_options.MinFreeSpacePercent}%: remove layers or grow the pool");
        ulong metaFree = status.MetadataBlocks - status.MetadataBlocksUsed;
        if (metaFree * 100 < status.MetadataBlocks * (ulong)_options.MinFreeSpacePercent)
            throw new StrataException(ErrorKind.NoSpace, $"thin pool {_home} has {metaFree} of {status.MetadataBlocks} metadata blocks free, below thin.min_free_space={_options.MinFreeSpacePercent}%");
    }

    public void Remove(string id)
    {
        string dir = MountDir(id);
        if (MountedHere(dir)) Mounter.Unmount(dir, detach: true); // a leftover: the store removes unmounted layers only
        if (Directory.Exists(dir)) Directory.Delete(dir);
        if (!PoolExists) return;
        try
        {
            Call(new PoolRequest { Op = "delete", Name = id, Defer = true, Owner = OwnerOf(id) });
        }
        catch (StrataException ex) when (ex.Kind == ErrorKind.NotFound)
        {
        }
    }

    public bool Exists(string id)
    {
        if (!PoolExists) return false;
        try
        {
            Call(new PoolRequest { Op = "device", Name = id });
            return true;
        }
        catch (StrataException ex) when (ex.Kind == ErrorKind.NotFound)
        {
            return false;
        }
    }

    public MountSpec Mount(string id)
    {
        string source;
        lock (_attaching) source = _attaching.GetValueOrDefault(id) ?? Posix.LoopDevicesOf(DeviceFile(id)).FirstOrDefault() ?? DeviceFile(id);
        return new MountSpec(_options.FileSystem, source, MountOptions()) { Target = MountDir(id) };
    }

    public IDisposable? PrepareMount(string id)
    {
        LayerStore.MakeDir(MountDir(id), 0x1C0);
        var attached = OnLayerDevice(id, () => Attach(id));
        lock (_attaching) _attaching[id] = attached.Device;
        return new Attachment(attached.Device, () =>
        {
            bool mounted;
            lock (_attaching)
            {
                _attaching.Remove(id);
                mounted = _mounted.Remove(id);
            }
            // a loop device's descriptor is let go either way (the mount holds the device); an nbd device stays attached
            // while mounted, and is detached after the unmount (Unmounted), or now if the mount failed
            if (!UsesKernelNbd || !mounted) attached.Dispose();
        });
    }

    readonly HashSet<string> _mounted = new(StringComparer.Ordinal);

    /// <summary>xfs retries a failed metadata write forever by default, which hangs a filesystem (and whoever waits
    /// on it) once the pool is full; give up at once instead, shutting down that one filesystem (Docker's
    /// dm.xfs_nospace_max_retries=0 lesson). ENOSPC from the device is what a full pool sends.</summary>
    public void Mounted(string id)
    {
        string? device;
        lock (_attaching)
        {
            device = _attaching.GetValueOrDefault(id);
            _mounted.Add(id);
        }
        if (_options.FileSystem != "xfs") return;
        if (device is null) return;
        string dir = $"/sys/fs/xfs/{Path.GetFileName(device)}/error/metadata/ENOSPC";
        File.WriteAllText(Path.Combine(dir, "max_retries"), "0");
    }

    /// <summary>An unmount shuts the filesystem down (and so writes all of it to the device) only when no other mount
    /// namespace holds a copy of the mount: one made meanwhile by unshare, a container runtime or a test would keep
    /// the filesystem alive with its last changes in memory (xfs keeps metadata in its log buffers for up to 30 s),
    /// and a snapshot taken next would miss them. syncfs first: what the layer holds is on the device, as a
    /// recoverable journal at worst, before the store lets go of it.</summary>
    public void Unmounting(string id)
    {
        string dir = MountDir(id);
        if (!MountedHere(dir)) return;
        try
        {
            Posix.SyncFileSystem(dir);
        }
        catch (ErrnoException)
        {
            // a filesystem that cannot write (its pool full, or shut down) loses what it could not write either way;
            // the unmount goes on
        }
    }

    /// <summary>After the store unmounted a layer: an nbd device is detached at once (a loop device went by itself).</summary>
    public void Unmounted(string id)
    {
        // a server that is gone took its nbd devices with it
        if (UsesKernelNbd && PoolExists && _server.ServerAlive()) Call(new PoolRequest { Op = "detach", Name = id });
    }

    public bool OwnsMountPoint(string path, out string? layerId)
    {
        layerId = null;
        if (Path.GetDirectoryName(path) != _mnt) return false;
        string name = Path.GetFileName(path);
        if (name.StartsWith(".grow-", StringComparison.Ordinal) || name.StartsWith(".freeze-", StringComparison.Ordinal) || name == ".base") return true;
        if (!LayerId.IsValid(name)) return false;
        layerId = name;
        return true;
    }

    /// <summary>At store open: when no server owns the pool, mounts of its devices are dead (their server was killed:
    /// every IO fails), so they are detached — the filesystems first, then the FUSE export — and the store then
    /// resets their layers' counts. Their loop devices go by themselves (autoclear).</summary>
    public void Recover(List<string> swept)
    {
        if (!PoolExists) return;
        string prefix = _mnt + "/";
        if (File.Exists(FrozenMarker))
        {
            // a command killed while it had a layer frozen for a snapshot: thaw it (EINVAL: it was not frozen after all)
            string frozen = File.ReadAllText(FrozenMarker);
            if (frozen.StartsWith(prefix, StringComparison.Ordinal) && Posix.TryOpenAt(FileDescriptor.Cwd, frozen, Posix.O_RDONLY | Posix.O_DIRECTORY, 0, out var fd) == 0)
                using (fd)
                    try
                    {
                        Posix.Thaw(fd!, frozen);
                        swept.Add($"thawed {frozen}, left frozen by a command that died mid-snapshot");
                    }
                    catch (ErrnoException)
                    {
                    }
            File.Delete(FrozenMarker);
        }
        if (_server.ServerAlive()) return;
        var table = MountTable.Read();
        foreach (var m in table.Where(m => m.MountPoint.StartsWith(prefix, StringComparison.Ordinal)).OrderByDescending(m => m.MountPoint.Length))
            if (Posix.TryUnmount(m.MountPoint, Posix.MNT_DETACH) == 0) swept.Add($"mount {m.MountPoint} of a dead pool server");
        if (MountTable.IsMountPoint(_server.DeviceDir, table) && Posix.TryUnmount(_server.DeviceDir, Posix.MNT_DETACH) == 0)
            swept.Add($"FUSE export {_server.DeviceDir} of a dead pool server");
    }

    public IReadOnlyCollection<string> List()
    {
        if (!PoolExists) return [];
        return (Call(new PoolRequest { Op = "devices" }).Names ?? []).Where(n => n is not (BaseDevice or BaseStaging)).ToList();
    }

    public IReadOnlyList<KeyValuePair<string, string>> Status()
    {
        var pairs = new List<KeyValuePair<string, string>>
        {
            new("Pool Name", _home),
            new("Pool Blocksize", ByteSize.Format(_options.BlockSize)),
            new("Base Device Size", ByteSize.Format(_options.BaseSize)),
            new("Backing Filesystem", _options.FileSystem),
        };
        if (!PoolExists)
        {
            pairs.Add(new("Pool", "not created yet (made on first use)"));
            return pairs;
        }
        var layout = PoolDirectory.ReadLayout(_home);
        pairs.Add(new(layout.Data.StartsWith("/dev/", StringComparison.Ordinal) ? "Data device" : "Data file", layout.Data));
        pairs.Add(new(layout.Metadata.StartsWith("/dev/", StringComparison.Ordinal) ? "Metadata device" : "Metadata file", layout.Metadata));
        var reply = Call(new PoolRequest { Op = "status" });
        var s = reply.Status!;
        pairs.AddRange(SpaceLines(s));
        pairs.Add(new("Thin Pool Minimum Free Space", ByteSize.Format(s.DataBytes * _options.MinFreeSpacePercent / 100)));
        pairs.Add(new("Deferred Removal Enabled", "true"));
        pairs.Add(new("Deferred Deleted Device Count", reply.DeferredDeletes.ToString(CultureInfo.InvariantCulture)));
        pairs.Add(new("Attached Devices", reply.OpenFiles.ToString(CultureInfo.InvariantCulture)));
        if (s.ReadOnlyReason is { } why) pairs.Add(new("Pool Read Only", why));
        if (s.SuperblockProblems is { Count: > 0 } problems) pairs.Add(new("Pool Superblock", string.Join("; ", problems)));
        return pairs;
    }

    /// <summary>A pool's data and metadata space as `docker info` printed devicemapper's (also `strata pool info`).</summary>
    public static IEnumerable<KeyValuePair<string, string>> SpaceLines(PoolStatus s) =>
    [
        new("Data Space Used", ByteSize.Format(s.DataBytesUsed)),
        new("Data Space Total", ByteSize.Format(s.DataBytes)),
        new("Data Space Available", ByteSize.Format(s.DataBytesAvailable)),
        new("Metadata Space Used", ByteSize.Format(s.MetadataBytesUsed)),
        new("Metadata Space Total", ByteSize.Format(s.MetadataBytes)),
        new("Metadata Space Available", ByteSize.Format(s.MetadataBytes - s.MetadataBytesUsed)),
    ];

    public IReadOnlyDictionary<string, string> Metadata(string id)
    {
        var d = OnLayerDevice(id, () => Call(new PoolRequest { Op = "device", Name = id }).Device!);
        return new Dictionary<string, string>
        {
            ["DeviceName"] = d.Name,
            ["DeviceId"] = d.Id.ToString(CultureInfo.InvariantCulture),
            ["DeviceSize"] = d.Size.ToString(CultureInfo.InvariantCulture),
            ["MountPoint"] = MountDir(id),
        };
    }

    public void Cleanup() { }

    public IDiffer Differ(IDiffer generic) => generic;

    public void Dispose()
    {
        try
        {
            _server.StopIfIdle();
        }
        finally
        {
            _server.Dispose();
        }
    }
}

/// <summary>mkfs and grow for the filesystems the thin driver puts on its devices.</summary>
static class FileSystemTools
{
    public static void Make(string fs, string device, IReadOnlyList<string> extra)
    {
        // nodiscard / -K: a new thin device has nothing to discard. lazy_itable_init: unwritten inode tables read as
        // zeros on a thin device, so mkfs need not write them (and no layer copies them up later).
        var args = fs == "xfs"
            ? new List<string> { "-q", "-K" }
            : new List<string> { "-q", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1" };
        args.AddRange(extra);
        args.Add(device);
        ExternalTool.Run("mkfs." + fs, args, package: fs == "xfs" ? "xfsprogs" : "e2fsprogs");
    }

    public static void Grow(string fs, string device, string? mountPoint)
    {
        if (fs == "xfs") ExternalTool.Run("xfs_growfs", ["-d", mountPoint ?? throw new ArgumentNullException(nameof(mountPoint))], package: "xfsprogs");
        else ExternalTool.Run("resize2fs", ["-f", device], package: "e2fsprogs"); // -f: no e2fsck first; the filesystem was unmounted cleanly
    }

}
