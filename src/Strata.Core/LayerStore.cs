using System.Collections.Concurrent;
using System.Text.Json;
using Strata.Archive;
using Strata.Core.Drivers;
using Strata.Native;

namespace Strata.Core;

/// <summary>Where a store lives and how to open it.</summary>
public sealed record StoreOptions
{
    public static string DefaultRoot =>
        Environment.GetEnvironmentVariable("STRATA_ROOT") is { Length: > 0 } r ? r : "/var/lib/strata";

    public string Root { get; init; } = DefaultRoot;
    /// <summary>Driver name; null picks the store's recorded driver, or probes for a new store.</summary>
    public string? Driver { get; init; }
    /// <summary>Driver options (Docker's --storage-opt for the daemon), e.g. overlay.mount_program.</summary>
    public IReadOnlyDictionary<string, string> DriverOptions { get; init; } = new Dictionary<string, string>();
    /// <summary>Perform overlay mounts with mount(2) even where the new mount API is available (what kernels
    /// before 6.8 get; the tests use it to cover that path here).</summary>
    internal bool LegacyMounts { get; init; }
    /// <summary>A store that holds no layers yet takes the requested driver and driver options even if it was
    /// made with others (how dockerd's storage options pick the driver of `strata serve`'s store).</summary>
    public bool ReconfigureIfEmpty { get; init; }
    /// <summary>How long to wait for another process to release the store.</summary>
    public TimeSpan LockWait { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// The layer store: layer records, parent/child links, mount refcounts and crash safety, over one
/// driver. Layout under the root:
/// <code>
/// strata.lock          flock'd by the one process that owns the store; holds its pid
/// driver               the driver this store was created with
/// layers/&lt;id&gt;.json     one record per visible layer (temp + fsync + rename + fsync dir)
/// mounts/&lt;id&gt;          a mounted layer's count of users (temp + rename, no fsync: see below)
/// tmp/                 staging; emptied at open
/// &lt;driver&gt;/            the driver's data
/// </code>
/// Mounts: a driver describes how to see a layer (<see cref="MountSpec"/>) and the store performs it
/// when the layer gets its first user (a persisted <see cref="Layer.Mounts"/> count, or an in-process
/// hold for a diff) and undoes it when the last goes. Counts are state of the running system, like
/// the mounts themselves: they survive a process, not a machine crash, so they are written without
/// fsync (a create + mount + unmount would otherwise pay for six). At open, mounts below the root that
/// no counted user owns (left by a crashed process) are detached, and counts whose mount is gone
/// (after a reboot), or that a crash left unreadable, are reset.
/// Invariants: a record exists only for a layer whose data is complete (data is made first, synced,
/// then the record written; removal deletes the record first, then the data). A layer with
/// children, mounts or an operation in flight cannot be removed. Safe for concurrent calls from
/// many threads: every change to one layer holds that layer's own lock (so its record writes are
/// ordered), a short global lock guards the index, ids with work in flight are marked busy so
/// readers refuse them instead of seeing half a change, and diffs pin the layers they read.
/// </summary>
public sealed class LayerStore : IDisposable, ILayerMounter
{
    const uint PrivateDir = 0x1C0; // 0700: layer trees hold setuid binaries and device nodes

    readonly object _lock = new();
    readonly ConcurrentDictionary<string, object> _idLocks = new(StringComparer.Ordinal);
    readonly Dictionary<string, Layer> _layers = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _children = new(StringComparer.Ordinal);
    readonly Dictionary<string, string> _busy = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _uses = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _held = new(StringComparer.Ordinal);
    readonly bool _legacyMounts;
    readonly FileDescriptor _lockFd;
    readonly string _records;
    readonly IDiffer _differ;
    bool _disposed;

    public string Root { get; }
    public IDriver Driver { get; }
    /// <summary>The driver options the store was created with.</summary>
    public IReadOnlyDictionary<string, string> DriverOptions { get; }
    /// <summary>What the start-up sweep cleaned at open, and what it could not remove (and why).</summary>
    public IReadOnlyList<string> Swept { get; }

    LayerStore(string root, FileDescriptor lockFd, IDriver driver, IReadOnlyDictionary<string, string> driverOptions, List<string> swept, List<Layer> layers, bool legacyMounts)
    {
        DriverOptions = driverOptions;
        _legacyMounts = legacyMounts;
        Root = root;
        _lockFd = lockFd;
        Driver = driver;
        _records = Path.Combine(root, "layers");
        _differ = driver.Differ(new NaiveDiffer(this));
        Swept = swept;
        foreach (var l in layers)
        {
            _layers[l.Id] = l;
            if (l.Parent is not null) _children[l.Parent] = _children.GetValueOrDefault(l.Parent) + 1;
        }
    }

    public static LayerStore Open(StoreOptions options)
    {
        string root = Path.GetFullPath(options.Root);
        MakeDir(root, 0x1C9 /* 0711: others may traverse to a mounted tree, not list the store */);
        // the kernel names mount points by their real path: a root reached through a symlink must match it
        root = Posix.RealPath(root);
        var lockFd = AcquireOwnership(root, options.LockWait);
        try
        {
            return OpenLocked(root, lockFd, options);
        }
        catch
        {
            lockFd.Dispose();
            throw;
        }
    }

    /// <summary>Opens the store at <paramref name="root"/> whose lock <paramref name="lockFd"/> holds; the store owns
    /// the lock once this returns (on failure the caller still does).</summary>
    static LayerStore OpenLocked(string root, FileDescriptor lockFd, StoreOptions options)
    {
        MakeDir(Path.Combine(root, "layers"), PrivateDir);
        MakeDir(Path.Combine(root, "tmp"), PrivateDir);
        MakeDir(Path.Combine(root, "mounts"), PrivateDir);
        var (driverName, driverOptions, isNew) = ChooseDriver(root, options.Driver, options.DriverOptions, options.ReconfigureIfEmpty);
        var driver = DriverRegistry.Create(driverName, root, driverOptions);
        try
        {
            var swept = new List<string>();
            var layers = Recover(root, driver, swept);
            if (isNew) RecordDriver(root, driverName, driverOptions); // only once the driver took its options and the store opened
            return new LayerStore(root, lockFd, driver, driverOptions, swept, layers, options.LegacyMounts);
        }
        catch
        {
            driver.Dispose();
            throw;
        }
    }

    /// <summary>
    /// This store with <paramref name="driver"/> (null: the current one) and <paramref name="driverOptions"/>
    /// (dockerd's storage options picking the driver of `strata serve`'s store): this very store when it
    /// uses them already; a new store taking over this one's lock (never released in between) when this
    /// one holds no layers, after which this one is closed; otherwise the error opening it with them
    /// would give. When it fails, this store is as it was.
    /// </summary>
    public LayerStore Reconfigure(string? driver, IReadOnlyDictionary<string, string> driverOptions)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (ConfigurationMismatch(Root, Driver.Name, DriverOptions, driver, driverOptions) is not { } mismatch) return this;
        lock (_lock)
            if (_layers.Count > 0 || _held.Count > 0) throw StrataException.Invalid(mismatch);
        var next = OpenLocked(Root, _lockFd, new StoreOptions { Root = Root, Driver = driver, DriverOptions = driverOptions, ReconfigureIfEmpty = true, LegacyMounts = _legacyMounts });
        _disposed = true; // the lock is the new store's now
        Driver.Dispose();
        return next;
    }

    /// <summary>Whether the store uses <paramref name="driver"/> (null: any) with <paramref name="driverOptions"/> among its options.</summary>
    public bool Uses(string? driver, IReadOnlyDictionary<string, string> driverOptions) =>
        ConfigurationMismatch(Root, Driver.Name, DriverOptions, driver, driverOptions) is null;

    /// <summary>Refuses a request for another driver or other driver options than this store's, as opening it
    /// with them would (a request may repeat some of the recorded options, not change them).</summary>
    public void RequireConfiguration(string? driver, IReadOnlyDictionary<string, string> driverOptions)
    {
        if (ConfigurationMismatch(Root, Driver.Name, DriverOptions, driver, driverOptions) is { } mismatch) throw StrataException.Invalid(mismatch);
    }

    static string? ConfigurationMismatch(string root, string recorded, IReadOnlyDictionary<string, string> recordedOptions, string? requested, IReadOnlyDictionary<string, string> options)
    {
        if (requested is not null && requested != recorded)
            return $"store {root} was created with driver '{recorded}', not '{requested}'; use another store root for '{requested}'";
        foreach (var (k, v) in options)
            if (!recordedOptions.TryGetValue(k, out var had) || had != v)
                return $"store {root} was created with {(had is null ? $"no {k}" : $"{k}={had}")}; driver options are fixed when a store is created";
        return null;
    }

    /// <summary>Creates a directory with <paramref name="mode"/> if it is missing (an existing one is left as it is).</summary>
    internal static void MakeDir(string path, uint mode)
    {
        int err = Posix.TryMkdirAt(FileDescriptor.Cwd, path, mode);
        if (err == Errno.ENOENT)
        {
            MakeDir(Path.GetDirectoryName(path)!, 0x1ED /* 0755 */);
            err = Posix.TryMkdirAt(FileDescriptor.Cwd, path, mode);
        }
        if (err == Errno.EEXIST && Posix.TryLstat(path, out var st) && st.IsDirectory) return;
        if (err == 0) Posix.ChmodAt(FileDescriptor.Cwd, path, mode); // past the umask
        else throw new ErrnoException(err, "mkdir", path);
    }

    static FileDescriptor AcquireOwnership(string root, TimeSpan wait)
    {
        string path = Path.Combine(root, "strata.lock");
        var fd = Posix.Open(path, Posix.O_RDWR | Posix.O_CREAT, 0x180);
        try
        {
            var deadline = DateTime.UtcNow + wait;
            while (!Posix.TryLockExclusive(fd, path))
            {
                if (DateTime.UtcNow >= deadline)
                {
                    string owner = ReadOwner(fd, path);
                    throw StrataException.InUse($"store {root} is in use by another process{(owner.Length > 0 ? $" (pid {owner})" : "")}");
                }
                Thread.Sleep(20);
            }
            Posix.Ftruncate(fd, 0, path);
            Posix.PwriteAll(fd, System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId + "\n"), 0, path);
            return fd;
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>The pid the owner wrote (read raw: .NET's FileStream would take a conflicting flock of its own).</summary>
    static string ReadOwner(FileDescriptor fd, string path)
    {
        Span<byte> buf = stackalloc byte[32];
        int n = Posix.Pread(fd, buf, 0, path);
        return System.Text.Encoding.ASCII.GetString(buf[..n]).Trim();
    }

    /// <summary>The store's driver and driver options: those recorded in <c>driver</c> (name on the first line,
    /// then one KEY=VALUE per line) when the store exists, which a request may repeat but not change;
    /// else the requested ones, or the probe's choice.</summary>
    static (string Name, IReadOnlyDictionary<string, string> Options, bool IsNew) ChooseDriver(string root, string? requested, IReadOnlyDictionary<string, string> options, bool reconfigureIfEmpty)
    {
        string file = Path.Combine(root, "driver");
        if (requested is not null && !DriverRegistry.IsKnown(requested))
            throw StrataException.Invalid($"unknown driver '{requested}' (available: {string.Join(", ", DriverRegistry.Names)})");
        foreach (var (k, v) in options)
            if (k.Length == 0 || k.Contains('=') || (k + v).Contains('\n'))
                throw StrataException.Invalid($"driver option '{k}={v}' is not a KEY=VALUE on one line");
        if (File.Exists(file))
        {
            var lines = File.ReadAllLines(file).Where(l => l.Length > 0).ToList();
            string recorded = lines.Count > 0 ? lines[0].Trim() : throw StrataException.Corrupt($"{file} is empty; write the store's driver name into it");
            var recordedOptions = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var line in lines.Skip(1))
            {
                int eq = line.IndexOf('=');
                if (eq <= 0) throw StrataException.Corrupt($"{file}: '{line}' is not KEY=VALUE");
                recordedOptions[line[..eq]] = line[(eq + 1)..];
            }
            string? mismatch = ConfigurationMismatch(root, recorded, recordedOptions, requested, options);
            if (mismatch is not null && reconfigureIfEmpty && !Directory.EnumerateFiles(Path.Combine(root, "layers"), "*.json").Any())
                return (requested ?? recorded, options, true);
            if (mismatch is not null) throw StrataException.Invalid(mismatch);
            return (recorded, recordedOptions, false);
        }
        return (requested ?? DriverRegistry.Probe(root, options), options, true);
    }

    static void RecordDriver(string root, string name, IReadOnlyDictionary<string, string> options)
    {
        var text = new System.Text.StringBuilder(name).Append('\n');
        foreach (var (k, v) in options.OrderBy(p => p.Key, StringComparer.Ordinal)) text.Append(k).Append('=').Append(v).Append('\n');
        AtomicFile.Write(Path.Combine(root, "driver"), System.Text.Encoding.UTF8.GetBytes(text.ToString()));
    }

    /// <summary>The start-up sweep: empty tmp/, drop temp records, remove layers left incomplete by a crash
    /// mid-apply, and delete driver data that no record owns. What cannot be removed is reported in
    /// <see cref="Swept"/> and left for the next sweep; it never keeps the store from opening.</summary>
    static List<Layer> Recover(string root, IDriver driver, List<string> swept)
    {
        string records = Path.Combine(root, "layers");
        var layers = new List<Layer>();
        foreach (var e in Posix.ReadDir(records))
        {
            string file = Path.Combine(records, e.Name);
            if (e.Name.Contains(".json.tmp-", StringComparison.Ordinal))
            {
                Sweep(swept, "layers/" + e.Name, () => Posix.UnlinkAt(FileDescriptor.Cwd, file, directory: false));
                continue;
            }
            if (!e.Name.EndsWith(".json", StringComparison.Ordinal)) continue; // not ours: leave it
            Layer layer;
            try
            {
                layer = JsonSerializer.Deserialize(Posix.ReadFile(file), StoreJson.Default.Layer)
                    ?? throw new JsonException("empty record");
            }
            catch (JsonException ex)
            {
                throw StrataException.Corrupt($"layer record {file} is unreadable ({ex.Message}); move it away to open the store");
            }
            if (layer.Id + ".json" != e.Name || !LayerId.IsValid(layer.Id))
                throw StrataException.Corrupt($"layer record {file} names layer '{layer.Id}'; move it away to open the store");
            layers.Add(layer);
        }
        if (driver is IRecoveringDriver recovering) recovering.Recover(swept);
        LoadMountCounts(root, layers, swept);
        ReconcileMounts(root, driver, layers, swept);
        string tmp = Path.Combine(root, "tmp");
        foreach (var e in Posix.ReadDir(tmp))
            Sweep(swept, "tmp/" + e.Name, () => FileTree.Remove(Path.Combine(tmp, e.Name)));
        foreach (var l in layers.Where(l => l.Incomplete).ToList())
        {
            layers.Remove(l);
            Sweep(swept, "incomplete layer " + l.Id, () =>
            {
                Posix.UnlinkAt(FileDescriptor.Cwd, Path.Combine(records, l.Id + ".json"), directory: false);
                driver.Remove(l.Id);
            });
        }
        var known = layers.Select(l => l.Id).ToHashSet(StringComparer.Ordinal);
        string mounts = Path.Combine(root, "mounts");
        foreach (var e in Posix.ReadDir(mounts))
            if (!known.Contains(e.Name)) Sweep(swept, "mounts/" + e.Name, () => Posix.UnlinkAt(FileDescriptor.Cwd, Path.Combine(mounts, e.Name), directory: false));
        foreach (var id in driver.List())
            if (!known.Contains(id)) Sweep(swept, "orphaned data of " + id, () => driver.Remove(id));
        if (swept.Count > 0) Posix.FsyncDirectory(records);
        return layers;
    }

    /// <summary>Reads each layer's count from mounts/. Records written before counts moved there carry theirs
    /// in the record: such a count moves to mounts/ and the record is rewritten without it.</summary>
    static void LoadMountCounts(string root, List<Layer> layers, List<string> swept)
    {
        string dir = Path.Combine(root, "mounts");
        var present = Posix.ReadDir(dir).Select(e => e.Name).ToHashSet(StringComparer.Ordinal); // one listing, not a stat per layer
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            string file = Path.Combine(dir, layer.Id);
            int count = 0;
            if (present.Contains(layer.Id))
            {
                if (!int.TryParse(System.Text.Encoding.UTF8.GetString(Posix.ReadFile(file)).Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out count))
                {
                    swept.Add($"mount count of {layer.Id} was unreadable; counted as 0");
                    count = 0;
                    File.Delete(file);
                }
            }
            if (layer.Mounts > 0) // an older record; idempotent, should a crash interrupt the move
            {
                count = layer.Mounts;
                AtomicFile.Write(file, System.Text.Encoding.ASCII.GetBytes(count + "\n"), durable: false);
                AtomicFile.Write(Path.Combine(root, "layers", layer.Id + ".json"), JsonSerializer.SerializeToUtf8Bytes(layer with { Mounts = 0 }, StoreJson.Default.Layer));
            }
            layers[i] = layer with { Mounts = count };
        }
    }

    /// <summary>Makes mounts agree with the recorded counts. A mount where the driver's mounts go that no counted
    /// user holds (left by a crashed process, or by an in-process hold for a diff) is detached; a layer
    /// counted as mounted whose mount is gone (the machine rebooted) gets its count reset. Whether a
    /// mount is live is decided from the mount table and the counts alone, so nothing in use is ever
    /// detached because a layer's files cannot be read; when in doubt, nothing changes. Other mounts
    /// below the root are not the store's and are left alone. Runs before anything is deleted.</summary>
    static void ReconcileMounts(string root, IDriver driver, List<Layer> layers, List<string> swept)
    {
        string prefix = root.TrimEnd('/') + "/";
        var mounted = MountTable.Read().Select(m => m.MountPoint).Where(p => p.StartsWith(prefix, StringComparison.Ordinal)).ToHashSet(StringComparer.Ordinal);
        if (mounted.Count == 0 && layers.All(l => l.Mounts == 0)) return;
        var counted = layers.Where(l => l.Mounts > 0 && !l.Incomplete).Select(l => l.Id).ToHashSet(StringComparer.Ordinal);
        var found = new HashSet<string>(StringComparer.Ordinal);
        foreach (var path in mounted.OrderByDescending(p => p.Length))
        {
            if (!driver.OwnsMountPoint(path, out var id)) continue;
            if (id is not null && counted.Contains(id))
            {
                found.Add(id);
                continue;
            }
            Sweep(swept, "stale mount " + path, () => Mounter.Unmount(path, detach: true));
        }
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            if (!counted.Contains(layer.Id) || found.Contains(layer.Id)) continue;
            MountSpec spec;
            try
            {
                spec = driver.Mount(layer.Id);
            }
            catch (Exception ex) when (ex is StrataException or IOException)
            {
                swept.Add($"mount count of {layer.Id} kept: cannot check it ({ex.Message})");
                continue;
            }
            if (spec.IsPlainDirectory) continue; // nothing to mount: the count is all there is
            Sweep(swept, $"mount count of {layer.Id} reset from {layer.Mounts} (its mount at {spec.TreePath} was gone)", () =>
            {
                SaveMounts(root, layer.Id, 0);
                layers[i] = layer with { Mounts = 0 };
            });
        }
    }

