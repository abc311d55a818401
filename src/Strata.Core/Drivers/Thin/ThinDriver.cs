using System.Globalization;
using Strata.Native;
using Strata.Thin;
using Strata.Thin.Service;

namespace Strata.Core.Drivers.Thin;

/// <summary>
/// The thin driver (Docker's devicemapper, on Strata's own pool): every layer is a thin device holding a real
/// filesystem (ext4 or xfs) that the kernel mounts; a layer is a snapshot of its parent's device, or of the base
/// device (made once per pool, with the empty filesystem on it) when it has no parent, so copy-on-write happens per
/// pool block (64 KiB), not per file. Layout under the store root:
/// <code>
/// thin/                  the store's pool (`strata pool` commands on this root see it): pool.json, data, metadata
/// thin/dev/&lt;id&gt;          the pool server's FUSE export: one file per device (see <see cref="PoolProcess"/>)
/// thin/mnt/&lt;id&gt;/         where the store mounts layer &lt;id&gt;; thin/mnt/.grow-&lt;id&gt; while size= grows one
/// </code>
/// A mount attaches the device to the kernel (<see cref="KernelDevices"/>: a loop device over its file with autoclear,
/// or the server's nbd device), so no attach state is kept anywhere; the pool and its base device are made on first
/// use (<see cref="ThinBase"/>); calls on the pool go to its server, or to the pool opened for the call
/// (<see cref="PerCallPool"/>). A device still open when its layer is removed (its filesystem held by a mount
/// namespace elsewhere) is deleted when the last user lets go (deferred removal), not refused as busy.
///
/// Every device the driver makes carries an owner in the pool ("layer ID", or the driver itself for the base), so
/// that `strata pool device rm` on the same pool refuses it, naming the layer, as lvremove refuses a volume in use;
/// the pool only compares the text. A device deleted all the same (--force) leaves its layer broken: the store lists
/// it so, and every use of it fails with one line saying so (<see cref="OnLayerDevice"/>); removing it works.
/// </summary>
public sealed class ThinDriver : IDriver, IMountHooks, IRecoveringDriver, IBlockLayers, ILayerSnapshots
{
    /// <summary>The device every layer without parent starts from, and its name while mkfs makes it.</summary>
    public const string BaseDevice = "strata-base", BaseStaging = "strata-base.new";
    const string SizeOption = "size";

    /// <summary>The owner the pool records for layer <paramref name="id"/>'s device.</summary>
    static string OwnerOf(string id) => $"layer {id}";

    readonly string _home;

    /// <summary>The pool's directory (ROOT/thin).</summary>
    public string PoolHome => _home;
    readonly string _mnt;
    readonly ThinOptions _options;
    readonly PerCallPool _pool;
    readonly PoolProcess _server;
    readonly KernelDevices _kernel;
    readonly ThinBase _base;
    readonly Dictionary<string, string> _attaching = new(StringComparer.Ordinal);

    public ThinDriver(string root, IReadOnlyDictionary<string, string> options)
    {
        _options = ThinOptions.Parse(options);
        _home = Path.Combine(root, "thin");
        _mnt = Path.Combine(_home, "mnt");
        LayerStore.MakeDir(_home, Modes.OwnerOnly);
        LayerStore.MakeDir(_mnt, Modes.OwnerOnly);
        _pool = new PerCallPool(_home, RemotePool.DriverCallTimeout);
        _server = new PoolProcess(_home, _pool.Server);
        bool nbd = _options.Attach switch
        {
            "nbd" => true,
            "fuse" => false,
            _ => File.Exists("/sys/block/nbd0/size"),
        };
        _kernel = new KernelDevices(_home, _pool, _server, nbd);
        _base = new ThinBase(_home, _mnt, _options, _pool, _kernel);
    }

    public string Name => "thin";

    string MountDir(string id) => Path.Combine(_mnt, id);

    string DeviceFile(string id) => _kernel.DeviceFile(id);

    bool PoolExists => PoolDirectory.Exists(_home);

