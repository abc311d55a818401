using Strata.Core.Images;

namespace Strata.Core.Registry;

/// <summary>Pulls images from a registry into an <see cref="ImageStore"/>.</summary>
public sealed class Puller(ImageStore images, RegistrySettings settings, DockerCredentials credentials)
{
    readonly ImageStore _images = images;
    readonly RegistrySettings _settings = settings;
    readonly DockerCredentials _credentials = credentials;

    public List<PulledImage> Pull(ImageReference reference, PullOptions options) => throw new NotImplementedException();
}
