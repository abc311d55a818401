using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Strata.Core.Registry;
using Strata.Testing;

namespace Strata.Core.Tests.Registry;

/// <summary>The registry settings file reads dockerd's daemon.json keys as dockerd checks them, refuses bad values and
/// unknown keys in one line naming the file and the key, and answers which registries are insecure and which
/// certificates a registry's TLS uses, as dockerd decides both.</summary>
public sealed class RegistrySettingsTests : IDisposable
{
    readonly TempRoot _root = new();

    public void Dispose() => _root.Dispose();

    string Config(string json)
    {
        string path = _root.Combine($"config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void EveryKeyIsReadAndNormalizedAsDockerdDoes()
    {
        string path = Config("""
            {
              "registry-mirrors": ["https://mirror.example", "http://10.0.0.5:5000/", "https://mirror.example/", "https://proxy.example/repository/hub"],
              "insecure-registries": ["10.0.0.0/8", "myreg.local:5000", "http://plain.local", "HTTPS://upper.local:443", "fd00::/8", "::1", "[fe80::1]:5000"],
              "max-concurrent-downloads": 7,
              "max-concurrent-uploads": 2,
              "max-download-attempts": 9,
              "certs-d": "/srv/certs.d"
            }
            """);
        var s = RegistrySettings.Load(path);
        Assert.Equal(["https://mirror.example/", "http://10.0.0.5:5000/", "https://proxy.example/repository/hub/"], s.Mirrors.Select(m => m.OriginalString));
        Assert.Equal(["10.0.0.0/8", "myreg.local:5000", "plain.local", "upper.local:443", "fd00::/8", "::1", "[fe80::1]:5000"], s.InsecureRegistries);
        Assert.Equal((7, 2, 9, "/srv/certs.d"), (s.MaxConcurrentDownloads, s.MaxConcurrentUploads, s.MaxDownloadAttempts, s.CertsDirectory));
    }

    [Fact]
    public void AnEmptyObjectAndNullValuesMeanTheDefaults()
    {
        var defaults = new RegistrySettings();
        Assert.Equal((3, 5, 5, "/etc/docker/certs.d"), (defaults.MaxConcurrentDownloads, defaults.MaxConcurrentUploads, defaults.MaxDownloadAttempts, defaults.CertsDirectory));
        foreach (var json in new[] { "{}", """{"registry-mirrors": null, "max-concurrent-downloads": null, "certs-d": null, "debug": null}""" })
        {
            var s = RegistrySettings.Load(Config(json));
            Assert.Empty(s.Mirrors);
            Assert.Empty(s.InsecureRegistries);
            Assert.Equal((3, 5, 5, "/etc/docker/certs.d"), (s.MaxConcurrentDownloads, s.MaxConcurrentUploads, s.MaxDownloadAttempts, s.CertsDirectory));
        }
    }

    [Fact]
    public void TheFileIsTheArgumentElseStrataConfigElseTheDefaultPath()
    {
        string first = Config("""{"max-concurrent-downloads": 1}"""), second = Config("""{"max-concurrent-downloads": 2}"""), third = Config("""{"max-concurrent-downloads": 3}""");
        string missing = _root.Combine("missing.json");
        Assert.Equal(1, RegistrySettings.Load(first, second, third).MaxConcurrentDownloads);
        Assert.Equal(2, RegistrySettings.Load(null, second, third).MaxConcurrentDownloads);
        Assert.Equal(3, RegistrySettings.Load(null, null, third).MaxConcurrentDownloads);
        Assert.Equal(3, RegistrySettings.Load(null, "", third).MaxConcurrentDownloads); // an empty STRATA_CONFIG is unset

        // A missing file at the default path is the defaults; one named by the argument or STRATA_CONFIG is an error.
        Assert.Equal(3, RegistrySettings.Load(null, null, missing).MaxConcurrentDownloads);
        foreach (var (path, env) in new[] { (missing, (string?)null), (null, missing) })
        {
            var ex = Assert.Throws<StrataException>(() => RegistrySettings.Load(path, env, third));
            Assert.Equal(ErrorKind.NotFound, ex.Kind);
            Assert.Equal($"config file {missing} does not exist", ex.Message);
        }
    }

    [Theory]
    [InlineData("""{"registry-mirrors": ["mirror.example"]}""", "registry-mirrors", "has no scheme")]
    [InlineData("""{"registry-mirrors": ["mirror.example:5000"]}""", "registry-mirrors", "has no scheme")]
    [InlineData("""{"registry-mirrors": ["ftp://mirror.example"]}""", "registry-mirrors", "is not an http or https URL")]
    [InlineData("""{"registry-mirrors": ["https://mirror.example/?q=1"]}""", "registry-mirrors", "has a query or fragment")]
    [InlineData("""{"registry-mirrors": ["https://mirror.example#top"]}""", "registry-mirrors", "has a query or fragment")]
    [InlineData("""{"registry-mirrors": ["https://user:pw@mirror.example"]}""", "registry-mirrors", "has a user or password")]
    [InlineData("""{"registry-mirrors": ["https://"]}""", "registry-mirrors", "is not a valid URL")]
    [InlineData("""{"registry-mirrors": [5]}""", "registry-mirrors", "5 is not a string")]
    [InlineData("""{"registry-mirrors": "https://mirror.example"}""", "registry-mirrors", "not an array of strings")]
    [InlineData("""{"insecure-registries": ["10.0.0.0/33"]}""", "insecure-registries", "is not a CIDR")]
    [InlineData("""{"insecure-registries": ["300.0.0.0/8"]}""", "insecure-registries", "is not a CIDR")]
    [InlineData("""{"insecure-registries": ["010.0.0.0/8"]}""", "insecure-registries", "is not a CIDR")]
    [InlineData("""{"insecure-registries": ["ftp://reg.local"]}""", "insecure-registries", "has a scheme other than")]
    [InlineData("""{"insecure-registries": ["-reg.local"]}""", "insecure-registries", "begins or ends with a hyphen")]
    [InlineData("""{"insecure-registries": ["reg.local:99999"]}""", "insecure-registries", "is not a CIDR (10.0.0.0/8) or host[:port]")]
    [InlineData("""{"insecure-registries": ["reg.local:http"]}""", "insecure-registries", "is not a CIDR (10.0.0.0/8) or host[:port]")]
    [InlineData("""{"insecure-registries": ["reg local"]}""", "insecure-registries", "is not a CIDR (10.0.0.0/8) or host[:port]")]
    [InlineData("""{"insecure-registries": ["reg.local/v2"]}""", "insecure-registries", "is not a CIDR (10.0.0.0/8) or host[:port]")]
    [InlineData("""{"max-concurrent-downloads": 0}""", "max-concurrent-downloads", "0 is not a positive integer")]
    [InlineData("""{"max-concurrent-uploads": -1}""", "max-concurrent-uploads", "-1 is not a positive integer")]
    [InlineData("""{"max-download-attempts": 1.5}""", "max-download-attempts", "1.5 is not a positive integer")]
    [InlineData("""{"max-download-attempts": "3"}""", "max-download-attempts", "\"3\" is not a positive integer")]
    [InlineData("""{"max-concurrent-downloads": 3000000000}""", "max-concurrent-downloads", "3000000000 is not a positive integer")]
    [InlineData("""{"certs-d": "certs.d"}""", "certs-d", "is not an absolute directory path")]
    [InlineData("""{"certs-d": ""}""", "certs-d", "is not an absolute directory path")]
    [InlineData("""{"certs-d": ["/etc"]}""", "certs-d", "is not an absolute directory path")]
    public void ABadValueIsOneLineNamingTheFileAndTheKey(string json, string key, string problem)
    {
        string path = Config(json);
        var ex = Assert.Throws<StrataException>(() => RegistrySettings.Load(path));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.StartsWith($"{path}: {key}: ", ex.Message);
        Assert.Contains(problem, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Theory]
    [InlineData("{", "not valid JSON")]
    [InlineData("", "not valid JSON")]
    [InlineData("""{"debug": true,}""", "not valid JSON")]
    [InlineData("""{"max-concurrent-downloads": 1, "max-concurrent-downloads": 2}""", "not valid JSON")]
    [InlineData("[]", "not a JSON object")]
    [InlineData("\"registry-mirrors\"", "not a JSON object")]
    public void AFileThatIsNotAJsonObjectIsOneLineNamingTheFile(string json, string problem)
    {
        string path = Config(json);
        var ex = Assert.Throws<StrataException>(() => RegistrySettings.Load(path));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.StartsWith($"{path}: {problem}", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    /// <summary>The choice documented on the class: a typo is refused as dockerd refuses it, but the rest of a real
    /// daemon.json is accepted, so that STRATA_CONFIG may point at /etc/docker/daemon.json.</summary>
    [Theory]
    [InlineData("registry-mirror")]
    [InlineData("insecure-registry")]
    [InlineData("max-concurrent-download")]
    [InlineData("certs.d")]
    [InlineData("Registry-Mirrors")]
    public void AKeyThatIsNeitherStratasNorDockerdsIsRefusedByName(string key)
    {
        string path = Config($$"""{"debug": true, "{{key}}": ["https://mirror.example"]}""");
        var ex = Assert.Throws<StrataException>(() => RegistrySettings.Load(path));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.StartsWith($"{path}: unknown key \"{key}\" (Strata reads registry-mirrors, insecure-registries,", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void ADaemonJsonLoadsWithDockerdsOtherKeysIgnored()
    {
        string path = Config("""
            {
              "data-root": "/var/lib/docker",
              "storage-driver": "overlay2",
              "storage-opts": ["overlay2.override_kernel_check=true"],
              "log-driver": "json-file",
              "log-opts": {"max-size": "10m", "max-file": "3"},
              "debug": true,
              "live-restore": true,
              "dns": ["10.0.0.2"],
              "default-address-pools": [{"base": "172.80.0.0/16", "size": 24}],
              "exec-opts": ["native.cgroupdriver=systemd"],
              "features": {"buildkit": true},
              "builder": {"gc": {"enabled": true, "defaultKeepStorage": "20GB"}},
              "runtimes": {"runc": {"path": "runc"}},
              "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 64000, "Soft": 64000}},
              "proxies": {"http-proxy": "http://proxy.example:3128"},
              "graph": "/old/docker",
              "cluster-store": "consul://localhost:8500",
              "registry-mirrors": ["https://mirror.gcr.io"],
              "insecure-registries": ["registry.corp:5000"],
              "max-concurrent-downloads": 10
            }
            """);
        var s = RegistrySettings.Load(path);
        Assert.Equal("https://mirror.gcr.io/", Assert.Single(s.Mirrors).OriginalString);
        Assert.Equal("registry.corp:5000", Assert.Single(s.InsecureRegistries));
        Assert.Equal(10, s.MaxConcurrentDownloads);
    }

    static IPAddress[] FakeDns(string name) => name switch
    {
        "inside.corp" => [IPAddress.Parse("10.9.9.9")],
        "outside.corp" => [IPAddress.Parse("192.168.1.1")],
        "mapped.corp" => [IPAddress.Parse("::ffff:10.1.1.1")],
        "twoaddr.corp" => [IPAddress.Parse("192.168.1.1"), IPAddress.Parse("fd00::5")],
        "selfname" => [IPAddress.Parse("127.0.1.1")],
        _ => throw new SocketException((int)SocketError.HostNotFound),
    };

    [Theory]
    [InlineData("127.0.0.1:5000", true)]
    [InlineData("127.1.2.3", true)]
    [InlineData("[::1]:5000", true)]
    [InlineData("[::1]", true)]
    [InlineData("localhost:5000", true)]
    [InlineData("LocalHost", true)]
    [InlineData("selfname:5000", true)] // a name that resolves to loopback, as Debian's own host name does
    [InlineData("myreg.local:5000", false)]
    [InlineData("10.1.2.3:5000", false)]
    [InlineData("[::2]:5000", false)]
    [InlineData("docker.io", false)]
    [InlineData("unknown.name", false)]
    public void LoopbackIsInsecureByDefault(string host, bool insecure) =>
        Assert.Equal(insecure, new RegistrySettings().IsInsecure(host, FakeDns));

    [Theory]
    [InlineData("myreg.local", true)] // listed without a port
    [InlineData("myreg.local:5000", false)] // dockerd matches host[:port] exactly: a listed host does not cover its ports
    [InlineData("other.local:5000", true)]
    [InlineData("other.local", false)]
    [InlineData("other.local:5001", false)]
    [InlineData("plain.local:80", true)] // listed as http://plain.local:80
    [InlineData("10.1.2.3:5000", true)]
    [InlineData("10.255.255.255", true)]
    [InlineData("11.0.0.1:5000", false)]
    [InlineData("inside.corp:5000", true)] // resolves into 10.0.0.0/8
    [InlineData("outside.corp:5000", false)]
    [InlineData("mapped.corp", true)] // an IPv4-mapped IPv6 address is checked as IPv4
    [InlineData("twoaddr.corp", true)] // any of its addresses
    [InlineData("[fd00::1]:5000", true)]
    [InlineData("[fe80::1]:5000", false)]
    [InlineData("unknown.name:5000", false)] // does not resolve: in no CIDR
    [InlineData("docker.io", false)] // dockerd never treats the official index as insecure
    [InlineData("index.docker.io", false)]
    public void AListedHostMatchesExactlyAndAnAddressMatchesItsCidr(string host, bool insecure)
    {
        var s = new RegistrySettings { InsecureRegistries = ["myreg.local", "other.local:5000", "http://plain.local:80", "10.0.0.0/8", "fd00::/8", "docker.io"] };
        Assert.Equal(insecure, s.IsInsecure(host, FakeDns));
    }

    [Fact]
    public void TheCidrsHostBitsAreMaskedOffAsGoDoes()
    {
        var s = RegistrySettings.Load(Config("""{"insecure-registries": ["192.168.7.77/24"]}"""));
        Assert.True(s.IsInsecure("192.168.7.1:5000", FakeDns));
        Assert.False(s.IsInsecure("192.168.8.1:5000", FakeDns));
    }

    [SkippableFact]
    public void TheSystemResolverAnswersForNamesInEtcHosts()
    {
        var s = new RegistrySettings();
        Assert.True(s.IsInsecure("localhost:5000"));
        Assert.True(s.IsInsecure("127.0.0.1:5000"));
        Assert.False(s.IsInsecure("192.0.2.1:5000")); // TEST-NET-1: an address, no lookup
        // A name /etc/hosts maps to a loopback address is insecure through the lookup, as in dockerd.
        string? name = File.ReadAllLines("/etc/hosts")
            .Select(l => l.Split('#')[0].Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length > 1 && IPAddress.TryParse(f[0], out var a) && IPAddress.IsLoopback(a))
            .SelectMany(f => f.Skip(1))
            .FirstOrDefault(n => !n.Equals("localhost", StringComparison.OrdinalIgnoreCase));
        Skip.If(name is null, "/etc/hosts names no loopback address but localhost");
        Assert.True(s.IsInsecure(name + ":5000"), $"{name} resolves to loopback");
    }

    static (string CertPem, string KeyPem, X509Certificate2 Cert) SelfSigned(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        return (cert.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem(), cert);
    }

    [Fact]
    public void TlsForReadsCaRootsAndClientPairsAsDockerDoes()
    {
        string certs = _root.Dir("certs.d");
        string dir = Directory.CreateDirectory(Path.Combine(certs, "reg.example:5000")).FullName;
        var (ca1, _, c1) = SelfSigned("ca-one");
        var (ca2, _, c2) = SelfSigned("ca-two");
        var (ca3, _, c3) = SelfSigned("ca-three");
        var (clientPem, clientKey, client) = SelfSigned("client");
        using (c1)
        using (c2)
        using (c3)
        using (client)
        {
            File.WriteAllText(Path.Combine(dir, "ca.crt"), ca1 + "\n" + ca2 + "\n"); // a bundle
            File.WriteAllText(Path.Combine(dir, "extra.crt"), ca3);
            File.WriteAllText(Path.Combine(dir, "client.cert"), clientPem);
            File.WriteAllText(Path.Combine(dir, "client.key"), clientKey);
            File.WriteAllText(Path.Combine(dir, "README"), "not a certificate");
            var settings = new RegistrySettings { CertsDirectory = certs };

            var (roots, clients) = settings.TlsFor("reg.example:5000");
            try
            {
                Assert.Equal([c1.Thumbprint, c2.Thumbprint, c3.Thumbprint], roots.Select(r => r.Thumbprint));
                var pair = Assert.Single(clients);
                Assert.Equal(client.Thumbprint, pair.Thumbprint);
                Assert.True(pair.HasPrivateKey);
            }
            finally
            {
                foreach (var r in roots) r.Dispose();
                foreach (var c in clients) c.Dispose();
            }

            // Another port is another directory; none is no certificates.
            var (none, noClients) = settings.TlsFor("reg.example:5001");
            Assert.Empty(none);
            Assert.Empty(noClients);
            var (missingDir, _) = (settings with { CertsDirectory = _root.Combine("absent") }).TlsFor("reg.example:5000");
            Assert.Empty(missingDir);
        }
    }

    [Fact]
    public void TlsForRefusesHalfPairsAndFilesThatAreNotPem()
    {
        string certs = _root.Dir("certs.d");
        var settings = new RegistrySettings { CertsDirectory = certs };
        var (pem, keyPem, cert) = SelfSigned("client");
        using (cert)
        {
            StrataException Refusal(string host, params (string Name, string Text)[] files)
            {
                string dir = Directory.CreateDirectory(Path.Combine(certs, host)).FullName;
                foreach (var (name, text) in files) File.WriteAllText(Path.Combine(dir, name), text);
                var ex = Assert.Throws<StrataException>(() => settings.TlsFor(host));
                Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
                Assert.DoesNotContain('\n', ex.Message);
                return ex;
            }

            string d(string host) => Path.Combine(certs, host);
            Assert.Equal($"{d("a:1")}: client certificate client.cert has no key client.key (CA certificates are named *.crt)",
                Refusal("a:1", ("client.cert", pem)).Message);
            Assert.Equal($"{d("b:1")}: key client.key has no client certificate client.cert", Refusal("b:1", ("client.key", keyPem)).Message);
            Assert.Equal($"{d("c:1")}/ca.crt: holds no PEM certificate", Refusal("c:1", ("ca.crt", "garbage")).Message);
            Assert.Equal($"{d("e:1")}/ca.crt: holds no PEM certificate", Refusal("e:1", ("ca.crt", "")).Message);
            Assert.StartsWith($"{d("f:1")}/ca.crt: not a PEM certificate", Refusal("f:1", ("ca.crt", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")).Message);
            Assert.StartsWith($"{d("g:1")}/client.cert and client.key: not a PEM certificate and its unencrypted PEM key",
                Refusal("g:1", ("client.cert", pem), ("client.key", "not a key")).Message);
        }
        foreach (var host in new[] { "", ".", "..", "../etc", "a/b" })
        {
            var ex = Assert.Throws<StrataException>(() => settings.TlsFor(host));
            Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        }
    }
}