    /// <summary>Whether devices reach the kernel through its nbd module (thin.attach=nbd, or auto where /dev/nbd* exist
    /// when the store opens) rather than the FUSE export and a loop device.</summary>
    public bool UsesKernelNbd => _kernel.UsesKernelNbd;

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
        _base.EnsureReady();
        RequireFreeSpace();
        var origin = parent is null ? Snapshot(BaseDevice, id) : OnLayerDevice(parent, () => Snapshot(parent, id));
        try
        {
            if (size is { } bytes && bytes != origin.Size)
            {
                if (bytes < origin.Size)
                    throw StrataException.Invalid($"size {sizeText} is smaller than the layer's filesystem ({ByteSize.Format(origin.Size)}, thin.basesize or its parent's size): thin devices grow, never shrink");
                _pool.Resize(id, bytes);
                Grow(id);
            }
        }
        catch
        {
            _pool.Delete(id, defer: true, owner: OwnerOf(id));
            throw;
        }
    }

    /// <summary>A snapshot of the source's device (O(1); a mounted source's filesystem frozen for the moment of it).</summary>
    public void CopyLayer(string source, string target)
    {
        RequireFreeSpace();
        OnLayerDevice(source, () => Snapshot(source, target));
    }

    /// <summary>The pool's rollback: the target's device takes the source's blocks in one commit (no data copied).</summary>
    public void RestoreLayer(string target, string source) =>
        OnLayerDevice(source, () => OnLayerDevice(target, () => _pool.Rollback(target, source, OwnerOf(target))));

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
        ThinDeviceInfo Take() => _pool.Snapshot(source, id, OwnerOf(id));
        string dir = MountDir(source);
        if (source == BaseDevice) return Take();
        if (MountedHere(dir)) return Frozen(dir, Take);
        if (!PoolExists || !_kernel.AttachedElsewhere(source)) return Take();
        // its filesystem lives on elsewhere (another mount namespace holds it): reach it through a mount of the same
        // loop device (the same filesystem instance) to freeze it
        string scratch = Path.Combine(_mnt, ".freeze-" + id);
        LayerStore.MakeDir(scratch, Modes.OwnerOnly);
        try
        {
            using (var attached = _kernel.Attach(source)) FileSystemTools.Mount(_options, attached.Device, scratch);
            try
            {
                return Frozen(scratch, Take);
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

    /// <summary>Grows a layer's filesystem to its device's new size: ext4 offline (resize2fs on the unmounted device:
    /// the snapshot's filesystem was cleanly unmounted), xfs online (xfs_growfs needs it mounted).</summary>
    void Grow(string id)
    {
        using var attached = _kernel.Attach(id);
        if (_options.FileSystem != "xfs")
        {
            FileSystemTools.Grow(_options.FileSystem, attached.Device, null);
            return;
        }
        string dir = Path.Combine(_mnt, ".grow-" + id);
        LayerStore.MakeDir(dir, Modes.OwnerOnly);
        try
        {
            FileSystemTools.Mount(_options, attached.Device, dir);
            try
            {
                FileSystemTools.Grow(_options.FileSystem, attached.Device, dir);
            }
            finally
            {
                FileSystemTools.UnmountScratch(dir);
            }
        }
        finally
        {
            Directory.Delete(dir);
        }
    }

    void RequireFreeSpace()
    {
        if (_options.MinFreeSpacePercent == 0) return;
        var status = _pool.Status().Status;
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
            _pool.Delete(id, defer: true, owner: OwnerOf(id));
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
            _pool.Device(id);
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
        return new MountSpec(_options.FileSystem, source, FileSystemTools.MountOptions(_options)) { Target = MountDir(id) };
    }

    public IDisposable? PrepareMount(string id)
    {
        LayerStore.MakeDir(MountDir(id), Modes.OwnerOnly);
        var attached = OnLayerDevice(id, () => _kernel.Attach(id));
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

    // ---- IBlockLayers: containerd mounts the device itself ----

    public AttachedLayer Attach(string id)
    {
        var attached = OnLayerDevice(id, () => _kernel.Attach(id));
        return new AttachedLayer(new MountSpec(_options.FileSystem, attached.Device, FileSystemTools.MountOptions(_options)), attached);
    }

    public void Flush(string id)
    {
        if (!PoolExists) return;
        var devices = _kernel.AttachedAs(id);
        if (devices.Count == 0) return;
        if (MountTable.Read().FirstOrDefault(m => devices.Contains(m.Source)) is { } mounted) Posix.SyncFileSystem(mounted.MountPoint);
    }

    public long MappedBytes(string id) => (long)OnLayerDevice(id, () => _pool.Device(id)).Mapped * _options.BlockSize;

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
    public void Unmounted(string id) => _kernel.Detached(id);

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
        return _pool.DeviceNames().Where(n => n is not (BaseDevice or BaseStaging)).ToList();
    }

    public IReadOnlyList<StatusField> Status()
    {
        var pairs = new List<StatusField>
        {
            new("Pool Name", _home),
            StatusField.Bytes("Pool Blocksize", _options.BlockSize),
            StatusField.Bytes("Base Device Size", _options.BaseSize),
            new("Backing Filesystem", _options.FileSystem),
        };
        if (!PoolExists)
        {
            pairs.Add(new("Pool", "not created yet (made on first use)"));
            return pairs;
        }
        var layout = PoolDirectory.ReadLayout(_home);
        var reply = _pool.Status();
        if (reply.Space is { } space)
        {
            // a resilient pool (made with `strata pool create --disk ...` before the store's first use)
            pairs.Add(new("Pool Resiliency", space.Resiliency));
            pairs.Add(StatusField.Flag("Pool Checksums", space.Checksums));
            pairs.Add(new("Pool Health", space.AtRisk.Count == 0 ? space.Health : $"{space.Health}: {string.Join("; ", space.AtRisk)}", space.Health));
            pairs.Add(new("Pool Disks", string.Join(", ", space.Disks.Select(d => $"{d.Path} ({d.State})")), space.Disks.Count));
        }
        else
        {
            pairs.Add(new(layout.Data.StartsWith("/dev/", StringComparison.Ordinal) ? "Data device" : "Data file", layout.Data));
            pairs.Add(new(layout.Metadata.StartsWith("/dev/", StringComparison.Ordinal) ? "Metadata device" : "Metadata file", layout.Metadata));
        }
        var s = reply.Status;
        pairs.AddRange(SpaceLines(s));
        pairs.Add(StatusField.Bytes("Thin Pool Minimum Free Space", s.DataBytes * _options.MinFreeSpacePercent / 100));
        pairs.Add(StatusField.Flag("Deferred Removal Enabled", true));
        pairs.Add(StatusField.Count("Deferred Deleted Device Count", reply.DeferredDeletes));
        pairs.Add(StatusField.Count("Attached Devices", reply.OpenFiles));
        if (s.ReadOnlyReason is { } why) pairs.Add(new("Pool Read Only", why));
        if (s.SuperblockProblems is { Count: > 0 } problems) pairs.Add(new("Pool Superblock", string.Join("; ", problems)));
        return pairs;
    }

    /// <summary>A pool's data and metadata space as `docker info` printed devicemapper's (also `strata pool info`).</summary>
    public static IEnumerable<StatusField> SpaceLines(PoolStatus s) =>
    [
        StatusField.Bytes("Data Space Used", s.DataBytesUsed),
        StatusField.Bytes("Data Space Total", s.DataBytes),
        StatusField.Bytes("Data Space Available", s.DataBytesAvailable),
        StatusField.Bytes("Metadata Space Used", s.MetadataBytesUsed),
        StatusField.Bytes("Metadata Space Total", s.MetadataBytes),
        StatusField.Bytes("Metadata Space Available", s.MetadataBytes - s.MetadataBytesUsed),
    ];

    public IReadOnlyDictionary<string, string> Metadata(string id)
    {
        var d = OnLayerDevice(id, () => _pool.Device(id));
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
            _pool.Dispose();
        }
    }
}
