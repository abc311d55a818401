// Issue 21: reads never create or change a store; a failed first open leaves nothing; `strata init`; permission errors
// say that Strata needs root.
using Strata.Native;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>How the CLI opens a store: listings read it (shared lock, nothing written, a read-only store too), other
/// reads need one to exist, writes make it, and a first open that fails takes back what it made.</summary>
public sealed class StoreAccessTests : IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    public static TheoryData<string[]> Reads => new()
    {
        new[] { "info" }, new[] { "layer", "ls" }, new[] { "layer", "inspect", "x" }, new[] { "layer", "changes", "x" },
        new[] { "layer", "diff", "x" }, new[] { "layer", "diff-size", "x" }, new[] { "image", "ls" }, new[] { "images" },
        new[] { "image", "inspect", "x" }, new[] { "image", "export", "x", "-o", "/nonexistent/x.tar" },
        new[] { "container", "ls" }, new[] { "ps" }, new[] { "container", "inspect", "x" }, new[] { "container", "diff", "x" },
    };

    [Theory]
    [MemberData(nameof(Reads))]
    public void AReadOfARootWithoutAStoreSaysSoAndMakesNothing(string[] args)
    {
        string missing = _temp.Combine("typo", "store");
        var r = new Cli(missing).Run(args);
        Assert.Equal((3, ""), (r.ExitCode, r.Stdout));
        Assert.Equal($"strata: no store at {missing} (`strata init`, or any command that writes, creates one)\n", r.Stderr);
        Assert.False(Directory.Exists(_temp.Combine("typo")));
        // an empty directory stays empty
        string empty = _temp.Dir("empty");
        Assert.Equal(3, new Cli(empty).Run(args).ExitCode);
        Assert.Empty(Directory.GetFileSystemEntries(empty));
    }

    [Theory]
    [InlineData("--driver", "zfs")]
    [InlineData("--storage-opt", "overlay.mount_program=relative/fuse-overlayfs")]
    [InlineData("--storage-opt", "vfs.nonsense=1")]
    public void AFirstOpenThatFailsLeavesNothingItMade(string option, string value)
    {
        string root = _temp.Combine("new", "store");
        var r = new Cli(root).Run(option, value, "layer", "create", "a");
        Assert.Equal(2, r.ExitCode);
        Errors.AssertOneLine(r);
        Assert.False(Directory.Exists(_temp.Combine("new")), "the open made the root and its parent: both go");
        // in a directory that was there, only what the open made goes
        string dir = _temp.Dir("mine");
        File.WriteAllText(Path.Combine(dir, "notes"), "keep\n");
        Assert.Equal(2, new Cli(dir).Run(option, value, "init").ExitCode);
        Assert.Equal([Path.Combine(dir, "notes")], Directory.GetFileSystemEntries(dir));
        // and the root takes a store afterwards
        Assert.StartsWith($"created store {dir} (driver vfs", new Cli(dir).Ok("--driver", "vfs", "init"));
    }

    [Fact]
    public void InitMakesTheStoreOnceAndThenSaysItExists()
    {
        string root = _temp.Combine("store");
        var cli = new Cli(root);
        Assert.Equal($"created store {root} (driver vfs)", cli.Ok("--driver", "vfs", "init"));
        Assert.True(File.Exists(Path.Combine(root, "driver")));
        Assert.Equal($"store {root} exists (driver vfs)", cli.Ok("init"));
        Assert.Equal($"store {root} exists (driver vfs)", cli.Ok("--driver", "vfs", "init"));
        var other = cli.Run("--driver", "overlay", "init");
        Assert.Equal(2, other.ExitCode);
        Errors.AssertOneLine(other);
        Assert.Contains("was created with driver 'vfs'", other.Stderr);
        Assert.Equal("", cli.Ok("layer", "ls", "--format", "json").Replace("[]", ""));
    }

    [Fact]
    public void ListingsChangeNothingInTheStore()
    {
        string root = _temp.Combine("store");
        var cli = new Cli(root);
        cli.Ok("--driver", "vfs", "layer", "create", "base");
        cli.Ok("layer", "create", "app", "--parent", "base", "--rw");
        // info's driver probes (reflinks here) make and remove scratch in tmp/: tmp/ itself is left out
        string before = Tree(root);
        foreach (var args in new[] { new[] { "info" }, ["layer", "ls"], ["layer", "inspect", "app"], ["image", "ls"], ["images"], ["ps"], ["container", "ls"] })
            cli.Ok(args);
        Assert.Equal(before, Tree(root));
        Assert.False(Directory.Exists(Path.Combine(root, "containers")), "a listing made the containers' directory");
        Assert.False(Directory.Exists(Path.Combine(root, "images")), "a listing made the images' directory");
    }

    [Theory]
    [InlineData("vfs")]
    [InlineData("overlay")]
    public void AReadOnlyStoreCanBeListed(string driver)
    {
        string root = _temp.Combine("store");
        var cli = new Cli(root);
        cli.Ok("--driver", driver, "layer", "create", "base");
        Shell.Run("mount", "--bind", root, root).Check("mount --bind");
        try
        {
            Shell.Run("mount", "-o", "remount,bind,ro", root, root).Check("remount ro");
            Assert.Contains("base", cli.Ok("layer", "ls"));
            Assert.Contains("\"base\"", cli.Ok("layer", "inspect", "base"));
            string info = cli.Ok("info");
            Assert.StartsWith($"Storage Driver: {driver}\n", info);
            Assert.Contains(" Layers: 1\n", info);
            Assert.Equal("NAME   ID   LAYERS   SIZE   CREATED", cli.Ok("image", "ls").TrimEnd());
            cli.Ok("ps");
            var write = cli.Run("layer", "create", "other");
            Errors.AssertOneLine(write);
            Assert.Contains("Read-only file system", write.Stderr);
        }
        finally
        {
            Shell.Run("umount", root).Check("umount");
        }
    }

    [Fact]
    public void ReadersShareTheStoreAndAWriterWaitsForThem()
    {
        string root = _temp.Combine("store");
        var cli = new Cli(root);
        cli.Ok("--driver", "vfs", "layer", "create", "base");
        // a reader that stays: flock(1) holding the store's lock shared, as a listing does while it runs (--close: sleep
        // does not inherit it, so killing flock lets go)
        using var reader = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("flock", ["--shared", "--close", Path.Combine(root, "strata.lock"), "sleep", "120"])
        {
            RedirectStandardError = true,
        })!;
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!File.ReadLines("/proc/locks").Any(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is [_, "FLOCK", _, "READ", var pid, ..] && pid == reader.Id.ToString()))
            {
                Assert.True(DateTime.UtcNow < deadline, "flock did not take the lock");
                Thread.Sleep(50);
            }
            var ls = cli.Run("layer", "ls");
            Assert.Equal((0, ""), (ls.ExitCode, ls.Stderr)); // another reader does not wait
            using var writer = cli.Start("layer", "create", "other");
            // the reader is named from /proc/locks (a reader writes no pid into strata.lock); long command lines are cut at 60
            string? waiting = writer.StandardError.ReadLine();
            Assert.StartsWith("waiting for flock --shared ", waiting);
            Assert.EndsWith($" (pid {reader.Id}) to release the store {root}", waiting);
            reader.Kill(entireProcessTree: true);
            Assert.True(writer.WaitForExit(TimeSpan.FromSeconds(30)), "the writer did not run once the reader let go");
            Assert.Equal(0, writer.ExitCode);
        }
        finally
        {
            if (!reader.HasExited) reader.Kill(entireProcessTree: true);
            reader.WaitForExit();
        }
    }

    // a listing that waits for a writer (and says whom it waits for): LockWaitTests

    [OthersCanRunStrataFact]
    public void PermissionErrorsSayThatStrataNeedsRoot()
    {
        Posix.ChmodAt(FileDescriptor.Cwd, _temp.Path, 0x1ED); // 0755: nobody may enter, not write
        string root = _temp.Combine("store");
        new Cli(root).Ok("--driver", "vfs", "layer", "create", "base");
        foreach (var args in new[] { new[] { "layer", "ls" }, ["info"], ["layer", "create", "other"] })
        {
            var r = AsNobody(root, args);
            Assert.Equal((1, $"strata: strata needs root to use the store at {root} (open strata.lock: Permission denied); run it as root or pass --root DIR\n"),
                (r.ExitCode, r.Stderr));
        }
        string fresh = _temp.Combine("fresh");
        var made = AsNobody(fresh, "layer", "create", "a");
        Assert.Equal((1, $"strata: strata needs root to use the store at {fresh} (mkdir {fresh}: Permission denied); run it as root or pass --root DIR\n"),
            (made.ExitCode, made.Stderr));
        // a directory nobody may write: a read there makes no store (it used to make a vfs store and fix its driver)
        string open = _temp.Dir("open");
        Posix.ChmodAt(FileDescriptor.Cwd, open, 0x1FF);
        Assert.Equal(3, AsNobody(open, "info").ExitCode);
        Assert.Empty(Directory.GetFileSystemEntries(open));
    }

    static Shell.Result AsNobody(string root, params string[] args) =>
        Shell.Run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Cli.Binary, "--root", root, .. args]);

    /// <summary>Every path under <paramref name="root"/> with its type, size and modification time, one per line.</summary>
    static string Tree(string root) =>
        string.Join('\n', Shell.Run("find", root, "-printf", "%P %y %s %T@\n").Check("find").Stdout.Split('\n').Where(l => !l.StartsWith("tmp ", StringComparison.Ordinal)));
}
