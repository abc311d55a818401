using Strata.Core;

namespace Strata.Daemon.Snapshotter;

/// <summary>The daemon's snapshotter: one per open store, made again when dockerd's Init reopens the store with another
/// driver, used under the store host's shared lock like every request. Disposed before the store closes, so that the
/// devices it holds attached (thin) are let go first (those containerd has mounted stay, held by their mounts).</summary>
public sealed class SnapshotterHost(StoreHost host) : IDisposable
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
                _snapshotter?.Dispose();
                _snapshotter = null;
                _snapshotter = Core.Snapshots.Snapshotter.Open(store);
                _store = store;
            }
            s = _snapshotter!;
        }
        return work(s);
    });

    public void Dispose()
    {
        lock (_lock)
        {
            _snapshotter?.Dispose();
            _snapshotter = null;
            _store = null;
        }
    }
}
