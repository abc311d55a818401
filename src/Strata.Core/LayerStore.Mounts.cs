// Mounting layers for their users: persisted counts of users (Docker's Get/Put, `strata layer mount`) and
// in-process holds (diffs); the first user mounts, the last unmounts.
namespace Strata.Core;

public sealed partial class LayerStore
{
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

    /// <summary>Attaches a layer's block device for a client that mounts it itself (containerd), on drivers whose layers
    /// are devices (<see cref="IBlockLayers"/>); the store counts no mount: the client's mount, or the returned
    /// handle, keeps the device attached. Removing the layer meanwhile is deferred by the driver until both let go.</summary>
    public AttachedLayer AttachForClient(string id)
    {
        LayerId.Validate(id);
        if (Driver is not IBlockLayers block) throw StrataException.Unsupported($"the {Driver.Name} driver's layers are not block devices");
        lock (IdLock(id))
        {
            Inspect(id);
            return block.Attach(id);
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

    /// <summary>Runs <paramref name="read"/> on the tree of layer <paramref name="id"/>, mounted for this process (unless
    /// it is mounted already) while it runs; the layer cannot be removed meanwhile.</summary>
    public T ReadTree<T>(string id, Func<string, T> read) => WithLayers(id, null, () =>
    {
        var mounter = (ILayerMounter)this;
        string tree = mounter.Acquire(id);
        try
        {
            return read(tree);
        }
        finally
        {
            mounter.Release(id);
        }
    });

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
        _counts.Save(layer.Id, mounts);
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
}
