using System.Diagnostics;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>`strata serve` owns the store; every CLI command on that root runs inside it through the control
/// socket, with the same output, exit codes and streams as in embedded mode.</summary>
public sealed class DaemonTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;
    string Store => _temp.Combine("store");

    public DaemonTests() => _cli = new Cli(Store);

    public void Dispose() => _temp.Dispose();

    StrataServe Serve() => new(Store, "overlay", "strata-test-" + Guid.NewGuid().ToString("N")[..10], _temp.Combine("serve.log"));

    [Fact]
    public void CommandsRunInsideTheDaemonThatOwnsTheStore()
    {
        string src = _temp.Dir("src");
        File.WriteAllText(Path.Combine(src, "hello"), "world\n");
        Shell.Run("tar", "-C", src, "-cf", _temp.Combine("a.tar"), ".").Check("tar");
        byte[] tar = File.ReadAllBytes(_temp.Combine("a.tar"));
        string viaDaemon;
        using (var serve = Serve())
        {
            Assert.True(File.Exists(Path.Combine(Store, "strata.sock")));
            var clock = Stopwatch.StartNew();
            Assert.StartsWith("Storage Driver: overlay\n", _cli.Ok("info"));
            Assert.Equal("base", _cli.Ok("layer", "create", "base"));
            Assert.Equal("6", _cli.Run(tar, "layer", "apply", "app", "--parent", "base").Out); // the tar streams in through the daemon
            Assert.Contains("app    base", _cli.Ok("layer", "ls"));
            var diff = _cli.Run("layer", "diff", "app");                                      // and out
            Assert.Equal(0, diff.ExitCode);
            viaDaemon = diff.Stdout;
            string merged = _cli.Ok("layer", "mount", "app");
            Assert.Equal("world\n", File.ReadAllText(Path.Combine(merged, "hello")));
            var rm = _cli.Run("layer", "rm", "base");
            Assert.Equal((5, "strata: layer base has 1 child layer(s) (app); remove them first\n"), (rm.ExitCode, rm.Stderr));
            Assert.Equal(3, _cli.Run("layer", "inspect", "missing").ExitCode);
            _cli.Ok("layer", "unmount", "app");
            // the daemon holds the store's lock: in embedded mode each command would have waited 30 s for it
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(25), $"took {clock.Elapsed}");
            Assert.Contains("serving store", serve.Log());
            // started from / (as systemd does), it must not watch that tree: a watcher walking into new mounts keeps them busy
            int watches = Directory.GetFiles($"/proc/{serve.Pid}/fdinfo").Sum(f => File.ReadLines(f).Count(l => l.StartsWith("inotify wd:", StringComparison.Ordinal)));
            Assert.True(watches < 10, $"strata serve holds {watches} inotify watches");
        }
        Assert.False(File.Exists(Path.Combine(Store, "strata.sock")));
        // embedded again: the same answers
        Assert.Equal(viaDaemon, _cli.Run("layer", "diff", "app").Stdout);
        Assert.Equal("A /hello", _cli.Ok("layer", "changes", "app"));
    }

    [Fact]
    public void ASocketLeftByAKilledDaemonIsIgnoredAndReplaced()
    {
        var serve = Serve();
        _cli.Ok("layer", "create", "base");
        Shell.Run("pkill", "-KILL", "-f", "--", "--root " + Store + " --driver overlay serve").Check("pkill");
        Thread.Sleep(500);
        serve.Dispose();
        File.Delete(serve.Socket); // the plugin socket lies outside the store: leave no trace of the killed daemon
        Assert.True(File.Exists(Path.Combine(Store, "strata.sock")));
        Assert.Contains("base", _cli.Ok("layer", "ls")); // nobody answers there: the CLI opens the store itself
        using var again = Serve();
        Assert.Contains("base", _cli.Ok("layer", "ls"));
    }
}
