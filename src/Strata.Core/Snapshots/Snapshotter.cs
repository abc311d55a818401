// containerd's snapshotter contract (snapshots/snapshotter.go) over an open LayerStore: the storage side that the
// gRPC frontend only translates.
using Strata.Core.Containers;
using Strata.Core.Images;
using Strata.Native;

namespace Strata.Core.Snapshots;

/// <summary>
/// Snapshots as containerd sees them, each backed by a layer of the <see cref="LayerStore"/>. Vocabulary (containerd's):
/// <list type="bullet">
/// <item><b>key</b>: the name a client gives a snapshot, any string up to <see cref="SnapshotLimits.MaxKeyBytes"/>
/// (containerd's metadata store sends "NAMESPACE/SEQ/KEY"). Keys are never file names: each snapshot has a record
/// (<see cref="SnapshotRecord"/>, <c>ROOT/snapshots/&lt;id&gt;.json</c>) mapping its key to a layer id of Strata's own.</item>
/// <item><b>name</b>: the key a committed snapshot is known by (given to <see cref="Commit"/>).</item>
/// <item><b>parent</b>: the key of a committed snapshot whose tree a new one starts from; none for an empty tree.</item>
/// <item>kinds: <b>Active</b> (from <see cref="Prepare"/>: writable, to be committed or removed), <b>View</b> (from
/// <see cref="View"/>: read-only, never committed), <b>Committed</b> (immutable; the only kind that may be a parent).</item>
/// <item><b>labels</b>: a client's key/value pairs, up to <see cref="SnapshotLimits.MaxLabelBytes"/> a pair, stored as given.</item>
/// </list>
/// Mounts are described, not performed: containerd mounts them itself (<see cref="SnapshotMounts"/>). On drivers whose
/// layers are block devices (thin, <see cref="IBlockLayers"/>) the mount names the device, which stays attached from
/// the first Mounts (or Prepare, View) until the snapshot is committed or removed or the snapshotter is disposed; a
/// device containerd has mounted stays attached by its mount after that (and so across a restart of the daemon).
/// Errors are <see cref="StrataException"/>s: NotFound, AlreadyExists, InvalidArgument, and InUse for what containerd
/// calls FailedPrecondition (a snapshot with children, a Commit of what is not active, Mounts of a committed one).
/// Invariants: a snapshot is visible exactly when its record exists; its layer is made before the record is written
/// and removed after the record is deleted, so a crash leaves at most an unreferenced layer (named <c>snap-*</c>),
/// which opening and <see cref="Cleanup"/> remove. A committed snapshot with children cannot be removed. The remote-
/// snapshot protocol: a Prepare labelled <c>containerd.io/snapshot.ref=CHAINID</c> whose chain the store holds already
/// commits a snapshot named CHAINID over that layer without copying (<see cref="SnapshotRecord.Borrowed"/>) and answers
/// AlreadyExists, so containerd skips the layer's download and unpack. The chain is found as an image layer
/// (<c>strata image import</c> names them by chain id; lent by the <see cref="ImageStore"/>, which keeps it while lent)
/// or as a layer an earlier pull unpacked (a committed snapshot named <c>NS/N/CHAINID</c>: another containerd
/// namespace). Several records may so share a layer; it goes with the last of them (an image layer goes back to the
/// image store). Safe for calls from many threads: one lock guards the index, and keys with work in flight are
/// reserved so other calls on them are refused.
/// </summary>
public sealed class Snapshotter : IDisposable
{
    /// <summary>The label containerd's unpacker puts on a layer's Prepare: the chain id the layer will be committed as.</summary>
    public const string SnapshotRefLabel = "containerd.io/snapshot.ref";

    const string LayerPrefix = "snap-";

    readonly object _lock = new();
    readonly LayerStore _store;
    readonly ImageStore _images;
    readonly SnapshotRecords _records;
    readonly Dictionary<string, int> _layerUsers = new(StringComparer.Ordinal);
    readonly Dictionary<string, AttachedLayer> _attached = new(StringComparer.Ordinal); // its own lock: attaches are slow
    readonly Dictionary<string, SnapshotRecord> _byKey = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _children = new(StringComparer.Ordinal);
    readonly HashSet<string> _busy = new(StringComparer.Ordinal);
    readonly HashSet<string> _making = new(StringComparer.Ordinal);
    readonly HashSet<string> _lending = new(StringComparer.Ordinal); // targets whose loan is being written

