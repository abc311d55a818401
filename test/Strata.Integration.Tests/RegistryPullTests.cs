// Issue 20: `strata pull` and `strata push` against Debian's docker-registry on 127.0.0.1, with images put there by skopeo.
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>A fact that needs the registry tools (docker-registry, skopeo, umoci, static busybox) and root; skipped, naming
/// what is missing, elsewhere.</summary>
public sealed class RegistryFactAttribute : FactAttribute
{
    public RegistryFactAttribute()
    {
        if (RegistryImages.Missing is { } why) Skip = why;
    }
}

/// <summary>One plain-HTTP registry on 127.0.0.1 for the pull tests, holding images skopeo put there from an umoci layout
/// (two layers: busybox and files of every kind, then a layer that deletes, replaces and adds): <c>x:1</c> (OCI manifest),
/// <c>x:v2s2</c> (Docker schema 2), <c>x:zstd</c> (zstd layers), <c>multi:1</c> (an index for linux/amd64 and
/// linux/arm64, the arm64 config differing only in its architecture). Stopped, and its directory removed, on dispose.</summary>
public sealed class RegistryImages : IDisposable
{
    static readonly string[] Tools = ["docker-registry", "skopeo", "umoci", "runc"];

    public static string? Missing
    {
        get
        {
            if (!Environment.IsPrivilegedProcess) return "the registry tests mount layers: they need root";
            if (Tools.FirstOrDefault(t => !Shell.Has(t)) is { } tool) return $"{tool} is not installed (test.sh installs docker-registry, skopeo, umoci, runc)";
            if (!File.Exists("/bin/busybox") || Shell.Run("ldd", "/bin/busybox").ExitCode == 0) return "a static /bin/busybox is needed (test.sh installs busybox-static)";
            return null;
        }
    }

    readonly TempRoot _temp = new();
    readonly Lazy<PrivateRegistry> _registry;

    public RegistryImages()
    {
        _registry = new Lazy<PrivateRegistry>(Start, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The umoci layout the images come from (built with the registry, on first use of either).</summary>
    public string Layout
    {
        get
        {
            _ = Registry;
            return LayoutPath;
        }
    }

    string LayoutPath => _temp.Combine("layout");
    public string Work => _temp.Path;
    internal PrivateRegistry Registry => _registry.Value;
    public string Host => Registry.Host;

    PrivateRegistry Start()
    {
        Images.BuildBase(LayoutPath, "img", _temp.Path);
        Images.SecondLayer(LayoutPath, "img", "img", _temp.Path);
        var registry = new PrivateRegistry(_temp.Dir("registry"));
        try
        {
            Copy($"oci:{LayoutPath}:img", $"docker://{registry.Host}/x:1", "--format", "oci");
            Copy($"oci:{LayoutPath}:img", $"docker://{registry.Host}/x:v2s2", "--format", "v2s2");
            // recompressed into a layout of its own first: a copy straight to the registry would reuse the gzip blobs it has
            string zstd = _temp.Combine("zstd");
            Copy($"oci:{LayoutPath}:img", $"oci:{zstd}:img", "--dest-compress-format", "zstd");
            Copy($"oci:{zstd}:img", $"docker://{registry.Host}/x:zstd");
            Copy($"oci:{MultiPlatformLayout()}:multi", $"docker://{registry.Host}/multi:1", "--all", "--format", "oci");
        }
        catch
        {
            registry.Dispose();
            throw;
        }
        return registry;
    }

    static void Copy(string from, string to, params string[] options) =>
        Shell.Run("skopeo", ["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", .. options, from, to]).Check($"skopeo copy {from} {to}");

    /// <summary>A copy of the layout whose tag <c>multi</c> is an index of the image for linux/amd64 and a twin for linux/arm64.</summary>
    string MultiPlatformLayout()
    {
        string dir = _temp.Combine("multi");
        Shell.Run("cp", "-a", LayoutPath, dir).Check("cp layout");
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "index.json")))!;
        var entry = index["manifests"]!.AsArray().First(m => m!["annotations"]?["org.opencontainers.image.ref.name"]?.GetValue<string>() == "img")!;
        var manifestDigest = entry["digest"]!.GetValue<string>();
        var manifest = JsonNode.Parse(File.ReadAllBytes(Blob(dir, manifestDigest)))!;
        var config = JsonNode.Parse(File.ReadAllBytes(Blob(dir, manifest["config"]!["digest"]!.GetValue<string>())))!;
        config["architecture"] = "arm64";
        var (armConfig, armConfigSize) = Put(dir, config);
        manifest["config"]!["digest"] = armConfig;
        manifest["config"]!["size"] = armConfigSize;
        var (armManifest, armManifestSize) = Put(dir, manifest);
        var amd = new JsonObject { ["mediaType"] = entry["mediaType"]!.GetValue<string>(), ["digest"] = manifestDigest, ["size"] = entry["size"]!.GetValue<long>(), ["platform"] = new JsonObject { ["architecture"] = "amd64", ["os"] = "linux" } };
        var arm = new JsonObject { ["mediaType"] = entry["mediaType"]!.GetValue<string>(), ["digest"] = armManifest, ["size"] = armManifestSize, ["platform"] = new JsonObject { ["architecture"] = "arm64", ["os"] = "linux" } };
        var multi = new JsonObject { ["schemaVersion"] = 2, ["mediaType"] = "application/vnd.oci.image.index.v1+json", ["manifests"] = new JsonArray(amd, arm) };
        var (indexDigest, indexSize) = Put(dir, multi);
        index["manifests"]!.AsArray().Add(new JsonObject
        {
            ["mediaType"] = "application/vnd.oci.image.index.v1+json",
            ["digest"] = indexDigest,
            ["size"] = indexSize,
            ["annotations"] = new JsonObject { ["org.opencontainers.image.ref.name"] = "multi" },
        });
        File.WriteAllText(Path.Combine(dir, "index.json"), index.ToJsonString());
        return dir;
    }

    public static string Blob(string layout, string digest) => Path.Combine(layout, "blobs", "sha256", digest["sha256:".Length..]);

    static (string Digest, long Size) Put(string layout, JsonNode node)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(node.ToJsonString());
        string digest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));
        File.WriteAllBytes(Blob(layout, digest), bytes);
        return (digest, bytes.Length);
    }

    public void Dispose()
    {
        if (_registry.IsValueCreated) _registry.Value.Dispose();
        _temp.Dispose();
    }
}

