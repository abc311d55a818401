using Strata.Archive;

namespace Strata.Core;

/// <summary>How to make a layer's tree visible: mount(2) arguments, and where the store mounts it
/// (<see cref="Target"/>; containerd-style consumers mount it where they like). A <c>bind</c> of a
/// directory with no options means the directory is the tree itself and nothing needs mounting.</summary>
public sealed record MountSpec(string Type, string Source, IReadOnlyList<string> Options)
{
    public string? Target { get; init; }

    public bool IsPlainDirectory => Type == "bind" && Options.Count == 0;

    /// <summary>Where the tree is seen once mounted.</summary>
    public string TreePath => IsPlainDirectory ? Source : Target ?? throw new InvalidOperationException($"a '{Type}' mount without a target");
}

/// <summary>What a new layer should be.</summary>
public sealed record CreateOptions(LayerKind Kind, IReadOnlyDictionary<string, string> StorageOptions);

/// <summary>
/// A copy-on-write storage driver (the graphdriver/snapshotter contract). A driver owns one
/// directory under the store root and knows nothing of layer records, locking or frontends:
/// the <see cref="LayerStore"/> calls it with validated ids, one operation per id at a time, and
/// only after checking parents and refcounts. Vocabulary:
/// <list type="bullet">
/// <item><see cref="Create"/> makes the data of a layer whose tree starts as a copy of its parent's
/// (or empty); it must be atomic and durable: when it returns the layer's data exists whole and
/// is on disk; when it fails, nothing of it is left.</item>
/// <item><see cref="Remove"/> deletes a layer's data; it may be called for half-made leftovers.</item>
/// <item><see cref="Mount"/> describes how to see the layer's tree; the store performs it.</item>
/// <item><see cref="List"/> names every layer the driver holds data for (the store sweeps orphans).</item>
/// </list>
/// <see cref="Differ"/> picks how the layer's changesets are made: drivers that can diff without
/// comparing whole trees return their own <see cref="IDiffer"/>, the others the generic one.
/// Optional behaviour is a capability interface a driver may also implement: <see cref="IMountHooks"/>,
/// <see cref="IRecoveringDriver"/>, <see cref="IBlockLayers"/>, <see cref="ILayerSnapshots"/>, <see cref="ILayerChains"/>.
/// </summary>
public interface IDriver : IDisposable
{
    string Name { get; }
    void Create(string id, string? parent, CreateOptions options);
    void Remove(string id);
    bool Exists(string id);
    MountSpec Mount(string id);
    /// <summary>Whether <paramref name="path"/> is a place this driver's mounts go: where the store mounts layer
    /// <paramref name="layerId"/>, or (with a null id) scratch space of the driver's own. A mount there that no
    /// counted user holds is a leftover the store may detach; the store leaves every other mount alone.</summary>
    bool OwnsMountPoint(string path, out string? layerId);
    IReadOnlyCollection<string> List();
    /// <summary>Pairs shown by <c>strata info</c> (as Docker's `docker info` shows a driver's Status).</summary>
    IReadOnlyList<StatusField> Status();
    /// <summary>Low-level facts about one layer (Docker's GetMetadata), e.g. its directory.</summary>
    IReadOnlyDictionary<string, string> Metadata(string id);
    /// <summary>Releases everything the driver holds (handles, helpers) at shutdown; the store unmounts layers first.</summary>
    void Cleanup();
    /// <summary>The differ to use, given the generic one (<see cref="NaiveDiffer"/>) to return or fall back on.</summary>
    IDiffer Differ(IDiffer generic);
}

/// <summary>
/// Optional capability (moby's pattern): a driver whose mounts need work of its own around the store's mount(2)
/// and umount2 (thin: a block device to attach before and detach after, a filesystem to tune and to sync). The
/// store calls these, with the layer's id lock held, only when it actually mounts or unmounts a layer (its first
/// user comes or its last goes); drivers whose <see cref="IDriver.Mount"/> needs nothing more do not implement it.
/// </summary>
public interface IMountHooks
{
    /// <summary>Readies a layer for the mount the store is about to make of it (thin: attaches its device to a loop
    /// device, which <see cref="IDriver.Mount"/> then names); the handle is disposed once the mount is made or has failed.</summary>
    IDisposable? PrepareMount(string id);

    /// <summary>Called after the store mounted a layer (thin: tunes the filesystem's error handling).</summary>
    void Mounted(string id);

    /// <summary>Called before the store unmounts a layer for its last user (thin: makes the filesystem durable on its
    /// device, since a copy of the mount in another mount namespace would keep it alive past the unmount).</summary>
    void Unmounting(string id);

    /// <summary>Called after the store unmounted a layer (thin: detaches its nbd device).</summary>
    void Unmounted(string id);
}

/// <summary>Optional capability: a driver whose layers are block devices holding a filesystem (thin), for clients that
/// mount layers themselves (containerd's snapshotter protocol): the device has to be attached to the kernel for as
/// long as the client may mount it, which the store's own mounts (<see cref="IMountHooks"/>) do not cover.</summary>
public interface IBlockLayers
{
    /// <summary>Attaches layer <paramref name="id"/>'s device (the same kernel device again when it is attached
    /// already, so two mounts of it are one filesystem instance) and describes the mount of its filesystem, without
    /// target. The device stays attached while the handle, or a mount made of it, lives.</summary>
    AttachedLayer Attach(string id);

