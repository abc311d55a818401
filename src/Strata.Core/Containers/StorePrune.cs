using Strata.Core.Images;

namespace Strata.Core.Containers;

/// <summary>What `system prune` removed: containers by name, images by id, dangling layers by id, and what it left
/// that it would have removed, with why (a stopped container that is mounted).</summary>
public sealed record PruneReport(IReadOnlyList<string> Containers, IReadOnlyList<string> Images, IReadOnlyList<string> Layers, long ReclaimedBytes,
    IReadOnlyList<string> Kept);

/// <summary>
/// `system prune`: removes what nothing uses, as `docker system prune` does: stopped containers (created or exited; a
/// running one, and so its image, stays), then dangling images (no name left) or, with <c>all</c>, every image no
/// container uses, then the dangling layers (image and init layers nothing refers to: the store's collection). Each
/// removal is the store's own (<see cref="ContainerStore.Remove"/>, <see cref="ImageStore.Remove"/>), so each is whole
/// or not done; a container mounted by someone is kept and reported. Layers of other users (dockerd's, containerd's,
/// those made with `layer create`) are never touched.
/// </summary>
public static class StorePrune
{
    /// <param name="containerSize">A container's bytes from its layer id (null: not countable), for the space reclaimed.</param>
    public static PruneReport Run(ContainerStore catalog, bool allImages, Func<string, long?> containerSize)
    {
        var layers = catalog.Images.Layers;
        var before = layers.List().ToDictionary(l => l.Id, l => l.Size, StringComparer.Ordinal);
        var containers = new List<string>();
        var containerLayers = new HashSet<string>(StringComparer.Ordinal);
        var kept = new List<string>();
        long reclaimed = 0;
        foreach (var c in catalog.List())
        {
            if (catalog.StateOf(c).Status == ContainerState.Running) continue;
            long size = containerSize(c.Id) ?? 0;
            try
            {
                catalog.Remove(c.Id);
                containers.Add(c.Name);
                containerLayers.Add(c.Id);
                reclaimed += size;
            }
            catch (StrataException ex) when (ex.Kind is ErrorKind.InUse or ErrorKind.NotFound)
            {
                if (ex.Kind == ErrorKind.InUse) kept.Add($"container {c.Name}: {ex.Message}");
            }
        }
        var images = new List<string>();
        foreach (var image in catalog.Images.List())
        {
            if (!allImages && image.Names.Count > 0) continue;
            if (catalog.UsersOf(image.Id).Count > 0) continue; // a running container's
            try
            {
                catalog.Images.Remove(image.Id, catalog.UsersOf, force: true);
                images.Add(image.Id);
            }
            catch (StrataException ex) when (ex.Kind is ErrorKind.InUse or ErrorKind.NotFound)
            {
                if (ex.Kind == ErrorKind.InUse) kept.Add($"image {image.ShortId}: {ex.Message}");
            }
        }
        catalog.Images.Collect(); // image layers nothing refers to
        catalog.Sweep();          // init layers no container is over, container layers without a record
        var after = layers.List().Select(l => l.Id).ToHashSet(StringComparer.Ordinal);
        var gone = before.Keys.Where(id => !after.Contains(id) && !containerLayers.Contains(id)).ToList();
        reclaimed += gone.Sum(id => before[id]);
        return new PruneReport(containers, images, gone, reclaimed, kept);
    }
}