/// <summary>`strata pull` and `strata push` against a real registry: pulled trees equal umoci's unpack of the same image,
/// pushes read back by skopeo and by a pull into a fresh store, and bad answers refused with one line and nothing left.</summary>
public sealed class RegistryPullTests(RegistryImages images, ITestOutputHelper output) : IClassFixture<RegistryImages>, IDisposable
{
    readonly TempRoot _temp = new();

    Cli NewStore(string name = "store") => new(_temp.Combine(name), new Dictionary<string, string>
    {
        ["STRATA_CONFIG"] = Config(),
        ["DOCKER_CONFIG"] = _temp.Combine("docker-config"),
    });

    string Config()
    {
        string path = _temp.Combine("config.json");
        if (!File.Exists(path)) File.WriteAllText(path, """{ "max-download-attempts": 2 }""");
        return path;
    }

    List<NodeInfo> Expected() => Images.Capture(Images.UmociRootfs(images.Layout, "img", _temp.Path));

    static void AssertTree(Cli s, string image, List<NodeInfo> expected)
    {
        string id = s.Ok("container", "create", image);
        string rootfs = s.Ok("container", "mount", id);
        try
        {
            TreeSnapshot.AssertSame(expected, Images.Capture(rootfs));
        }
        finally
        {
            s.Ok("container", "unmount", id);
            s.Ok("container", "rm", id);
        }
    }

    [RegistryFact]
    public void AnOciImagePullsAsUmociUnpacksItAndRuns()
    {
        var s = NewStore();
        string reference = $"{images.Host}/x:1";
        var pull = s.Run("pull", reference);
        output.WriteLine(pull.Stderr);
        Assert.True(pull.ExitCode == 0, pull.Stderr);
        Assert.Equal(reference, pull.Out.Split('\n')[^1]);
        Assert.Contains("1: Pulling from x", pull.Stderr + pull.Stdout);
        AssertTree(s, reference, Expected());
        var run = s.Run("run", "--rm", reference, "cat", "/etc/file");
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal("replaced", run.Out);
        // a second pull finds everything here
        var again = s.Run("pull", reference);
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Contains("Image is up to date", again.Stderr + again.Stdout);
    }

    [RegistryFact]
    public void ADockerSchema2ImagePullsToTheSameTree()
    {
        var s = NewStore();
        Assert.Equal($"{images.Host}/x:v2s2", s.Ok("pull", "-q", $"{images.Host}/x:v2s2"));
        var inspect = JsonDocument.Parse(s.Ok("image", "inspect", $"{images.Host}/x:v2s2")).RootElement[0];
        Assert.Equal("application/vnd.docker.distribution.manifest.v2+json", inspect.GetProperty("Image").GetProperty("ManifestMediaType").GetString());
        AssertTree(s, $"{images.Host}/x:v2s2", Expected());
    }

