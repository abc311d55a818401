using System.Text.Json.Nodes;
using Strata.Core.Containers;
using Strata.Testing;

namespace Strata.Core.Tests;

/// <summary>
/// The runtime bundle of `strata run`: the process comes from the image's config and the caller's command (the
/// entrypoint always, the image's cmd only when no command is given), the environment gets PATH, HOSTNAME and
/// TERM as Docker gives them, and runc's default spec gets the container's root, hostname and process.
/// </summary>
public sealed class RuntimeBundleTests : IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    static JsonNode Config(string json) => JsonNode.Parse(json)!;

    [Fact]
    public void TheCommandFollowsTheEntrypointAndReplacesTheCmd()
    {
        var config = Config("""{"Entrypoint":["/bin/tini","--"],"Cmd":["sh"],"Env":["A=1"],"WorkingDir":"/app","User":"app"}""");
        var p = RuntimeBundle.Process(config, "web", [], terminal: false);
        Assert.Equal(["/bin/tini", "--", "sh"], p.Args);
        Assert.Equal(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1", "HOSTNAME=web"], p.Env);
        Assert.Equal("/app", p.Cwd);
        Assert.Equal("app", p.User);
        Assert.False(p.Terminal);

        p = RuntimeBundle.Process(config, "web", ["echo", "hi"], terminal: false);
        Assert.Equal(["/bin/tini", "--", "echo", "hi"], p.Args);
    }

    [Fact]
    public void AnImagesPathAndTermAreKept()
    {
        var config = Config("""{"Cmd":["sh"],"Env":["TERM=vt100","PATH=/opt/bin"]}""");
        var p = RuntimeBundle.Process(config, "c", [], terminal: true);
        Assert.Equal(["TERM=vt100", "PATH=/opt/bin", "HOSTNAME=c"], p.Env);
        p = RuntimeBundle.Process(Config("""{"Cmd":["sh"]}"""), "c", [], terminal: true);
        Assert.Equal(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=c", "TERM=xterm"], p.Env);
        Assert.True(p.Terminal);
    }

    [Fact]
    public void WithoutConfigTheCommandIsAllThereIs()
    {
        var p = RuntimeBundle.Process(null, "c", ["true"], terminal: false);
        Assert.Equal(["true"], p.Args);
        Assert.Equal("/", p.Cwd);
        Assert.Equal("", p.User);
        Assert.Equal("/", RuntimeBundle.Process(Config("""{"WorkingDir":""}"""), "c", ["true"], false).Cwd);
        var ex = Assert.Throws<StrataException>(() => RuntimeBundle.Process(Config("""{"Env":[]}"""), "c", [], false));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.StartsWith("no command", ex.Message);
    }

    [Fact]
    public void TheSpecGetsRootHostnameAndProcess()
    {
        var spec = Config("""{"ociVersion":"1.0.2","process":{"terminal":true,"args":["sh"],"cwd":"/","capabilities":{"bounding":["CAP_KILL"]}},"hostname":"runc","linux":{"namespaces":[{"type":"network"}]}}""");
        var p = RuntimeBundle.Process(Config("""{"Cmd":["sh","-c","exit 3"],"WorkingDir":"/w"}"""), "box", [], terminal: false);
        RuntimeBundle.Fill(spec, "0123456789abcdef", "box", "/mnt/rootfs", p, (1000, 50));
        Assert.Equal("/mnt/rootfs", spec["root"]!["path"]!.GetValue<string>());
        Assert.False(spec["root"]!["readonly"]!.GetValue<bool>());
        Assert.Equal("box", spec["hostname"]!.GetValue<string>());
        var process = spec["process"]!;
        Assert.False(process["terminal"]!.GetValue<bool>());
        Assert.Equal(["sh", "-c", "exit 3"], process["args"]!.AsArray().Select(a => a!.GetValue<string>()));
        Assert.Equal("/w", process["cwd"]!.GetValue<string>());
        Assert.Equal(1000u, process["user"]!["uid"]!.GetValue<uint>());
        Assert.Equal(50u, process["user"]!["gid"]!.GetValue<uint>());
        // what runc put there otherwise stays
        Assert.Equal("CAP_KILL", process["capabilities"]!["bounding"]![0]!.GetValue<string>());
        Assert.Equal("network", spec["linux"]!["namespaces"]![0]!["type"]!.GetValue<string>());
    }

    [Fact]
    public void ALongNameIsNotTheHostname()
    {
        var spec = Config("""{"process":{}}""");
        string name = new('n', 65);
        RuntimeBundle.Fill(spec, "0123456789abcdef", name, "/r", RuntimeBundle.Process(null, name, ["true"], false), (0, 0));
        Assert.Equal("0123456789ab", spec["hostname"]!.GetValue<string>());
        Assert.Contains("HOSTNAME=" + name, spec["process"]!["env"]!.AsArray().Select(e => e!.GetValue<string>()));
    }

    [SkippableFact]
    public void CreateWritesRuncsDefaultSpecFilledAndRemoveDeletesIt()
    {
        Skip.IfNot(Shell.Has("runc"), "runc is not installed (test.sh installs it)");
        string rootfs = _temp.Dir("rootfs");
        Directory.CreateDirectory(Path.Combine(rootfs, "etc"));
        File.WriteAllText(Path.Combine(rootfs, "etc/passwd"), "app:x:1000:1001::/:/bin/sh\n");
        string bundles = _temp.Combine("bundles");
        var p = RuntimeBundle.Process(Config("""{"Cmd":["id"],"User":"app"}"""), "c1", [], false);
        string bundle = RuntimeBundle.Create(bundles, "c1id", "c1", rootfs, p);
        Assert.Equal(Path.Combine(bundles, "c1id"), bundle);
        var spec = JsonNode.Parse(File.ReadAllText(Path.Combine(bundle, "config.json")))!;
        Assert.Equal(rootfs, spec["root"]!["path"]!.GetValue<string>());
        Assert.Equal(1000u, spec["process"]!["user"]!["uid"]!.GetValue<uint>());
        Assert.NotNull(spec["linux"]!["namespaces"]); // runc's defaults are there
        RuntimeBundle.Remove(bundle);
        Assert.False(Directory.Exists(bundle));

        // a user that is not in the image: no bundle is left
        var missing = RuntimeBundle.Process(Config("""{"Cmd":["id"],"User":"nobody"}"""), "c2", [], false);
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => RuntimeBundle.Create(bundles, "c2id", "c2", rootfs, missing)).Kind);
        Assert.False(Directory.Exists(Path.Combine(bundles, "c2id")));
    }
}
