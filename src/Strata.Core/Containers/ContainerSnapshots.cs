// Snapshots of a container's filesystem (OpenVZ ploop's `vzctl snapshot`): taken, listed, rolled back to, removed.
namespace Strata.Core.Containers;

/// <summary>A snapshot of a container: its name, when it was taken, and the layer that holds its tree.</summary>
public sealed record ContainerSnapshot(string Name, DateTimeOffset Created, string Layer);

public sealed partial class ContainerStore
{
    /// <summary>Label of a snapshot's layer: the container's id. <see cref="SnapshotNameLabel"/> holds the snapshot's name.</summary>
    public const string SnapshotLabel = "strata.container-snapshot", SnapshotNameLabel = "strata.snapshot-name";

    /// <summary>A snapshot's layer: the container's id and the snapshot's name.</summary>
    static string SnapshotLayer(string containerId, string name) => $"{containerId}.{name}";

    static string CheckSnapshotName(string name)
    {
        if (!LayerId.IsValid(name) || name.Length > 63)
            throw StrataException.Invalid($"invalid snapshot name '{(name.Length > 64 ? name[..64] + "..." : name)}': use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 63 characters");
        return name;
    }

    /// <summary>The container's snapshots, oldest first.</summary>
    public IReadOnlyList<ContainerSnapshot> Snapshots(string reference) => SnapshotsOf(Get(reference).Id);

    List<ContainerSnapshot> SnapshotsOf(string containerId) =>
        [.. Layers.List().Where(l => l.Labels.TryGetValue(SnapshotLabel, out var of) && of == containerId && l.Labels.ContainsKey(SnapshotNameLabel))
            .Select(l => new ContainerSnapshot(l.Labels[SnapshotNameLabel], l.Created, l.Id)).OrderBy(s => s.Created)];

    /// <summary>The layer a container's changes are over: its init layer, under the snapshots in its chain (overlay's).</summary>
    internal string? InitLayerOf(string containerId)
    {
        string? id = Layers.Inspect(containerId).Parent;
        while (id is not null && Layers.Inspect(id).Labels.TryGetValue(SnapshotLabel, out var of) && of == containerId) id = Layers.Inspect(id).Parent;
        return id;
    }

    /// <summary>Refuses a change to a container's chain (overlay's snapshots) while it runs or is mounted: the driver moves
    /// the directories its mount is made of.</summary>
    void RequireUnmountedForChain(Container c, string what)
    {
        if (!Layers.SnapshotsInChain) return;
        if (StateOf(c).Status == ContainerState.Running)
            throw StrataException.InUse($"container {c.Name} is running; stop it to {what} (the {Layers.Driver.Name} driver moves the directories its mount is made of)");
        if (Layers.Inspect(c.Id).Mounts > 0)
            throw StrataException.InUse($"container {c.Name} is mounted; unmount it to {what} (the {Layers.Driver.Name} driver moves the directories its mount is made of)");
    }

    /// <summary>Takes a snapshot of the container's filesystem as it is now (named <paramref name="name"/>, or s1, s2, ...).
    /// Thin, btrfs and vfs make a read-only layer beside the container's, over the same parent, without copying data where
    /// they can (thin, btrfs: O(1)); a running container's filesystem is frozen for the moment of it on thin (vfs copies a
    /// live tree as it finds it). Overlay freezes the container's changes into a read-only layer of its chain, under a new
    /// empty upper directory (O(1): a rename), only while the container is stopped and unmounted.</summary>
    public ContainerSnapshot TakeSnapshot(string reference, string? name = null)
    {
        lock (_lock)
        {
            var c = Get(reference);
            var existing = SnapshotsOf(c.Id);
            if (name is null)
            {
                int n = existing.Count + 1;
                while (existing.Any(s => s.Name == $"s{n}")) n++;
                name = $"s{n}";
            }
            CheckSnapshotName(name);
            if (existing.Any(s => s.Name == name)) throw StrataException.Exists($"container {c.Name} has a snapshot {name} already");
            RequireUnmountedForChain(c, "snapshot it");
            var labels = new Dictionary<string, string> { [SnapshotLabel] = c.Id, [SnapshotNameLabel] = name };
            var layer = Layers.SnapshotsInChain
                ? Layers.FreezeLayer(c.Id, SnapshotLayer(c.Id, name), labels)
                : Layers.CopyLayer(c.Id, SnapshotLayer(c.Id, name), labels);
            return new ContainerSnapshot(name, layer.Created, layer.Id);
        }
    }

    ContainerSnapshot FindSnapshot(Container c, string name) =>
        SnapshotsOf(c.Id).FirstOrDefault(s => s.Name == name) ?? throw StrataException.NotFound($"container {c.Name} has no snapshot {name}");

    /// <summary>Returns the container's filesystem to snapshot <paramref name="name"/> exactly (the snapshot stays, and so do
    /// the others). Refused while the container runs, and while it is mounted unless <paramref name="force"/>, which
    /// unmounts it first.</summary>
    public void Rollback(string reference, string name, bool force = false)
    {
        lock (_lock)
        {
            var c = Get(reference);
            var snapshot = FindSnapshot(c, name);
            if (StateOf(c).Status == ContainerState.Running)
                throw StrataException.InUse($"container {c.Name} is running; stop it before rolling it back");
            var layer = Layers.Inspect(c.Id);
            if (layer.Mounts > 0 && !force)
                throw StrataException.InUse($"container {c.Name} is mounted; unmount it first (or roll back with --force)");
            for (int i = 0; i < layer.Mounts && force; i++) Layers.Unmount(c.Id);
            if (Layers.SnapshotsInChain) Layers.ResetLayer(c.Id, snapshot.Layer); // over the snapshot, with no changes of its own
            else Layers.RestoreLayer(c.Id, snapshot.Layer);
        }
    }

    /// <summary>Removes snapshot <paramref name="name"/>: the container keeps its current state, and what only the snapshot
    /// held is given back (ploop's merge of a delta). On thin, btrfs and vfs the snapshot is a copy beside the container,
    /// so nothing is left to fold into it; on overlay its changes are folded into the layers over it (the container's, a
    /// later snapshot's) by renames, copied where two layers are over it (after a rollback to it), and the container must
    /// be stopped and unmounted.</summary>
    public void RemoveSnapshot(string reference, string name)
    {
        lock (_lock)
        {
            var c = Get(reference);
            var snapshot = FindSnapshot(c, name);
            RequireUnmountedForChain(c, "remove a snapshot of it");
            if (Layers.SnapshotsInChain) Layers.MergeLayer(snapshot.Layer);
            else Layers.Remove(snapshot.Layer);
        }
    }

    /// <summary>Removes every snapshot of a container once its layer is gone, the deepest in the chain first (in a
    /// chain a snapshot is under the later ones; beside the container all are at one depth).</summary>
    void RemoveSnapshots(string containerId)
    {
        var parents = Layers.List().ToDictionary(l => l.Id, l => l.Parent, StringComparer.Ordinal);
        int Depth(string id)
        {
            int depth = 0;
            for (var p = parents.GetValueOrDefault(id); p is not null; p = parents.GetValueOrDefault(p)) depth++;
            return depth;
        }
        foreach (var s in SnapshotsOf(containerId).OrderByDescending(s => Depth(s.Layer))) Layers.Remove(s.Layer);
    }
}
