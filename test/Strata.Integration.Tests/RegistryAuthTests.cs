// Issue 20: how `strata pull`, `push`, `login` and `logout` reach registries that want TLS and logins, and what they do
// with registries that fail, lie or loop.
using System.Net;
using System.Text.Json;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>TLS with a CA in certs.d, htpasswd basic auth and bearer tokens from a token issuer, against Debian's
/// docker-registry; and faults from a fault server in front of it: a registry killed mid-blob (with and without a
/// restart), cut connections, 503s, a redirect loop, a manifest over 4 MiB, a missing blob, an unknown media type.
/// Each refusal is one line and leaves the store as it was.</summary>
public sealed class RegistryAuthTests(RegistryImages images, ITestOutputHelper output) : IClassFixture<RegistryImages>, IDisposable
{
    readonly TempRoot _temp = new();
    readonly List<IDisposable> _owned = [];

    string DockerConfig => _temp.Combine("docker-config");

    /// <summary>A store whose config file has <paramref name="config"/>'s keys (certs-d: this test's directory).</summary>
    Cli NewStore(string config = "", string name = "store")
    {
        string path = _temp.Combine($"config-{name}.json");
        File.WriteAllText(path, $$"""{ "certs-d": "{{_temp.Combine("certs.d")}}", "max-download-attempts": 3{{(config.Length > 0 ? ", " + config : "")}} }""");
        return new Cli(_temp.Combine(name), new Dictionary<string, string> { ["STRATA_CONFIG"] = path, ["DOCKER_CONFIG"] = DockerConfig });
    }

    PrivateRegistry Registry(RegistryOptions options, string name = "registry")
    {
        var r = new PrivateRegistry(_temp.Dir(name), options);
        _owned.Add(r);
        return r;
    }

    static void AssertOneLine(Cli.Result r, string contains)
    {
        Assert.NotEqual(0, r.ExitCode);
        Errors.AssertOneLine(r);
        Assert.Contains(contains, r.Stderr);
    }

    /// <summary>No image, no layer, no blob, nothing in tmp/.</summary>
    void AssertEmptyStore(Cli s, string name = "store")
    {
        // on disk first: opening the store (any command) collects what a failed pull left
        string layers = Path.Combine(_temp.Combine(name), "layers");
        Assert.Empty(Directory.Exists(layers) ? Directory.GetFiles(layers, "*.json") : []);
        Assert.Equal(0, JsonDocument.Parse(s.Ok("image", "ls", "--format", "json")).RootElement.GetArrayLength());
        Assert.Equal(0, JsonDocument.Parse(s.Ok("layer", "ls", "--format", "json")).RootElement.GetArrayLength());
        string root = _temp.Combine(name);
        string blobs = Path.Combine(root, "images", "blobs", "sha256");
        Assert.Empty(Directory.Exists(blobs) ? Directory.GetFiles(blobs) : []);
        string tmp = Path.Combine(root, "tmp");
        Assert.Empty(Directory.Exists(tmp) ? Directory.GetFileSystemEntries(tmp) : []);
    }

    [RegistryFact]
    public void TlsWorksWithTheCaInCertsDAndIsOneLineWithout()
    {
        var registry = Registry(new RegistryOptions { Tls = true });
        string reference = registry.Push(images.Layout, "img", "secure");
        // a loopback registry may be reached over plain HTTP, but one that speaks TLS is verified
        var s = NewStore();
        var missing = s.Run("pull", reference);
        output.WriteLine(missing.Stderr);
        AssertOneLine(missing, "certs.d");
        AssertEmptyStore(s);
        registry.WriteCertsD(_temp.Combine("certs.d"));
        var pulled = s.Run("pull", "-q", reference);
        Assert.True(pulled.ExitCode == 0, pulled.Stderr);
    }