    /// <summary>What opening cleaned: leftover temp records, unreferenced layers, records whose borrowed layer is gone.</summary>
    public IReadOnlyList<string> Swept { get; }

    Snapshotter(LayerStore store, SnapshotRecords records, List<string> swept)
    {
        _store = store;
        _images = ContainerStore.For(store).Images;
        _records = records;
        Swept = swept;
    }

    /// <summary>The snapshots of <paramref name="store"/>: reads their records and removes what a crash left.</summary>
    public static Snapshotter Open(LayerStore store)
    {
        var records = new SnapshotRecords(Path.Combine(store.Root, SnapshotRecords.DirectoryName));
        LayerStore.MakeDir(records.Directory, Modes.OwnerOnly);
        var swept = new List<string>();
        var s = new Snapshotter(store, records, swept);
        foreach (var r in records.ReadAll(swept))
        {
            if (!store.Exists(r.Layer))
            {
                if (!r.Borrowed) throw StrataException.Corrupt($"snapshot '{SnapshotLimits.Shorten(r.Key)}' names layer {r.Layer}, which the store does not have");
                records.Delete(r.Id); // the image layer it borrowed was removed with its image
                swept.Add($"snapshot '{SnapshotLimits.Shorten(r.Key)}' (its image layer {r.Layer} is gone)");
                continue;
            }
            if (!s._byKey.TryAdd(r.Key, r))
                throw StrataException.Corrupt($"snapshot records {r.Id} and {s._byKey[r.Key].Id} have one key '{SnapshotLimits.Shorten(r.Key)}'");
        }
        foreach (var r in s._byKey.Values)
        {
            if (r.Parent is not null) s._children[r.Parent] = s._children.GetValueOrDefault(r.Parent) + 1;
            s._layerUsers[r.Layer] = s._layerUsers.GetValueOrDefault(r.Layer) + 1;
        }
        swept.AddRange(s.Cleanup().Select(id => $"unreferenced snapshot layer {id}"));
        return s;
    }

    /// <summary>How many snapshots of each kind the store at <paramref name="root"/> holds, read from their records
    /// without opening them (for `strata info`); null when a record does not parse.</summary>
    public static IReadOnlyDictionary<SnapshotKind, int>? Count(string root) =>
        SnapshotRecords.Peek(root)?.GroupBy(r => r.Kind).ToDictionary(g => g.Key, g => g.Count());

    /// <summary>A new active snapshot <paramref name="key"/> over committed <paramref name="parent"/> (or empty), and the
    /// mounts that show it writable. With <see cref="SnapshotRefLabel"/> naming a chain the store holds: AlreadyExists,
    /// after committing a snapshot of that name over the store's layer.</summary>
    public IReadOnlyList<MountSpec> Prepare(string key, string? parent, IReadOnlyDictionary<string, string>? labels = null) =>
        Create(key, parent, labels, SnapshotKind.Active, borrow: true);

    /// <summary>A new read-only view <paramref name="key"/> of committed <paramref name="parent"/> (or of the empty tree).</summary>
    public IReadOnlyList<MountSpec> View(string key, string? parent, IReadOnlyDictionary<string, string>? labels = null) =>
        Create(key, parent, labels, SnapshotKind.View, borrow: false);

