using Strata.Core.Images;

namespace Strata.Core.Containers;

/// <summary>One image's space (`system df -v`): its layers' content bytes, those it shares with other images, its own,
/// and the containers made from it.</summary>
public sealed record ImageUsage(ImageRecord Image, long Size, long Shared, long Unique, int Containers);

/// <summary>One container's space: the bytes it wrote over its image (null: not counted, see <see cref="StoreUsage.Measure"/>).</summary>
public sealed record ContainerUsage(Container Container, ContainerState State, long? Size);

/// <summary>A row of `system df`: how many there are, how many are in use, their bytes, and the bytes `system prune`
/// (with -a for images) would give back.</summary>
public sealed record UsageSummary(string Type, int Total, int Active, long Size, long Reclaimable);

/// <summary>
/// The store's space as `docker system df` shows Docker's: images (active: a container uses it; reclaimable: the layers
/// only unused images hold), containers (active: running; reclaimable: what the stopped ones wrote), and layers
/// (active: an image, a container or another user holds them, or they are mounted; reclaimable: the dangling ones, image
/// and init layers nothing refers to any more, which the store's collection removes). Sizes are layers' content bytes
/// (<see cref="Layer.Size"/>, as applied) and, for containers and their snapshots, the bytes of their diff (a snapshot's
/// shares its data with its container where the driver can: thin, btrfs); what the driver adds around them
/// (metadata, a thin device's filesystem) is not counted.
/// </summary>
public sealed record StoreUsage(IReadOnlyList<ImageUsage> Images, IReadOnlyList<ContainerUsage> Containers, IReadOnlyList<Layer> Layers,
    IReadOnlyList<UsageSummary> Summary)
{
    /// <summary>Measures the store of <paramref name="catalog"/>; <paramref name="containerSize"/> gives a container's
    /// bytes from its layer id (null where they cannot be counted, e.g. a read-only open that would have to mount it).</summary>
    public static StoreUsage Measure(ContainerStore catalog, Func<string, long?> containerSize)
    {
        var layers = catalog.Images.Layers.List();
        var byId = layers.ToDictionary(l => l.Id, StringComparer.Ordinal);
        var images = catalog.Images.List();
        var containers = catalog.List().Select(c => new ContainerUsage(c, catalog.StateOf(c), containerSize(c.Id))).ToList();
        var usersOf = containers.GroupBy(c => c.Container.ImageId).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        long SizeOf(string id) => byId.TryGetValue(id, out var l) ? l.Size : 0;
        // how many images hold each layer
        var holders = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var image in images)
            foreach (var id in image.Layers.Distinct())
                holders[id] = holders.GetValueOrDefault(id) + 1;
        var imageRows = images.Select(i =>
        {
            var own = i.Layers.Distinct().ToList();
            long size = own.Sum(SizeOf), shared = own.Where(id => holders[id] > 1).Sum(SizeOf);
            return new ImageUsage(i, size, shared, size - shared, usersOf.GetValueOrDefault(i.Id));
        }).ToList();
        var allImageLayers = holders.Keys.ToHashSet(StringComparer.Ordinal);
        var activeImageLayers = images.Where(i => usersOf.ContainsKey(i.Id)).SelectMany(i => i.Layers).ToHashSet(StringComparer.Ordinal);

        // the layers images and containers reach (their chains), and the dangling ones: labelled as an image's or an init
        // layer, but nothing reaches them
        var reached = new HashSet<string>(StringComparer.Ordinal);
        void Reach(string? id)
        {
            while (id is not null && reached.Add(id) && byId.TryGetValue(id, out var l)) id = l.Parent;
        }
        foreach (var id in allImageLayers) Reach(id);
        foreach (var c in containers) Reach(c.Container.Id);
        var dangling = Dangling(layers, reached);
        // a snapshot goes with its container: prune gives back those of the containers it removes (the stopped ones)
        var running = containers.Where(c => c.State.Status == ContainerState.Running).Select(c => c.Container.Id).ToHashSet(StringComparer.Ordinal);
        var snapshots = layers.Where(l => l.Labels.ContainsKey(ContainerStore.SnapshotLabel))
            .Select(l => (Size: containerSize(l.Id) ?? 0, Kept: running.Contains(l.Labels[ContainerStore.SnapshotLabel]))).ToList();

        UsageSummary[] summary =
        [
            new("Images", images.Count, imageRows.Count(i => i.Containers > 0), allImageLayers.Sum(SizeOf), allImageLayers.Except(activeImageLayers).Sum(SizeOf)),
            new("Containers", containers.Count, containers.Count(c => c.State.Status == ContainerState.Running), containers.Sum(c => c.Size ?? 0),
                containers.Where(c => c.State.Status != ContainerState.Running).Sum(c => c.Size ?? 0)),
            new("Layers", layers.Count, layers.Count - dangling.Count, layers.Sum(l => l.Size), dangling.Sum(l => l.Size)),
            new("Snapshots", snapshots.Count, snapshots.Count(s => s.Kept), snapshots.Sum(s => s.Size), snapshots.Where(s => !s.Kept).Sum(s => s.Size)),
        ];
        return new StoreUsage(imageRows, containers, layers, summary);
    }

    /// <summary>Image and init layers nothing reaches, unmounted, whose children (if any) are dangling too: what the store's
    /// collection removes.</summary>
    static List<Layer> Dangling(IReadOnlyList<Layer> layers, HashSet<string> reached)
    {
        var candidates = layers.Where(l => !reached.Contains(l.Id) && l.Mounts == 0
            && (l.Labels.ContainsKey(ImageStore.LayerLabel) || l.Labels.ContainsKey(ContainerStore.InitLabel))).ToDictionary(l => l.Id, StringComparer.Ordinal);
        for (bool changed = true; changed;)
        {
            changed = false;
            foreach (var l in layers)
                if (l.Parent is { } p && candidates.ContainsKey(p) && !candidates.ContainsKey(l.Id))
                {
                    candidates.Remove(p); // a child that stays keeps it
                    changed = true;
                }
        }
        return [.. candidates.Values];
    }
}
