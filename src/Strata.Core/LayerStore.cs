using System.Text.Json;
using Strata.Archive;
using Strata.Core.Drivers.Vfs;
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
/// tmp/                 staging; emptied at open
/// &lt;driver&gt;/            the driver's data
/// </code>
/// Invariants: a record exists only for a layer whose data is complete (data is made first, synced,
/// then the record written; removal deletes the record first, then the data). A layer with
/// children, mounts or an operation in flight cannot be removed. Safe for concurrent calls from
/// many threads: a short lock guards the index, and ids with work in flight are marked busy, so
/// copies and diffs run outside it.
/// </summary>
public sealed class LayerStore : IDisposable, ILayerMounter
{
    public const string DefaultDriver = "vfs";
    static readonly string[] Drivers = ["vfs"];

    readonly object _lock = new();
    readonly Dictionary<string, Layer> _layers = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _children = new(StringComparer.Ordinal);
    readonly Dictionary<string, string> _busy = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _uses = new(StringComparer.Ordinal);
    readonly FileDescriptor _lockFd;
    readonly string _records;
    readonly IDiffer _differ;
    bool _disposed;

    public string Root { get; }
    public IDriver Driver { get; }
    /// <summary>What the start-up sweep cleaned, for the curious (`strata info` shows a count).</summary>
    public IReadOnlyList<string> Swept { get; }

    LayerStore(string root, FileDescriptor lockFd, IDriver driver, List<string> swept, List<Layer> layers)
    {
        Root = root;
        _lockFd = lockFd;
        Driver = driver;
        _records = Path.Combine(root, "layers");
        _differ = driver as IDiffer ?? new NaiveDiffer(this);
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
        Directory.CreateDirectory(root);
        var lockFd = AcquireOwnership(root, options.LockWait);
        try
        {
            string driverName = ChooseDriver(root, options.Driver);
            Directory.CreateDirectory(Path.Combine(root, "layers"));
            Directory.CreateDirectory(Path.Combine(root, "tmp"));
            var driver = CreateDriver(driverName, root);
            var swept = new List<string>();
            var layers = Recover(root, driver, swept);
            return new LayerStore(root, lockFd, driver, swept, layers);
        }
        catch
        {
            lockFd.Dispose();
            throw;
        }
    }

