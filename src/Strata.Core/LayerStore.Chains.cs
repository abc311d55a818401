// Snapshots in a layer's chain (overlay's, through the driver's ILayerChains): a layer's changes frozen into a new
// read-only layer under it, a layer put back over one of those (a rollback), and one folded into the layers over it (a
// merge). Each writes its intent in a record first and is finished by the next open when a crash cuts it short.
namespace Strata.Core;

public sealed partial class LayerStore
{
    const string Interrupted = "in the middle of a change to its chain (the store's next open to write finishes it)";

    /// <summary>Whether the driver snapshots a layer by freezing its changes into its chain (<see cref="FreezeLayer"/>,
    /// <see cref="ResetLayer"/>, <see cref="MergeLayer"/>) rather than by copying it beside itself (<see cref="CopyLayer"/>).</summary>
    public bool SnapshotsInChain => Driver is ILayerChains;

    ILayerChains Chains
    {
        get
        {
            var chains = Driver as ILayerChains
                ?? throw StrataException.Unsupported($"the {Driver.Name} driver cannot freeze a layer's changes into its chain (overlay can)");
            return chains.WhyNoChains is { } why ? throw StrataException.Unsupported(why) : chains;
        }
    }

    /// <summary>Takes the id locks of several layers, in one order.</summary>
    IDisposable IdLocks(IEnumerable<string> ids)
    {
        var locks = ids.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).Select(IdLock).ToList();
        int taken = 0;
        try
        {
            foreach (var l in locks)
            {
                Monitor.Enter(l);
                taken++;
            }
        }
        catch
        {
            for (int i = taken - 1; i >= 0; i--) Monitor.Exit(locks[i]);
            throw;
        }
        return new Unlock(locks);
    }

    sealed class Unlock(List<object> locks) : IDisposable
    {
        public void Dispose()
        {
            for (int i = locks.Count - 1; i >= 0; i--) Monitor.Exit(locks[i]);
        }
    }

    /// <summary>Checks, under the index lock, that a layer can have its chain changed: there, not busy, unmounted, unread.</summary>
    Layer Changeable(string id, string action)
    {
        var layer = Visible(id);
        ThrowIfBusy(id);
        if (layer.Mounts > 0) throw MountedError(id, layer.Mounts, action);
        if (_uses.GetValueOrDefault(id) > 0) throw StrataException.InUse($"layer {id} is in use by a diff in progress");
        return layer;
    }

    /// <summary>Makes new read-only layer <paramref name="target"/> of layer <paramref name="id"/>'s changes as they are
    /// now, over <paramref name="id"/>'s parent, and puts <paramref name="id"/> over it with no changes of its own (O(1):
    /// the driver moves a directory). <paramref name="id"/>'s tree stays as it is; it must be unmounted and have no
    /// children. A crash leaves it as it was, or finished by the next open.</summary>
    public Layer FreezeLayer(string id, string target, IReadOnlyDictionary<string, string>? labels = null)
    {
        LayerId.Validate(id);
        LayerId.Validate(target);
        var chains = Chains;
        using (IdLocks([id, target]))
        {
            Layer layer;
            lock (_lock)
            {
                if (_layers.ContainsKey(target)) throw StrataException.Exists($"layer {target} already exists");
                ThrowIfBusy(target);
                layer = Changeable(id, "snapshot it");
                if (_children.GetValueOrDefault(id) > 0) throw StrataException.InUse($"layer {id} has child layers; only a layer without children can be frozen");
                if (layer.Parent is null) throw StrataException.Invalid($"layer {id} has no parent: its tree is whole, not changes that can be frozen under it");
                chains.CheckChainLength(Depth(id) + 1); // before the intent: a change begun is finished, not given up
                _busy[id] = "being snapshotted";
                _busy[target] = "being created";
            }
            var frozen = new Layer
            {
                Id = target, Parent = layer.Parent, Kind = LayerKind.ReadOnly, Driver = Driver.Name, Created = DateTimeOffset.UtcNow,
                Labels = labels is null ? [] : new Dictionary<string, string>(labels), Size = layer.Size, Pending = "freeze:" + id,
            };
            try
            {
                return Finish([id, target], () => _records.Write(frozen), () =>
                {
                    var (done, over) = FinishFreeze(chains, _records, frozen, layer);
                    lock (_lock)
                    {
                        _layers[target] = done;
                        _layers[id] = over with { Mounts = layer.Mounts };
                        _children[target] = 1; // the parent's count stays: one child for another
                    }
                    return done;
                });
            }
            catch
            {
                DropUnbegunFreeze(frozen, layer);
                throw;
            }
        }
    }

    /// <summary>Drops layer <paramref name="id"/>'s changes and puts it over <paramref name="parent"/> (a rollback to a
    /// layer <see cref="FreezeLayer"/> made): its tree becomes <paramref name="parent"/>'s exactly. <paramref name="id"/>
    /// must be unmounted and have no children. A crash leaves it as it was, or finished by the next open.</summary>
    public void ResetLayer(string id, string parent)
    {
        LayerId.Validate(id);
        LayerId.Validate(parent, "parent id");
        var chains = Chains;
        using (IdLocks([id, parent]))
        {
            Layer layer;
            lock (_lock)
            {
                if (id == parent) throw StrataException.Invalid($"layer {id} cannot be put over itself");
                if (Visible(parent).Kind != LayerKind.ReadOnly) throw StrataException.Invalid($"layer {parent} is not read-only; a layer can only be put over a read-only one");
                ThrowIfBusy(parent);
                layer = Changeable(id, "roll it back");
                if (_children.GetValueOrDefault(id) > 0) throw StrataException.InUse($"layer {id} has child layers; it cannot be rolled back");
                chains.CheckChainLength(Depth(parent) + 1);
                _busy[id] = "being rolled back";
                _busy[parent] = "having a layer put over it";
            }
            var marked = layer with { Pending = "reset:" + parent };
            Finish([id, parent], () => _records.Write(marked), () =>
            {
                var done = FinishReset(chains, _records, marked, parent);
                lock (_lock)
                {
                    _layers[id] = done with { Mounts = layer.Mounts };
                    if (layer.Parent is { } old) _children[old]--;
                    _children[parent] = _children.GetValueOrDefault(parent) + 1;
                }
                return done;
            });
        }
    }

    /// <summary>Removes read-only layer <paramref name="id"/> by folding its changes into its children's (ploop's merge
    /// of a snapshot), which then sit on its parent with their trees unchanged: into one child by renames, into any
    /// other by copies. Neither it nor any layer over it may be mounted. Without children it is just removed. A crash
    /// leaves it as it was, or finished by the next open.</summary>
    public void MergeLayer(string id)
    {
        LayerId.Validate(id);
        var chains = Chains;
        List<string> over;
        lock (_lock)
        {
            if (Visible(id).Kind != LayerKind.ReadOnly)
                throw StrataException.Invalid($"layer {id} is not read-only; only a read-only layer can be merged into the layers over it");
            over = Over(id, _layers.Values);
        }
        if (over.Count == 0)
        {
            Remove(id);
            return;
        }
        using (IdLocks(over.Prepend(id)))
        {
            Layer layer;
            lock (_lock)
            {
                layer = Changeable(id, "merge it");
                if (layer.Parent is null) throw StrataException.Unsupported($"layer {id} has no parent: its changes are whole trees, which cannot be folded into its children's");
                var now = Over(id, _layers.Values);
                // a layer being created over one of them is counted as a child before it is listed
                if (!now.ToHashSet(StringComparer.Ordinal).SetEquals(over)
                    || over.Prepend(id).Any(x => _children.GetValueOrDefault(x) != _layers.Values.Count(l => l.Parent == x)))
                    throw StrataException.InUse($"layer {id} got other layers over it meanwhile; try again");
                foreach (var o in over) Changeable(o, $"merge {id} under it");
                foreach (var o in over.Prepend(id)) _busy[o] = "being merged";
            }
            var marked = layer with { Pending = "merge" };
            Finish(over.Prepend(id).ToList(), () => _records.Write(marked), () =>
            {
                List<Layer> all;
                lock (_lock) all = [.. _layers.Values];
                var rebased = FinishMerge(chains, Driver, _records, marked, all);
                lock (_lock)
                {
                    _layers.Remove(id);
                    _children.Remove(id);
                    foreach (var child in rebased) _layers[child.Id] = child with { Mounts = _layers[child.Id].Mounts };
                    _children[layer.Parent!] = _children.GetValueOrDefault(layer.Parent!) - 1 + rebased.Count;
                }
                return layer;
            });
        }
    }

    /// <summary>Runs a chain change: the intent (a record) written, then the work; the layers are busy meanwhile, and stay
    /// so when the work fails after the intent (the next open finishes it).</summary>
    T Finish<T>(List<string> ids, Action intent, Func<T> work)
    {
        try
        {
            intent();
        }
        catch
        {
            lock (_lock) foreach (var id in ids) _busy.Remove(id);
            throw;
        }
        try
        {
            var result = work();
            lock (_lock) foreach (var id in ids) _busy.Remove(id);
            return result;
        }
        catch
        {
            lock (_lock) foreach (var id in ids) _busy[id] = Interrupted;
            throw;
        }
    }

    /// <summary>Every layer over <paramref name="id"/>, parents before children.</summary>
    static List<string> Over(string id, IEnumerable<Layer> layers)
    {
        var byParent = layers.Where(l => l.Parent is not null).ToLookup(l => l.Parent!, l => l.Id, StringComparer.Ordinal);
        var order = new List<string>();
        var next = new Queue<string>([id]);
        while (next.TryDequeue(out var p))
            foreach (var c in byParent[p].Order(StringComparer.Ordinal))
            {
                order.Add(c);
                next.Enqueue(c);
            }
        return order;
    }

    /// <summary>How many layers are below <paramref name="id"/> (under the index lock).</summary>
    int Depth(string id)
    {
        int depth = 0;
        for (var p = _layers[id].Parent; p is not null && _layers.TryGetValue(p, out var l); p = l.Parent) depth++;
        return depth;
    }

    /// <summary>After a freeze failed: when nothing of it was done (the new layer's data never appeared; the layer's
    /// own are where they were), it is given up, its record deleted and both layers free again; otherwise it is left
    /// for the next open to finish.</summary>
    void DropUnbegunFreeze(Layer frozen, Layer layer)
    {
        try
        {
            if (Driver.Exists(frozen.Id) || !Driver.Exists(layer.Id)) return;
            Driver.Remove(frozen.Id);
            _records.Delete(frozen.Id);
            lock (_lock)
            {
                _busy.Remove(frozen.Id);
                _busy.Remove(layer.Id);
            }
        }
        catch (Exception)
        {
            // left as it is: the next open finishes it
        }
    }

    /// <summary>The kind of a pending change and the layer it names (freeze:SOURCE, reset:PARENT; merge names none).</summary>
    static (string Kind, string? Other) ParsePending(string pending)
    {
        int colon = pending.IndexOf(':');
        return colon < 0 ? (pending, null) : (pending[..colon], pending[(colon + 1)..]);
    }

    /// <summary>The layers a pending change involves, which stay busy until it is finished: a freeze's source and new
    /// layer, a reset's layer and new parent, a merged layer and every layer over it.</summary>
    static IEnumerable<string> Involved(Layer pending, IEnumerable<Layer> all) =>
        ParsePending(pending.Pending!) switch
        {
            ("merge", _) => Over(pending.Id, all).Prepend(pending.Id),
            (_, { } other) => [pending.Id, other],
            _ => [pending.Id],
        };

    static (Layer Frozen, Layer Over) FinishFreeze(ILayerChains chains, LayerRecords records, Layer frozen, Layer layer)
    {
        chains.Freeze(layer.Id, frozen.Id);
        var over = layer with { Parent = frozen.Id, Size = 0, Pending = null };
        records.Write(over);
        var done = frozen with { Pending = null };
        records.Write(done);
        return (done, over);
    }

    static Layer FinishReset(ILayerChains chains, LayerRecords records, Layer marked, string parent)
    {
        chains.Reset(marked.Id, parent);
        var done = marked with { Parent = parent, Size = 0, Pending = null };
        records.Write(done);
        return done;
    }

    /// <summary>Folds the layer into its children (copies into all but the last, the container's layer when there is
    /// one, which gets the renames), puts everything over it on its parent's chain, records its children over its
    /// parent, then removes it. Returns the children as recorded.</summary>
    static List<Layer> FinishMerge(ILayerChains chains, IDriver driver, LayerRecords records, Layer marked, List<Layer> all)
    {
        var children = all.Where(l => l.Parent == marked.Id)
            .OrderBy(l => l.Kind == LayerKind.ReadWrite).ThenBy(l => l.Created).ThenBy(l => l.Id, StringComparer.Ordinal).ToList();
        for (int i = 0; i < children.Count; i++) chains.Fold(marked.Id, children[i].Id, move: i == children.Count - 1);
        var byId = all.ToDictionary(l => l.Id, StringComparer.Ordinal);
        foreach (var o in Over(marked.Id, all)) chains.Rebase(o, byId[o].Parent == marked.Id ? marked.Parent! : byId[o].Parent!);
        var rebased = children.Select(c => c with { Parent = marked.Parent }).ToList();
        foreach (var c in rebased) records.Write(c);
        records.Delete(marked.Id);
        driver.Remove(marked.Id);
        return rebased;
    }

    /// <summary>Finishes the chain changes a crash cut short (records with <see cref="Layer.Pending"/>), at open, before
    /// anything else uses the store; <paramref name="layers"/> is updated. What it did, or could not do, goes in
    /// <paramref name="swept"/>; a layer it could not finish stays marked, and busy.</summary>
    internal static void FinishPending(IDriver driver, LayerRecords records, List<Layer> layers, List<string> swept)
    {
        foreach (var pending in layers.Where(l => l.Pending is not null).OrderBy(l => l.Pending == "merge").ToList())
        {
            try
            {
                if (driver is not ILayerChains chains) throw StrataException.Unsupported($"the {driver.Name} driver cannot finish it");
                var byId = layers.ToDictionary(l => l.Id, StringComparer.Ordinal);
                var current = byId[pending.Id];
                switch (ParsePending(current.Pending!))
                {
                    case ("freeze", { } of) when byId.TryGetValue(of, out var source):
                        if (!driver.Exists(current.Id) && !driver.Exists(of))
                            throw StrataException.Corrupt($"neither it nor layer {of} holds the changes being frozen");
                        var (done, over) = FinishFreeze(chains, records, current, source);
                        Replace(layers, done);
                        Replace(layers, over);
                        swept.Add($"snapshot {done.Id} of layer {source.Id}, cut short, finished");
                        break;
                    case ("reset", { } parent) when byId.ContainsKey(parent):
                        Replace(layers, FinishReset(chains, records, current, parent));
                        swept.Add($"rollback of layer {current.Id} to {parent}, cut short, finished");
                        break;
                    case ("merge", null):
                        foreach (var child in FinishMerge(chains, driver, records, current, layers)) Replace(layers, child);
                        layers.RemoveAll(l => l.Id == current.Id);
                        swept.Add($"merge of layer {current.Id} into the layers over it, cut short, finished");
                        break;
                    default:
                        throw StrataException.Corrupt($"its record says '{current.Pending}', which names no layer here");
                }
            }
            catch (Exception ex) when (ex is StrataException or IOException)
            {
                swept.Add($"layer {pending.Id}: the change '{pending.Pending}' a crash cut short was not finished ({StrataException.OneLine(ex.Message)})");
            }
        }
    }

    static void Replace(List<Layer> layers, Layer layer)
    {
        int i = layers.FindIndex(l => l.Id == layer.Id);
        layers[i] = layer with { Mounts = layers[i].Mounts };
    }
}