    IReadOnlyList<MountSpec> Create(string key, string? parent, IReadOnlyDictionary<string, string>? labels, SnapshotKind kind, bool borrow)
    {
        SnapshotLimits.ValidateKey(key);
        if (parent is { Length: 0 }) parent = null;
        if (parent is not null) SnapshotLimits.ValidateKey(parent, "parent");
        SnapshotLimits.ValidateLabels(labels);
        SnapshotRecord? below = null, loan = null;
        string id = LayerPrefix + Guid.NewGuid().ToString("N");
        string? target = borrow ? labels?.GetValueOrDefault(SnapshotRefLabel) is { Length: > 0 } t ? t : null : null;
        lock (_lock)
        {
            // another Prepare lending this target: its answer is this one's too, once written (waited for before
            // anything is checked, so nothing checked changes meanwhile)
            while (target is not null && _lending.Contains(target)) Monitor.Wait(_lock);
            ThrowIfTaken(key);
            if (parent is not null)
            {
                below = Get(parent, "parent snapshot");
                if (below.Kind != SnapshotKind.Committed)
                    throw StrataException.Invalid($"parent snapshot '{SnapshotLimits.Shorten(parent)}' is not committed");
            }
            if (target is not null) loan = FindLoan(target, below, labels!);
            if (loan is null)
            {
                _busy.Add(key);
                _making.Add(id);
            }
            if (parent is not null) _children[parent] = _children.GetValueOrDefault(parent) + 1; // pins the parent
        }
        if (loan is not null) return Borrow(loan, key, parent, labels, kind);
        bool published = false, layerMade = false;
        AttachedLayer? attached = null;
        try
        {
            _store.Create(id, below?.Layer, kind == SnapshotKind.Active ? LayerKind.ReadWrite : LayerKind.ReadOnly);
            layerMade = true;
            var now = DateTimeOffset.UtcNow;
            var record = new SnapshotRecord
            {
                Id = id, Key = key, Layer = id, Kind = kind, Parent = parent, Created = now, Updated = now,
                Labels = labels is null ? [] : new Dictionary<string, string>(labels),
            };
            IReadOnlyList<MountSpec> mounts;
            if (_store.Driver is IBlockLayers)
            {
                attached = _store.AttachForClient(id);
                mounts = SnapshotMounts.ForDevice(attached.Mount, kind);
            }
            else mounts = MountsOf(record);
            _records.Write(record);
            lock (_attached)
                if (attached is not null) _attached[id] = attached;
            lock (_lock)
            {
                _byKey[key] = record;
                _layerUsers[id] = 1;
                _busy.Remove(key);
                _making.Remove(id);
            }
            published = true;
            return mounts;
        }
        finally
        {
            if (!published)
            {
                attached?.Dispose();
                if (layerMade) TryRemoveLayer(id);
                lock (_lock)
                {
                    _busy.Remove(key);
                    _making.Remove(id);
                    if (parent is not null) _children[parent]--;
                }
            }
        }
    }

    /// <summary>The remote-snapshot protocol: when the store holds <paramref name="target"/>'s chain over the layer of
    /// <paramref name="below"/>, the record of a committed snapshot named <paramref name="target"/> over that layer, to
    /// be written by <see cref="Borrow"/>; reserved (the target busy, the layer used) so nothing takes either meanwhile.
    /// The layer is an image layer (its id is the chain's, computed by Strata when it applied it), or one that
    /// containerd's unpacker committed in another namespace: a committed snapshot named <c>NS/N/CHAIN</c> labelled with
    /// that chain, which the unpacker does only after checking the layer's diff id. (Any client of containerd's socket
    /// could label one so: the socket is root's.) When <paramref name="target"/> exists already as containerd looks it
    /// up (committed, this parent, this label), throws AlreadyExists. Called under the lock.</summary>
    SnapshotRecord? FindLoan(string target, SnapshotRecord? below, IReadOnlyDictionary<string, string> labels)
    {
        SnapshotLimits.ValidateKey(target, $"label {SnapshotRefLabel}");
        if (_busy.Contains(target)) return null; // being made or removed: unpack as usual
        if (_byKey.TryGetValue(target, out var existing))
        {
            // containerd looks for the answer with this label and parent: only such a snapshot may answer for it
            if (existing.Kind == SnapshotKind.Committed && existing.Parent == below?.Key && existing.Labels.GetValueOrDefault(SnapshotRefLabel) == target)
                throw StrataException.Exists($"snapshot '{SnapshotLimits.Shorten(target)}' already exists");
            return null;
        }
        // containerd names committed layers by chain id; its metadata store prefixes "NS/SEQ/" to the names it sends
        string chain = target[(target.LastIndexOf('/') + 1)..];
        if (!chain.StartsWith("sha256:", StringComparison.Ordinal)) return null;
        string hex = chain["sha256:".Length..];
        if (hex.Length != 64 || !hex.All(char.IsAsciiHexDigitLower)) return null;
        string? under = below?.Layer;
        bool OnParent(string layer) => _store.Exists(layer) && _store.Inspect(layer).Parent == under;
        bool image = OnParent(hex) && _store.Inspect(hex).Kind == LayerKind.ReadOnly;
        string? layer = image ? hex : _byKey.Values.FirstOrDefault(r => r.Kind == SnapshotKind.Committed
            && (r.Key == chain || r.Key.EndsWith("/" + chain, StringComparison.Ordinal))
            && r.Labels.GetValueOrDefault(SnapshotRefLabel) == chain && OnParent(r.Layer))?.Layer;
        if (layer is null) return null;
        _busy.Add(target);
        _lending.Add(target);
        _layerUsers[layer] = _layerUsers.GetValueOrDefault(layer) + 1;
        var now = DateTimeOffset.UtcNow;
        return new SnapshotRecord
        {
            Id = "ref-" + Guid.NewGuid().ToString("N"), Key = target, Layer = layer, Kind = SnapshotKind.Committed,
            Parent = below?.Key, Created = now, Updated = now, Borrowed = true,
            Labels = new Dictionary<string, string>(labels),
        };
    }