    [RegistryFact]
    public void ZstdLayersPullToTheSameTree()
    {
        var s = NewStore();
        s.Ok("pull", "-q", $"{images.Host}/x:zstd");
        var manifest = JsonDocument.Parse(s.Ok("image", "inspect", $"{images.Host}/x:zstd")).RootElement[0].GetProperty("Manifest");
        Assert.All(manifest.GetProperty("layers").EnumerateArray(), l => Assert.Equal("application/vnd.oci.image.layer.v1.tar+zstd", l.GetProperty("mediaType").GetString()));
        AssertTree(s, $"{images.Host}/x:zstd", Expected());
    }

    [RegistryFact]
    public void AnIndexGivesTheHostsPlatformOrTheOneAskedFor()
    {
        var s = NewStore();
        s.Ok("pull", "-q", $"{images.Host}/multi:1");
        var host = JsonDocument.Parse(s.Ok("image", "inspect", $"{images.Host}/multi:1")).RootElement[0].GetProperty("Image");
        Assert.Equal("linux/amd64", host.GetProperty("Platform").GetString());
        AssertTree(s, $"{images.Host}/multi:1", Expected());

        var other = NewStore("arm");
        other.Ok("pull", "-q", "--platform", "linux/arm64", $"{images.Host}/multi:1");
        var arm = JsonDocument.Parse(other.Ok("image", "inspect", $"{images.Host}/multi:1")).RootElement[0].GetProperty("Image");
        Assert.Equal("linux/arm64", arm.GetProperty("Platform").GetString());
        Assert.NotEqual(host.GetProperty("Id").GetString(), arm.GetProperty("Id").GetString());
        // the same layers: the arm64 twin differs only in its config
        Assert.Equal(host.GetProperty("Layers").ToString(), arm.GetProperty("Layers").ToString());

        // by the index's digest: found again by it, as docker records it
        using var http = new HttpClient();
        var head = new HttpRequestMessage(HttpMethod.Head, $"http://{images.Host}/v2/multi/manifests/1");
        head.Headers.Accept.ParseAdd("application/vnd.oci.image.index.v1+json");
        string index = http.Send(head).Headers.GetValues("Docker-Content-Digest").First();
        var byDigest = NewStore("digest");
        Assert.Equal($"{images.Host}/multi@{index}", byDigest.Ok("pull", "-q", $"{images.Host}/multi@{index}"));
        var run = byDigest.Run("run", "--rm", $"{images.Host}/multi@{index}", "cat", "/etc/file");
        Assert.True(run.ExitCode == 0, run.Stderr);

        var none = NewStore("none").Run("pull", "--platform", "linux/s390x", $"{images.Host}/multi:1");
        Assert.NotEqual(0, none.ExitCode);
        Assert.Contains("no manifest for platform linux/s390x", none.Stderr);
        Errors.AssertOneLine(none);
    }

    [RegistryFact]
    public void AnImagePulledByDigestIsFoundByThatDigest()
    {
        string digest = JsonDocument.Parse(Shell.Run("skopeo", "inspect", "--tls-verify=false", $"docker://{images.Host}/x:1").Check("skopeo inspect").Stdout)
            .RootElement.GetProperty("Digest").GetString()!;
        string reference = $"{images.Host}/x@{digest}";
        var s = NewStore();
        Assert.Equal(reference, s.Ok("pull", "-q", reference));
        var run = s.Run("run", "--rm", reference, "cat", "/etc/file");
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal("replaced", run.Out);
        var wrong = s.Run("pull", $"{images.Host}/x@sha256:{new string('0', 64)}");
        Assert.NotEqual(0, wrong.ExitCode);
        Errors.AssertOneLine(wrong);
    }

    [RegistryFact]
    public void DockerHubImagesComeFromAConfiguredMirror()
    {
        // the local registry stands in for a mirror of Docker Hub: library/NAME there is NAME here
        Shell.Run("skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", $"oci:{images.Layout}:img", $"docker://{images.Host}/library/mirrored:1")
            .Check("skopeo copy to the mirror");
        string config = _temp.Combine("mirror.json");
        File.WriteAllText(config, $$"""{ "registry-mirrors": ["http://{{images.Host}}"] }""");
        var s = new Cli(_temp.Combine("store"), new Dictionary<string, string> { ["STRATA_CONFIG"] = config, ["DOCKER_CONFIG"] = _temp.Combine("docker-config") });
        var pull = s.Run("pull", "mirrored:1");
        Assert.True(pull.ExitCode == 0, pull.Stderr);
        Assert.Equal("docker.io/library/mirrored:1", pull.Out.Split('\n')[^1]);
        Assert.Contains("1: Pulling from library/mirrored", pull.Stderr + pull.Stdout);
        var run = s.Run("run", "--rm", "mirrored:1", "cat", "/etc/file");
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal("replaced", run.Out);
    }