    static void Sweep(List<string> swept, string what, Action remove)
    {
        try
        {
            remove();
            swept.Add(what);
        }
        catch (StrataException ex)
        {
            swept.Add($"{what}: not removed ({ex.Message})");
        }
    }

    // ---- queries ----

    public bool Exists(string id)
    {
        lock (_lock) return _layers.TryGetValue(id, out var l) && !l.Incomplete;
    }

    public Layer Inspect(string id)
    {
        LayerId.Validate(id);
        lock (_lock) return Visible(id);
    }

    public IReadOnlyList<Layer> List()
    {
        lock (_lock) return _layers.Values.Where(l => !l.Incomplete).OrderBy(l => l.Created).ThenBy(l => l.Id, StringComparer.Ordinal).ToList();
    }

    public IReadOnlyList<KeyValuePair<string, string>> Status()
    {
        var pairs = new List<KeyValuePair<string, string>>
        {
            new("Root Dir", Root),
        };
        pairs.AddRange(Driver.Status());
        lock (_lock) pairs.Add(new("Layers", _layers.Count.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        pairs.Add(new("Broken Layers", Broken()?.Count.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown (the driver cannot list its layers)"));
        return pairs;
    }

    /// <summary>Layers whose record is here but whose data the driver no longer holds (deleted under the store, e.g. a
    /// thin layer's device by `strata pool device rm --force`): using one fails; removing it works. A layer is in both
    /// listings of records taken around the driver's listing, so one made or removed meanwhile is never counted (data
    /// is made before its record, and deleted after it). Null when the driver cannot list what it holds (a thin pool
    /// that does not open): the records are still listed, their state unknown.</summary>
    public IReadOnlySet<string>? Broken()
    {
        HashSet<string> before;
        lock (_lock) before = _layers.Values.Where(l => !l.Incomplete).Select(l => l.Id).ToHashSet(StringComparer.Ordinal);
        HashSet<string> held;
        try
        {
            held = Driver.List().ToHashSet(StringComparer.Ordinal);
        }
        catch (StrataException)
        {
            return null;
        }
        lock (_lock) before.RemoveWhere(id => held.Contains(id) || !_layers.ContainsKey(id));
        return before;
    }

    public IReadOnlyDictionary<string, string> Metadata(string id)
    {
        Inspect(id);
        return Driver.Metadata(id);
    }

    // ---- lifecycle ----

    /// <summary>Creates a layer, empty or as a copy of <paramref name="parent"/>, and when <paramref name="diff"/>
    /// is given applies that OCI tar (plain or gzip) to it, all or nothing: the layer becomes visible only when complete,
    /// and only if <paramref name="verify"/> (run after the apply) does not throw.</summary>
    public Layer Create(string id, string? parent, LayerKind kind = LayerKind.ReadOnly,
        IReadOnlyDictionary<string, string>? labels = null, IReadOnlyDictionary<string, string>? storageOptions = null,
        Stream? diff = null, Action? verify = null)
    {
        LayerId.Validate(id);
        if (parent is not null) LayerId.Validate(parent, "parent id");
        lock (IdLock(id))
        {
            using var tar = diff is null ? null : LayerInput.Open(diff);
            lock (_lock)
            {
                if (_layers.ContainsKey(id)) throw StrataException.Exists($"layer {id} already exists");
                ThrowIfBusy(id);
                if (parent is not null)
                {
                    Visible(parent);
                    ThrowIfBusy(parent);
                    _children[parent] = _children.GetValueOrDefault(parent) + 1;
                }
                _busy[id] = "being created";
            }
            bool dataCreated = false, recordWritten = false, published = false;
            try
            {
                Driver.Create(id, parent, new CreateOptions(kind, storageOptions ?? new Dictionary<string, string>()));
                dataCreated = true;
                long size = tar is null ? 0 : _differ.ApplyDiff(id, tar);
                verify?.Invoke(); // the caller's last word (an image layer's diff id) before anything is published
                // data the record will point at must be on disk first (drivers make Create durable themselves)
                if (tar is not null) Posix.SyncFileSystem(Root);
                var layer = new Layer
                {
                    Id = id,
                    Parent = parent,
                    Kind = kind,
                    Driver = Driver.Name,
                    Created = DateTimeOffset.UtcNow,
                    Labels = labels is null ? [] : new Dictionary<string, string>(labels),
                    Size = size,
                };
                recordWritten = true; // from here a failure may leave the record behind
                WriteRecord(layer);
                lock (_lock)
                {
                    _layers[id] = layer;
                    _busy.Remove(id);
                }
                published = true;
                return layer;
            }
            finally
            {
                if (!published)
                {
                    try
                    {
                        // undo only what this call did; a record that cannot be deleted keeps its data,
                        // so the store never holds a record without data
                        if (recordWritten) DeleteRecord(id);
                        if (dataCreated) Driver.Remove(id);
                    }
                    catch (Exception)
                    {
                        // data without a record is swept at next open
                    }
                    finally
                    {
                        lock (_lock)
                        {
                            _busy.Remove(id);
                            if (parent is not null) _children[parent]--;
                        }
                    }
                }
            }
        }
    }

    /// <summary>Applies an OCI tar (plain or gzip) onto an existing layer that has no children and is not in use
    /// (Docker's ApplyDiff). Input that is not a tar is refused before anything changes; once the apply has
    /// begun the record is marked incomplete, and if the apply fails, or the process dies, the layer is removed.</summary>
    public long ApplyDiff(string id, Stream diff)
    {
        LayerId.Validate(id);
        lock (IdLock(id))
        {
            using var tar = LayerInput.Open(diff);
            Layer layer, marked;
            int mounts;
            lock (_lock) mounts = Visible(id).Mounts;
            if (mounts > 0) throw MountedError(id, mounts, "apply a diff to it"); // counts change only under the id lock we hold
            lock (_lock)
            {
                layer = Visible(id);
                ThrowIfBusy(id);
                if (_children.GetValueOrDefault(id) > 0) throw StrataException.InUse($"layer {id} has child layers; a diff can only be applied to a layer without children");
                if (_uses.GetValueOrDefault(id) > 0) throw StrataException.InUse($"layer {id} is in use by a diff in progress");
                marked = layer with { Incomplete = true };
                _layers[id] = marked;
                _busy[id] = "applying a diff";
            }
            try
            {
                WriteRecord(marked);
            }
            catch
            {
                // nothing has changed yet (the record write is atomic): the layer stays as it was
                lock (_lock)
                {
                    _layers[id] = layer;
                    _busy.Remove(id);
                }
                throw;
            }
            try
            {
                long size = _differ.ApplyDiff(id, tar);
                Posix.SyncFileSystem(Root);
                var done = marked with { Incomplete = false, Size = size };
                WriteRecord(done);
                lock (_lock)
                {
                    _layers[id] = done;
                    _busy.Remove(id);
                }
                return size;
            }
            catch (Exception ex)
            {
                lock (_lock) _busy.Remove(id);
                string fate;
                try
                {
                    Remove(id, allowIncomplete: true);
                    fate = "was removed";
                }
                catch (Exception)
                {
                    fate = "is marked incomplete and will be removed when the store is next opened";
                }
                if (ex is StrataException se) throw new StrataException(se.Kind, $"{se.Message} (layer {id} {fate}: a half-applied layer is never kept)", ex);
                throw;
            }
        }
    }

    /// <summary>The CLI's `layer apply`: creates layer <paramref name="id"/> from the tar when it does not exist
    /// (as a child of <paramref name="parent"/>), otherwise applies the tar onto it, whose parent must then match.</summary>
    public long Apply(string id, Stream tar, string? parent, bool parentGiven)
    {
        LayerId.Validate(id);
        Layer? existing;
        lock (_lock) existing = _layers.TryGetValue(id, out var l) && !l.Incomplete ? l : null;
        if (existing is null) return Create(id, parent, diff: tar).Size;
        if (parentGiven && parent != existing.Parent)
            throw StrataException.Invalid($"layer {id} exists with parent '{existing.Parent ?? "(none)"}', not '{parent ?? "(none)"}'");
        return ApplyDiff(id, tar);
    }

    public void Remove(string id) => Remove(id, allowIncomplete: false);

    void Remove(string id, bool allowIncomplete)
    {
        LayerId.Validate(id);
        lock (IdLock(id))
        {
            Layer layer;
            lock (_lock)
            {
                if (!_layers.TryGetValue(id, out layer!) || (layer.Incomplete && !allowIncomplete))
                    throw StrataException.NotFound($"layer {id} does not exist");
                ThrowIfBusy(id);
                int children = _children.GetValueOrDefault(id);
                if (children > 0)
                {
                    var names = _layers.Values.Where(l => l.Parent == id).Select(l => l.Id).Order(StringComparer.Ordinal).Take(5);
                    throw StrataException.InUse($"layer {id} has {children} child layer(s) ({string.Join(", ", names)}{(children > 5 ? ", ..." : "")}); remove them first");
                }
                if (_uses.GetValueOrDefault(id) > 0) throw StrataException.InUse($"layer {id} is in use by a diff in progress");
                if (layer.Mounts == 0) _busy[id] = "being removed";
            }
            if (layer.Mounts > 0) throw MountedError(id, layer.Mounts, "remove it");
            try
            {
                DeleteRecord(id);
                lock (_lock)
                {
                    _layers.Remove(id);
                    if (layer.Parent is not null) _children[layer.Parent]--;
                }
                Driver.Remove(id);
            }
            finally
            {
                lock (_lock) _busy.Remove(id);
            }
        }
    }

    // ---- mounts ----

    /// <summary>Mounts a layer for a user (Docker's Get) and returns the path of its tree. The count is persisted
    /// until <see cref="Unmount"/>, so it holds across CLI invocations; the first user mounts, the last unmounts.</summary>
    public string Mount(string id)
    {
        LayerId.Validate(id);
        lock (IdLock(id))
        {
            var (layer, held) = MountState(id);
            bool first = layer.Mounts + held == 0;
            var spec = first ? Perform(id) : Driver.Mount(id);
            try
            {
                SetMounts(layer, layer.Mounts + 1);
            }
            catch
            {
                if (first) Undo(id, spec, detach: true);
                throw;
            }
            return spec.TreePath;
        }
    }

    /// <summary>Drops one user of a layer's mount (Docker's Put); the last one unmounts. A mount that processes
    /// still use is not torn from under them: the call fails naming them, and the count stays — unless
    /// <paramref name="detachBusy"/>, for callers that never retry (dockerd's Put): then the count drops
    /// and the busy mount is detached lazily (as Docker's overlay2 does); the return value names the
    /// holders that kept it busy (null when none did).</summary>
    public string? Unmount(string id, bool detachBusy = false)
    {
        LayerId.Validate(id);
        lock (IdLock(id))
        {
            var (layer, held) = MountState(id);
            if (layer.Mounts == 0) throw StrataException.Invalid($"layer {id} is not mounted");
            string? busy = null;
            if (layer.Mounts - 1 + held == 0)
            {
                var spec = Driver.Mount(id);
                try
                {
                    Undo(id, spec, detach: false);
                }
                catch (StrataException ex) when (detachBusy && ex.Kind == ErrorKind.InUse)
                {
                    busy = ex.Message;
                    Undo(id, spec, detach: true);
                }
            }
            SetMounts(layer, layer.Mounts - 1);
            return busy;
        }
    }

    /// <summary>
    /// Releases what the store holds for itself (the driver's resources) when its owner shuts down, or
    /// dockerd does (Docker's Cleanup). Layers mounted for users stay mounted and counted: a container
    /// may still run on one (dockerd's live-restore, or dockerd outliving a restart of `strata serve`),
    /// and tearing its root away, or mounting a second overlay on the same upper dir at the next Get,
    /// would break it. Their users' Puts, or the next open's reconcile (which keeps counted mounts and
    /// resets counts whose mount is gone), settle them. In-process holds end with the diffs that take them.
    /// </summary>
    public void Cleanup() => Driver.Cleanup();

    /// <summary>In-process use of a layer's tree (the generic differ): pins the layer and mounts it if nobody has.
    /// Works for a layer being created too (its record is not published yet).</summary>
    string ILayerMounter.Acquire(string id)
    {
        lock (IdLock(id))
        {
            int users;
            lock (_lock) users = (_layers.TryGetValue(id, out var l) ? l.Mounts : 0) + _held.GetValueOrDefault(id);
            var spec = users == 0 ? Perform(id) : Driver.Mount(id);
            lock (_lock)
            {
                _held[id] = _held.GetValueOrDefault(id) + 1;
                _uses[id] = _uses.GetValueOrDefault(id) + 1;
            }
            return spec.TreePath;
        }
    }

    void ILayerMounter.Release(string id)
    {
        lock (IdLock(id))
        {
            int users;
            lock (_lock)
            {
                if (--_held[id] == 0) _held.Remove(id);
                Unpin(id);
                users = (_layers.TryGetValue(id, out var l) ? l.Mounts : 0) + _held.GetValueOrDefault(id);
            }
            if (users == 0) Undo(id, Driver.Mount(id), detach: true);
        }
    }

    /// <summary>A visible, settled layer and its in-process holds; call with the layer's id lock held.</summary>
    (Layer Layer, int Held) MountState(string id)
    {
        lock (_lock)
        {
            var layer = Visible(id);
            ThrowIfBusy(id);
            return (layer, _held.GetValueOrDefault(id));
        }
    }

    /// <summary>Records a new user count (mounts/ first, then the index); call with the layer's id lock held.</summary>
    void SetMounts(Layer layer, int mounts)
    {
        SaveMounts(Root, layer.Id, mounts);
        lock (_lock) _layers[layer.Id] = layer with { Mounts = mounts };
    }

    void Unpin(string id)
    {
        if (--_uses[id] == 0) _uses.Remove(id);
    }

    /// <summary>Mounts a layer for its first user: the driver readies it, describes the mount, and hears when it is made.</summary>
    MountSpec Perform(string id)
    {
        var hooks = Driver as IMountHooks;
        using var prepared = hooks?.PrepareMount(id);
        var spec = Driver.Mount(id);
        if (spec.IsPlainDirectory) return spec;
        Mounter.Mount(spec, _legacyMounts);
        try
        {
            hooks?.Mounted(id);
        }
        catch
        {
            Undo(id, spec, detach: true);
            throw;
        }
        return spec;
    }

    /// <summary>Unmounts a layer for its last user, telling the driver first.</summary>
    void Undo(string id, MountSpec spec, bool detach)
    {
        if (spec.IsPlainDirectory) return;
        var hooks = Driver as IMountHooks;
        hooks?.Unmounting(id);
        Mounter.Unmount(spec.TreePath, detach);
        hooks?.Unmounted(id);
    }

    StrataException MountedError(string id, int mounts, string action)
    {
        string path;
        try
        {
            path = Driver.Mount(id).TreePath;
        }
        catch (StrataException)
        {
            path = "";
        }
        string users = path.Length > 0 ? Holders.Describe(path) : "";
        return StrataException.InUse(
            $"layer {id} is mounted{(path.Length > 0 ? $" at {path}" : "")} by {mounts} user(s){(users.Length > 0 ? $", in use by {users}" : "")}; unmount it before you {action}");
    }

    // ---- diffs ----

    /// <summary>Changes of a layer against its own parent.</summary>
    public List<Change> Changes(string id) => Changes(id, Inspect(id).Parent);

    /// <summary>Changes of a layer against any layer (null: the empty tree).</summary>
    public List<Change> Changes(string id, string? against) => WithLayers(id, against, () => _differ.Changes(id, against));

    public DiffResult Diff(string id, Stream output) => Diff(id, Inspect(id).Parent, output);

    public DiffResult Diff(string id, string? against, Stream output) => WithLayers(id, against, () => _differ.Diff(id, against, output));

    public long DiffSize(string id) => DiffSize(id, Inspect(id).Parent);

    public long DiffSize(string id, string? against) => WithLayers(id, against, () => _differ.DiffSize(id, against));

    /// <summary>Runs a read of one or two layers with both pinned: neither can be removed or changed meanwhile.</summary>
    T WithLayers<T>(string id, string? against, Func<T> work)
    {
        LayerId.Validate(id);
        if (against is not null) LayerId.Validate(against, "parent id");
        lock (_lock)
        {
            Visible(id);
            ThrowIfBusy(id);
            if (against is not null)
            {
                Visible(against);
                ThrowIfBusy(against);
            }
            _uses[id] = _uses.GetValueOrDefault(id) + 1;
            if (against is not null) _uses[against] = _uses.GetValueOrDefault(against) + 1;
        }
        try
        {
            return work();
        }
        finally
        {
            lock (_lock)
            {
                Unpin(id);
                if (against is not null) Unpin(against);
            }
        }
    }

    // ---- helpers ----

    object IdLock(string id) => _idLocks.GetOrAdd(id, static _ => new object());

    Layer Visible(string id) =>
        _layers.TryGetValue(id, out var l) && !l.Incomplete ? l : throw StrataException.NotFound($"layer {id} does not exist");

    void ThrowIfBusy(string id)
    {
        if (_busy.TryGetValue(id, out var what)) throw StrataException.InUse($"layer {id} is {what}");
    }

    string RecordPath(string id) => Path.Combine(_records, id + ".json");

    /// <summary>Writes a layer's record durably; its mount count is not part of it (see <see cref="SaveMounts"/>).</summary>
    void WriteRecord(Layer layer) =>
        AtomicFile.Write(RecordPath(layer.Id), JsonSerializer.SerializeToUtf8Bytes(layer with { Mounts = 0 }, StoreJson.Default.Layer));

    /// <summary>Keeps a layer's mount count in mounts/&lt;id&gt; (absent = 0), atomically but without fsync.</summary>
    static void SaveMounts(string root, string id, int count)
    {
        string file = Path.Combine(root, "mounts", id);
        if (count > 0)
        {
            AtomicFile.Write(file, System.Text.Encoding.ASCII.GetBytes(count.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n"), durable: false);
            return;
        }
        int err = Posix.TryUnlinkAt(FileDescriptor.Cwd, file, directory: false);
        if (err != 0 && err != Errno.ENOENT) throw new ErrnoException(err, "unlink", file);
    }

    void DeleteRecord(string id)
    {
        int err = Posix.TryUnlinkAt(FileDescriptor.Cwd, RecordPath(id), directory: false);
        if (err != 0 && err != Errno.ENOENT) throw new ErrnoException(err, "unlink", RecordPath(id));
        Posix.FsyncDirectory(_records);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            Driver.Dispose();
        }
        finally
        {
            _lockFd.Dispose();
        }
    }
}
