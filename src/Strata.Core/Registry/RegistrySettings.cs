namespace Strata.Core.Registry;

/// <summary>
/// How Strata reaches registries, from one documented file (<see cref="DefaultPath"/>, or env STRATA_CONFIG) with
/// dockerd's daemon.json keys: registry-mirrors, insecure-registries, max-concurrent-downloads,
/// max-concurrent-uploads, max-download-attempts; and Strata's own certs-d (default /etc/docker/certs.d).
/// A missing file means the defaults; a file that does not parse, or an unknown key, is one clear line.
/// </summary>
public sealed record RegistrySettings
{
    public const string DefaultPath = "/etc/strata/config.json";

    /// <summary>Mirrors of Docker Hub (docker.io), tried in order before it, as dockerd's registry-mirrors.</summary>
    public IReadOnlyList<Uri> Mirrors { get; init; } = [];
    /// <summary>host[:port] entries and CIDR ranges (as dockerd's insecure-registries).</summary>
    public IReadOnlyList<string> InsecureRegistries { get; init; } = [];
    public int MaxConcurrentDownloads { get; init; } = 3;
    public int MaxConcurrentUploads { get; init; } = 5;
    public int MaxDownloadAttempts { get; init; } = 5;
    /// <summary>Where per-registry CAs and client certificates are: DIR/HOST[:PORT]/ca.crt, *.crt, *.cert + *.key.</summary>
    public string CertsDirectory { get; init; } = "/etc/docker/certs.d";

    /// <summary>Reads <paramref name="path"/> (null: STRATA_CONFIG, else <see cref="DefaultPath"/>).</summary>
    public static RegistrySettings Load(string? path = null) => throw new NotImplementedException();

    /// <summary>Whether <paramref name="host"/> (host[:port] as in an image reference) may be reached over plain HTTP
    /// or with an unverified certificate: listed in insecure-registries (by name or by an address in a listed
    /// CIDR), or a loopback address (127.0.0.0/8, ::1, localhost), as dockerd does.</summary>
    public bool IsInsecure(string host) => throw new NotImplementedException();

    /// <summary>The CA roots and client certificates of CertsDirectory/HOST[:PORT]/ (empty when it does not exist).</summary>
    public (List<System.Security.Cryptography.X509Certificates.X509Certificate2> Roots, System.Security.Cryptography.X509Certificates.X509Certificate2Collection ClientCertificates) TlsFor(string host) => throw new NotImplementedException();
}
