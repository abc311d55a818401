namespace Strata.Core.Registry;

/// <summary>`docker login`'s check: a registry's /v2/ answered with the given credential (basic or the token flow).</summary>
public static class Login
{
    /// <summary>Succeeds when <paramref name="registry"/> (docker.io or host[:port]) accepts <paramref name="credential"/>;
    /// a refusal is StrataException PermissionDenied naming the registry; returns the identity token the registry gave
    /// in place of the password, if any.</summary>
    public static string? Check(string registry, RegistryCredential credential, RegistrySettings settings)
    {
        using var client = new RegistryClient(registry, settings, credential, push: true);
        client.Ping();
        return client.RefreshToken;
    }
}
