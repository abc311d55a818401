// How a test's private registry serves: transport and authentication.
namespace Strata.Integration.Tests;

/// <summary>How clients must authenticate to a <see cref="PrivateRegistry"/>.</summary>
enum RegistryAuth
{
    /// <summary>Anyone may pull and push.</summary>
    None,

    /// <summary>HTTP basic auth of <see cref="RegistryOptions.User"/> (distribution's <c>auth: htpasswd</c>, bcrypt entries
    /// made by `htpasswd -B` from Debian's apache2-utils).</summary>
    Htpasswd,

    /// <summary>Bearer tokens from a <see cref="RegistryTokenIssuer"/> that the registry starts and owns; the issuer takes
    /// <see cref="RegistryOptions.User"/>'s basic auth.</summary>
    Token,
}

/// <summary>A <see cref="PrivateRegistry"/>'s transport and authentication. The default is plain HTTP, no auth: what the
/// one-argument constructor has always started.</summary>
sealed record RegistryOptions
{
    /// <summary>Serve https with a server certificate for 127.0.0.1 and localhost signed by the registry's own test CA
    /// (<see cref="PrivateRegistry.CaPemPath"/>).</summary>
    public bool Tls { get; init; }

    public RegistryAuth Auth { get; init; } = RegistryAuth.None;

    /// <summary>The one user of htpasswd or token auth.</summary>
    public string User { get; init; } = "strata";

    public string Password { get; init; } = "correct horse";
}
