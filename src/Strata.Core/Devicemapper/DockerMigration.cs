using Strata.Archive;
using Strata.Core.Containers;
using Strata.Core.Images;
using Strata.Native;

namespace Strata.Core.Devicemapper;

/// <summary>What a migration did with one image or container: imported, there already, or failed (and why).</summary>
public sealed record Migrated(string What, string Outcome, bool Failed);

/// <summary>
/// Moves Docker's devicemapper storage into a Strata store, without touching Docker's. Images first: each as Docker
/// had it (the same config, so the same id, and its names), its layers written again from their tar-split and their
/// devices' files and checked against their diff ids by the importer; one image at a time, each whole or not at all.
/// Then containers: a Strata container of the same name on the migrated image, into whose writable layer goes what
/// the Docker container changed (its device's tree against its init device's, as `docker diff` shows it). What the
/// store has already (an image by id, a container by name) is left as it is, so a migration that stopped, or failed
/// on one item, is run again to finish; a container is made with its changes in one step, so one a crash cut short is
/// not there (the store's next sweep removes its layer) and is migrated again.
/// </summary>
public sealed class DockerMigration(DockerStore docker, ContainerStore containers, IDeviceTrees trees)
{
    public IEnumerable<Migrated> Images(Action<ImportProgress>? progress = null)
    {
        var images = containers.Images;
        var importer = new ImageImporter(images);
        var stored = images.List().ToDictionary(i => i.Id, StringComparer.Ordinal); // images.json read once, not per image
        foreach (var image in docker.Images)
        {
            string what = $"image {(image.Names.Count > 0 ? string.Join(",", image.Names) : "<none>")} ({image.Id.Hex[..12]})";
            if (stored.GetValueOrDefault(image.Id.ToString()) is { } known)
            {
                if (image.Names.Count > 0) images.Add(known with { Names = [.. image.Names] });
                yield return new Migrated(what, "already in the store", Failed: false);
                continue;
            }
            string? failure = null;
            try
            {
                using var source = new DockerImageSource(docker, image, trees);
                importer.ImportDockerArchive(source, new ImageImporter.Options { Progress = progress });
            }
            catch (StrataException ex)
            {
                failure = ex.Message;
            }
            yield return new Migrated(what, failure ?? "imported", failure is not null);
        }
    }

    public IEnumerable<Migrated> Containers()
    {
        var names = containers.List().Select(k => k.Name).ToHashSet(StringComparer.Ordinal); // read once; this adds only Docker's own names
        foreach (var c in docker.Containers)
        {
            string what = $"container {c.Name} ({c.Id[..12]})";
            if (names.Contains(c.Name))
            {
                yield return new Migrated(what, "already in the store", Failed: false);
                continue;
            }
            string? failure = null;
            try
            {
                Migrate(c);
            }
            catch (StrataException ex)
            {
                failure = ex.Message;
            }
            yield return new Migrated(what, failure ?? "imported", failure is not null);
        }
    }

    void Migrate(DockerContainer c)
    {
        if (!containers.Images.TryGet(c.ImageId.ToString(), out _))
            throw StrataException.NotFound($"its image {c.ImageId} is not in the store (its migration failed)");
        var rw = c.Device ?? throw StrataException.NotFound($"its writable layer has no device record (mount-id {c.MountId})");
        var init = c.InitDevice ?? throw StrataException.NotFound($"its init layer has no device record (init-id {c.InitId})");
        using var rwTree = trees.Mount(rw.DeviceId);
        using var initTree = trees.Mount(init.DeviceId);
        string rwRoot = Path.Combine(rwTree.Path, "rootfs"), initRoot = Path.Combine(initTree.Path, "rootfs");
        if (!Directory.Exists(rwRoot) || !Directory.Exists(initRoot))
            throw StrataException.Corrupt($"thin device {rw.DeviceId} or {init.DeviceId} has no rootfs/");
        var changes = TreeChanges.Compute(rwRoot, initRoot);
        // the changes are spooled, then the container is made with them in one step: it exists only once whole
        string spool = Path.Combine(containers.Images.Layers.Root, "tmp", "migrate-" + c.Id + ".tar");
        try
        {
            using (var f = new FileStream(spool, FileMode.CreateNew, FileAccess.Write))
                DiffWriter.Write(f, rwRoot, changes);
            using var diff = File.OpenRead(spool);
            containers.Create(c.ImageId.ToString(), c.Name, diff);
        }
        finally
        {
            File.Delete(spool);
        }
    }
}