    /// <summary>Writes and publishes the reserved <paramref name="loan"/> (an image layer, lent by the image store, or
    /// another record's layer) and throws AlreadyExists; containerd then finds it by its label and parent (a Walk) and skips the layer's download
    /// and unpack. When the image store no longer lends the layer (its image went meanwhile), the Prepare is made as
    /// usual instead.</summary>
    IReadOnlyList<MountSpec> Borrow(SnapshotRecord loan, string key, string? parent, IReadOnlyDictionary<string, string>? labels, SnapshotKind kind)
    {
        bool written = false;
        try
        {
            if (loan.Layer.StartsWith(LayerPrefix, StringComparison.Ordinal))
            {
                _records.Write(loan);
                written = true;
            }
            else written = _images.Lend(loan.Layer, () => _records.Write(loan));
        }
        finally
        {
            bool last = false;
            lock (_lock)
            {
                _busy.Remove(loan.Key);
                _lending.Remove(loan.Key);
                Monitor.PulseAll(_lock);
                if (written) _byKey[loan.Key] = loan; // the parent stays pinned: it is the loan's
                else
                {
                    if (parent is not null) _children[parent]--;
                    last = Unuse(loan.Layer);
                }
            }
            if (last) LetGo(loan.Layer);
        }
        if (!written) return Create(key, parent, labels, kind, borrow: false);
        throw StrataException.Exists($"snapshot '{SnapshotLimits.Shorten(loan.Key)}' already exists: the store holds its layer {loan.Layer}");
    }

    /// <summary>The mounts of an active snapshot or a view (what Prepare or View returned).</summary>
    public IReadOnlyList<MountSpec> Mounts(string key)
    {
        SnapshotLimits.ValidateKey(key);
        SnapshotRecord record;
        lock (_lock)
        {
            record = Get(key, checkBusy: false);
            if (record.Kind == SnapshotKind.Committed)
                throw StrataException.InUse($"snapshot '{SnapshotLimits.Shorten(key)}' is committed; only active snapshots and views have mounts");
        }
        return MountsOf(record);
    }

    /// <summary>Makes active snapshot <paramref name="key"/> committed snapshot <paramref name="name"/> with
    /// <paramref name="labels"/>; its data stays where it is, and <paramref name="key"/> is gone.</summary>
    public void Commit(string name, string key, IReadOnlyDictionary<string, string>? labels = null)
    {
        SnapshotLimits.ValidateKey(name, "name");
        SnapshotLimits.ValidateKey(key);
        SnapshotLimits.ValidateLabels(labels);
        SnapshotRecord record;
        lock (_lock)
        {
            ThrowIfTaken(name); // first, as containerd's CommitActive: a taken name is AlreadyExists whatever the key is
            record = Get(key);
            if (record.Kind != SnapshotKind.Active)
                throw StrataException.InUse($"snapshot '{SnapshotLimits.Shorten(key)}' is a {record.Kind.ToString().ToLowerInvariant()} snapshot; only an active one can be committed");
            _busy.Add(key);
            _busy.Add(name);
        }
        try
        {
            // the data a committed record stands for is on disk first (on a block layer containerd may still have mounted:
            // through its mount, on the device)
            if (_store.Driver is IBlockLayers block) block.Flush(record.Layer);
            Posix.SyncFileSystem(_store.Root);
            var now = DateTimeOffset.UtcNow;
            var committed = record with
            {
                Key = name, Kind = SnapshotKind.Committed, Created = now, Updated = now,
                Labels = labels is null ? [] : new Dictionary<string, string>(labels),
            };
            _records.Write(committed); // the same file: key and kind change in one rename
            lock (_lock)
            {
                _byKey.Remove(key);
                _byKey[name] = committed;
            }
            Detach(record.Layer); // nothing mounts a committed snapshot; a mount still made of it holds the device
        }
        finally
        {
            lock (_lock)
            {
                _busy.Remove(key);
                _busy.Remove(name);
            }
        }
    }

