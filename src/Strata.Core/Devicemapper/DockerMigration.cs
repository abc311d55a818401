using Strata.Core.Images;

namespace Strata.Core.Devicemapper;

/// <summary>What a migration did with one image: imported, there already, or failed (and why).</summary>
public sealed record MigratedImage(DockerImage Image, string Outcome, bool Failed);

/// <summary>
/// Moves the images of Docker's devicemapper storage into a Strata store, without touching Docker's: each image is
/// imported as Docker had it (the same config, so the same id, and its names), its layers written again from their
/// tar-split and their devices' files and checked against their diff ids by the importer. One image at a time, each
/// whole or not at all; an image the store has already is only given its names, so a migration that stopped
/// (or failed on one image) is run again to finish.
/// </summary>
public sealed class DockerMigration(DockerStore docker, ImageStore images, IDeviceTrees trees)
{
    public IEnumerable<MigratedImage> Images(Action<ImportProgress>? progress = null)
    {
        var importer = new ImageImporter(images);
        foreach (var image in docker.Images)
        {
            var known = images.List().FirstOrDefault(i => i.Id == image.Id.ToString());
            if (known is not null)
            {
                if (image.Names.Count > 0) images.Add(known with { Names = [.. image.Names] });
                yield return new MigratedImage(image, "already in the store", Failed: false);
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
            yield return failure is null ? new MigratedImage(image, "imported", Failed: false) : new MigratedImage(image, failure, Failed: true);
        }
    }
}
