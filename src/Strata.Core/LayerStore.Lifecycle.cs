// The lifecycle of layers: create (empty, as a copy of a parent, or from a tar), apply a diff in place, remove;
// all or nothing, with data made before its record and deleted after it.
using Strata.Archive;
using Strata.Native;

namespace Strata.Core;

public sealed partial class LayerStore
{
    /// <summary>Creates a layer, empty or as a copy of <paramref name="parent"/>, and when <paramref name="diff"/>
    /// is given applies that OCI tar (plain, gzip or zstd) to it, all or nothing: the layer becomes visible only when complete,
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
            return Publish(id, parent, () => Driver.Create(id, parent, new CreateOptions(kind, storageOptions ?? new Dictionary<string, string>())), () =>
            {
                long size = tar is null ? 0 : _differ.ApplyDiff(id, tar);
                verify?.Invoke(); // the caller's last word (an image layer's diff id) before anything is published
                // data the record will point at must be on disk first (drivers make Create durable themselves)
                if (tar is not null) Posix.SyncFileSystem(Root);
                return new Layer
                {
                    Id = id,
                    Parent = parent,
                    Kind = kind,
                    Driver = Driver.Name,
                    Created = DateTimeOffset.UtcNow,
                    Labels = labels is null ? [] : new Dictionary<string, string>(labels),
                    Size = size,
                };
            });
        }
    }

    /// <summary>Publishes new layer <paramref name="id"/>, which the caller marked busy (and counted as a child of
    /// <paramref name="parent"/>) under the index lock: makes its data, then its record (built by
    /// <paramref name="record"/>, which may still add to the data), then makes it visible; all or nothing: a failure
    /// undoes only what this call did (a record that cannot be deleted keeps its data, so the store never holds a record
    /// without data; data without a record is swept at next open) and drops the reservation.</summary>
    Layer Publish(string id, string? parent, Action makeData, Func<Layer> record)
    {
        bool dataCreated = false, recordWritten = false, published = false;
        try
        {
            makeData();
            dataCreated = true;
            var layer = record();
            recordWritten = true; // from here a failure may leave the record behind
            _records.Write(layer);
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
                    if (recordWritten) _records.Delete(id);
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

    /// <summary>Applies an OCI tar (plain, gzip or zstd) onto an existing layer that has no children and is not in use
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
                _records.Write(marked);
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
                _records.Write(done);
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
                _records.Delete(id);
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
}
