namespace Strata.Core.Registry;

/// <summary>A registry login: user and password, or an identity (refresh) token.</summary>
public sealed record RegistryCredential(string? Username, string? Password, string? IdentityToken = null);

/// <summary>
/// Registry logins in Docker's client config (<c>$DOCKER_CONFIG/config.json</c>, default <c>~/.docker/config.json</c>):
/// <c>auths</c> entries (base64 user:password, identitytoken), and credential helpers (<c>credsStore</c>, per-registry
/// <c>credHelpers</c>) called as <c>docker-credential-NAME get|store|erase</c>, so that `docker login` and
/// `strata login` share logins. Docker Hub's entry is keyed <c>https://index.docker.io/v1/</c>.
/// </summary>
public sealed class DockerCredentials
{
    /// <summary><paramref name="directory"/>: the config directory (null: env DOCKER_CONFIG, else $HOME/.docker).</summary>
    public DockerCredentials(string? directory = null) => throw new NotImplementedException();

    /// <summary>The config file's path.</summary>
    public string ConfigFile => throw new NotImplementedException();

    /// <summary>The login for <paramref name="registry"/> (a reference's registry: docker.io, host[:port]); null: none.</summary>
    public RegistryCredential? Get(string registry) => throw new NotImplementedException();

    /// <summary>Saves a login (in the helper configured for the registry, else in the file, which keeps its other keys).</summary>
    public void Store(string registry, RegistryCredential credential) => throw new NotImplementedException();

    /// <summary>Forgets a login; false when there was none.</summary>
    public bool Erase(string registry) => throw new NotImplementedException();

    /// <summary>Where a login for <paramref name="registry"/> is kept, for messages: the file's path or "docker-credential-NAME".</summary>
    public string Where(string registry) => throw new NotImplementedException();
}