    [RegistryFact]
    public void APullThroughTheDaemonRunsInIt()
    {
        string root = _temp.Combine("served");
        string plugins = _temp.Dir("plugins");
        using var serve = new StrataServe(["--root", root, "serve", "--docker-plugin", "strata-pull-test", "--plugin-dir", plugins],
            Path.Combine(plugins, "strata-pull-test.sock"), _temp.Combine("serve.log"));
        var s = new Cli(root);
        string reference = $"{images.Host}/x:1";
        var pull = s.Run("pull", reference);
        Assert.True(pull.ExitCode == 0, pull.Stderr + serve.Log());
        Assert.Equal(reference, pull.Out);
        Assert.Contains("Pull complete", pull.Stderr);
        var run = s.Run("image", "ls", "--format", "json");
        Assert.Contains(reference, run.Stdout);
        s.Ok("image", "rm", reference);
        Assert.Equal(0, serve.Stop());
    }

    [RegistryFact]
    public void LayersTheStoreHasAreNotDownloaded()
    {
        var s = NewStore();
        s.Ok("pull", "-q", $"{images.Host}/x:1");
        // the same layers under another manifest (Docker's media types): nothing to download, nothing to extract
        var second = s.Run("pull", $"{images.Host}/x:v2s2");
        Assert.True(second.ExitCode == 0, second.Stderr);
        string all = second.Stdout + second.Stderr;
        Assert.Contains("Already exists", all);
        Assert.DoesNotContain("Downloading", all);
        Assert.DoesNotContain("Extracting", all);
    }

    [RegistryFact]
    public void AllTagsPullsEveryTag()
    {
        var s = NewStore();
        var pulled = s.Ok("pull", "-q", "--all-tags", $"{images.Host}/x").Split('\n');
        Assert.Equal(new[] { $"{images.Host}/x:1", $"{images.Host}/x:v2s2", $"{images.Host}/x:zstd" }, pulled.Order(StringComparer.Ordinal));
        var refused = s.Run("pull", "--all-tags", $"{images.Host}/x:1");
        Assert.NotEqual(0, refused.ExitCode);
        Errors.AssertOneLine(refused);
    }

    [RegistryFact]
    public void APushIsReadBackBySkopeoAndByAPullIntoAFreshStore()
    {
        var s = NewStore();
        s.Ok("image", "import", images.Layout, "--name", "local:1", "-q");
        string c = s.Ok("container", "create", "local:1");
        string rootfs = s.Ok("container", "mount", c);
        File.WriteAllText(Path.Combine(rootfs, "pushed.txt"), "from strata\n");
        s.Ok("container", "unmount", c);
        s.Ok("container", "commit", c, "local:2");
        s.Ok("container", "rm", c);

        string target = $"{images.Host}/pushed/app:2";
        var push = s.Run("push", "local:2", target);
        output.WriteLine(push.Stdout + push.Stderr);
        Assert.True(push.ExitCode == 0, push.Stderr);
        Assert.Matches(@"2: digest: sha256:[0-9a-f]{64} size: \d+", push.Stdout + push.Stderr);
        var seen = JsonDocument.Parse(Shell.Run("skopeo", "inspect", "--tls-verify=false", "docker://" + target).Check("skopeo inspect").Stdout).RootElement;
        Assert.Equal(3, seen.GetProperty("Layers").GetArrayLength());
        string copy = _temp.Combine("copy");
        Shell.Run("skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", "docker://" + target, $"oci:{copy}:copied").Check("skopeo copy");
        var expected = Images.Capture(Images.UmociRootfs(copy, "copied", _temp.Path));
        Assert.Contains(expected, n => n.Path == "pushed.txt");

        var fresh = NewStore("fresh");
        fresh.Ok("pull", "-q", target);
        AssertTree(fresh, target, expected);

        // pushed again: the registry has every layer
        var again = s.Run("push", "local:2", target);
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.DoesNotContain("Pushed", again.Stdout + again.Stderr);
        Assert.Contains("Layer already exists", again.Stdout + again.Stderr);

        // to another repository of the registry: the layers of an image pulled from there are mounted, not uploaded
        var mount = fresh.Run("push", target, $"{images.Host}/other/app:2");
        Assert.True(mount.ExitCode == 0, mount.Stderr);
        Assert.Contains("Mounted from pushed/app", mount.Stdout + mount.Stderr);
    }

