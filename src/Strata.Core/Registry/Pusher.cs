using Strata.Core.Images;

namespace Strata.Core.Registry;

/// <summary>Pushes an image of an <see cref="ImageStore"/> to a registry.</summary>
public sealed class Pusher(ImageStore images, RegistrySettings settings, DockerCredentials credentials)
{
    readonly ImageStore _images = images;
    readonly RegistrySettings _settings = settings;
    readonly DockerCredentials _credentials = credentials;

    /// <summary>Pushes image <paramref name="image"/> (a name or id in the store) as <paramref name="target"/>.</summary>
    public PushedImage Push(string image, ImageReference target, PushOptions options) => throw new NotImplementedException();
}