    [RegistryFact]
    public void HtpasswdLoginPullAndPushAndAWrongPassword()
    {
        var registry = Registry(new RegistryOptions { Auth = RegistryAuth.Htpasswd });
        string reference = registry.Push(images.Layout, "img", "private");
        var s = NewStore();
        AssertOneLine(s.Run("pull", reference), "strata login");
        var wrong = s.Run(System.Text.Encoding.UTF8.GetBytes("not the password\n"), "login", "-u", "strata", "--password-stdin", registry.Host);
        AssertOneLine(wrong, registry.Host);
        Assert.False(File.Exists(Path.Combine(DockerConfig, "config.json")) && File.ReadAllText(Path.Combine(DockerConfig, "config.json")).Contains(registry.Host));

        var login = s.Run(System.Text.Encoding.UTF8.GetBytes("correct horse\n"), "login", "-u", "strata", "--password-stdin", registry.Host);
        Assert.True(login.ExitCode == 0, login.Stderr);
        Assert.Contains("Login Succeeded", login.Stdout);
        // Docker's format: auths.HOST.auth = base64(user:password)
        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(DockerConfig, "config.json"))).RootElement;
        Assert.Equal(Convert.ToBase64String("strata:correct horse"u8.ToArray()), config.GetProperty("auths").GetProperty(registry.Host).GetProperty("auth").GetString());

        s.Ok("pull", "-q", reference);
        s.Ok("push", "-q", reference, $"{registry.Host}/private/copy:1");
        Assert.Contains("Removing login credentials", s.Ok("logout", registry.Host));
        AssertOneLine(s.Run("pull", $"{registry.Host}/private/copy:1"), "strata login");
    }

    [RegistryFact]
    public void BearerTokensFromATokenServerAndAnExpiredOne()
    {
        var registry = Registry(new RegistryOptions { Auth = RegistryAuth.Token });
        string reference = registry.Push(images.Layout, "img", "tokens");
        var s = NewStore();
        AssertOneLine(s.Run("pull", reference), registry.Host);
        var login = s.Run(System.Text.Encoding.UTF8.GetBytes("correct horse\n"), "login", "-u", "strata", "--password-stdin", registry.Host);
        Assert.True(login.ExitCode == 0, login.Stderr);
        int before = registry.TokenIssuer!.RequestCount;
        s.Ok("pull", "-q", reference);
        Assert.True(registry.TokenIssuer.RequestCount > before, "the pull asked the token server");
        Assert.Contains(registry.TokenIssuer.Requests, r => r.User == "strata" && r.Scopes.Any(x => x.Contains("repository:tokens:pull")));
        s.Ok("push", "-q", reference, $"{registry.Host}/tokens/pushed:1");

        registry.TokenIssuer.IssueExpired = true;
        var fresh = NewStore(name: "expired");
        var expired = fresh.Run("pull", reference);
        output.WriteLine(expired.Stderr);
        AssertOneLine(expired, registry.Host);
        AssertEmptyStore(fresh, "expired");
    }

    [RegistryFact]
    public void ARegistryKilledMidBlobIsResumedWhenItComesBackAndFailsCleanlyWhenNot()
    {
        var registry = Registry(new RegistryOptions());
        string reference = registry.Push(images.Layout, "img", "killed");
        string top = Layer(reference, 0); // the big one (busybox): the cut falls inside it

        using var proxy = new RegistryFaultServer(registry);
        proxy.CutBlob("sha256:" + top, afterBytes: 4096);
        proxy.OnCut = () =>
        {
            registry.Kill();
            registry.Restart();
        };
        var s = NewStore();
        var resumed = s.Run("pull", "-q", reference.Replace(registry.Host, proxy.Host));
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Contains(proxy.Requests, r => r.Target.Contains(top) && r.Range == "bytes=4096-");

        using var dying = new RegistryFaultServer(registry);
        dying.CutBlob("sha256:" + top, afterBytes: 4096);
        dying.OnCut = registry.Kill;
        var other = NewStore(name: "dead");
        var failed = other.Run("pull", reference.Replace(registry.Host, dying.Host));
        output.WriteLine(failed.Stderr);
        AssertOneLine(failed, top);
        AssertEmptyStore(other, "dead");
    }

    [RegistryFact]
    public void FiveHundredsAreRetriedAndARedirectLoopIsOneLine()
    {
        var registry = Registry(new RegistryOptions());
        string reference = registry.Push(images.Layout, "img", "flaky");
        using var proxy = new RegistryFaultServer(registry);
        proxy.FailFirst("/v2/flaky/manifests/img", 2);
        var s = NewStore();
        var pulled = s.Run("pull", "-q", reference.Replace(registry.Host, proxy.Host));
        Assert.True(pulled.ExitCode == 0, pulled.Stderr);
        Assert.Equal(3, proxy.Requests.Count(r => r.Target == "/v2/flaky/manifests/img" && r.Method == "GET"));

        using var loop = new RegistryFaultServer();
        loop.RedirectLoop("/v2/looping/manifests/1");
        var looped = s.Run("pull", $"{loop.Host}/looping:1");
        AssertOneLine(looped, "redirect loop");
    }

    [RegistryFact]
    public void AHugeManifestAMissingBlobAndAnUnknownMediaTypeAreRefused()
    {
        using var server = new RegistryFaultServer();
        server.ServeManifest("huge", "1", RegistryFaultServer.HugeManifest(5 << 20), "application/vnd.oci.image.manifest.v1+json");
        var s = NewStore();
        AssertOneLine(s.Run("pull", $"{server.Host}/huge:1"), "4194304");

        var registry = Registry(new RegistryOptions());
        string reference = registry.Push(images.Layout, "img", "holes");
        registry.DeleteBlob("holes", "sha256:" + TopLayer(reference));
        var missing = s.Run("pull", reference);
        output.WriteLine(missing.Stderr);
        AssertOneLine(missing, TopLayer(reference));
        AssertEmptyStore(s);

        // a manifest whose layer has a media type no one knows (distribution stores it as pushed)
        var raw = JsonDocument.Parse(Shell.Run("skopeo", "inspect", "--raw", "--tls-verify=false", $"docker://{images.Host}/x:1").Check("skopeo inspect").Stdout).RootElement;
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(raw.GetRawText())!;
        manifest["layers"]![0]!["mediaType"] = "application/x-strata-unknown";
        string oddRef = $"{registry.Host}/odd:1";
        registry.Push(images.Layout, "img", "odd");
        registry.PutManifest("odd", "1", System.Text.Encoding.UTF8.GetBytes(manifest.ToJsonString()), "application/vnd.oci.image.manifest.v1+json");
        var odd = s.Run("pull", oddRef);
        AssertOneLine(odd, "application/x-strata-unknown");
        AssertEmptyStore(s);
    }

    static string TopLayer(string reference) => Layer(reference, -1);

    /// <summary>The hex digest of layer <paramref name="index"/> of the image (negative: from the top).</summary>
    static string Layer(string reference, int index)
    {
        var raw = JsonDocument.Parse(Shell.Run("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + reference).Check("skopeo inspect").Stdout).RootElement;
        var layers = raw.GetProperty("layers").EnumerateArray().ToList();
        return layers[index < 0 ? layers.Count + index : index].GetProperty("digest").GetString()!["sha256:".Length..];
    }

    public void Dispose()
    {
        foreach (var o in _owned) o.Dispose();
        _temp.Dispose();
    }
}