    [RegistryFact]
    public void APushCanRecompressLayersWithZstdAndUploadInChunks()
    {
        var s = NewStore();
        s.Ok("image", "import", images.Layout, "--name", "local:1", "-q");
        string target = $"{images.Host}/recompressed:zstd";
        var push = s.Run("push", "--compression", "zstd", "--chunk-size", "64k", "local:1", target);
        Assert.True(push.ExitCode == 0, push.Stderr);
        var raw = JsonDocument.Parse(Shell.Run("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + target).Check("skopeo inspect --raw").Stdout).RootElement;
        Assert.All(raw.GetProperty("layers").EnumerateArray(), l => Assert.Equal("application/vnd.oci.image.layer.v1.tar+zstd", l.GetProperty("mediaType").GetString()));
        var fresh = NewStore("fresh");
        fresh.Ok("pull", "-q", target);
        AssertTree(fresh, target, Expected());
    }

    [RegistryFact]
    public void AMissingRepositoryOrTagIsOneLineAndLeavesNothing()
    {
        var s = NewStore();
        foreach (var reference in new[] { $"{images.Host}/nothing/here:1", $"{images.Host}/x:nosuchtag" })
        {
            var r = s.Run("pull", reference);
            Assert.NotEqual(0, r.ExitCode);
            Errors.AssertOneLine(r);
            Assert.Contains("not found", r.Stderr);
        }
        AssertEmptyStore(s);
    }

    [RegistryFact]
    public void ATamperedBlobIsRefusedAndNothingIsVisible()
    {
        // a registry of its own: the blob is changed in its storage
        using var registry = new PrivateRegistry(_temp.Dir("tamper-registry"));
        string reference = registry.Push(images.Layout, "img", "t");
        var manifest = JsonDocument.Parse(Shell.Run("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + reference).Check("skopeo inspect").Stdout).RootElement;
        string top = manifest.GetProperty("layers").EnumerateArray().Last().GetProperty("digest").GetString()!["sha256:".Length..];
        string data = Path.Combine(_temp.Path, "tamper-registry", "storage", "docker", "registry", "v2", "blobs", "sha256", top[..2], top, "data");
        var bytes = File.ReadAllBytes(data);
        bytes[bytes.Length / 2] ^= 0xff;
        File.WriteAllBytes(data, bytes);

        var s = NewStore();
        var r = s.Run("pull", reference);
        output.WriteLine(r.Stderr);
        Assert.NotEqual(0, r.ExitCode);
        Errors.AssertOneLine(r);
        Assert.Contains($"sha256:{top}", r.Stderr);
        AssertEmptyStore(s);
    }

    /// <summary>No image, no layer, no blob, nothing in tmp/.</summary>
    void AssertEmptyStore(Cli s)
    {
        // on disk first: opening the store (any command) collects what a failed pull left
        string layers = Path.Combine(_temp.Combine("store"), "layers");
        Assert.Empty(Directory.Exists(layers) ? Directory.GetFiles(layers, "*.json") : []);
        Assert.Equal(0, JsonDocument.Parse(s.Ok("image", "ls", "--format", "json")).RootElement.GetArrayLength());
        Assert.Equal(0, JsonDocument.Parse(s.Ok("layer", "ls", "--format", "json")).RootElement.GetArrayLength());
        string root = _temp.Combine("store");
        string blobs = Path.Combine(root, "images", "blobs", "sha256");
        Assert.Empty(Directory.Exists(blobs) ? Directory.GetFiles(blobs) : []);
        string tmp = Path.Combine(root, "tmp");
        Assert.Empty(Directory.Exists(tmp) ? Directory.GetFileSystemEntries(tmp) : []);
    }

    public void Dispose() => _temp.Dispose();
}

/// <summary>What the CLI prints when it fails: a non-zero exit and one "strata: " line, the last (the progress lines of
/// a pull may come before it), with no stack trace.</summary>
static class Errors
{
    public static void AssertOneLine(Cli.Result r)
    {
        Assert.NotEqual(0, r.ExitCode);
        var lines = r.Stderr.TrimEnd('\n').Split('\n');
        Assert.Single(lines, l => l.StartsWith("strata: ", StringComparison.Ordinal));
        Assert.StartsWith("strata: ", lines[^1]);
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.DoesNotContain("Exception", r.Stderr);
    }
}