    /// <summary>Removes a snapshot of any kind; one with children is refused (InUse). Its layer goes with the last snapshot
    /// that uses it (if that fails, the layer is left unreferenced for <see cref="Cleanup"/>); an image layer goes back
    /// to the image store, which removes it if its image is gone.</summary>
    public void Remove(string key)
    {
        SnapshotLimits.ValidateKey(key);
        SnapshotRecord record;
        lock (_lock)
        {
            record = Get(key);
            int children = _children.GetValueOrDefault(key);
            if (children > 0) throw StrataException.InUse($"snapshot '{SnapshotLimits.Shorten(key)}' has {children} child snapshot(s); remove them first");
            _busy.Add(key);
        }
        bool last = false;
        try
        {
            _records.Delete(record.Id);
            lock (_lock)
            {
                _byKey.Remove(key);
                if (record.Parent is not null && --_children[record.Parent] == 0) _children.Remove(record.Parent);
                last = Unuse(record.Layer);
            }
        }
        finally
        {
            lock (_lock) _busy.Remove(key);
        }
        if (last) LetGo(record.Layer);
    }

    /// <summary>One record fewer uses <paramref name="layer"/>; whether it was the last. Called under the lock.</summary>
    bool Unuse(string layer)
    {
        if (--_layerUsers[layer] > 0) return false;
        _layerUsers.Remove(layer);
        return true;
    }

    /// <summary>After the last record using <paramref name="layer"/> went: its device is let go, and the layer removed (a
    /// snapshot's own) or given back to the image store (an image layer). The snapshot is gone either way: what fails
    /// here is left for <see cref="Cleanup"/> or the image store's next collection.</summary>
    void LetGo(string layer)
    {
        try
        {
            Detach(layer);
            if (layer.StartsWith(LayerPrefix, StringComparison.Ordinal)) TryRemoveLayer(layer);
            else _images.Returned(layer);
        }
        catch (StrataException)
        {
        }
    }

    public SnapshotInfo Stat(string key)
    {
        SnapshotLimits.ValidateKey(key);
        lock (_lock) return Get(key, checkBusy: false).Info();
    }

    /// <summary>Changes a snapshot's labels (the only mutable part), as containerd's Update: with no
    /// <paramref name="fieldPaths"/>, or with <c>labels</c>, the labels become <paramref name="info"/>'s; with
    /// <c>labels.KEY</c>, that label is set to <paramref name="info"/>'s value or removed if it has none. Any other
    /// path is InvalidArgument. Returns the updated info.</summary>
    public SnapshotInfo Update(SnapshotInfo info, IReadOnlyList<string>? fieldPaths = null)
    {
        SnapshotLimits.ValidateKey(info.Name);
        var given = info.Labels ?? new Dictionary<string, string>();
        lock (_lock)
        {
            var record = Get(info.Name);
            var labels = new Dictionary<string, string>(record.Labels);
            if (fieldPaths is null || fieldPaths.Count == 0) labels = new Dictionary<string, string>(given);
            else
                foreach (var path in fieldPaths)
                {
                    if (path == "labels") labels = new Dictionary<string, string>(given);
                    else if (path.StartsWith("labels.", StringComparison.Ordinal) && path.Length > "labels.".Length)
                    {
                        string label = path["labels.".Length..];
                        if (given.TryGetValue(label, out var value)) labels[label] = value;
                        else labels.Remove(label);
                    }
                    else throw StrataException.Invalid($"cannot update field '{SnapshotLimits.Shorten(path)}' of a snapshot: only labels and labels.KEY");
                }
            SnapshotLimits.ValidateLabels(labels);
            var updated = record with { Labels = labels, Updated = DateTimeOffset.UtcNow };
            _records.Write(updated); // under the lock: writes to one record stay ordered
            _byKey[info.Name] = updated;
            return updated.Info();
        }
    }

    /// <summary>Every snapshot's info (those <paramref name="filter"/> accepts), ordered by key.</summary>
    public IReadOnlyList<SnapshotInfo> Walk(Func<SnapshotInfo, bool>? filter = null)
    {
        List<SnapshotInfo> all;
        lock (_lock) all = _byKey.Values.Select(r => r.Info()).ToList();
        all.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return filter is null ? all : all.Where(filter).ToList();
    }

