using System.Text.Json;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>The `strata` command as a user runs it: real process, real store, exit codes and messages.</summary>
public sealed class CliTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;

    public CliTests() => _cli = new Cli(_temp.Combine("store"));

    public void Dispose() => _temp.Dispose();

    [Theory]
    [InlineData("vfs")]
    [InlineData("overlay")]
    public void LayerLifecycleFromTheCommandLine(string driver)
    {
        _cli.Ok("--driver", driver, "init");
        Assert.StartsWith($"Storage Driver: {driver}\n", _cli.Ok("info"));
        string src = _temp.Dir("src");
        Directory.CreateDirectory(Path.Combine(src, "etc"));
        File.WriteAllText(Path.Combine(src, "etc", "motd"), "hello\n");
        File.CreateSymbolicLink(Path.Combine(src, "etc", "motd.link"), "motd");
        Shell.Run("tar", "-C", src, "-cf", _temp.Combine("base.tar"), ".").Check("tar");

        Assert.Equal("6", _cli.Ok("layer", "apply", "base", "-i", _temp.Combine("base.tar")));
        Assert.Equal("app", _cli.Ok("layer", "create", "app", "--parent", "base", "--rw", "--label", "role=web"));
        string dir = _cli.Ok("layer", "mount", "app");
        Assert.True(Directory.Exists(dir));
        File.WriteAllText(Path.Combine(dir, "etc", "motd"), "goodbye\n");
        File.Delete(Path.Combine(dir, "etc", "motd.link"));
        Directory.CreateDirectory(Path.Combine(dir, "data"));
        File.WriteAllText(Path.Combine(dir, "data", "answer"), "42\n");
        _cli.Ok("layer", "unmount", "app");

        Assert.Equal("A /data\nA /data/answer\nC /etc\nC /etc/motd\nD /etc/motd.link", _cli.Ok("layer", "changes", "app"));
        Assert.Equal("11", _cli.Ok("layer", "diff-size", "app"));
        _cli.Ok("layer", "diff", "app", "-o", _temp.Combine("app.tar"));
        var listing = Shell.Run("tar", "-tf", _temp.Combine("app.tar")).Check("tar -t").Stdout;
        Assert.Equal("data/\ndata/answer\netc/\netc/motd\netc/.wh.motd.link\n", listing);
        Assert.Equal("11", _cli.Ok("layer", "apply", "copy", "--parent", "base", "-i", _temp.Combine("app.tar")));
        Assert.Equal(_cli.Ok("layer", "changes", "app"), _cli.Ok("layer", "changes", "copy"));
        // against an explicit base: everything is new relative to the empty tree
        Assert.Contains("A /etc/motd", _cli.Ok("layer", "changes", "copy", "--parent", "app") + "\nA /etc/motd");

        var layers = JsonDocument.Parse(_cli.Ok("layer", "ls", "--format", "json")).RootElement;
        Assert.Equal(["base", "app", "copy"], layers.EnumerateArray().Select(l => l.GetProperty("Id").GetString()));
        Assert.Equal("web", layers[1].GetProperty("Labels").GetProperty("role").GetString());
        Assert.Contains("app", _cli.Ok("layer", "ls"));

        var info = JsonDocument.Parse(_cli.Ok("info", "--format", "json")).RootElement;
        Assert.Equal(driver, info.GetProperty("StorageDriver").GetString());
        string text = _cli.Ok("info");
        Assert.StartsWith($"Storage Driver: {driver}\n Root Dir: ", text);
        Assert.Contains(" Snapshotter Socket: none (no daemon owns the store)\n", text);
        Assert.Contains(" Snapshots: 0 (0 active, 0 committed, 0 views)", text);

        _cli.Ok("layer", "rm", "copy", "app");
        _cli.Ok("layer", "rm", "base");
        Assert.Equal("", _cli.Ok("layer", "ls", "--format", "json").Replace("[]", ""));
    }

    [Fact]
    public void ANewStoreGetsOverlayWhereTheKernelMountsIt()
    {
        // this machine has overlayfs (the test VM's contract), so the probe must pick it and say what it found
        _cli.Ok("init");
        string info = _cli.Ok("info");
        Assert.StartsWith("Storage Driver: overlay\n", info);
        Assert.Contains(" Supports d_type: true\n", info);
        Assert.Contains(" Native Overlay Diff: true\n", info);
        Assert.Matches(@" Backing Filesystem: (extfs|xfs|btrfs)\n", info);
        // the choice is recorded: a store keeps its driver
        var r = _cli.Run("--driver", "vfs", "info");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("was created with driver 'overlay'", r.Stderr);
    }

    [Fact]
    public void SizeLimitOffXfsIsAClearError()
    {
        _cli.Ok("layer", "create", "base");
        var r = _cli.Run("layer", "create", "c", "--parent", "base", "--rw", "--storage-opt", "size=50M");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Matches(@"^strata: size= is not supported here: the store is on \w+; size limits need xfs mounted with prjquota\n$", r.Stderr);
        Assert.DoesNotContain("\"c\"", _cli.Ok("layer", "ls", "--format", "json")); // nothing half-made stays
    }

    [Theory]
    [InlineData(3, "layer", "rm", "missing")]
    [InlineData(3, "layer", "mount", "missing")]
    [InlineData(2, "layer", "create", "../evil")]
    [InlineData(2, "layer", "create", "ok", "--storage-opt", "nonsense")]
    [InlineData(2, "layer", "frobnicate")]
    [InlineData(3, "info")] // a read of a root without a store
    [InlineData(2, "--driver", "zfs", "init")]
    [InlineData(2, "--storage-opt", "overlay.nonsense=1", "init")]
    [InlineData(2, "--storage-opt", "overlay.mount_program=relative/fuse-overlayfs", "init")]
    [InlineData(2, "layer", "create", "ro", "--storage-opt", "size=50M")]
    [InlineData(2, "layer", "create", "rw", "--rw", "--storage-opt", "size=lots")]
    [InlineData(2, "layer", "ls", "--storage-opt", "size=50M")]
    [InlineData(3, "layer", "apply", "x", "-i", "/nonexistent.tar")]
    public void FailuresAreOneLineWithAnExitCode(int code, params string[] args)
    {
        var r = _cli.Run(args);
        Assert.Equal(code, r.ExitCode);
        Assert.Equal("", r.Stdout);
        string[] lines = r.Stderr.TrimEnd('\n').Split('\n');
        Assert.True(lines.Length == 1, "expected one line, got:\n" + r.Stderr);
        Assert.StartsWith("strata: ", lines[0]);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void RemovingALayerWithChildrenSaysWhy()
    {
        _cli.Ok("layer", "create", "base");
        _cli.Ok("layer", "create", "child", "--parent", "base");
        var r = _cli.Run("layer", "rm", "base");
        Assert.Equal(5, r.ExitCode);
        Assert.Equal("strata: layer base has 1 child layer(s) (child); remove them first\n", r.Stderr);
    }

    [Fact]
    public void ABadTarLeavesNoLayer()
    {
        _cli.Ok("--driver", "vfs", "layer", "create", "base");
        byte[] garbage = new byte[1024];
        garbage[0] = (byte)'x';
        var r = _cli.Run(garbage, "layer", "apply", "bad", "--parent", "base");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("strata: tar: header checksum mismatch", r.Stderr);
        string listing = _cli.Ok("layer", "ls", "--format", "json");
        Assert.Contains("\"base\"", listing);
        Assert.DoesNotContain("\"bad\"", listing);
        Assert.Equal(["base"], Directory.GetDirectories(_temp.Combine("store", "vfs")).Select(Path.GetFileName));
    }

    [Fact]
    public void ANewlineInANameIsEchoedEscapedOnOneLine()
    {
        // issue 17 item 10: names reach errors as given; a newline in one made the one-line error two lines
        string src = _temp.Dir("nl");
        File.WriteAllText(Path.Combine(src, "f"), "x");
        Shell.Run("tar", "-C", src, "-cf", _temp.Combine("nl.tar"), ".").Check("tar");
        _cli.Ok("--driver", "vfs", "image", "import", _temp.Combine("nl.tar"), "--name", "img:1", "-q");
        _cli.Ok("container", "create", "img:1", "--name", "c1");
        _cli.Ok("pool", "create", "--data-size", "64M", "--metadata-size", "8M");
        string bad = "a\nb\u001b[31m";
        var cases = new[]
        {
            new[] { "image", "import", _temp.Combine("nl.tar"), "--name", bad, "-q" },
            ["image", "tag", "img:1", bad],
            ["image", "inspect", bad],
            ["image", "rm", bad],
            ["container", "create", "img:1", "--name", bad],
            ["container", "inspect", bad],
            ["container", "rm", bad],
            ["layer", "create", bad],
            ["layer", "inspect", bad],
            ["layer", "apply", bad, "-i", _temp.Combine("nl.tar")],
            ["pool", "device", "create", bad, "--size", "1M"],
            ["pool", "device", "rm", bad],
            ["pool", "device", "snapshot", bad, "s"],
            [bad],
        };
        foreach (var args in cases)
        {
            var r = _cli.Run(args);
            string what = string.Join(' ', args).Replace("\n", "\\n");
            Assert.NotEqual(0, r.ExitCode);
            Assert.True(r.Stderr.EndsWith('\n') && r.Stderr.Count(c => c == '\n') == 1 && !r.Stderr.Contains('\u001b'), $"{what}: {r.Stderr.Replace("\n", "<NL>")}");
            Assert.StartsWith("strata: ", r.Stderr);
        }
    }
}
