// Snapshots of layers (a container's): a copy of a layer's tree as it is now, made a sibling layer, and a layer's tree
// made a sibling's again; both through the driver's ILayerSnapshots, data made before the record and records written whole.
namespace Strata.Core;

public sealed partial class LayerStore
{
    ILayerSnapshots Snapshots => Driver as ILayerSnapshots
        ?? throw StrataException.Unsupported($"the {Driver.Name} driver cannot snapshot layers (thin, btrfs and vfs can)");

    /// <summary>Makes read-only layer <paramref name="target"/> a copy of layer <paramref name="source"/>'s tree as it is
    /// now, with the source's parent: a snapshot, whose changes against the parent are the source's at this moment. The
    /// source may be mounted (see <see cref="ILayerSnapshots.CopyLayer"/>). All or nothing, as <see cref="Create"/>.</summary>
    public Layer CopyLayer(string source, string target, IReadOnlyDictionary<string, string>? labels = null)
    {
        LayerId.Validate(source);
        LayerId.Validate(target);
        var snapshots = Snapshots;
        using (IdLocks([source, target]))
        {
            Layer from;
            lock (_lock)
            {
                if (_layers.ContainsKey(target)) throw StrataException.Exists($"layer {target} already exists");
                ThrowIfBusy(target);
                from = Visible(source);
                ThrowIfBusy(source);
                if (from.Parent is { } p) _children[p] = _children.GetValueOrDefault(p) + 1;
                _busy[target] = "being created";
            }
            return Publish(target, from.Parent, () => snapshots.CopyLayer(source, target), () => new Layer
            {
                Id = target, Parent = from.Parent, Kind = LayerKind.ReadOnly, Driver = Driver.Name, Created = DateTimeOffset.UtcNow,
                Labels = labels is null ? [] : new Dictionary<string, string>(labels), Size = from.Size,
            });
        }
    }

    /// <summary>Makes layer <paramref name="target"/>'s tree a copy of <paramref name="source"/>'s again (a rollback to a
    /// snapshot made by <see cref="CopyLayer"/>: a sibling, same parent), in one step of the driver: a crash leaves it
    /// as it was or as the source, whole. Refused while the target is mounted, has children or is in use.</summary>
    public void RestoreLayer(string target, string source)
    {
        LayerId.Validate(source);
        LayerId.Validate(target);
        var snapshots = Snapshots;
        using (IdLocks([source, target]))
        {
            Layer to, from;
            lock (_lock)
            {
                to = Visible(target);
                from = Visible(source);
                ThrowIfBusy(target);
                ThrowIfBusy(source);
                if (to.Parent != from.Parent) throw StrataException.Invalid($"layer {source} is not a snapshot of layer {target} (their parents differ)");
                if (_children.GetValueOrDefault(target) > 0) throw StrataException.InUse($"layer {target} has child layers; it cannot be rolled back");
                if (_uses.GetValueOrDefault(target) > 0) throw StrataException.InUse($"layer {target} is in use by a diff in progress");
                if (to.Mounts > 0) throw MountedError(target, to.Mounts, "roll it back");
                _busy[target] = "being rolled back";
            }
            try
            {
                snapshots.RestoreLayer(target, source);
                var restored = to with { Size = from.Size };
                _records.Write(restored);
                lock (_lock) _layers[target] = restored;
            }
            finally
            {
                lock (_lock) _busy.Remove(target);
            }
        }
    }
}