    /// <summary>Makes what a client's mount of layer <paramref name="id"/>'s filesystem holds durable on its device (before
    /// the layer is committed while the client may still have it mounted); nothing to do when none is mounted here (an
    /// unmount wrote it all).</summary>
    void Flush(string id);

    /// <summary>Bytes of pool space layer <paramref name="id"/>'s device maps, shared blocks included (what containerd's
    /// devmapper snapshotter reports as a snapshot's usage).</summary>
    long MappedBytes(string id);
}

/// <summary>A layer's block device attached for a client's mount: <see cref="Mount"/> names the device; disposing lets
/// go of it (a mount made meanwhile keeps it attached until unmounted).</summary>
public sealed class AttachedLayer(MountSpec mount, IDisposable hold) : IDisposable
{
    public MountSpec Mount => mount;
    public void Dispose() => hold.Dispose();
}

/// <summary>
/// Optional capability: a driver that copies a layer's tree as it is now into a new sibling layer (a container's
/// snapshot) and makes a layer's tree a sibling's again (a rollback), without copying data where it can (thin: a
/// device snapshot; btrfs: a subvolume snapshot; vfs: a tree copy, reflinked where the filesystem can). Both are atomic:
/// after a crash the layer is whole, as before or as after. The store calls them with validated ids, the source's and
/// target's id locks held, a target of <see cref="RestoreLayer"/> unmounted.
/// </summary>
public interface ILayerSnapshots
{
    /// <summary>Makes the data of new layer <paramref name="target"/> a copy of layer <paramref name="source"/>'s tree as
    /// it is now (thin freezes a mounted source's filesystem for the moment of the copy, btrfs writes its dirty data
    /// first; vfs copies the tree as it finds it).</summary>
    void CopyLayer(string source, string target);

    /// <summary>Makes layer <paramref name="target"/>'s tree a copy of <paramref name="source"/>'s, in one step; the source stays.</summary>
    void RestoreLayer(string target, string source);
}

/// <summary>
/// Optional capability: a driver whose layers hold only their own changes over their parent's (overlay), which snapshots
/// a layer by freezing its changes into a new read-only layer of the chain below it instead of copying them
/// (<see cref="ILayerSnapshots"/>'s siblings would be whole copies). Every call is restartable: cut short by a crash,
/// the same call made again finishes it (what is done is read from what exists). The store calls these with validated
/// ids, the layers' id locks held, none of the layers involved (nor any layer over them) mounted, and the intent in a
/// record first (<see cref="Layer.Pending"/>); the layers stay busy (nothing mounts or reads them) until the call has
/// finished, here or at the store's next open.
/// </summary>
public interface ILayerChains
{
    /// <summary>Null when this driver, as configured, can change chains; else why not (one line).</summary>
    string? WhyNoChains { get; }

    /// <summary>Refuses (one line) a chain of <paramref name="layers"/> layers below a layer that the driver could not
    /// mount; asked before a change that makes a chain longer is begun.</summary>
    void CheckChainLength(int layers);

    /// <summary>Moves layer <paramref name="id"/>'s changes into new layer <paramref name="target"/> (over
    /// <paramref name="id"/>'s parent) and leaves <paramref name="id"/> with none, over <paramref name="target"/>: its
    /// tree stays the same, and <paramref name="target"/> keeps it as it is now.</summary>
    void Freeze(string id, string target);

    /// <summary>Drops layer <paramref name="id"/>'s changes and puts it over <paramref name="parent"/> (a rollback to
    /// a layer <see cref="Freeze"/> made): its tree becomes <paramref name="parent"/>'s.</summary>
    void Reset(string id, string parent);

    /// <summary>Folds the changes of layer <paramref name="id"/> into those of <paramref name="child"/> (a layer over
    /// it), the child's winning, so that the child shows the same tree once over <paramref name="id"/>'s parent;
    /// by renames when <paramref name="move"/> (<paramref name="id"/> loses them), by copies otherwise.</summary>
    void Fold(string id, string child, bool move);

    /// <summary>Puts layer <paramref name="id"/> over <paramref name="parent"/> after the chain below it changed (a
    /// layer folded away under it), its own changes kept.</summary>
    void Rebase(string id, string parent);
}

/// <summary>Optional capability: a driver with state of its own to repair when a store opens.</summary>
public interface IRecoveringDriver
{
    /// <summary>Start-up repair of the driver's own state, before the store reconciles mounts with its counts (thin:
    /// detaches the mounts of a pool server that was killed). What it did goes in <paramref name="swept"/>.</summary>
    void Recover(List<string> swept);
}

/// <summary>
/// Layer changesets between a layer and a base layer (<c>null</c> = the empty tree). The store
/// provides <see cref="NaiveDiffer"/> for every driver; a driver implements this itself only where
/// it is provably equivalent and cheaper.
/// </summary>
public interface IDiffer
{
    List<Change> Changes(string id, string? against);
    DiffResult Diff(string id, string? against, Stream output);
    long DiffSize(string id, string? against);
    /// <summary>Applies an OCI layer tar onto layer <paramref name="id"/>; returns the regular-file bytes written.</summary>
    long ApplyDiff(string id, Stream diff);
}

/// <summary>Mount refcounting as drivers' differs need it: the store's Get/Put for in-process use.</summary>
public interface ILayerMounter
{
    string Acquire(string id);
    void Release(string id);
}
