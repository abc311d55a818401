using System.Collections.Frozen;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Strata.Core.Registry;

/// <summary>
/// How Strata reaches registries, from one documented file (<see cref="DefaultPath"/>, or env STRATA_CONFIG) with
/// dockerd's daemon.json keys: registry-mirrors, insecure-registries, max-concurrent-downloads,
/// max-concurrent-uploads, max-download-attempts; and Strata's own certs-d (default /etc/docker/certs.d).
/// A missing file means the defaults; a file that does not parse, or an unknown key, is one clear line.
/// </summary>
/// <remarks>
/// Unknown keys: a key that is neither Strata's nor one of dockerd's daemon.json keys is refused, naming the key and
/// the file; dockerd's other keys (storage-driver, log-driver, debug, ...) are accepted and ignored. Refusing
/// everything unknown would stop users from pointing STRATA_CONFIG at their /etc/docker/daemon.json; accepting
/// everything would let a typo pass in silence ("registry-mirror" would quietly pull from Docker Hub, not the mirror),
/// which dockerd itself refuses. The list of dockerd's keys is the union of the json tags of moby's daemon config
/// from 17.06 to 28.x (Linux), so an older daemon.json with since-removed keys (graph, cluster-store) loads too.
/// <para>Values are checked as dockerd checks them (moby daemon/pkg/registry/config.go): a mirror is an http or
/// https URL without query, fragment or user, normalized to end in '/', duplicates dropped; an insecure registry is
/// a CIDR (10.0.0.0/8) or host[:port] (a leading http:// or https:// dropped, as dockerd does with a warning).</para>
/// </remarks>
public sealed partial record RegistrySettings
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

    /// <summary>Bigger config files, certificates and keys are refused rather than read.</summary>
    const int MaxFileBytes = 1 << 20;

    /// <summary>Reads <paramref name="path"/> (null: STRATA_CONFIG, else <see cref="DefaultPath"/>).</summary>
    public static RegistrySettings Load(string? path = null) => Load(path, Environment.GetEnvironmentVariable("STRATA_CONFIG"), DefaultPath);

    /// <summary><see cref="Load(string?)"/> with STRATA_CONFIG's value and the default path given: a file named by
    /// <paramref name="path"/> or <paramref name="environment"/> must exist; a missing <paramref name="defaultPath"/>
    /// means the defaults.</summary>
    internal static RegistrySettings Load(string? path, string? environment, string defaultPath)
    {
        bool named = true;
        if (path is null)
        {
            if (environment is { Length: > 0 }) path = environment;
            else (path, named) = (defaultPath, false);
        }
        byte[]? bytes = ReadSmallFile(path, "config file");
        if (bytes is null)
        {
            if (named) throw StrataException.NotFound($"config file {path} does not exist");
            return new RegistrySettings();
        }
        return Parse(bytes, path);
    }

    /// <summary>Settings from the JSON text of a config file; <paramref name="path"/> names it in messages.</summary>
    internal static RegistrySettings Parse(ReadOnlySpan<byte> json, string path)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { AllowDuplicateProperties = false, MaxDepth = 64 });
        }
        catch (JsonException ex)
        {
            throw StrataException.Invalid($"{path}: not valid JSON: {ex.Message}");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw StrataException.Invalid($"{path}: not a JSON object");
            var settings = new RegistrySettings();
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Value.ValueKind == JsonValueKind.Null && (Keys.Contains(p.Name) || DockerdKeys.Contains(p.Name))) continue;
                settings = p.Name switch
                {
                    "registry-mirrors" => settings with { Mirrors = Strings(p, path).Select(m => ValidateMirror(m, path)).DistinctBy(m => m.OriginalString).ToArray() },
                    "insecure-registries" => settings with { InsecureRegistries = Strings(p, path).Select(r => ValidateInsecure(r, path)).ToArray() },
                    "max-concurrent-downloads" => settings with { MaxConcurrentDownloads = Positive(p, path) },
                    "max-concurrent-uploads" => settings with { MaxConcurrentUploads = Positive(p, path) },
                    "max-download-attempts" => settings with { MaxDownloadAttempts = Positive(p, path) },
                    "certs-d" => settings with { CertsDirectory = AbsolutePath(p, path) },
                    _ when DockerdKeys.Contains(p.Name) => settings,
                    _ => throw StrataException.Invalid($"{path}: unknown key \"{p.Name}\" (Strata reads {string.Join(", ", Keys)}, and ignores dockerd's other daemon.json keys)"),
                };
            }
            return settings;
        }
    }

    /// <summary>Whether <paramref name="host"/> (host[:port] as in an image reference) may be reached over plain HTTP
    /// or with an unverified certificate: listed in insecure-registries (by name or by an address in a listed
    /// CIDR), or a loopback address (127.0.0.0/8, ::1, localhost), as dockerd does.</summary>
    /// <remarks>As dockerd's isSecureIndex: docker.io is never insecure; a listed host[:port] matches only the same
    /// text (a listed "reg.local" does not match "reg.local:5000"); otherwise the host's addresses are checked against
    /// the listed CIDRs and loopback. A host name is resolved by the system resolver (/etc/hosts, then DNS, as
    /// nsswitch.conf says), as dockerd's net.LookupIP; a name that does not resolve is in no CIDR. "localhost" is
    /// loopback without a lookup.</remarks>
    public bool IsInsecure(string host) => IsInsecure(host, Dns.GetHostAddresses);

    /// <summary><see cref="IsInsecure(string)"/> with the name lookup given (tests resolve names without DNS).</summary>
    internal bool IsInsecure(string host, Func<string, IPAddress[]> resolve)
    {
        if (host is ImageReference.DefaultRegistry or "index.docker.io") return false;
        var cidrs = new List<IPNetwork> { LoopbackV4, LoopbackV6 };
        foreach (var entry in InsecureRegistries)
        {
            string r = ValidateInsecure(entry, "settings");
            if (TryParseCidr(r, out var cidr)) cidrs.Add(cidr);
            else if (r == host) return true;
        }
        string name = TrySplitHostPort(host, out var h, out _) ? h : host;
        if (name.Length > 2 && name[0] == '[' && name[^1] == ']') name = name[1..^1];
        if (name.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return true;
        IPAddress[] addresses;
        if (TryParseIp(name, out var ip)) addresses = [ip];
        else
        {
            try
            {
                addresses = resolve(name);
            }
            catch (Exception ex) when (ex is SocketException or ArgumentException)
            {
                return false;
            }
        }
        return addresses.Any(a => cidrs.Any(c => c.Contains(a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a)));
    }

    /// <summary>The CA roots and client certificates for <paramref name="host"/> (host[:port]) from
    /// <see cref="CertsDirectory"/>/HOST[:PORT]/, by Docker's rules: every *.crt holds CA roots (PEM, one or more),
    /// every *.cert is a client certificate whose key is the *.key of the same name. A *.cert without its *.key, or a
    /// *.key without its *.cert, is refused naming both; so is a file that is not PEM. No directory: no certificates.
    /// The caller owns the certificates returned.</summary>
    public (List<X509Certificate2> Roots, X509Certificate2Collection ClientCertificates) TlsFor(string host)
    {
        if (host.Length == 0 || host is "." or ".." || host.Contains('/') || host.Contains('\0'))
            throw StrataException.Invalid($"\"{host}\" is not a registry host");
        string dir = Path.Combine(CertsDirectory, host);
        string[] files;
        try
        {
            files = Directory.GetFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
        }
        catch (DirectoryNotFoundException)
        {
            return ([], []);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw ReadError(dir, "certificate directory", ex);
        }
        var names = files.ToHashSet(StringComparer.Ordinal);
        var roots = new List<X509Certificate2>();
        var clients = new X509Certificate2Collection();
        try
        {
            foreach (var file in files)
            {
                string full = Path.Combine(dir, file);
                if (file.EndsWith(".crt", StringComparison.Ordinal))
                {
                    var bundle = new X509Certificate2Collection();
                    try
                    {
                        bundle.ImportFromPem(ReadText(full, "CA certificate"));
                    }
                    catch (CryptographicException ex)
                    {
                        throw StrataException.Invalid($"{full}: not a PEM certificate: {ex.Message}");
                    }
                    if (bundle.Count == 0) throw StrataException.Invalid($"{full}: holds no PEM certificate");
                    roots.AddRange(bundle);
                }
                else if (file.EndsWith(".cert", StringComparison.Ordinal))
                {
                    string key = file[..^".cert".Length] + ".key";
                    if (!names.Contains(key))
                        throw StrataException.Invalid($"{dir}: client certificate {file} has no key {key} (CA certificates are named *.crt)");
                    string keyPath = Path.Combine(dir, key);
                    try
                    {
                        clients.Add(X509Certificate2.CreateFromPem(ReadText(full, "client certificate"), ReadText(keyPath, "client key")));
                    }
                    catch (CryptographicException ex)
                    {
                        throw StrataException.Invalid($"{full} and {key}: not a PEM certificate and its unencrypted PEM key: {ex.Message}");
                    }
                }
                else if (file.EndsWith(".key", StringComparison.Ordinal))
                {
                    string cert = file[..^".key".Length] + ".cert";
                    if (!names.Contains(cert)) throw StrataException.Invalid($"{dir}: key {file} has no client certificate {cert}");
                }
            }
        }
        catch
        {
            foreach (var c in roots) c.Dispose();
            foreach (var c in clients) c.Dispose();
            throw;
        }
        return (roots, clients);
    }

    /// <summary>The keys this file gives meaning to.</summary>
    static readonly string[] Keys =
        ["registry-mirrors", "insecure-registries", "max-concurrent-downloads", "max-concurrent-uploads", "max-download-attempts", "certs-d"];

    /// <summary>dockerd's daemon.json keys (Linux), 17.06 to 28.x: the json tags of moby's daemon config.</summary>
    static readonly FrozenSet<string> DockerdKeys = FrozenSet.ToFrozenSet(
    [
        "allow-direct-routing", "allow-nondistributable-artifacts", "api-cors-header", "api-enable-cors", "authorization-plugins",
        "bip", "bip6", "bridge", "bridge-accept-fwmark", "builder", "cdi-spec-dirs", "cgroup-parent", "cluster-advertise",
        "cluster-store", "cluster-store-opts", "containerd", "containerd-namespace", "containerd-plugin-namespace",
        "cpu-rt-period", "cpu-rt-runtime", "cri-containerd", "data-root", "debug", "default-address-pools",
        "default-cgroupns-mode", "default-gateway", "default-gateway-v6", "default-init", "default-ipc-mode",
        "default-network-opts", "default-runtime", "default-shm-size", "default-stop-timeout", "default-ulimits",
        "deprecated-key-path", "disable-legacy-registry", "dns", "dns-opts", "dns-search", "exec-opts", "exec-root",
        "experimental", "features", "firewall-backend", "fixed-cidr", "fixed-cidr-v6", "graph", "group", "host-gateway-ip",
        "host-gateway-ips", "hosts", "http-proxy", "https-proxy", "icc", "init", "init-path", "ip", "ip-forward",
        "ip-forward-no-drop", "ip-masq", "ip6tables", "iptables", "ipv6", "labels", "live-restore", "log-driver",
        "log-format", "log-level", "log-opts", "metrics-addr", "min-api-version", "mtu", "network-control-plane-mtu",
        "network-diagnostic-port", "no-new-privileges", "no-proxy", "node-generic-resources", "nri-opts",
        "oom-score-adjust", "pidfile", "proxies", "raw-logs", "resolv-conf", "rootless", "runtimes", "seccomp-profile",
        "selinux-enabled", "shutdown-timeout", "storage-driver", "storage-opts", "swarm-default-advertise-addr",
        "swarm-raft-election-tick", "swarm-raft-heartbeat-tick", "tls", "tlscacert", "tlscert", "tlskey", "tlsverify",
        "userland-proxy", "userland-proxy-path", "userns-remap",
    ], StringComparer.Ordinal);

    static readonly IPNetwork LoopbackV4 = new(IPAddress.Parse("127.0.0.0"), 8);
    static readonly IPNetwork LoopbackV6 = new(IPAddress.IPv6Loopback, 128);

    static IEnumerable<string> Strings(JsonProperty p, string path)
    {
        if (p.Value.ValueKind != JsonValueKind.Array) throw StrataException.Invalid($"{path}: {p.Name}: not an array of strings");
        return p.Value.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String
            ? e.GetString()!
            : throw StrataException.Invalid($"{path}: {p.Name}: {e.GetRawText()} is not a string")).ToArray();
    }

    static int Positive(JsonProperty p, string path) =>
        p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt32(out int n) && n > 0
            ? n
            : throw StrataException.Invalid($"{path}: {p.Name}: {p.Value.GetRawText()} is not a positive integer");

    static string AbsolutePath(JsonProperty p, string path) =>
        p.Value.ValueKind == JsonValueKind.String && p.Value.GetString() is { Length: > 0 } s && Path.IsPathRooted(s) && !s.Contains('\0')
            ? s
            : throw StrataException.Invalid($"{path}: {p.Name}: {p.Value.GetRawText()} is not an absolute directory path");

    /// <summary>dockerd's ValidateMirror: an http(s) URL with a host, no query, fragment or user; a path is kept.</summary>
    static Uri ValidateMirror(string text, string path)
    {
        int scheme = text.IndexOf("://", StringComparison.Ordinal);
        string why =
            scheme <= 0 ? "has no scheme (http:// or https://)"
            : !(text[..scheme].Equals("http", StringComparison.OrdinalIgnoreCase) || text[..scheme].Equals("https", StringComparison.OrdinalIgnoreCase)) ? "is not an http or https URL"
            : text.Contains('?') || text.Contains('#') ? "has a query or fragment"
            : !Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Host.Length == 0 ? "is not a valid URL"
            : uri.UserInfo.Length > 0 ? "has a user or password in it"
            : "";
        if (why.Length > 0) throw StrataException.Invalid($"{path}: registry-mirrors: \"{text}\" {why}");
        return new Uri(text.EndsWith('/') ? text : text + "/");
    }

    /// <summary>dockerd's insecure-registries check; returns the entry as dockerd keeps it (without http(s)://).</summary>
    static string ValidateInsecure(string text, string path)
    {
        string r = text;
        if (r.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) r = r["http://".Length..];
        else if (r.StartsWith("https://", StringComparison.OrdinalIgnoreCase)) r = r["https://".Length..];
        string why =
            r.Contains("://", StringComparison.Ordinal) ? "has a scheme other than http:// or https://"
            : r.StartsWith('-') || r.EndsWith('-') ? "begins or ends with a hyphen"
            : r.Contains('/') ? (TryParseCidr(r, out _) ? "" : "is not a CIDR (10.0.0.0/8) or host[:port]")
            : ValidHostPort(r) ? ""
            : "is not a CIDR (10.0.0.0/8) or host[:port]";
        if (why.Length > 0) throw StrataException.Invalid($"{path}: insecure-registries: \"{text}\" {why}");
        return r;
    }

    /// <summary>dockerd's validateHostPort: the whole text is a domain[:port] (distribution's DomainRegexp), or its
    /// host part is an IP address; a port is 0 to 65535.</summary>
    static bool ValidHostPort(string s)
    {
        string host = s;
        string? port = null;
        if (TrySplitHostPort(s, out var h, out var p)) (host, port) = (h, p);
        if (!DomainPattern().IsMatch(s) && !TryParseIp(host, out _)) return false;
        return port is null || (int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v <= 65535);
    }

    /// <summary>Go's net.SplitHostPort: "host:port" with one colon, or "[host]:port"; false for anything else.</summary>
    internal static bool TrySplitHostPort(string s, out string host, out string port)
    {
        host = port = "";
        if (s.StartsWith('['))
        {
            int end = s.IndexOf(']');
            if (end < 0 || end + 1 >= s.Length || s[end + 1] != ':') return false;
            (host, port) = (s[1..end], s[(end + 2)..]);
            return !host.Contains('[') && !port.Contains(']');
        }
        int colon = s.LastIndexOf(':');
        if (colon < 0 || s.AsSpan(0, colon).Contains(':')) return false;
        (host, port) = (s[..colon], s[(colon + 1)..]);
        return true;
    }

    /// <summary>An IP address as Go's net.ParseIP takes it: dotted quad without leading zeros, or IPv6 without a zone.</summary>
    static bool TryParseIp(string s, out IPAddress address)
    {
        address = IPAddress.None;
        if (s.Contains(':')) return !s.Contains('%') && IPAddress.TryParse(s, out address!) && address.AddressFamily == AddressFamily.InterNetworkV6;
        return Ipv4Pattern().IsMatch(s) && IPAddress.TryParse(s, out address!);
    }

    /// <summary>Go's net.ParseCIDR: ADDRESS/PREFIX, host bits allowed (and masked off).</summary>
    static bool TryParseCidr(string s, out IPNetwork network)
    {
        network = default;
        int slash = s.IndexOf('/');
        if (slash < 0 || !TryParseIp(s[..slash], out var ip)) return false;
        string bits = s[(slash + 1)..];
        int max = ip.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        if (bits.Length is 0 or > 3 || !int.TryParse(bits, NumberStyles.None, CultureInfo.InvariantCulture, out int prefix) || prefix > max) return false;
        byte[] bytes = ip.GetAddressBytes();
        for (int i = 0; i < bytes.Length; i++)
        {
            int keep = Math.Clamp(prefix - i * 8, 0, 8);
            bytes[i] &= (byte)(0xFF << (8 - keep));
        }
        network = new IPNetwork(new IPAddress(bytes), prefix);
        return true;
    }

    /// <summary>distribution/reference's DomainRegexp: DNS-ish labels or a bracketed IPv6 address, then an optional port.</summary>
    [GeneratedRegex(@"\A(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?\z")]
    private static partial Regex DomainPattern();

    [GeneratedRegex(@"\A(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\z")]
    private static partial Regex Ipv4Pattern();

    static string ReadText(string path, string what) => Encoding.UTF8.GetString(ReadSmallFile(path, what) ?? throw StrataException.NotFound($"{what} {path} does not exist"));

    /// <summary>The bytes of a small file; null when it does not exist. Other failures name <paramref name="what"/> and the path.</summary>
    static byte[]? ReadSmallFile(string path, string what)
    {
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
            if (f.Length > MaxFileBytes) throw StrataException.Invalid($"{what} {path} is larger than {MaxFileBytes >> 20} MiB");
            var buffer = new byte[f.Length];
            f.ReadExactly(buffer);
            return buffer;
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw ReadError(path, what, ex);
        }
    }

    static StrataException ReadError(string path, string what, Exception ex) => ex is UnauthorizedAccessException && Directory.Exists(path) && what != "certificate directory"
        ? StrataException.Invalid($"{what} {path} is a directory")
        : new StrataException(ex is UnauthorizedAccessException ? ErrorKind.PermissionDenied : ErrorKind.Io, $"cannot read {what} {path}: {ex.Message}");
}