    /// <summary>Bytes and inodes of the snapshot's own layer (for overlay its upper dir; for full copies the whole tree).</summary>
    public SnapshotUsage Usage(string key)
    {
        SnapshotLimits.ValidateKey(key);
        SnapshotRecord record;
        lock (_lock) record = Get(key, checkBusy: false);
        if (_store.Driver is IBlockLayers block) return new SnapshotUsage(block.MappedBytes(record.Layer), 0); // as containerd's devmapper
        return SnapshotMounts.DiskUsage(SnapshotMounts.OwnDirectory(_store.Driver.Mount(record.Layer)));
    }

    /// <summary>Removes snapshot layers no record refers to (left by a crash or by a removal that failed), children
    /// before parents; returns their ids. Layers of other users of the store are never touched.</summary>
    public IReadOnlyList<string> Cleanup()
    {
        var removed = new List<string>();
        for (bool progress = true; progress;)
        {
            progress = false;
            HashSet<string> referenced, making;
            lock (_lock)
            {
                referenced = [.. _layerUsers.Keys];
                making = [.. _making];
            }
            var layers = _store.List();
            var parents = layers.Where(l => l.Parent is not null).Select(l => l.Parent!).ToHashSet(StringComparer.Ordinal);
            foreach (var l in layers)
            {
                if (!l.Id.StartsWith(LayerPrefix, StringComparison.Ordinal) || referenced.Contains(l.Id) || making.Contains(l.Id) || parents.Contains(l.Id)) continue;
                lock (_lock)
                    if (_making.Contains(l.Id) || _layerUsers.ContainsKey(l.Id)) continue;
                if (TryRemoveLayer(l.Id))
                {
                    removed.Add(l.Id);
                    progress = true;
                }
            }
        }
        return removed;
    }

    /// <summary>The mounts of a published active snapshot or view: on block layers, its device attached (once: later
    /// calls name the same device while it stays attached), unless the snapshot was committed or removed meanwhile.</summary>
    IReadOnlyList<MountSpec> MountsOf(SnapshotRecord record)
    {
        if (_store.Driver is not IBlockLayers) return SnapshotMounts.For(_store.Driver.Mount(record.Layer), record.Kind);
        lock (_attached)
        {
            if (!_attached.TryGetValue(record.Layer, out var attached))
            {
                lock (_lock) // still this active snapshot or view: not committed or removed since it was read
                    if (!_byKey.TryGetValue(record.Key, out var now) || now.Id != record.Id || now.Kind == SnapshotKind.Committed)
                        throw StrataException.NotFound($"snapshot '{SnapshotLimits.Shorten(record.Key)}' does not exist");
                _attached[record.Layer] = attached = _store.AttachForClient(record.Layer); // Remove detaches after us
            }
            return SnapshotMounts.ForDevice(attached.Mount, record.Kind);
        }
    }

    /// <summary>Lets go of a layer's device if this snapshotter holds it attached.</summary>
    void Detach(string layer)
    {
        lock (_attached)
            if (_attached.Remove(layer, out var attached)) attached.Dispose();
    }

    /// <summary>Lets go of every device held attached (mounts made of them keep theirs).</summary>
    public void Dispose()
    {
        lock (_attached)
        {
            foreach (var a in _attached.Values) a.Dispose();
            _attached.Clear();
        }
    }

    bool TryRemoveLayer(string id)
    {
        try
        {
            _store.Remove(id);
            return true;
        }
        catch (StrataException)
        {
            return false; // left unreferenced: the next Cleanup or open retries
        }
    }

    /// <summary>A visible snapshot (under the lock). One with a change in flight (a Commit, a Remove) is refused to
    /// callers that would change it or build on it; reads see it as it is until the change lands.</summary>
    SnapshotRecord Get(string key, string what = "snapshot", bool checkBusy = true)
    {
        if (checkBusy && _busy.Contains(key)) throw StrataException.InUse($"{what} '{SnapshotLimits.Shorten(key)}' is being changed");
        return _byKey.TryGetValue(key, out var r) ? r : throw StrataException.NotFound($"{what} '{SnapshotLimits.Shorten(key)}' does not exist");
    }

    void ThrowIfTaken(string key)
    {
        if (_byKey.ContainsKey(key) || _busy.Contains(key)) throw StrataException.Exists($"snapshot '{SnapshotLimits.Shorten(key)}' already exists");
    }
}
