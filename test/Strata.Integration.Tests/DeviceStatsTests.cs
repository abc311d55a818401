using System.Diagnostics;
using System.Text.Json;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>`strata pool device stats` against what real clients did: fio over NBD (its own counts of requests and
/// bytes, copy-on-write after a snapshot as the pool's block counts show it), the FUSE export's .stats files, a mounted
/// thin layer written and read through ext4 with direct IO (the filesystem's own requests accounted for), and counters
/// that start again with a new server (they are kept in memory, not persisted).</summary>
[Collection(HeavyIo.Name)]
public sealed class DeviceStatsTests(ITestOutputHelper output) : IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    const long MiB = 1 << 20;

    static JsonElement Stats(Cli cli, params string[] pool)
    {
        using var doc = JsonDocument.Parse(cli.Ok([.. pool, "device", "stats", "--format", "json"]));
        return doc.RootElement.Clone();
    }

    static JsonElement Device(JsonElement stats, string name) =>
        stats.GetProperty("Devices").EnumerateArray().Single(d => d.GetProperty("Name").GetString() == name);

    static long Get(JsonElement device, string counter) => device.GetProperty(counter).GetInt64();

    /// <summary>Runs fio's NBD engine on <paramref name="uri"/>; its (requests, bytes) for the direction it did.</summary>
    static (long Ios, long Bytes) Fio(string uri, string rw, string bs, string size, string? ioSize = null)
    {
        if (!Shell.Has("fio")) Assert.Fail("fio is missing (test.sh installs it)");
        var args = new List<string> { "--name=job", "--ioengine=nbd", $"--uri={uri}", $"--rw={rw}", $"--bs={bs}", $"--size={size}", "--iodepth=8", "--randrepeat=0", "--output-format=json" };
        if (ioSize is not null) args.Add($"--io_size={ioSize}");
        var run = Shell.Run("fio", [.. args]);
        Assert.True(run.ExitCode == 0, $"fio {rw} failed: {run.Stderr}\n{run.Stdout}");
        using var doc = JsonDocument.Parse(run.Stdout[run.Stdout.IndexOf('{')..]);
        var job = doc.RootElement.GetProperty("jobs")[0].GetProperty(rw.Contains("read", StringComparison.Ordinal) ? "read" : "write");
        return (job.GetProperty("total_ios").GetInt64(), job.GetProperty("io_bytes").GetInt64());
    }

    [NbdClientsFact]
    public void TheCountersEqualFiosRequestsOverNbdAndTheFuseFilesSayTheSame()
    {
        var cli = new Cli(_temp.Combine("store"));
        cli.Ok("pool", "create", "--data-size", "1G", "--metadata-size", "64M");
        cli.Ok("pool", "device", "create", "vol", "--size", "64M");
        string socket = _temp.Combine("nbd.sock"), fuse = _temp.Combine("fuse"), uri = $"nbd+unix:///vol?socket={socket}";
        var server = Serve(cli, socket, fuse);
        try
        {
            var fill = Fio(uri, "write", "64k", "16M");
            var random = Fio(uri, "randwrite", "4k", "16M", ioSize: "4M");
            var read = Fio(uri, "randread", "4k", "16M", ioSize: "2M");
            var vol = Device(Stats(cli, "pool"), "vol");
            Assert.Equal((fill.Ios + random.Ios, fill.Bytes + random.Bytes), (Get(vol, "Writes"), Get(vol, "WriteBytes")));
            Assert.Equal((read.Ios, read.Bytes), (Get(vol, "Reads"), Get(vol, "ReadBytes")));
            Assert.Equal((256L, 0L, 0L, 0L), (Get(vol, "AllocatedBlocks"), Get(vol, "CowBlocks"), Get(vol, "NoSpaceErrors"), Get(vol, "InFlight")));
            Assert.True(Get(vol, "WriteNs") > 0 && Get(vol, "ReadNs") > 0 && Get(vol, "BusyNs") > 0);

            // after a snapshot, each block rewritten is copied on write: as many as the pool now counts as the device's own
            cli.Ok("pool", "device", "snapshot", "vol", "snap");
            var again = Fio(uri, "randwrite", "4k", "16M", ioSize: "1M");
            var after = Device(Stats(cli, "pool"), "vol");
            using var ls = JsonDocument.Parse(cli.Ok("pool", "device", "ls", "--format", "json"));
            long exclusive = ls.RootElement.EnumerateArray().Single(d => d.GetProperty("Name").GetString() == "vol").GetProperty("ExclusiveBlocks").GetInt64();
            long cow = Get(after, "CowBlocks");
            output.WriteLine($"{again.Ios} random 4 KiB writes after the snapshot copied {cow} blocks; the device owns {exclusive}");
            Assert.True(cow > 0, "no block was copied on write");
            Assert.Equal(exclusive, cow);
            Assert.Equal(256 + cow, Get(after, "AllocatedBlocks"));
            Assert.Equal(Get(vol, "Writes") + again.Ios, Get(after, "Writes"));
            Assert.Equal(0L, Get(Device(Stats(cli, "pool"), "snap"), "Writes"));

            // the FUSE export's stats file: the same counters as the kernel names a tape's
            var text = File.ReadAllLines(Path.Combine(fuse, ".stats", "vol")).Select(l => l.Split(' ')).ToDictionary(f => f[0], f => long.Parse(f[1]));
            Assert.Equal((Get(after, "Reads"), Get(after, "ReadBytes"), Get(after, "Writes"), Get(after, "WriteBytes"), Get(after, "CowBlocks")),
                (text["read_cnt"], text["read_byte_cnt"], text["write_cnt"], text["write_byte_cnt"], text["cow_blocks"]));

            // the table, and --watch with --count
            string table = cli.Ok("pool", "device", "stats", "vol");
            Assert.Matches(@"(?m)^DEVICE\s+r/s\s+rkB/s\s+r_await\s+w/s", table);
            Assert.Matches(@"(?m)^vol\s+\d", table);
            var watched = cli.Ok("pool", "device", "stats", "--watch", "0.2", "--count", "2", "--format", "json").Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(2, watched.Length); // one line per report
            Assert.All(watched, l => Assert.Equal(2, JsonDocument.Parse(l).RootElement.GetProperty("Devices").GetArrayLength()));
            // `--watch NAME`: a value that is no number is a device; a name given twice shows once
            var named = cli.Ok("pool", "device", "stats", "--watch", "vol", "vol", "--count", "1", "--format", "json").Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal("vol", JsonDocument.Parse(named.Single()).RootElement.GetProperty("Devices").EnumerateArray().Single().GetProperty("Name").GetString());
        }
        finally
        {
            Stop(server);
        }
        // a new server counts from zero: the counters live in the process that has the pool open
        server = Serve(cli, socket, fuse);
        try
        {
            Assert.Equal(0L, Get(Device(Stats(cli, "pool"), "vol"), "Writes"));
        }
        finally
        {
            Stop(server);
        }
        var none = cli.Run("pool", "device", "stats", "vol");
        Assert.Equal(0, none.ExitCode);
        Assert.Contains("no server has pool", none.Stderr);
        var missing = cli.Run("pool", "device", "stats", "nosuch");
        Assert.Equal((3, "strata: thin device nosuch does not exist"), (missing.ExitCode, missing.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last()));
        var bad = cli.Run("pool", "device", "stats", "--count", "2");
        Assert.Equal((2, "strata: --count is for --watch"), (bad.ExitCode, bad.Stderr.Trim()));
    }

    [Fact]
    public void AMountedThinLayersCountersShowWhatWasWrittenAndReadThroughItsFilesystem()
    {
        var cli = new Cli(_temp.Combine("store"));
        cli.Ok("--driver", "thin", "--storage-opt", "thin.basesize=256M", "init");
        cli.Ok("layer", "create", "c", "--rw");
        string dir = cli.Ok("layer", "mount", "c");
        try
        {
            using var ls = JsonDocument.Parse(cli.Ok("pool", "device", "ls", "--format", "json"));
            string device = ls.RootElement.EnumerateArray().Single(d => d.GetProperty("Owner").GetString() == "layer c").GetProperty("Name").GetString()!;
            var before = Device(Stats(cli, "pool"), device);
            // 8 MiB written and read with direct IO: ext4 sends those bytes on, plus its own metadata and journal
            string file = Path.Combine(dir, "data");
            Shell.Run("dd", "if=/dev/urandom", $"of={file}", "bs=1M", "count=8", "oflag=direct", "conv=fsync").Check("dd write");
            var written = Device(Stats(cli, "pool"), device);
            Shell.Run("dd", $"if={file}", "of=/dev/null", "bs=1M", "iflag=direct").Check("dd read");
            var read = Device(Stats(cli, "pool"), device);
            long wrote = Get(written, "WriteBytes") - Get(before, "WriteBytes"), got = Get(read, "ReadBytes") - Get(written, "ReadBytes");
            output.WriteLine($"dd wrote 8 MiB: the device saw {wrote} bytes in {Get(written, "Writes") - Get(before, "Writes")} writes and {Get(written, "Flushes") - Get(before, "Flushes")} flushes; dd read 8 MiB: {got} bytes");
            Assert.InRange(wrote, 8 * MiB, 8 * MiB + 2 * MiB); // the journal's and the inode's blocks
            Assert.InRange(got, 8 * MiB, 8 * MiB + MiB);
            Assert.True(Get(written, "Flushes") > Get(before, "Flushes"), "fsync did not reach the device as a flush");
            // the file's 128 blocks are new; the filesystem's metadata blocks the layer shares with the driver's base device
            // (of which it is a snapshot) are copied on write
            long allocated = Get(written, "AllocatedBlocks") - Get(before, "AllocatedBlocks"), cow = Get(written, "CowBlocks") - Get(before, "CowBlocks");
            output.WriteLine($"{allocated} blocks allocated, {cow} of them copies on write");
            Assert.InRange(allocated - cow, 8 * MiB / (64 << 10), 8 * MiB / (64 << 10) + 8);
        }
        finally
        {
            cli.Run("layer", "unmount", "c");
        }
        cli.Ok("layer", "rm", "c");
    }

    static Process Serve(Cli cli, string socket, string fuse) => PoolServe.Start(cli, null, "--socket", socket, "--fuse", fuse).Process;

    static void Stop(Process p) => PoolServe.Stop(p);
}
