using Strata.Core;

namespace Strata.Daemon.Snapshotter;

/// <summary>The daemon's snapshotter: one per open store, made again when dockerd's Init reopens the store with another
/// driver, used under the store host's shared lock like every request.</summary>
public sealed class SnapshotterHost(StoreHost host)
{
    readonly object _lock = new();
    LayerStore? _store;
    Core.Snapshots.Snapshotter? _snapshotter;

    public T Use<T>(Func<Core.Snapshots.Snapshotter, T> work) => host.Use(store =>
    {
        Core.Snapshots.Snapshotter s;
        lock (_lock)
        {
            if (!ReferenceEquals(store, _store))
            {
                _snapshotter = Core.Snapshots.Snapshotter.Open(store);
                _store = store;
            }
            s = _snapshotter!;
        }
        return work(s);
    });
}
