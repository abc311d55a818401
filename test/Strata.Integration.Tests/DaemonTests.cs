using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Strata.Native;
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

    [Fact]
    public void ArgumentsFilesAndOptionsAreTheClientsAsInEmbeddedMode()
    {
        string src = _temp.Dir("src");
        File.WriteAllText(Path.Combine(src, "hello"), "world\n");
        Shell.Run("tar", "-C", src, "-cf", _temp.Combine("a.tar"), ".").Check("tar");
        using var serve = Serve();
        // arguments travel in the body: a command line far past any header limit gets the command's own answer
        string longId = new('x', 100_000); // one argument may hold 128 KiB; headers held 32 KiB
        var inspect = _cli.Run("layer", "inspect", longId);
        Assert.Equal(2, inspect.ExitCode);
        Assert.StartsWith("strata: invalid layer id 'xxxxxxxx", inspect.Stderr);
        Assert.Single(inspect.Stderr.TrimEnd('\n').Split('\n'));
        // -i and -o are the client's files: read and written by the CLI, the file appears only for a command that succeeded
        Assert.Equal("6", _cli.Ok("layer", "apply", "app", "-i", _temp.Combine("a.tar")));
        _cli.Ok("layer", "diff", "app", "-o", _temp.Combine("app.tar"));
        Assert.Equal(_cli.Run("layer", "diff", "app").Stdout, File.ReadAllText(_temp.Combine("app.tar")));
        Assert.Equal(3, _cli.Run("layer", "diff", "missing", "-o", _temp.Combine("missing.tar")).ExitCode);
        Assert.Empty(Directory.GetFiles(_temp.Path, "missing.tar*"));
        var noInput = _cli.Run("layer", "apply", "other", "-i", _temp.Combine("nonexistent.tar"));
        Assert.Equal((3, $"strata: input file {_temp.Combine("nonexistent.tar")} does not exist\n"), (noInput.ExitCode, noInput.Stderr));
        // driver options the store was not created with are refused, as opening the store would refuse them
        var opt = _cli.Run("--storage-opt", "overlay.mount_program=/usr/bin/fuse-overlayfs", "info");
        Assert.Equal(2, opt.ExitCode);
        Assert.Contains("was created with no overlay.mount_program", opt.Stderr);
        Assert.Equal(2, _cli.Run("--driver", "vfs", "layer", "ls").ExitCode);
    }

    [Fact]
    public void ACommandWhoseClientDiesStopsInsideTheDaemon()
    {
        using var serve = Serve();
        _cli.Ok("layer", "create", "big");
        string tree = _cli.Ok("layer", "mount", "big");
        using (var f = new FileStream(Path.Combine(tree, "sparse"), FileMode.CreateNew)) f.SetLength(1L << 40); // a tar of 1 TiB
        _cli.Ok("layer", "unmount", "big");
        using (var diff = _cli.Start("layer", "diff", "big"))
        {
            diff.StandardOutput.BaseStream.ReadExactly(new byte[1 << 20]); // under way, holding its layer
            Assert.Contains("in use", _cli.Run("layer", "rm", "big").Stderr);
            diff.Kill();
            diff.WaitForExit();
        }
        var deadline = DateTime.UtcNow.AddSeconds(30);
        Cli.Result rm;
        while ((rm = _cli.Run("layer", "rm", "big")).ExitCode != 0 && DateTime.UtcNow < deadline) Thread.Sleep(200);
        Assert.True(rm.ExitCode == 0, rm.Stderr); // the daemon stopped writing a tar nobody reads, and let the layer go
    }

    [Fact]
    public void ServeTellsTheServiceManagerWhenItIsReadyAndWhenItStops()
    {
        // systemd's Type=notify: dockerd, ordered after strata.service, starts only once the plugin socket answers
        string path = _temp.Combine("notify");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.ReceiveTimeout = 60_000;
        var buffer = new byte[256];
        using (var serve = new StrataServe(Store, "overlay", "strata-test-" + Guid.NewGuid().ToString("N")[..10], _temp.Combine("serve.log"), new Dictionary<string, string> { ["NOTIFY_SOCKET"] = path }))
        {
            Assert.Equal("READY=1", Encoding.UTF8.GetString(buffer, 0, listener.Receive(buffer)));
            Assert.True(File.Exists(serve.Socket));
            Assert.Equal(0, serve.Stop());
        }
        Assert.Equal("STOPPING=1", Encoding.UTF8.GetString(buffer, 0, listener.Receive(buffer)));
    }

    [Fact]
    public void RunGoesThroughTheDaemonWithoutHoldingTheStore()
    {
        // `strata run` runs runc itself; its store steps go to the daemon, and other commands go on while the container runs
        string root = _temp.Dir("rootfs");
        Directory.CreateDirectory(Path.Combine(root, "bin"));
        File.Copy("/bin/busybox", Path.Combine(root, "bin", "busybox"));
        foreach (var applet in new[] { "sh", "sleep", "cat", "echo" }) File.CreateSymbolicLink(Path.Combine(root, "bin", applet), "busybox");
        Shell.Run("tar", "-C", root, "-cf", _temp.Combine("rootfs.tar"), ".").Check("tar");
        using var serve = Serve();
        Assert.EndsWith(" demo:1", _cli.Ok("image", "import", _temp.Combine("rootfs.tar"), "--name", "demo:1", "-q"));
        using (var run = _cli.Start("run", "--name", "c1", "demo:1", "sh", "-c", "echo started; sleep 2; echo done > /done; exit 4"))
        {
            Assert.Equal("started", run.StandardOutput.ReadLine());
            Assert.Contains("c1", _cli.Ok("container", "ls")); // answered while the container runs
            Assert.True(run.WaitForExit(TimeSpan.FromSeconds(60)));
            Assert.Equal(4, run.ExitCode);
        }
        Assert.Equal("A /done", _cli.Ok("container", "diff", "c1"));
        _cli.Ok("container", "rm", "c1");
        _cli.Ok("image", "rm", "demo:1");
        Assert.Contains("serving store", serve.Log());
        Assert.DoesNotContain("fail", serve.Log(), StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void MalformedControlRequestsAreRefusedWithoutAStackTrace()
    {
        // the CLI never sends these; anything else on the socket may: each is a 400, and the daemon logs no crash
        using var serve = Serve();
        using var handler = Strata.Native.UnixSocketHttp.Handler(Path.Combine(Store, "strata.sock"));
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(60) };
        static byte[] Framed(string json)
        {
            var bytes = Encoding.UTF8.GetBytes(json);
            var body = new byte[4 + bytes.Length];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(body, bytes.Length);
            bytes.CopyTo(body, 4);
            return body;
        }
        var bodies = new Dictionary<string, byte[]>
        {
            ["a null argument"] = Framed("""["layer",null]"""),
            ["only a null argument"] = Framed("[null]"),
            ["a number argument"] = Framed("""["layer",5]"""),
            ["an object argument"] = Framed("""["layer",{}]"""),
            ["null"] = Framed("null"),
            ["an object"] = Framed("""{"args":["info"]}"""),
            ["a string"] = Framed("\"info\""),
            ["broken JSON"] = Framed("""["info" """),
            ["a length past the arguments"] = [0, 0, 1, 0, (byte)'[', (byte)']'],
            ["a zero length"] = [0, 0, 0, 0],
            ["a negative length"] = [0xFF, 0xFF, 0xFF, 0xFF],
            ["an empty body"] = [],
        };
        var wrong = new List<string>();
        foreach (var (what, body) in bodies)
        {
            try
            {
                using var response = http.Send(new HttpRequestMessage(HttpMethod.Post, "http://strata/v1/command") { Content = new ByteArrayContent(body) });
                if ((int)response.StatusCode != 400) wrong.Add($"{what}: {(int)response.StatusCode}");
            }
            catch (HttpRequestException ex)
            {
                wrong.Add($"{what}: {ex.Message} {ex.InnerException?.Message}");
            }
        }
        Assert.True(wrong.Count == 0, string.Join('\n', wrong) + "\n" + serve.Log());
        Assert.StartsWith("Storage Driver: overlay", _cli.Ok("info")); // still serving
        Assert.DoesNotContain("Exception", serve.Log());
        Assert.DoesNotContain("fail", serve.Log(), StringComparison.OrdinalIgnoreCase);
    }

    [OthersCanRunStrataFact]
    public void AUserTheDaemonDoesNotServeIsToldSoInOneLine()
    {
        Posix.ChmodAt(FileDescriptor.Cwd, _temp.Path, 0x1ED); // 0755: nobody may reach the store's socket, not use it
        using var serve = Serve();
        var r = Shell.Run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", Cli.Binary, "--root", Store, "info");
        Assert.Equal((1, $"strata: permission denied on {Store}/strata.sock: the daemon that owns store {Store} takes commands from root only\n"), (r.ExitCode, r.Stderr));
    }
}

/// <summary>A fact that runs the CLI as nobody: skipped when the build lies where others cannot reach it.</summary>
public sealed class OthersCanRunStrataFactAttribute : FactAttribute
{
    public OthersCanRunStrataFactAttribute()
    {
        for (var dir = Path.GetDirectoryName(Cli.Binary); dir is not null; dir = Path.GetDirectoryName(dir))
            if (Posix.TryLstat(dir, out var st) && (st.Mode & 0x1) == 0)
            {
                Skip = $"the CLI under test lies in {dir}, which other users cannot enter: it cannot run as nobody";
                return;
            }
    }
}