    static FileDescriptor AcquireOwnership(string root, TimeSpan wait)
    {
        string path = Path.Combine(root, "strata.lock");
        var fd = Posix.Open(path, Posix.O_RDWR | Posix.O_CREAT, 0x180);
        var deadline = DateTime.UtcNow + wait;
        while (!Posix.TryLockExclusive(fd, path))
        {
            if (DateTime.UtcNow >= deadline)
            {
                string owner = ReadOwner(fd, path);
                fd.Dispose();
                throw StrataException.InUse($"store {root} is in use by another process{(owner.Length > 0 ? $" (pid {owner})" : "")}");
            }
            Thread.Sleep(20);
        }
        Posix.Ftruncate(fd, 0, path);
        Posix.PwriteAll(fd, System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId + "\n"), 0, path);
        return fd;
    }

    /// <summary>The pid the owner wrote (read raw: .NET's FileStream would take a conflicting flock of its own).</summary>
    static string ReadOwner(FileDescriptor fd, string path)
    {
        Span<byte> buf = stackalloc byte[32];
        int n = Posix.Pread(fd, buf, 0, path);
        return System.Text.Encoding.ASCII.GetString(buf[..n]).Trim();
    }

    static string ChooseDriver(string root, string? requested)
    {
        string file = Path.Combine(root, "driver");
        string? recorded = File.Exists(file) ? File.ReadAllText(file).Trim() : null;
        if (requested is not null && !Drivers.Contains(requested))
            throw StrataException.Invalid($"unknown driver '{requested}' (available: {string.Join(", ", Drivers)})");
        if (recorded is not null)
        {
            if (requested is not null && requested != recorded)
                throw StrataException.Invalid($"store {root} was created with driver '{recorded}', not '{requested}'; use another --root for '{requested}'");
            return recorded;
        }
        string chosen = requested ?? DefaultDriver;
        AtomicFile.Write(file, System.Text.Encoding.ASCII.GetBytes(chosen + "\n"));
        return chosen;
    }

    static IDriver CreateDriver(string name, string root) => name switch
    {
        "vfs" => new VfsDriver(root),
        _ => throw StrataException.Invalid($"store {root} names unknown driver '{name}'"),
    };

    /// <summary>The start-up sweep: empty tmp/, drop half-written records, remove layers left incomplete
    /// by a crash mid-apply, and delete driver data that no record owns.</summary>
    static List<Layer> Recover(string root, IDriver driver, List<string> swept)
    {
        string tmp = Path.Combine(root, "tmp");
        foreach (var e in Posix.ReadDir(tmp))
        {
            VfsDriver.RemoveTree(Path.Combine(tmp, e.Name));
            swept.Add("tmp/" + e.Name);
        }
        string records = Path.Combine(root, "layers");
        var layers = new List<Layer>();
        foreach (var e in Posix.ReadDir(records))
        {
            string file = Path.Combine(records, e.Name);
            if (!e.Name.EndsWith(".json", StringComparison.Ordinal))
            {
                File.Delete(file);
                swept.Add("layers/" + e.Name);
                continue;
            }
            Layer layer;
            try
            {
                layer = JsonSerializer.Deserialize(File.ReadAllBytes(file), StoreJson.Default.Layer)
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
        foreach (var l in layers.Where(l => l.Incomplete).ToList())
        {
            File.Delete(Path.Combine(records, l.Id + ".json"));
            driver.Remove(l.Id);
            layers.Remove(l);
            swept.Add("incomplete layer " + l.Id);
        }
        var known = layers.Select(l => l.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var id in driver.List())
        {
            if (known.Contains(id)) continue;
            driver.Remove(id);
            swept.Add("orphaned data of " + id);
        }
        if (swept.Count > 0) Posix.FsyncDirectory(records);
        return layers;
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
        return pairs;
    }

    public IReadOnlyDictionary<string, string> Metadata(string id)
    {
        Inspect(id);
        return Driver.Metadata(id);
    }

    // ---- lifecycle ----

    /// <summary>Creates a layer, empty or as a copy of <paramref name="parent"/>, and when <paramref name="diff"/>
    /// is given applies that OCI tar to it, all or nothing: the layer becomes visible only when complete.</summary>
    public Layer Create(string id, string? parent, LayerKind kind = LayerKind.ReadOnly,
        IReadOnlyDictionary<string, string>? labels = null, IReadOnlyDictionary<string, string>? storageOptions = null,
        Stream? diff = null)
    {
        LayerId.Validate(id);
        if (parent is not null) LayerId.Validate(parent, "parent id");
        lock (_lock)
        {
            if (_layers.ContainsKey(id)) throw StrataException.Exists($"layer {id} already exists");
            ThrowIfBusy(id);
            if (parent is not null)
            {
                Visible(parent);
                _children[parent] = _children.GetValueOrDefault(parent) + 1;
            }
            _busy[id] = "being created";
        }
        bool published = false;
        try
        {
            Driver.Create(id, parent, new CreateOptions(kind, storageOptions ?? new Dictionary<string, string>()));
            long size = diff is null ? 0 : _differ.ApplyDiff(id, diff);
            // data the record will point at must be on disk first; an empty layer has none
            if (parent is not null || diff is not null) Posix.SyncFileSystem(Root);
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
                TryQuietly(() => Driver.Remove(id));
                lock (_lock)
                {
                    _busy.Remove(id);
                    if (parent is not null) _children[parent]--;
                }
            }
        }
    }

    /// <summary>Applies an OCI tar onto an existing layer without children (Docker's ApplyDiff). While it runs
    /// the record is marked incomplete; if the apply fails, or the process dies, the layer is removed.</summary>
    public long ApplyDiff(string id, Stream diff)
    {
        LayerId.Validate(id);
        Layer layer;
        lock (_lock)
        {
            layer = Visible(id);
            ThrowIfBusy(id);
            if (_children.GetValueOrDefault(id) > 0) throw StrataException.InUse($"layer {id} has child layers; a diff can only be applied to a layer without children");
            _busy[id] = "applying a diff";
        }
        var marked = layer with { Incomplete = true };
        try
        {
            WriteRecord(marked);
            lock (_lock) _layers[id] = marked;
            long size = _differ.ApplyDiff(id, diff);
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
            TryQuietly(() => Remove(id, allowIncomplete: true));
            if (ex is StrataException se) throw new StrataException(se.Kind, $"{se.Message} (layer {id} was removed: a half-applied layer is never kept)", ex);
            throw;
        }
    }

    public void Remove(string id) => Remove(id, allowIncomplete: false);

    void Remove(string id, bool allowIncomplete)
    {
        LayerId.Validate(id);
        Layer layer;
        lock (_lock)
        {
            if (!_layers.TryGetValue(id, out layer!) || (layer.Incomplete && !allowIncomplete))
                throw StrataException.NotFound($"layer {id} does not exist");
            ThrowIfBusy(id);
            int children = _children.GetValueOrDefault(id);
            if (children > 0) throw StrataException.InUse($"layer {id} has {children} child layer(s); remove them first");
            if (layer.Mounts > 0) throw StrataException.InUse($"layer {id} is mounted ({layer.Mounts}); unmount it first");
            if (_uses.GetValueOrDefault(id) > 0) throw StrataException.InUse($"layer {id} is in use by a diff in progress");
            _layers.Remove(id);
            _busy[id] = "being removed";
            if (layer.Parent is not null) _children[layer.Parent]--;
        }
        try
        {
            File.Delete(RecordPath(id));
            Posix.FsyncDirectory(_records);
            Driver.Remove(id);
        }
        finally
        {
            lock (_lock) _busy.Remove(id);
        }
    }

    // ---- mounts ----

    /// <summary>Mounts a layer for a user (Docker's Get) and returns the path of its tree. The count is persisted
    /// until <see cref="Unmount"/>, so it holds across CLI invocations.</summary>
    public string Mount(string id)
    {
        LayerId.Validate(id);
        lock (_lock)
        {
            var layer = Visible(id);
            ThrowIfBusy(id);
            string path = PathOf(id);
            var updated = layer with { Mounts = layer.Mounts + 1 };
            WriteRecord(updated);
            _layers[id] = updated;
            return path;
        }
    }

    public void Unmount(string id)
    {
        LayerId.Validate(id);
        lock (_lock)
        {
            var layer = Visible(id);
            if (layer.Mounts == 0) throw StrataException.Invalid($"layer {id} is not mounted");
            var updated = layer with { Mounts = layer.Mounts - 1 };
            WriteRecord(updated);
            _layers[id] = updated;
        }
    }

    string ILayerMounter.Acquire(string id)
    {
        lock (_lock)
        {
            _uses[id] = _uses.GetValueOrDefault(id) + 1;
            try
            {
                return PathOf(id);
            }
            catch
            {
                _uses[id]--;
                throw;
            }
        }
    }

    void ILayerMounter.Release(string id)
    {
        lock (_lock)
        {
            if (--_uses[id] == 0) _uses.Remove(id);
        }
    }

    string PathOf(string id)
    {
        var spec = Driver.Mount(id);
        if (spec.IsPlainDirectory) return spec.Source;
        throw StrataException.Unsupported($"driver {Driver.Name} asked for a '{spec.Type}' mount, which this store cannot perform");
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

    T WithLayers<T>(string id, string? against, Func<T> work)
    {
        LayerId.Validate(id);
        if (against is not null) LayerId.Validate(against, "parent id");
        lock (_lock)
        {
            Visible(id);
            if (against is not null) Visible(against);
        }
        return work();
    }

    /// <summary>Releases driver resources (Docker's Cleanup at daemon shutdown).</summary>
    public void Cleanup() => Driver.Cleanup();

    // ---- helpers ----

    Layer Visible(string id) =>
        _layers.TryGetValue(id, out var l) && !l.Incomplete ? l : throw StrataException.NotFound($"layer {id} does not exist");

    void ThrowIfBusy(string id)
    {
        if (_busy.TryGetValue(id, out var what)) throw StrataException.InUse($"layer {id} is {what}");
    }

    string RecordPath(string id) => Path.Combine(_records, id + ".json");

    void WriteRecord(Layer layer) =>
        AtomicFile.Write(RecordPath(layer.Id), JsonSerializer.SerializeToUtf8Bytes(layer, StoreJson.Default.Layer));

    static void TryQuietly(Action a)
    {
        try
        {
            a();
        }
        catch (StrataException)
        {
            // the sweep at next open finishes what could not be undone now
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Driver.Dispose();
        _lockFd.Dispose();
    }
}
