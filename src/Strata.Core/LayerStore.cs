// The layer store's in-memory index of layers (parents, children, work in flight, pins) and the reads served from
// it: queries, status and diffs. The type's other parts are in LayerStore.*.cs.
using System.Collections.Concurrent;
using Strata.Archive;
using Strata.Native;

namespace Strata.Core;

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
/// The store's parts, one file each: opening it (<c>LayerStore.Open.cs</c>: <see cref="StoreOptions"/>, the lock of
/// <see cref="StoreLock"/>, the recorded <see cref="DriverChoice"/>), the start-up sweep (<see cref="StoreRecovery"/>),
/// the records (<see cref="LayerRecords"/>) and counts (<see cref="MountCounts"/>) it persists, the lifecycle of layers
/// (<c>LayerStore.Lifecycle.cs</c>) and their mounts (<c>LayerStore.Mounts.cs</c>); this file holds the in-memory
/// index and reads.
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
public sealed partial class LayerStore : IDisposable, ILayerMounter
{
    readonly object _lock = new();
    readonly ConcurrentDictionary<string, object> _idLocks = new(StringComparer.Ordinal);
    readonly Dictionary<string, Layer> _layers = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _children = new(StringComparer.Ordinal);
    readonly Dictionary<string, string> _busy = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _uses = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _held = new(StringComparer.Ordinal);
    readonly bool _legacyMounts;
    readonly FileDescriptor _lockFd;
    readonly LayerRecords _records;
    readonly MountCounts _counts;
    readonly IDiffer _differ;
    bool _disposed;

    public string Root { get; }
    public IDriver Driver { get; }
    /// <summary>The driver options the store was created with.</summary>
    public IReadOnlyDictionary<string, string> DriverOptions { get; }
    /// <summary>What the start-up sweep cleaned at open, and what it could not remove (and why).</summary>
    public IReadOnlyList<string> Swept { get; }

    LayerStore(string root, FileDescriptor lockFd, IDriver driver, IReadOnlyDictionary<string, string> driverOptions,
        LayerRecords records, MountCounts counts, List<string> swept, List<Layer> layers, bool legacyMounts)
    {
        DriverOptions = driverOptions;
        _legacyMounts = legacyMounts;
        Root = root;
        _lockFd = lockFd;
        Driver = driver;
        _records = records;
        _counts = counts;
        _differ = driver.Differ(new NaiveDiffer(this));
        Swept = swept;
        foreach (var l in layers)
        {
            _layers[l.Id] = l;
            if (l.Parent is not null) _children[l.Parent] = _children.GetValueOrDefault(l.Parent) + 1;
        }
        // what the sweep could not finish (or a reader sees in progress) stays out of reach
        foreach (var l in layers.Where(l => l.Pending is not null))
            foreach (var id in Involved(l, layers)) _busy[id] = Interrupted;
    }

    public bool Exists(string id)
    {
        lock (_lock) return _layers.TryGetValue(id, out var l) && !l.Incomplete;
    }

    /// <summary>The id of the layer that <paramref name="idOrPrefix"/> names: a layer id, or a unique prefix of at least 4 hex
    /// digits of a 64-hex-digit id (as image and container ids are abbreviated; listings show 12). Names people chose
    /// match only in full: `base` never names `base-v2`.</summary>
    public string Resolve(string idOrPrefix)
    {
        LayerId.Validate(idOrPrefix);
        lock (_lock)
        {
            if (_layers.TryGetValue(idOrPrefix, out var exact) && !exact.Incomplete) return idOrPrefix;
            var matches = idOrPrefix.Length >= 4 && idOrPrefix.All(char.IsAsciiHexDigitLower)
                ? _layers.Values.Where(l => !l.Incomplete && l.Id.Length == 64 && l.Id.StartsWith(idOrPrefix, StringComparison.Ordinal) && l.Id.All(char.IsAsciiHexDigitLower))
                    .Select(l => l.Id).Take(2).ToList()
                : [];
            return matches.Count switch
            {
                1 => matches[0],
                0 => throw StrataException.NotFound($"layer {idOrPrefix} does not exist"),
                _ => throw StrataException.Invalid($"layer id prefix {idOrPrefix} is ambiguous: give more of the id"),
            };
        }
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

    public IReadOnlyList<StatusField> Status()
    {
        var pairs = new List<StatusField>
        {
            new("Root Dir", Root),
        };
        pairs.AddRange(DriverStatus());
        lock (_lock) pairs.Add(StatusField.Count("Layers", _layers.Count));
        pairs.Add(Broken() is { } broken ? StatusField.Count("Broken Layers", broken.Count) : StatusField.Unknown("Broken Layers", "unknown (the driver cannot list its layers)"));
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

    /// <summary>The lock of one layer's changes, which every write (and every mount) takes: refused on a read-only store.</summary>
    object IdLock(string id)
    {
        ThrowIfReadOnly();
        return _idLocks.GetOrAdd(id, static _ => new object());
    }

    Layer Visible(string id) =>
        _layers.TryGetValue(id, out var l) && !l.Incomplete ? l : throw StrataException.NotFound($"layer {id} does not exist");

    void ThrowIfBusy(string id)
    {
        if (_busy.TryGetValue(id, out var what)) throw StrataException.InUse($"layer {id} is {what}");
    }
}
