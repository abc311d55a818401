using System.Diagnostics;
using System.Text.Json;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>The thin driver through the real CLI, as a user of devicemapper met it: many containers of one image
/// mounted at once and their space given back on removal, a pool that fills up, a pool server killed with
/// SIGKILL under mounted containers, and removal of a device something else still holds (deferred).</summary>
[Collection(HeavyIo.Name)]
public sealed class ThinDriverTests(ITestOutputHelper output) : IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    Cli Store(params string[] options)
    {
        var cli = new Cli(_temp.Combine("store"));
        var args = new List<string> { "--driver", "thin" };
        foreach (var o in options) args.AddRange(["--storage-opt", o]);
        args.Add("init");
        cli.Ok([.. args]);
        return cli;
    }

    static Dictionary<string, string> Info(Cli cli)
    {
        // the lines of `info` as people read them (" Key: Value"); --format json has them typed, by other names
        return cli.Ok("info").Split('\n').Where(l => l.StartsWith(' ')).Select(l => l.Trim().Split(": ", 2)).ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "");
    }

    string PoolDir => _temp.Combine("store", "thin");

    /// <summary>Bytes the sparse data file takes on disk (what `du` shows).</summary>
    long DataFileAllocated() => long.Parse(Shell.Run("stat", "-c", "%b", Path.Combine(PoolDir, "data")).Check("stat").Stdout.Trim()) * 512;

    /// <summary>Loop devices attached to files of the pool server's FUSE export.</summary>
    int LoopsOfThePool() =>
        Shell.Run("losetup", "-l", "-n", "-O", "BACK-FILE").Check("losetup").Stdout.Split('\n').Count(l => l.Trim().StartsWith(Path.Combine(PoolDir, "dev") + "/", StringComparison.Ordinal));

    static void WriteFile(string path, int megabytes, int seed)
    {
        var data = new byte[1 << 20];
        new Random(seed).NextBytes(data);
        using var f = new FileStream(path, FileMode.CreateNew);
        for (int i = 0; i < megabytes; i++) f.Write(data);
        f.Flush(flushToDisk: true);
    }

    static string Hash(string path) => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path)));

    [Fact]
    public void TheDriverRunsUnchangedOnAResilientPoolAndItsServerScrubs()
    {
        // the pool made first, over three disks: the driver takes the pool it finds
        var cli0 = new Cli(_temp.Combine("store"));
        cli0.Ok("pool", "--pool", PoolDir, "create", "--resiliency", "mirror", "--slab-size", "8M", "--metadata-size", "8M",
            "--disk", _temp.Combine("d0") + ",size=512M", "--disk", _temp.Combine("d1") + ",size=512M", "--disk", _temp.Combine("d2") + ",size=512M");
        var cli = Store("thin.basesize=128M");
        cli.Ok("layer", "create", "image");
        string image = cli.Ok("layer", "mount", "image");
        WriteFile(Path.Combine(image, "data"), 16, seed: 7);
        string hash = Hash(Path.Combine(image, "data"));
        cli.Ok("layer", "unmount", "image");
        cli.Ok("layer", "create", "c", "--parent", "image", "--rw");
        string dir = cli.Ok("layer", "mount", "c");
        try
        {
            Assert.Equal(hash, Hash(Path.Combine(dir, "data")));
            var info = Info(cli);
            Assert.Equal("mirror", info["Pool Resiliency"]);
            Assert.Equal("healthy", info["Pool Health"]);
            Assert.Equal("true", info["Pool Checksums"]);
            // the driver's pool server owns the pool: the scrub goes through it, while the layer is mounted
            var scrub = cli.Run("pool", "--pool", PoolDir, "scrub");
            Assert.True(scrub.ExitCode == 0, scrub.Stdout + scrub.Stderr);
            Assert.Contains("0 wrong", scrub.Stdout);
        }
        finally
        {
            cli.Run("layer", "unmount", "c");
        }
        cli.Ok("layer", "rm", "c");
        cli.Ok("layer", "rm", "image");
    }

    [Fact]
    public void TwentyContainersMountedAtOnceAndRemovalGivesTheirSpaceBack()
    {
        var cli = Store("thin.basesize=256M");
        cli.Ok("layer", "create", "image");
        string image = cli.Ok("layer", "mount", "image");
        WriteFile(Path.Combine(image, "shared"), 8, seed: 1);
        cli.Ok("layer", "unmount", "image");
        string sharedHash;
        string before = Info(cli)["Data Space Used"];
        long allocatedBefore = DataFileAllocated();

        var dirs = new List<string>();
        for (int i = 0; i < 20; i++)
        {
            cli.Ok("layer", "create", $"c{i}", "--parent", "image", "--rw");
            dirs.Add(cli.Ok("layer", "mount", $"c{i}"));
        }
        try
        {
            Assert.Equal(20, LoopsOfThePool());
            sharedHash = Hash(Path.Combine(dirs[0], "shared"));
            for (int i = 0; i < 20; i++) WriteFile(Path.Combine(dirs[i], "own"), 4, seed: 100 + i);
            for (int i = 0; i < 20; i++)
            {
                Assert.Equal(sharedHash, Hash(Path.Combine(dirs[i], "shared")));
                var own = new byte[4 << 20];
                var chunk = new byte[1 << 20];
                new Random(100 + i).NextBytes(chunk);
                Assert.Equal(chunk, File.ReadAllBytes(Path.Combine(dirs[i], "own"))[..(1 << 20)]);
            }
            Assert.Equal("20", Info(cli)["Attached Devices"]);
        }
        finally
        {
            for (int i = 0; i < 20; i++) cli.Run("layer", "unmount", $"c{i}");
        }
        long allocatedFull = DataFileAllocated();
        Assert.True(allocatedFull > allocatedBefore + (20L * 4 << 20), $"20 containers' 80 MiB are not in the data file: {allocatedBefore} -> {allocatedFull}");
        for (int i = 0; i < 20; i++) cli.Ok("layer", "rm", $"c{i}");
        var after = Info(cli);
        Assert.Equal(before, after["Data Space Used"]);
        long allocatedAfter = DataFileAllocated();
        output.WriteLine($"data file on disk: {allocatedBefore} before, {allocatedFull} with 20 containers, {allocatedAfter} after removing them");
        Assert.True(allocatedAfter <= allocatedBefore + (1L << 20), $"the data file kept {allocatedAfter - allocatedBefore} bytes of removed containers");
        Assert.Equal(0, LoopsOfThePool());
        Assert.Equal("clean", cli.Ok("pool", "check").Split('\n').Last());
    }

    [Theory]
    [InlineData("ext4")]
    [InlineData("xfs")]
    public void AFullPoolFailsTheWritesAtOnceAndEverythingElseGoesOn(string fs)
    {
        var cli = Store("thin.basesize=1G", "thin.datasize=400M", $"thin.fs={fs}", "thin.min_free_space=0%");
        cli.Ok("layer", "create", "image");
        string image = cli.Ok("layer", "mount", "image");
        WriteFile(Path.Combine(image, "data"), 4, seed: 7);
        string hash = Hash(Path.Combine(image, "data"));
        cli.Ok("layer", "unmount", "image");
        cli.Ok("layer", "create", "reader", "--parent", "image", "--rw");
        cli.Ok("layer", "create", "hog", "--parent", "image", "--rw");
        string reader = cli.Ok("layer", "mount", "reader"), hog = cli.Ok("layer", "mount", "hog");
        Assert.NotEqual("0 B", Info(cli)["Data Space Available"]); // (also warms up this process's JSON parsing, so the timing below is the command's)
        try
        {
            var watch = Stopwatch.StartNew();
            var dd = Shell.Run("timeout", "300", "dd", "if=/dev/zero", $"of={Path.Combine(hog, "fill")}", "bs=1M", "count=600", "oflag=direct");
            output.WriteLine($"dd into the hog: exit {dd.ExitCode} after {watch.ElapsedMilliseconds} ms: {dd.Stderr.Trim()}");
            Assert.NotEqual(124, dd.ExitCode); // timeout(1): the write hung instead of failing
            Assert.NotEqual(0, dd.ExitCode);
            Assert.Contains("No space left on device", dd.Stderr);

            watch.Restart();
            var info = Info(cli);
            long first = watch.ElapsedMilliseconds;
            watch.Restart();
            Info(cli);
            output.WriteLine($"strata info on the full pool took {first} ms, then {watch.ElapsedMilliseconds} ms; Data Space Available: {info["Data Space Available"]}");
            Assert.Equal("0 B", info["Data Space Available"]);
            Assert.Equal(hash, Hash(Path.Combine(reader, "data"))); // another container still reads
        }
        finally
        {
            cli.Run("layer", "unmount", "hog");
        }
        cli.Ok("layer", "rm", "hog");
        WriteFile(Path.Combine(reader, "after"), 16, seed: 9); // space is back: writes work again
        cli.Ok("layer", "unmount", "reader");
        Assert.Equal("clean", cli.Ok("pool", "check").Split('\n').Last());
    }

    [Fact]
    public void AKilledPoolServerIsCleanedUpAtTheNextCommand()
    {
        var cli = Store("thin.basesize=256M");
        cli.Ok("layer", "create", "image");
        cli.Ok("layer", "create", "a", "--parent", "image", "--rw");
        cli.Ok("layer", "create", "b", "--parent", "image", "--rw");
        string a = cli.Ok("layer", "mount", "a");
        cli.Ok("layer", "mount", "b");
        WriteFile(Path.Combine(a, "synced"), 2, seed: 3);
        Shell.Run("sync", "-f", a).Check("sync");
        string hash = Hash(Path.Combine(a, "synced"));
        int pid = int.Parse(File.ReadAllText(Path.Combine(PoolDir, "server.pid")).Trim());
        Shell.Run("kill", "-KILL", pid.ToString()).Check("kill");
        for (int i = 0; i < 500 && Strata.Native.Posix.IsRunning(pid); i++) Thread.Sleep(10);

        // the next command finds the pool unserved: the dead mounts go, the counts reset
        cli.Ok("init"); // the next command that writes (a listing changes nothing, so it cleans nothing)
        var layers = cli.Ok("layer", "ls");
        Assert.Contains("a", layers);
        Assert.Empty(Mounts.Under(PoolDir));
        Assert.Equal(0, LoopsOfThePool());
        Assert.Equal("clean", cli.Ok("pool", "check").Split('\n').Last());
        // and the layers work again, with what was synced before the kill
        string again = cli.Ok("layer", "mount", "a");
        Assert.Equal(hash, Hash(Path.Combine(again, "synced")));
        cli.Ok("layer", "unmount", "a");
        cli.Ok("layer", "rm", "a", "b");
        Assert.Empty(PoolServers.Under(_temp.Path));
    }

    [Fact]
    public void ADeviceHeldElsewhereIsDeletedWhenItsLastUserGoes()
    {
        var cli = Store("thin.basesize=256M");
        cli.Ok("layer", "create", "image");
        cli.Ok("layer", "create", "c", "--parent", "image", "--rw");
        string dir = cli.Ok("layer", "mount", "c");
        // a process in a mount namespace of its own works in its copy of the container's mount (the leak Docker users
        // met): the filesystem, its loop device and so the thin device stay in use after the store unmounts it
        var holder = Process.Start(new ProcessStartInfo("unshare", ["-m", "--propagation", "private", "sh", "-c", $"cd '{dir}' && exec sleep 600"]) { UseShellExecute = false })!;
        try
        {
            for (int i = 0; i < 500 && !File.Exists($"/proc/{holder.Id}/ns/mnt") || Shell.Run("readlink", $"/proc/{holder.Id}/cwd").Stdout.Trim() != dir; i++) Thread.Sleep(10);
            cli.Ok("layer", "unmount", "c");
            cli.Ok("layer", "rm", "c"); // not "device is busy"
            var info = Info(cli);
            Assert.Equal("1", info["Deferred Deleted Device Count"]);
            Assert.DoesNotContain("c", cli.Ok("layer", "ls").Split('\n').Select(l => l.Split(' ')[0]));
        }
        finally
        {
            holder.Kill();
            holder.WaitForExit();
        }
        string count = "";
        for (int i = 0; i < 200; i++)
        {
            count = Info(cli)["Deferred Deleted Device Count"];
            if (count == "0") break;
            Thread.Sleep(25);
        }
        Assert.Equal("0", count);
        Assert.DoesNotContain("\nc ", "\n" + cli.Ok("pool", "device", "ls"));
        Assert.Equal("clean", cli.Ok("pool", "check").Split('\n').Last());
    }

    /// <summary>`strata pool device rm` of a layer's device is refused (exit 5, naming the layer), as lvremove refuses
    /// an open volume; --force removes it, and the store then shows that layer as broken (layer ls, info) and refuses
    /// to use it with a one-line error, while its child, a device of its own, goes on working.</summary>
    [Fact]
    public void RemovingALayersDeviceFromThePoolIsRefusedAndForceLeavesTheLayerBroken()
    {
        var cli = Store("thin.basesize=64M");
        cli.Ok("layer", "create", "image");
        cli.Ok("layer", "create", "c1", "--parent", "image", "--rw");
        var rm = cli.Run("pool", "device", "rm", "image");
        Assert.True(rm.ExitCode == 5, $"pool device rm of a layer's device: exit {rm.ExitCode}: {rm.Stderr}");
        Assert.Equal(1, rm.Stderr.Count(c => c == '\n'));
        Assert.Contains("layer image", rm.Stderr);
        Assert.Contains("\nimage ", "\n" + cli.Ok("pool", "device", "ls"));
        var write = cli.Run(new byte[512], "pool", "device", "write", "c1"); // into a mounted filesystem's device, behind its back
        Assert.True(write.ExitCode == 5 && write.Stderr.Contains("layer c1"), $"pool device write into a layer's device: exit {write.ExitCode}: {write.Stderr}");

        Assert.Equal("image", cli.Ok("pool", "device", "rm", "--force", "image"));
        Assert.Equal("clean", cli.Ok("pool", "check").Split('\n').Last());
        var row = cli.Ok("layer", "ls").Split('\n').Single(l => l.StartsWith("image ", StringComparison.Ordinal));
        Assert.Contains("broken", row);
        Assert.Equal("1", Info(cli)["Broken Layers"]);
        foreach (var args in new[] { new[] { "layer", "mount", "image" }, ["layer", "create", "c2", "--parent", "image"], ["layer", "diff", "image", "-o", _temp.Combine("image.tar")] })
        {
            var r = cli.Run(args);
            Assert.True(r.ExitCode == 1, $"{string.Join(' ', args)}: exit {r.ExitCode}: {r.Stderr}");
            Assert.Equal("strata: layer image is broken", string.Join(':', r.Stderr.Split(':').Take(2)));
            Assert.Equal(1, r.Stderr.Count(c => c == '\n'));
        }
        string c1 = cli.Ok("layer", "mount", "c1");
        Assert.True(Directory.Exists(c1));
        cli.Ok("layer", "unmount", "c1");
        cli.Ok("layer", "rm", "c1", "image");
        Assert.Equal("0", Info(cli)["Broken Layers"]);
    }
}
