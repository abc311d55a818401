using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>`strata container snapshot` and `container rollback` through the CLI on the thin driver (and on overlay, whose
/// snapshots are layers of the container's chain: the same, the merge and rollback killed by SIGKILL): a rollback returns the
/// tree (a file rewritten in place, one deleted, a mode), removing a snapshot keeps the changed tree and gives the pool
/// the old copies' blocks back, the CLI's refusals, `container inspect` and `system df`, a rollback killed (SIGKILL, the
/// command and the pool's server together) at random moments leaving one state or the other, whole, and so a snapshot's
/// removal (ploop's merge: the snapshot whole or gone, the container untouched); and `pool device rollback` on plain devices.</summary>
[Collection(HeavyIo.Name)]
public sealed class ContainerSnapshotTests(ITestOutputHelper output) : IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    Cli ThinStoreWithAContainer() => StoreWithAContainer("--driver", "thin", "--storage-opt", "thin.basesize=256M");

    Cli OverlayStoreWithAContainer() => StoreWithAContainer("--driver", "overlay");

    /// <summary>A store made with <paramref name="driver"/>'s options, an image of busybox and a motd, and container c.</summary>
    Cli StoreWithAContainer(params string[] driver)
    {
        var cli = new Cli(_temp.Combine("store"));
        cli.Ok([.. driver, "init"]);
        string rootfs = _temp.Dir("rootfs");
        Directory.CreateDirectory(Path.Combine(rootfs, "bin"));
        File.Copy("/bin/busybox", Path.Combine(rootfs, "bin", "busybox"));
        File.WriteAllText(Path.Combine(rootfs, "motd"), "hello");
        Shell.Run("tar", "-C", rootfs, "-cf", _temp.Combine("rootfs.tar"), ".").Check("tar");
        cli.Ok("image", "import", _temp.Combine("rootfs.tar"), "--name", "snap:1", "-q");
        cli.Ok("container", "create", "snap:1", "--name", "c");
        return cli;
    }

    /// <summary>Every file's path, mode and sha256 in the container's tree.</summary>
    static string Tree(Cli cli)
    {
        string dir = cli.Ok("container", "mount", "c");
        try
        {
            return string.Join("\n", Directory.EnumerateFileSystemEntries(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).Select(p =>
            {
                var info = new FileInfo(p);
                string hash = info.Attributes.HasFlag(FileAttributes.Directory) ? "dir" : Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(p)))[..16];
                return $"{Path.GetRelativePath(dir, p)} {Convert.ToString(Strata.Native.Posix.Lstat(p).Permissions, 8)} {hash}";
            }));
        }
        finally
        {
            cli.Ok("container", "unmount", "c");
        }
    }

    static void InContainer(Cli cli, Action<string> edit)
    {
        string dir = cli.Ok("container", "mount", "c");
        try
        {
            edit(dir);
        }
        finally
        {
            cli.Ok("container", "unmount", "c");
        }
    }

    static void Random(string path, int mib, int seed)
    {
        var chunk = new byte[1 << 20];
        var rng = new Random(seed);
        using var f = new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write);
        for (int i = 0; i < mib; i++)
        {
            rng.NextBytes(chunk);
            f.Write(chunk);
        }
        f.Flush(flushToDisk: true);
    }

    static long DataUsed(Cli cli) => JsonDocument.Parse(cli.Ok("pool", "info", "--format", "json")).RootElement.GetProperty("DataSpaceUsed").GetInt64();

    [Fact]
    public void RollbackReturnsTheTreeAndRemovingASnapshotGivesItsBlocksBack()
    {
        var cli = ThinStoreWithAContainer();
        InContainer(cli, dir =>
        {
            Random(Path.Combine(dir, "big"), 16, 1);
            File.WriteAllText(Path.Combine(dir, "small"), "one");
        });
        var first = Tree(cli);
        Assert.Equal("s1", cli.Ok("container", "snapshot", "create", "c"));
        InContainer(cli, dir =>
        {
            Random(Path.Combine(dir, "big"), 16, 2); // rewritten in place: every block copied on write
            File.Delete(Path.Combine(dir, "small"));
            Strata.Native.Posix.ChmodAt(Strata.Native.FileDescriptor.Cwd, Path.Combine(dir, "motd"), 0x100);
        });
        var changed = Tree(cli);
        Assert.NotEqual(first, changed);

        // the rollback: refused while mounted, done with --force
        cli.Ok("container", "mount", "c");
        var refused = cli.Run("container", "rollback", "c", "s1");
        Assert.Equal((5, "strata: container c is mounted; unmount it first (or roll back with --force)"), (refused.ExitCode, refused.Stderr.Trim()));
        Assert.Equal("s1", cli.Ok("container", "rollback", "c", "s1", "--force"));
        Assert.Equal(first, Tree(cli));
        Assert.Equal(3, cli.Run("container", "rollback", "c", "nosuch").ExitCode);

        // change again, then remove the snapshot: the changed tree stays, the old copies' blocks go back to the pool
        InContainer(cli, dir => Random(Path.Combine(dir, "big"), 16, 3));
        var third = Tree(cli);
        long before = DataUsed(cli);
        Assert.Equal("s1", cli.Ok("container", "snapshot", "rm", "c", "s1"));
        long after = DataUsed(cli);
        output.WriteLine($"pool data used: {before} with the snapshot, {after} after removing it");
        Assert.True(before - after >= 15L << 20, $"removing the snapshot gave back {before - after} bytes, not the 16 MiB of the old copy");
        Assert.Equal(third, Tree(cli));

        // shown by inspect, ls and system df
        cli.Ok("container", "snapshot", "create", "c", "keep");
        var inspect = JsonDocument.Parse(cli.Ok("container", "inspect", "c")).RootElement[0];
        Assert.Equal(["keep"], inspect.GetProperty("Snapshots").EnumerateArray().Select(s => s.GetProperty("Name").GetString()));
        Assert.Contains("keep", cli.Ok("container", "snapshot", "ls", "c"));
        var df = JsonDocument.Parse(cli.Ok("system", "df", "--format", "json")).RootElement.GetProperty("Summary").EnumerateArray()
            .Single(s => s.GetProperty("Type").GetString() == "Snapshots");
        Assert.Equal(1, df.GetProperty("Total").GetInt32());
        Assert.Equal(4, cli.Run("container", "snapshot", "create", "c", "keep").ExitCode); // exists
        Assert.Equal(2, cli.Run("container", "snapshot", "create", "c", "bad/name").ExitCode);
        cli.Ok("container", "rm", "c"); // its snapshots go with it
        Assert.Equal(0, JsonDocument.Parse(cli.Ok("pool", "device", "ls", "--format", "json")).RootElement.EnumerateArray()
            .Count(d => d.GetProperty("Owner").GetString()?.Contains(".keep", StringComparison.Ordinal) == true));
        Assert.Equal("clean", cli.Ok("pool", "check").Split('\n').Last());
    }

    [Fact]
    public void ARollbackKilledAtRandomMomentsLeavesOneStateOrTheOtherWhole()
    {
        var cli = ThinStoreWithAContainer();
        InContainer(cli, dir => Random(Path.Combine(dir, "data"), 8, 1));
        var snapshot = Tree(cli);
        cli.Ok("container", "snapshot", "create", "c", "s");
        InContainer(cli, dir => Random(Path.Combine(dir, "data"), 8, 2));
        var current = Tree(cli);
        var rng = new Random(5);
        int rolledBack = 0;
        for (int round = 0; round < 6; round++)
        {
            // the command and the pool's server (which makes the pool's call when it runs) die at the same moment
            KillAfter(cli, rng.Next(0, 400), withPoolServer: true, "container", "rollback", "c", "s");
            var tree = Tree(cli);
            Assert.True(tree == snapshot || tree == current, $"round {round}: the container is neither the snapshot nor its state before");
            if (tree == snapshot)
            {
                rolledBack++;
                InContainer(cli, dir => Random(Path.Combine(dir, "data"), 8, 2)); // back to the other state
                Assert.Equal(current, Tree(cli));
            }
        }
        output.WriteLine($"{rolledBack} of 6 killed rollbacks had finished");
        Assert.Equal("clean", cli.Ok("pool", "check").Split('\n').Last());
    }

    [Fact]
    public void ASnapshotRemovalKilledAtRandomMomentsLeavesTheSnapshotWholeOrGone()
    {
        var cli = ThinStoreWithAContainer();
        InContainer(cli, dir => Random(Path.Combine(dir, "data"), 8, 1));
        var snapshotTree = Tree(cli);
        InContainer(cli, dir => Random(Path.Combine(dir, "data"), 8, 2));
        var current = Tree(cli);
        var rng = new Random(6);
        int removed = 0;
        for (int round = 0; round < 6; round++)
        {
            string name = $"s{round}";
            InContainer(cli, dir => Random(Path.Combine(dir, "data"), 8, 1));
            cli.Ok("container", "snapshot", "create", "c", name);
            InContainer(cli, dir => Random(Path.Combine(dir, "data"), 8, 2));
            KillAfter(cli, rng.Next(0, 400), withPoolServer: true, "container", "snapshot", "rm", "c", name);
            Assert.Equal(current, Tree(cli)); // the container keeps its state whatever happened to the snapshot
            var left = JsonDocument.Parse(cli.Ok("container", "snapshot", "ls", "c", "--format", "json")).RootElement.EnumerateArray().Select(s => s.GetProperty("Name").GetString()).ToList();
            if (!left.Contains(name))
            {
                removed++;
                continue;
            }
            // still there: whole, as a rollback shows
            cli.Ok("container", "rollback", "c", name);
            Assert.Equal(snapshotTree, Tree(cli));
            InContainer(cli, dir => Random(Path.Combine(dir, "data"), 8, 2));
            cli.Ok("container", "snapshot", "rm", "c", name);
        }
        output.WriteLine($"{removed} of 6 killed removals had finished");
        Assert.Empty(JsonDocument.Parse(cli.Ok("container", "snapshot", "ls", "c", "--format", "json")).RootElement.EnumerateArray());
        Assert.Equal("clean", cli.Ok("pool", "check").Split('\n').Last());
        // what a killed removal left in the pool (a device whose layer record went) is swept by the store's next open
        cli.Ok("layer", "ls");
        var owners = JsonDocument.Parse(cli.Ok("pool", "device", "ls", "--format", "json")).RootElement.EnumerateArray()
            .Select(d => d.GetProperty("Owner").GetString() ?? "").ToList();
        Assert.DoesNotContain(owners, o => System.Text.RegularExpressions.Regex.IsMatch(o, @"^layer [0-9a-f]{64}\.s\d$"));
    }

    /// <summary>Files many/0000 ... many/(n-1) in the container, the content <paramref name="tag"/>.</summary>
    static void Many(string dir, int n, string tag)
    {
        Directory.CreateDirectory(Path.Combine(dir, "many"));
        for (int i = 0; i < n; i++) File.WriteAllText(Path.Combine(dir, "many", i.ToString("D4")), tag);
    }

    [Fact]
    public void OnOverlayASnapshotIsALayerOfTheChainThatRollbackAndRemovalKeepWhole()
    {
        var cli = OverlayStoreWithAContainer();
        InContainer(cli, dir =>
        {
            File.WriteAllText(Path.Combine(dir, "small"), "one");
            File.Delete(Path.Combine(dir, "motd"));
        });
        var first = Tree(cli);
        // refused while mounted: the directories its mount is made of move
        cli.Ok("container", "mount", "c");
        var refused = cli.Run("container", "snapshot", "create", "c");
        Assert.Equal((5, "strata: container c is mounted; unmount it to snapshot it (the overlay driver moves the directories its mount is made of)"),
            (refused.ExitCode, refused.Stderr.Trim()));
        cli.Ok("container", "unmount", "c");
        Assert.Equal("s1", cli.Ok("container", "snapshot", "create", "c"));
        var inspect = JsonDocument.Parse(cli.Ok("container", "inspect", "c")).RootElement[0];
        Assert.Equal(["s1"], inspect.GetProperty("Snapshots").EnumerateArray().Select(s => s.GetProperty("Name").GetString()));
        InContainer(cli, dir =>
        {
            File.WriteAllText(Path.Combine(dir, "small"), "two");
            File.WriteAllText(Path.Combine(dir, "motd"), "back");
        });
        var changed = Tree(cli);
        Assert.Contains("C /motd", cli.Ok("container", "diff", "c")); // against the image, not the snapshot (where motd was deleted)
        Assert.Equal("s1", cli.Ok("container", "rollback", "c", "s1"));
        Assert.Equal(first, Tree(cli));
        Assert.Contains("D /motd", cli.Ok("container", "diff", "c"));
        InContainer(cli, dir => File.WriteAllText(Path.Combine(dir, "small"), "three"));
        var third = Tree(cli);
        cli.Ok("container", "snapshot", "create", "c", "s2");
        cli.Ok("container", "mount", "c");
        refused = cli.Run("container", "snapshot", "rm", "c", "s1");
        Assert.Equal(5, refused.ExitCode);
        cli.Ok("container", "unmount", "c");
        Assert.Equal("s1", cli.Ok("container", "snapshot", "rm", "c", "s1"));
        Assert.Equal("s2", cli.Ok("container", "snapshot", "rm", "c", "s2"));
        Assert.Equal(third, Tree(cli));
        var df = JsonDocument.Parse(cli.Ok("system", "df", "--format", "json")).RootElement.GetProperty("Summary").EnumerateArray()
            .Single(s => s.GetProperty("Type").GetString() == "Snapshots");
        Assert.Equal(0, df.GetProperty("Total").GetInt32());
        // a commit holds every change since the image, the snapshots' folded in
        cli.Ok("container", "snapshot", "create", "c", "keep");
        cli.Ok("container", "commit", "c", "snap:2");
        cli.Ok("container", "create", "snap:2", "--name", "d");
        string dir2 = cli.Ok("container", "mount", "d");
        Assert.Equal("three", File.ReadAllText(Path.Combine(dir2, "small")));
        cli.Ok("container", "unmount", "d");
        cli.Ok("container", "rm", "c"); // its snapshots go with it, the newest first
        Assert.DoesNotContain(".keep", cli.Ok("layer", "ls", "--no-trunc"));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_temp.Combine("store", "tmp")));
    }

    /// <summary>How long a command takes, run to its end.</summary>
    static int Millis(Cli cli, params string[] args)
    {
        var watch = Stopwatch.StartNew();
        cli.Ok(args);
        return (int)watch.ElapsedMilliseconds;
    }

    /// <summary>Starts a command and kills it (SIGKILL) after <paramref name="ms"/> milliseconds, and at the same moment
    /// the store's pool server when <paramref name="withPoolServer"/>.</summary>
    void KillAfter(Cli cli, int ms, bool withPoolServer, params string[] args)
    {
        var p = cli.Start(args);
        p.StandardInput.Close();
        Thread.Sleep(ms);
        var pids = withPoolServer ? PoolServers.Under(_temp.Combine("store")).Append(p.Id) : [p.Id];
        foreach (int pid in pids) Shell.Run("kill", "-KILL", pid.ToString());
        p.WaitForExit();
    }

    [Fact]
    public void OnOverlayAMergeOrARollbackKilledAtRandomMomentsLeavesOneStateOrTheOtherWhole()
    {
        const int files = 6000;
        var cli = OverlayStoreWithAContainer();
        InContainer(cli, dir => Many(dir, files, "old"));
        var snapshotTree = Tree(cli);
        // the moments to kill at: from a little before the store is open (a listing's time) to the end of a whole merge
        cli.Ok("container", "snapshot", "create", "c", "timing");
        InContainer(cli, dir => File.WriteAllText(Path.Combine(dir, "many", "0000"), "timing"));
        int opened = Millis(cli, "container", "snapshot", "ls", "c"), whole = Millis(cli, "container", "snapshot", "rm", "c", "timing");
        output.WriteLine($"a listing takes {opened} ms, a merge of {files} files {whole} ms");
        InContainer(cli, dir => File.WriteAllText(Path.Combine(dir, "many", "0000"), "old"));
        var rng = new Random(7);
        int merged = 0, rolledBack = 0;
        for (int round = 0; round < 3; round++)
        {
            // a merge: the container changed one file of many/ after the snapshot, so the fold renames the others one by one
            string name = $"m{round}";
            cli.Ok("container", "snapshot", "create", "c", name);
            InContainer(cli, dir => File.WriteAllText(Path.Combine(dir, "many", "0000"), $"new {round}"));
            var current = Tree(cli);
            KillAfter(cli, rng.Next(Math.Max(0, opened - 150), whole + 20), withPoolServer: false, "container", "snapshot", "rm", "c", name);
            Assert.Equal(current, Tree(cli)); // the next command finished the merge, or it never began; the container is whole
            var left = JsonDocument.Parse(cli.Ok("container", "snapshot", "ls", "c", "--format", "json")).RootElement.EnumerateArray().Select(s => s.GetProperty("Name").GetString()).ToList();
            if (!left.Contains(name)) merged++;
            else cli.Ok("container", "snapshot", "rm", "c", name);
            InContainer(cli, dir => File.WriteAllText(Path.Combine(dir, "many", "0000"), "old"));
            Assert.Equal(snapshotTree, Tree(cli));

            // a rollback, whose container has rewritten every file (a tree of its own to drop)
            cli.Ok("container", "snapshot", "create", "c", "r");
            InContainer(cli, dir => Many(dir, files, "changed"));
            var changed = Tree(cli);
            KillAfter(cli, rng.Next(Math.Max(0, opened - 150), whole + 20), withPoolServer: false, "container", "rollback", "c", "r");
            var tree = Tree(cli);
            Assert.True(tree == snapshotTree || tree == changed, $"round {round}: the container is neither the snapshot nor its state before");
            if (tree == snapshotTree) rolledBack++;
            else cli.Ok("container", "rollback", "c", "r");
            cli.Ok("container", "snapshot", "rm", "c", "r");
            Assert.Equal(snapshotTree, Tree(cli));
        }
        output.WriteLine($"{merged} of 3 killed merges and {rolledBack} of 3 killed rollbacks had finished");
        Assert.Empty(JsonDocument.Parse(cli.Ok("container", "snapshot", "ls", "c", "--format", "json")).RootElement.EnumerateArray());
        Assert.Empty(Directory.EnumerateFileSystemEntries(_temp.Combine("store", "tmp")));
    }

    [Fact]
    public void PoolDeviceRollbackGivesADeviceItsSnapshotsBlocks()
    {
        var cli = new Cli(_temp.Combine("store"));
        cli.Ok("pool", "create", "--data-size", "256M", "--metadata-size", "16M");
        cli.Ok("pool", "device", "create", "a", "--size", "8M");
        var one = new byte[1 << 20];
        new Random(1).NextBytes(one);
        Assert.Equal(0, cli.Run(one, "pool", "device", "write", "a").ExitCode);
        cli.Ok("pool", "device", "snapshot", "a", "a-s");
        var two = new byte[2 << 20];
        new Random(2).NextBytes(two);
        Assert.Equal(0, cli.Run(two, "pool", "device", "write", "a").ExitCode);
        Assert.Equal("a", cli.Ok("pool", "device", "rollback", "a", "a-s"));
        string back = _temp.Combine("back");
        cli.Ok("pool", "device", "read", "a", "--length", (2 << 20).ToString(), "-o", back);
        var read = File.ReadAllBytes(back);
        Assert.Equal(one, read[..(1 << 20)]);
        Assert.True(read.AsSpan(1 << 20).IndexOfAnyExcept((byte)0) < 0, "the second MiB, written after the snapshot, is still there");
        Assert.Equal(3, cli.Run("pool", "device", "rollback", "a", "nosuch").ExitCode);
        Assert.Equal("clean", cli.Ok("pool", "check").Split('\n').Last());
    }
}
