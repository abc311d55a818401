// Shows, with curl and skopeo, that the registry test infrastructure does what the client's tests will rely on.
using System.Buffers.Text;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>A small OCI image (one layer: a 1 MiB file of seeded random bytes) built once with umoci for the class, on first
/// use, in a temp dir removed on dispose.</summary>
public sealed class RegistryTestImage : IDisposable
{
    public const string Tag = "v1";
    readonly Lazy<(TempRoot Root, string Layout)> _built = new(() =>
    {
        var root = new TempRoot();
        string layout = root.Combine("layout");
        Images.Umoci("init", "--layout", layout);
        Images.Umoci("new", "--image", $"{layout}:{Tag}");
        Images.Change(layout, Tag, Tag, root.Path, rootfs =>
        {
            var bytes = new byte[1 << 20];
            new Random(20).NextBytes(bytes);
            File.WriteAllBytes(Path.Combine(rootfs, "random"), bytes);
        });
        return (root, layout);
    });

    /// <summary>The OCI layout holding image <see cref="Tag"/>.</summary>
    public string Layout => _built.Value.Layout;

    public void Dispose()
    {
        if (_built.IsValueCreated) _built.Value.Root.Dispose();
    }
}

/// <summary>Each piece of the registry test infrastructure, shown with curl and skopeo: TLS, htpasswd and token auth, kill
/// and restart, storage tampering, raw pushes, and the fault server's redirects, huge manifest, failures and cut
/// blobs.</summary>
public sealed class RegistryInfrastructureTests(RegistryTestImage image) : IClassFixture<RegistryTestImage>, IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    const string Oci = "application/vnd.oci.image.manifest.v1+json";

    static Shell.Result Curl(params string[] args) => Shell.Run("curl", ["-sS", "--max-time", "30", .. args]);

    /// <summary>curl's status code for a request, and what it printed to -o.</summary>
    static (string Status, string Body) CurlStatus(params string[] args)
    {
        var result = Curl(["-o", "-", "-w", "\n%{http_code}", .. args]);
        int last = result.Stdout.LastIndexOf('\n');
        return (result.Stdout[(last + 1)..], result.Stdout[..last]);
    }

    /// <summary>curl's status code and the value of one header of the response (HTTP/1.1 or HTTP/2 alike).</summary>
    static (string Status, string Header) CurlHeader(string header, params string[] args)
    {
        string printed = Curl(["-o", "/dev/null", "-w", $"%{{http_code}} %header{{{header}}}", .. args]).Check("curl").Stdout;
        int space = printed.IndexOf(' ', StringComparison.Ordinal);
        return (printed[..space], printed[(space + 1)..]);
    }

    static Shell.Result Skopeo(params string[] args) => Shell.Run("skopeo", ["--insecure-policy", .. args]);

    PrivateRegistry Registry(RegistryOptions? options = null, string name = "registry") => new(_temp.Dir(name), options ?? new RegistryOptions());

    [ToolsFact("docker-registry", "skopeo", "umoci", "curl")]
    public void PlainRegistryTakesSkopeoAndRawBlobsWhoseStoredDataCanBeTampered()
    {
        using var registry = Registry();
        string reference = registry.Push(image.Layout, RegistryTestImage.Tag, "plain");
        Skopeo(["inspect", .. registry.SkopeoFlags(""), "docker://" + reference]).Check("skopeo inspect");

        byte[] bytes = Encoding.UTF8.GetBytes("a blob no image names");
        string digest = registry.PutBlob("plain", bytes);
        Assert.Equal("sha256:" + Images.Sha256(bytes), digest);
        Assert.Equal(bytes, File.ReadAllBytes(registry.BlobDataPath(digest)));
        string blobUrl = $"{registry.Url}/v2/plain/blobs/{digest}";
        Assert.Equal("a blob no image names", Curl(blobUrl).Check("curl blob").Stdout);

        File.WriteAllBytes(registry.BlobDataPath(digest), Encoding.UTF8.GetBytes("A blob no image names"));
        // the registry serves what its storage holds, unchecked: a client must verify the digest
        Assert.Equal("A blob no image names", Curl(blobUrl).Check("curl tampered blob").Stdout);
    }

    [ToolsFact("docker-registry", "skopeo", "umoci", "curl")]
    public void TlsRegistryIsTrustedThroughItsCaOnly()
    {
        using var registry = Registry(new RegistryOptions { Tls = true });
        Assert.StartsWith("https://127.0.0.1:", registry.Url);
        Assert.Equal("200", CurlStatus("--cacert", registry.CaPemPath!, $"{registry.Url}/v2/").Status);
        Assert.Equal("200", CurlStatus("--cacert", registry.CaPemPath!, $"https://localhost:{registry.Port}/v2/").Status);
        var untrusted = Curl($"{registry.Url}/v2/");
        Assert.Equal(60, untrusted.ExitCode); // CURLE_PEER_FAILED_VERIFICATION

        string certsD = _temp.Dir("certs.d");
        string hostDir = registry.WriteCertsD(certsD);
        Assert.Equal(Path.Combine(certsD, $"127.0.0.1:{registry.Port}"), hostDir);
        Assert.Equal(File.ReadAllText(registry.CaPemPath!), File.ReadAllText(Path.Combine(hostDir, "ca.crt")));

        string reference = $"{registry.Host}/tls:{RegistryTestImage.Tag}";
        Skopeo("copy", "--quiet", "--dest-cert-dir", hostDir, $"oci:{image.Layout}:{RegistryTestImage.Tag}", "docker://" + reference).Check("skopeo copy with the CA");
        Skopeo("inspect", "--cert-dir", hostDir, "docker://" + reference).Check("skopeo inspect with the CA");
        var refused = Skopeo("inspect", "docker://" + reference);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("certificate", refused.Stderr);
    }

    [ToolsFact("docker-registry", "skopeo", "umoci", "curl", "htpasswd")]
    public void HtpasswdRegistryTakesItsUserOnly()
    {
        using var registry = Registry(new RegistryOptions { Tls = true, Auth = RegistryAuth.Htpasswd });
        Assert.Equal(("401", "Basic realm=\"strata-test-registry\""), CurlHeader("WWW-Authenticate", "--cacert", registry.CaPemPath!, $"{registry.Url}/v2/"));
        Assert.Equal("200", CurlStatus("--cacert", registry.CaPemPath!, "-u", registry.Credentials!, $"{registry.Url}/v2/").Status);
        Assert.Equal("401", CurlStatus("--cacert", registry.CaPemPath!, "-u", "strata:wrong", $"{registry.Url}/v2/").Status);

        string reference = registry.Push(image.Layout, RegistryTestImage.Tag, "basic");
        Assert.Contains("--dest-creds", string.Join(' ', registry.SkopeoFlags("dest")));
        Skopeo(["inspect", .. registry.SkopeoFlags(""), "docker://" + reference]).Check("skopeo inspect with creds");
        var wrong = Skopeo("inspect", "--cert-dir", registry.WriteCertsD(_temp.Dir("certs.d")), "--creds", "strata:wrong", "docker://" + reference);
        Assert.NotEqual(0, wrong.ExitCode);
        Assert.Equal("sha256:" + Images.Sha256(Encoding.UTF8.GetBytes("raw")), registry.PutBlob("basic", Encoding.UTF8.GetBytes("raw")));

        // the fault server passes challenges and credentials through
        using var front = new RegistryFaultServer(registry);
        Assert.Equal(("401", "Basic realm=\"strata-test-registry\""), CurlHeader("WWW-Authenticate", $"{front.Url}/v2/"));
        Assert.Equal("200", CurlStatus("-u", registry.Credentials!, $"{front.Url}/v2/").Status);
    }

    [ToolsFact("docker-registry", "skopeo", "umoci", "curl")]
    public void TokenRegistryTakesBearerTokensFromItsIssuer()
    {
        using var registry = Registry(new RegistryOptions { Auth = RegistryAuth.Token });
        var issuer = registry.TokenIssuer!;
        Assert.Equal(("401", $"Bearer realm=\"{issuer.Realm}\",service=\"{RegistryTokenIssuer.Service}\""), CurlHeader("WWW-Authenticate", $"{registry.Url}/v2/"));

        string tokenUrl = $"{issuer.Realm}?service={RegistryTokenIssuer.Service}&scope=repository:bearer:pull,push";
        Assert.Equal("401", CurlStatus("-u", "strata:wrong", tokenUrl).Status);
        Assert.Equal("401", CurlStatus(tokenUrl).Status);
        var (status, body) = CurlStatus("-u", registry.Credentials!, tokenUrl);
        Assert.Equal("200", status);
        var answer = JsonNode.Parse(body)!.AsObject();
        string token = (string)answer["token"]!;
        Assert.Equal(token, (string)answer["access_token"]!);
        Assert.Equal(300, (int)answer["expires_in"]!);
        Assert.True(DateTimeOffset.TryParse((string)answer["issued_at"]!, out _));
        var claims = JsonNode.Parse(Base64Url.DecodeFromChars(token.Split('.')[1]))!;
        Assert.Equal("strata", (string)claims["sub"]!);
        Assert.Equal("pull,push", string.Join(',', claims["access"]![0]!["actions"]!.AsArray().Select(a => (string)a!)));
        Assert.Equal("200", CurlStatus("-H", "Authorization: Bearer " + token, $"{registry.Url}/v2/").Status);

        int before = issuer.RequestCount;
        string reference = registry.Push(image.Layout, RegistryTestImage.Tag, "bearer");
        Assert.True(issuer.RequestCount > before);
        Assert.Contains(issuer.Requests.Skip(before), r => r.Issued && r.User == "strata" && r.Scopes.Any(s => s.StartsWith("repository:bearer:", StringComparison.Ordinal) && s.Contains("push")));
        Skopeo(["inspect", .. registry.SkopeoFlags(""), "docker://" + reference]).Check("skopeo inspect with a token");
        registry.PutBlob("bearer", Encoding.UTF8.GetBytes("raw"));

        // a token that grants pull only: the pull goes on, the push is refused
        issuer.GrantedActions = new HashSet<string> { "pull" };
        Skopeo(["inspect", .. registry.SkopeoFlags(""), "docker://" + reference]).Check("skopeo inspect with a pull token");
        var push = Skopeo(["copy", "--quiet", .. registry.SkopeoFlags("dest"), $"oci:{image.Layout}:{RegistryTestImage.Tag}", $"docker://{registry.Host}/other:v1"]);
        Assert.NotEqual(0, push.ExitCode);
        string pullOnly = issuer.Issue("strata", ["repository:bearer:pull,push"]);
        var (uploadStatus, uploadChallenge) = CurlHeader("WWW-Authenticate", "-X", "POST", "-H", "Authorization: Bearer " + pullOnly, $"{registry.Url}/v2/bearer/blobs/uploads/");
        Assert.Equal("401", uploadStatus);
        Assert.Contains("error=\"insufficient_scope\"", uploadChallenge);

        // anonymous pulls, when the issuer allows them
        Assert.NotEqual(0, Skopeo("inspect", "--tls-verify=false", "docker://" + reference).ExitCode);
        issuer.AnonymousPull = true;
        Skopeo("inspect", "--tls-verify=false", "docker://" + reference).Check("skopeo inspect without credentials");
        Assert.Contains(issuer.Requests, r => r.Issued && r.User is null);
    }

    [ToolsFact("docker-registry", "skopeo", "umoci", "curl")]
    public void ExpiredTokensAreRefused()
    {
        using var registry = Registry(new RegistryOptions { Auth = RegistryAuth.Token });
        string reference = registry.Push(image.Layout, RegistryTestImage.Tag, "expiring");
        registry.TokenIssuer!.IssueExpired = true;

        var (status, body) = CurlStatus("-u", registry.Credentials!, $"{registry.TokenIssuer.Realm}?service={RegistryTokenIssuer.Service}&scope=repository:expiring:pull");
        Assert.Equal("200", status);
        string token = (string)JsonNode.Parse(body)!["token"]!;
        var claims = JsonNode.Parse(Base64Url.DecodeFromChars(token.Split('.')[1]))!;
        Assert.True((long)claims["exp"]! < DateTimeOffset.UtcNow.AddMinutes(-30).ToUnixTimeSeconds());
        Assert.Equal("401", CurlStatus("-H", "Authorization: Bearer " + token, $"{registry.Url}/v2/expiring/tags/list").Status);

        int before = registry.TokenIssuer.RequestCount;
        var inspect = Skopeo(["inspect", .. registry.SkopeoFlags(""), "docker://" + reference]);
        Assert.NotEqual(0, inspect.ExitCode);
        Assert.True(registry.TokenIssuer.RequestCount > before);
    }

    [ToolsFact("docker-registry", "skopeo", "umoci", "curl")]
    public void KilledRegistryRestartsOnItsPortWithItsStorage()
    {
        using var registry = Registry();
        string reference = registry.Push(image.Layout, RegistryTestImage.Tag, "survivor");
        int port = registry.Port;
        registry.Kill();
        Assert.Equal(7, Curl($"{registry.Url}/v2/").ExitCode); // CURLE_COULDNT_CONNECT
        registry.Restart();
        Assert.Equal(port, registry.Port);
        Skopeo(["inspect", .. registry.SkopeoFlags(""), "docker://" + reference]).Check("skopeo inspect after the restart");
    }

    [ToolsFact("docker-registry", "skopeo", "umoci", "curl")]
    public void RawManifestsAreStoredAsPushedWhenTheirBlobsExist()
    {
        using var registry = Registry();
        string config = registry.PutBlob("raw", Encoding.UTF8.GetBytes("{}"));
        string layer = registry.PutBlob("raw", Encoding.UTF8.GetBytes("not a tar at all"));
        byte[] Manifest(string layerDigest, int layerSize, string layerType = "application/vnd.oci.image.layer.v1.tar") => Encoding.UTF8.GetBytes(new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = Oci,
            ["config"] = new JsonObject { ["mediaType"] = "application/vnd.oci.image.config.v1+json", ["digest"] = config, ["size"] = 2 },
            ["layers"] = new JsonArray(new JsonObject { ["mediaType"] = layerType, ["digest"] = layerDigest, ["size"] = layerSize }),
        }.ToJsonString());

        byte[] manifest = Manifest(layer, 16);
        string digest = registry.PutManifest("raw", "good", manifest, Oci);
        Assert.Equal("sha256:" + Images.Sha256(manifest), digest);
        Assert.Equal(Encoding.UTF8.GetString(manifest), Skopeo(["inspect", "--raw", .. registry.SkopeoFlags(""), $"docker://{registry.Host}/raw:good"]).Check("skopeo inspect --raw").Stdout);

        // what distribution 2.8 refuses and what it takes (see PrivateRegistry's remarks)
        var unknownType = registry.TryPutManifest("raw", "weird", manifest, "application/x-strata-weird");
        Assert.Equal(HttpStatusCode.BadRequest, unknownType.Status);
        Assert.Contains("MANIFEST_INVALID", unknownType.Body);
        var missing = registry.TryPutManifest("raw", "missing", Manifest("sha256:" + new string('1', 64), 1), Oci);
        Assert.Equal(HttpStatusCode.BadRequest, missing.Status);
        Assert.Contains("MANIFEST_BLOB_UNKNOWN", missing.Body);
        Assert.Equal(HttpStatusCode.Created, registry.TryPutManifest("raw", "lying-size", Manifest(layer, 999_999), Oci).Status);
        Assert.Equal(HttpStatusCode.Created, registry.TryPutManifest("raw", "unknown-layer", Manifest(layer, 16, "application/x-strata-layer"), Oci).Status);

        // a manifest whose layer is gone: push it whole, then delete the blob
        registry.DeleteBlob("raw", layer);
        Assert.Equal("404", CurlStatus($"{registry.Url}/v2/raw/blobs/{layer}").Status);
        Assert.Equal("200", CurlStatus("-H", "Accept: " + Oci, $"{registry.Url}/v2/raw/manifests/good").Status);
    }

    [ToolsFact("curl")]
    public void FaultServerServesRedirectLoopsHugeManifestsAndFailures()
    {
        using var faults = new RegistryFaultServer();
        Assert.Equal("200", CurlStatus($"{faults.Url}/v2/").Status);

        faults.RedirectLoop("/v2/loop/manifests/latest", "/v2/loop/manifests/again");
        Assert.Equal(("307", $"{faults.Url}/v2/loop/manifests/again"), CurlHeader("Location", $"{faults.Url}/v2/loop/manifests/latest"));
        var loop = Curl("-L", "--max-redirs", "5", "-o", "/dev/null", $"{faults.Url}/v2/loop/manifests/latest");
        Assert.Equal(47, loop.ExitCode); // CURLE_TOO_MANY_REDIRECTS
        Assert.Equal(7, faults.Requests.Count(r => r.Target.StartsWith("/v2/loop/", StringComparison.Ordinal)));

        byte[] huge = RegistryFaultServer.HugeManifest(5 << 20);
        string digest = faults.ServeManifest("huge", "latest", huge, Oci);
        string saved = _temp.Combine("huge.json");
        Assert.Equal(("200", Oci), CurlHeader("Content-Type", $"{faults.Url}/v2/huge/manifests/latest"));
        Assert.Equal(("200", digest), CurlHeader("Docker-Content-Digest", "-I", $"{faults.Url}/v2/huge/manifests/latest"));
        Curl("-o", saved, $"{faults.Url}/v2/huge/manifests/latest").Check("curl the huge manifest");
        Assert.True(new FileInfo(saved).Length > 4 << 20);
        Assert.Equal(digest, "sha256:" + Images.Sha256(saved));
        Assert.Equal(Oci, (string)JsonNode.Parse(File.ReadAllBytes(saved))!["mediaType"]!);

        faults.FailFirst("/v2/", 2);
        faults.FailFirst("/v2/huge/manifests/latest", 1, HttpStatusCode.InternalServerError);
        Assert.Equal(new[] { "503", "503", "200" }, Enumerable.Range(0, 3).Select(_ => CurlStatus($"{faults.Url}/v2/").Status));
        Assert.Equal(new[] { "500", "200" }, Enumerable.Range(0, 2).Select(_ => CurlStatus("-I", $"{faults.Url}/v2/huge/manifests/latest").Status));
    }

    [ToolsFact("docker-registry", "skopeo", "umoci", "curl")]
    public void FaultServerCutsABlobThatARangeRequestResumes()
    {
        using var registry = Registry();
        using var front = new RegistryFaultServer(registry);
        var bytes = new byte[1 << 20];
        new Random(7).NextBytes(bytes);
        string digest = registry.PutBlob("cut", bytes);
        string url = $"{front.Url}/v2/cut/blobs/{digest}";

        front.CutBlob(digest, 100_000);
        string head = _temp.Combine("head"), tail = _temp.Combine("tail");
        var cut = Curl("-o", head, url);
        Assert.Equal(18, cut.ExitCode); // CURLE_PARTIAL_FILE: the Content-Length promised more
        Assert.Equal(100_000, new FileInfo(head).Length);
        Assert.Equal("206", Curl("-r", "100000-", "-o", tail, "-w", "%{http_code}", url).Check("curl the rest").Stdout);
        Assert.Equal(digest, "sha256:" + Convert.ToHexStringLower(SHA256.HashData([.. File.ReadAllBytes(head), .. File.ReadAllBytes(tail)])));
        Assert.Equal(new string?[] { null, "bytes=100000-" }, front.Requests.Where(r => r.Target.EndsWith(digest, StringComparison.Ordinal)).Select(r => r.Range));

        // a chunked upload behind "Expect: 100-continue", through the front (the registry's Location points back at it)
        string blob = _temp.Combine("blob");
        File.WriteAllBytes(blob, [.. bytes.Reverse()]);
        string blobDigest = "sha256:" + Images.Sha256(blob);
        var (started, location) = CurlHeader("Location", "-X", "POST", $"{front.Url}/v2/chunked/blobs/uploads/");
        Assert.Equal("202", started);
        Assert.StartsWith($"{front.Url}/v2/chunked/blobs/uploads/", location);
        Assert.Equal("201", Curl("-X", "PUT", "-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue", "-H", "Content-Type: application/octet-stream",
            "--data-binary", "@" + blob, "-o", "/dev/null", "-w", "%{http_code}", $"{location}&digest={blobDigest}").Check("curl the chunked upload").Stdout);
        Assert.Equal(File.ReadAllBytes(blob), File.ReadAllBytes(registry.BlobDataPath(blobDigest)));

        // everything else passes through both ways: a push (uploads continue through the front) and a pull
        string reference = $"{front.Host}/through:{RegistryTestImage.Tag}";
        Skopeo("copy", "--quiet", "--dest-tls-verify=false", $"oci:{image.Layout}:{RegistryTestImage.Tag}", "docker://" + reference).Check("skopeo copy through the fault server");
        Assert.Contains(front.Requests, r => r.Method == "PUT" && r.Target.Contains("/blobs/uploads/", StringComparison.Ordinal));
        Skopeo("copy", "--quiet", "--src-tls-verify=false", "docker://" + reference, $"oci:{_temp.Combine("pulled")}:{RegistryTestImage.Tag}").Check("skopeo copy back through the fault server");
    }
}
