// Resilient pools on real disks that rot, fail, vanish and crawl (nbdkit and nbdfuse), carrying ext4 through the pool's FUSE export and a loop device.
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>
/// Issue 22's drills on real disks: each disk of a pool is an <see cref="NbdkitDisk"/> (a file that nbdkit can make fail
/// or slow), the pool is served by `strata pool serve --fuse`, and its device carries an ext4 filesystem through a loop
/// device over the FUSE file. While the pool serves, one disk's backing file is overwritten with dd, one disk starts
/// failing every read and write, one disk vanishes; after each step the filesystem is mounted afresh (the caches between
/// it and the disks dropped) and each file's sha256 is what was written; scrub finds and repairs the rot, `disk replace` rebuilds onto
/// fresh disks, fsck is clean, `pool check` is clean, and a new server mounts the same files. A 3-disk mirror takes one
/// fault at a time; a 4-disk parity2 takes two at once. A slow disk (nbdkit's delay and rate filters) in a mirror still
/// works end to end. The file contents come from a seed (printed; STRATA_SEED replays it). Three more tests hold bugs
/// these found, fixed since: a repaired disk's health, the schema during a rebuild, a scrub behind the page cache.
///
/// Everything is undone on failure too: the filesystem unmounted, the loop device detached, the server stopped by pid,
/// the disks disposed, the temp dir removed.
/// </summary>
[Collection(HeavyIo.Name)]
public sealed class ResilientRealDiskTests : IDisposable
{
    const long MiB = 1 << 20;
    static readonly TimeSpan ServerTimeout = TimeSpan.FromSeconds(60), RebuildTimeout = TimeSpan.FromMinutes(3);

    readonly ITestOutputHelper _output;
    readonly TempRoot _temp = new();
    readonly Cli _cli;
    readonly List<NbdkitDisk> _disks = [];
    readonly Dictionary<string, string> _files = []; // path under the mount -> sha256 of what was written
    readonly StringBuilder _serverLog = new();
    readonly Random _random;
    readonly int _seed;
    readonly Stopwatch _clock = Stopwatch.StartNew();
    Process? _server;
    string? _loop;
    bool _mounted;
    long _metadataSize;

    public ResilientRealDiskTests(ITestOutputHelper output)
    {
        _output = output;
        _cli = new Cli(_temp.Combine("store"));
        _seed = Environment.GetEnvironmentVariable("STRATA_SEED") is { Length: > 0 } s ? int.Parse(s, CultureInfo.InvariantCulture) : Random.Shared.Next();
        _random = new Random(_seed);
        _output.WriteLine($"seed {_seed} (STRATA_SEED={_seed} replays it)");
    }

    string PoolDir => _temp.Combine("pool");
    string Socket => _temp.Combine("nbd.sock");
    string FuseDir => _temp.Combine("fuse");
    string Mnt => _temp.Combine("mnt");
    string DeviceFile => Path.Combine(FuseDir, "vol");

    // ---- the drills ----

    /// <summary>A 3-disk mirror (two copies of each slab) survives one fault at a time: rot found by scrub and repaired,
    /// rot repaired by the filesystem's reads, a disk failing every IO (its slabs rebuilt into the other two), a disk
    /// vanished (degraded: no third disk to rebuild onto), and comes back healthy when fresh disks replace them.</summary>
    [SkippableFact]
    public void AMirrorOfThreeRealDisksCarriesExt4ThroughRotFailureAndLoss()
    {
        SkipUnlessAvailable();
        var d = new[] { Disk("m0", 256 * MiB), Disk("m1", 256 * MiB), Disk("m2", 256 * MiB) };
        Create("mirror", d);
        Serve();
        MakeFileSystem("200M");
        WriteFiles("a", 12);
        Verify("the files as written");

        // 1. rot on m0, over its slabs (not its label or metadata copy): a scrub finds it, a scrub --repair repairs it
        Rot(d[0]);
        var found = Scrub(repair: false);
        Assert.True(found.Exit == 1, $"a scrub that found rot and did not repair it exits 1, not {found.Exit}: {found.Report}");
        Assert.True(ScrubDiskOf(found.Report, d[0])["Errors"]!.GetValue<long>() > 0, $"the scrub found no rot on m0: {found.Report}");
        var repaired = Scrub(repair: true);
        Assert.True(repaired.Exit == 0, $"scrub --repair left something wrong: {repaired.Report}");
        Assert.True(repaired.Report["Repaired"]!.GetValue<long>() > 0, $"scrub --repair repaired nothing of the rot on m0: {repaired.Report}");
        Assert.Equal(0, repaired.Report["Unrecoverable"]!.GetValue<long>());
        AssertScrubClean("after scrub --repair of m0");
        Verify("rot on m0 repaired by scrub");

        // 2. rot on m1: the filesystem's reads get good bytes (from m0 or m2) and repair what they read
        Rot(d[1]);
        Verify("rot on m1, read through the filesystem");
        Assert.True(DiskRow(d[1])["ChecksumErrors"]!.GetValue<long>() > 0, $"reading the files met no checksum error on m1: {Ok("disk", "ls")}");
        Assert.Equal(0, Scrub(repair: true).Exit);
        AssertScrubClean("after scrub --repair of m1");

        // 3. m2 fails every read and write: it goes out of use, and its slabs are rebuilt onto m0 and m1 (free space, no spare)
        d[2].StartFailing();
        Verify("m2 failing");
        WriteFiles("b", 4);
        Assert.Equal(0, Scrub(repair: true).Exit); // reads every copy: m2 is out of use by now at the latest
        Assert.Equal("failed", DiskRow(d[2])["State"]!.GetValue<string>());
        var info = WaitForRebuild("m2 failed");
        Assert.Equal(0, DiskRow(d[2], info)["SlabsUsed"]!.GetValue<long>());
        Assert.DoesNotContain(info["Health"]!.GetValue<string>(), new[] { "degraded", "lost" });
        Verify("m2 failed and rebuilt into m0 and m1");

        // 4. m0 vanishes (its nbdkit killed): every slab runs on m1 alone, degraded, with nowhere to rebuild
        d[0].Vanish();
        Verify("m0 vanished");
        Assert.Equal(0, Scrub(repair: true).Exit);
        info = WaitForRebuild("m0 vanished");
        Assert.Equal("degraded", info["Health"]!.GetValue<string>());
        Assert.False(DiskRow(d[0], info)["State"]!.GetValue<string>() is "healthy" or "failing", $"m0 vanished but is in use: {info}");
        WriteFiles("c", 3); // written with one copy
        Verify("degraded on m1");

        // 5. fresh disks replace the failed and the vanished one: rebuilt, no slab at risk
        string n0 = _temp.Combine("n0"), n1 = _temp.Combine("n1"), n2 = _temp.Combine("n2");
        Ok("disk", "replace", d[2].Path, n2 + ",size=256M");
        Ok("disk", "replace", d[0].Path, n0 + ",size=256M");
        info = WaitForRebuild("m0 and m2 replaced");
        Assert.True(info["Health"]!.GetValue<string>() is "healthy" or "repairing" && info["Rebuild"]!["Stuck"] is null, $"m0 and m2 replaced: {info}");
        Verify("m0 and m2 replaced");

        // 6. and m1, which had rot and stays failing, while it serves: its slabs move to the fresh disk; healthy
        Ok("disk", "replace", d[1].Path, n1 + ",size=256M");
        info = WaitForRebuild("m1 replaced");
        AssertHealthy(info, "every disk replaced");
        Assert.Equal("retired", DiskRow(d[1], info)["State"]!.GetValue<string>());
        Verify("every disk replaced");

        Finish();
    }

    /// <summary>A 4-disk parity2 pool (2 data + 2 parity columns) loses two disks at once and keeps every byte: one
    /// rotten with dd while another fails every IO; then a third vanishes after the first two are dealt with; fresh disks
    /// replace them (parity2 over 4 disks has no free column to rebuild into without them).</summary>
    [SkippableFact]
    public void AParity2OfFourRealDisksCarriesExt4ThroughTwoBadDisksAtOnce()
    {
        SkipUnlessAvailable();
        var d = new[] { Disk("p0", 192 * MiB), Disk("p1", 192 * MiB), Disk("p2", 192 * MiB), Disk("p3", 192 * MiB) };
        Create("parity2", d);
        Serve();
        MakeFileSystem("200M");
        WriteFiles("a", 12);
        Verify("the files as written");

        // 1. two bad disks at once: p0 rots, p1 fails every read and write
        Rot(d[0]);
        d[1].StartFailing();
        Verify("p0 rotten and p1 failing");
        WriteFiles("b", 4);
        var repaired = Scrub(repair: true);
        Assert.True(repaired.Exit == 0, $"scrub --repair with p0 rotten and p1 failing left something wrong: {repaired.Report}");
        Assert.True(ScrubDiskOf(repaired.Report, d[0])["Repaired"]!.GetValue<long>() > 0, $"scrub --repair repaired nothing on p0: {repaired.Report}");
        Assert.Equal(0, repaired.Report["Unrecoverable"]!.GetValue<long>());
        Assert.Equal("failed", DiskRow(d[1])["State"]!.GetValue<string>());
        AssertScrubClean("after scrub --repair of p0 with p1 out of use");
        Verify("p0 repaired, p1 out of use");

        // 2. p1 replaced: its columns rebuilt onto the fresh disk
        string n1 = _temp.Combine("n1");
        Ok("disk", "replace", d[1].Path, n1 + ",size=192M");
        var info = WaitForRebuild("p1 replaced");
        Assert.Equal(0, DiskRow(d[1], info)["SlabsUsed"]!.GetValue<long>());
        Verify("p1 replaced");

        // 3. p2 vanishes: degraded, IO goes on; a fresh disk replaces it
        d[2].Vanish();
        Verify("p2 vanished");
        WriteFiles("c", 3);
        Assert.Equal(0, Scrub(repair: true).Exit);
        info = WaitForRebuild("p2 vanished");
        Assert.Equal("degraded", info["Health"]!.GetValue<string>());
        string n2 = _temp.Combine("n2");
        Ok("disk", "replace", d[2].Path, n2 + ",size=192M");
        info = WaitForRebuild("p2 replaced");
        Assert.True(info["Health"]!.GetValue<string>() is "healthy" or "repairing" && info["Rebuild"]!["Stuck"] is null, $"p2 replaced: {info}");
        Verify("p2 replaced");

        // 4. and p0, which had rot and stays failing, while it serves; healthy
        string n0 = _temp.Combine("n0");
        Ok("disk", "replace", d[0].Path, n0 + ",size=192M");
        info = WaitForRebuild("p0 replaced");
        AssertHealthy(info, "p0, p1 and p2 replaced");
        Verify("p0 replaced");

        Finish();
    }

    /// <summary>A mirror with one slow disk (nbdkit's delay and rate filters) works end to end: every IO waits for it, and
    /// nothing fails or times out. No timing is asserted.</summary>
    [SkippableFact]
    public void AMirrorWithASlowDiskWorksEndToEnd()
    {
        SkipUnlessAvailable();
        var d = new[] { Disk("fast", 96 * MiB), Disk("slow", 96 * MiB, new NbdkitFaults { Delay = TimeSpan.FromMilliseconds(2), BytesPerSecond = 16 * MiB }) };
        Create("mirror", d, slab: "4M", metadata: "4M");
        Serve();
        MakeFileSystem("64M");
        WriteFiles("a", 6, maxSize: 1 << 20);
        Verify("a slow mirror");
        var scrub = Scrub(repair: false);
        Assert.True(scrub.Exit == 0 && scrub.Report["Errors"]!.GetValue<long>() == 0, $"a scrub of a slow but sound mirror found something: {scrub.Report}");
        AssertHealthy(Info(), "a slow mirror");
        Finish();
    }

    // ---- bugs these tests found (fixed) ----

    /// <summary>Was a bug: a disk on which a read or a scrub met one bad sector becomes "failing" for good, and
    /// the pool's Health stays "repairing" after a scrub --repair has rewritten every bad sector and a second scrub finds
    /// nothing wrong; the state is written into the space table at its next commit, so it outlives the server, and after a
    /// restart the disk reads "failing (out of use since an earlier run)" though it is in use (ResilientStore.Load gives
    /// every recorded state above Healthy that reason). Expected: healthy once nothing is left to repair.</summary>
    [Fact]
    public void APoolWhoseRotWasRepairedIsHealthyAgain()
    {
        string[] d = [_temp.Combine("d0"), _temp.Combine("d1")];
        Create("mirror", d.Select(x => x + ",size=64M"), slab: "4M", metadata: "4M");
        Serve(fuse: false);
        Ok("device", "create", "v", "--size", "32M");
        var payload = new byte[8 * MiB];
        _random.NextBytes(payload);
        Assert.Equal("8388608", _cli.Run(payload, Pool(["device", "write", "v"])).Out);
        Rot(d[1], 64 * MiB, "d1"); // the server reads d1 through the same page cache: it sees the garbage at once
        var repaired = Scrub(repair: true);
        Assert.True(repaired.Exit == 0 && repaired.Report["Repaired"]!.GetValue<long>() > 0, $"scrub --repair: {repaired.Report}");
        AssertScrubClean("after scrub --repair");
        Assert.Equal("8388608", _cli.Run(payload, Pool(["device", "write", "v", "--offset", "8M"])).Out); // new slabs: the space table is written

        var problems = new List<string>();
        var served = Info();
        if (served["Health"]!.GetValue<string>() != "healthy")
            problems.Add($"while served, after a clean scrub: Health {served["Health"]}, {d[1]} {DiskRow(d[1], served)["State"]}");
        StopServer();
        var reopened = Info();
        var row = DiskRow(d[1], reopened);
        if (reopened["Health"]!.GetValue<string>() != "healthy")
            problems.Add($"after a restart: Health {reopened["Health"]}, {d[1]} {row["State"]} ({row["Reason"]})");
        Assert.True(problems.Count == 0, string.Join("; ", problems));
    }

    /// <summary>Was a bug: while a rebuild runs onto a replacement of a failed disk, `pool info --format json`
    /// says Health "rebuilding" (SpaceInfo.cs), a value docs/schemas/pool-info.json does not allow (its enum: healthy,
    /// repairing, degraded, lost). The replacement is a slow disk (nbdkit's rate filter), so the rebuild lasts seconds and
    /// the polls see it.</summary>
    [SkippableFact]
    public void PoolInfoDuringARebuildMatchesItsSchema()
    {
        SkipUnlessAvailable(filesystem: false);
        string[] d = [_temp.Combine("d0"), _temp.Combine("d1")];
        Create("mirror", d.Select(x => x + ",size=64M"), slab: "4M", metadata: "4M");
        Serve(fuse: false);
        Ok("device", "create", "v", "--size", "32M");
        var payload = new byte[8 * MiB];
        _random.NextBytes(payload);
        _cli.Run(payload, Pool(["device", "write", "v"]));
        Ok("disk", "fail", d[1]); // two disks: nowhere to rebuild until a replacement comes
        var slow = Disk("slow", 64 * MiB, new NbdkitFaults { BytesPerSecond = 2 * MiB });
        Ok("disk", "replace", d[1], slow.Path);
        var seen = new HashSet<string>();
        var clock = Stopwatch.StartNew();
        while (true)
        {
            string json = Ok("info", "--format", "json");
            var info = JsonNode.Parse(json)!;
            seen.Add(info["Health"]!.GetValue<string>());
            JsonSchemas.AssertValid("pool-info", json);
            if (!info["Rebuild"]!["Running"]!.GetValue<bool>()) break;
            Assert.True(clock.Elapsed < RebuildTimeout, $"the rebuild onto the slow disk still runs after {RebuildTimeout.TotalMinutes} minutes: {info}");
            Thread.Sleep(100);
        }
        Log($"health seen: {string.Join(", ", seen)}");
        Ok("device", "read", "v", "--length", "8M", "-o", _temp.Combine("back"));
        Assert.Equal(payload, File.ReadAllBytes(_temp.Combine("back")));
    }

    /// <summary>Was a bug: a scrub reads the disks through the kernel's page cache (FileBlockStore uses buffered
    /// pread), so rot on a disk below pages the kernel still caches (from the writes, or from an earlier scrub) is not
    /// found: the scrub checks the cache, not the disk. An NbdkitDisk shows it: its backing file is rotten behind the cached
    /// pages of its FUSE file, as a disk's sectors rot behind the page cache of its block device. Expected: a scrub reads
    /// what the disk holds (O_DIRECT, or the range's cache dropped first), finds the rot and repairs it.</summary>
    [SkippableFact]
    public void AScrubReadsTheDisksNotThePageCache()
    {
        SkipUnlessAvailable(filesystem: false);
        var d = new[] { Disk("c0", 64 * MiB), Disk("c1", 64 * MiB) };
        Create("mirror", d, slab: "4M", metadata: "4M");
        Serve(fuse: false);
        Ok("device", "create", "v", "--size", "32M");
        var payload = new byte[8 * MiB];
        _random.NextBytes(payload);
        _cli.Run(payload, Pool(["device", "write", "v"]));
        AssertScrubClean("before the rot"); // the scrub's reads leave every copy in the page cache
        Rot(d[1], dropCache: false);
        var scrub = Scrub(repair: true);
        Assert.True(scrub.Report["Errors"]!.GetValue<long>() > 0, $"a scrub after c1's slabs rotted found nothing wrong: {scrub.Report}");
    }

    // ---- steps ----

    /// <summary>Skips the test where nbdkit and nbdfuse cannot make disks, or, with <paramref name="filesystem"/>, where a
    /// loop device cannot be attached and mounted (the pool's FUSE export needs /dev/fuse too, which nbdfuse checked).</summary>
    static void SkipUnlessAvailable(bool filesystem = true)
    {
        NbdkitDisk.SkipUnlessAvailable();
        if (!filesystem) return;
        foreach (var tool in new[] { "losetup", "mkfs.ext4", "fsck.ext4", "blockdev" })
            Skip.IfNot(Shell.Has(tool), $"{tool} is not installed (test.sh installs util-linux and e2fsprogs)");
        Skip.IfNot(File.Exists("/dev/loop-control"), "there is no /dev/loop-control here: loop devices cannot be attached");
        Skip.IfNot(Environment.UserName == "root", "attaching loop devices and mounting need root");
    }

    NbdkitDisk Disk(string name, long size, NbdkitFaults? faults = null)
    {
        var disk = NbdkitDisk.Start(name, size, faults);
        _disks.Add(disk);
        return disk;
    }

    void Create(string resiliency, NbdkitDisk[] disks, string slab = "8M", string metadata = "8M") =>
        Create(resiliency, disks.Select(x => x.Path), slab, metadata);

    void Create(string resiliency, IEnumerable<string> disks, string slab = "8M", string metadata = "8M")
    {
        _metadataSize = long.Parse(metadata.TrimEnd('M'), CultureInfo.InvariantCulture) * MiB;
        Ok(["create", "--resiliency", resiliency, "--slab-size", slab, "--metadata-size", metadata, .. disks.SelectMany(x => new[] { "--disk", x })]);
    }

    /// <summary>The device, attached and carrying a fresh ext4, mounted at <see cref="Mnt"/>.</summary>
    void MakeFileSystem(string size)
    {
        Ok("device", "create", "vol", "--size", size);
        Attach();
        // inode tables and journal written now: no lazy init thread writing behind the test's back
        Shell.Run("mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", _loop!).Check("mkfs.ext4");
        Mount();
    }

    /// <summary>Files of random content (from the seed) and size, in a directory of their own; synced.</summary>
    void WriteFiles(string prefix, int count, int maxSize = 3 << 20)
    {
        string dir = Path.Combine(Mnt, prefix);
        Directory.CreateDirectory(dir);
        for (int i = 0; i < count; i++)
        {
            var bytes = new byte[_random.Next(64 << 10, maxSize)];
            _random.NextBytes(bytes);
            string name = Path.Combine(prefix, $"f{i}");
            File.WriteAllBytes(Path.Combine(Mnt, name), bytes);
            _files[name] = Convert.ToHexString(SHA256.HashData(bytes));
        }
        Shell.Run("sync", "-f", Mnt).Check("sync");
    }

    /// <summary>The filesystem mounted afresh, with the caches between it and the disks dropped, and each file read back
    /// whole: its sha256 is what was written.</summary>
    void Verify(string step)
    {
        Unmount();
        DropCaches();
        Mount();
        // a few at once: a slow disk's latency is paid per request, and the server serves requests in parallel
        var wrong = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.ForEach(_files, new ParallelOptions { MaxDegreeOfParallelism = 4 }, file =>
        {
            try
            {
                if (Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Path.Combine(Mnt, file.Key)))) != file.Value)
                    wrong.Add($"{file.Key} reads back other bytes");
            }
            catch (IOException ex)
            {
                wrong.Add($"{file.Key} does not read ({ex.Message})");
            }
        });
        if (!wrong.IsEmpty) throw new Xunit.Sdk.XunitException($"{step}: {string.Join("; ", wrong.Order())}; the pool: {Diagnosis()}");
        Log($"{step}: {_files.Count} files read back whole; {DiskSummary()}");
    }

    /// <summary>dd over the first 64 MiB of a disk's slabs (its label and metadata copy stay), in its backing file, behind
    /// nbdkit's back; the disk's page cache dropped so the pool reads it.</summary>
    void Rot(NbdkitDisk disk, bool dropCache = true)
    {
        Rot(disk.BackingFile, disk.Size, disk.Name);
        if (dropCache) disk.DropCache();
    }

    /// <summary>dd over the first 64 MiB of a disk's slabs (its label and metadata copy stay), straight into the file.</summary>
    void Rot(string file, long size, string name)
    {
        long from = (4096 + _metadataSize + MiB - 1) / MiB * MiB; // DiskSet.DataStart: label, metadata copy, to a MiB
        var garbage = new byte[MiB];
        using (var stream = new FileStream(file, FileMode.Open, FileAccess.Write))
        {
            for (long at = from; at < Math.Min(size, from + 64 * MiB); at += MiB)
            {
                _random.NextBytes(garbage);
                stream.Position = at;
                stream.Write(garbage);
            }
            stream.Flush(flushToDisk: true);
        }
        Log($"{name}: up to 64 MiB of garbage written at {from}");
    }

    (int Exit, JsonNode Report) Scrub(bool repair)
    {
        var r = _cli.Run(Pool(["scrub", "--format", "json", .. repair ? new[] { "--repair" } : []]));
        Assert.True(r.ExitCode is 0 or 1, $"strata pool scrub{(repair ? " --repair" : "")} failed ({r.ExitCode}): {r.Stderr}");
        var report = JsonNode.Parse(r.Stdout)!;
        Log($"scrub{(repair ? " --repair" : "")}: exit {r.ExitCode}, {report.ToJsonString()}");
        return (r.ExitCode, report);
    }

    void AssertScrubClean(string step)
    {
        var again = Scrub(repair: false);
        Assert.True(again.Exit == 0 && again.Report["Errors"]!.GetValue<long>() == 0 && again.Report["Unrecoverable"]!.GetValue<long>() == 0,
            $"{step}: a scrub still finds something wrong: {again.Report}");
    }

    static JsonNode ScrubDiskOf(JsonNode report, NbdkitDisk disk) =>
        report["Disks"]!.AsArray().FirstOrDefault(x => x!["Path"]!.GetValue<string>() == disk.Path)
        ?? throw new Xunit.Sdk.XunitException($"the scrub report has no disk {disk.Path}: {report}");

    JsonNode Info() => JsonNode.Parse(Ok("info", "--format", "json"))!;

    JsonNode DiskRow(NbdkitDisk disk, JsonNode? info = null) => DiskRow(disk.Path, info);

    JsonNode DiskRow(string path, JsonNode? info = null) =>
        (info ?? Info())["Disks"]!.AsArray().LastOrDefault(x => x!["Path"]!.GetValue<string>() == path)
        ?? throw new Xunit.Sdk.XunitException($"pool info has no disk {path}");

    /// <summary>Waits (bounded) for a rebuild the server runs in its background to end; returns `pool info` then.</summary>
    JsonNode WaitForRebuild(string step)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var info = Info();
            if (!info["Rebuild"]!["Running"]!.GetValue<bool>())
            {
                Log($"{step}: rebuild idle after {clock.Elapsed.TotalSeconds:0.0} s: health {info["Health"]}, rebuild {info["Rebuild"]!.ToJsonString()}");
                return info;
            }
            if (clock.Elapsed > RebuildTimeout)
                throw new Xunit.Sdk.XunitException($"{step}: the rebuild still runs after {RebuildTimeout.TotalMinutes} minutes: {info}");
            Thread.Sleep(250);
        }
    }

    static void AssertHealthy(JsonNode info, string step)
    {
        Assert.True(info["Health"]!.GetValue<string>() == "healthy", $"{step}: the pool is not healthy: {info}");
        JsonSchemas.AssertValid("pool-info", info.ToJsonString());
    }

    /// <summary>The end of every drill: fsck of the unmounted filesystem is clean, the server stops cleanly, `pool check`
    /// is clean, and a new server shows the same files.</summary>
    void Finish()
    {
        Unmount();
        var fsck = Shell.Run("fsck.ext4", "-fn", _loop!);
        Assert.True(fsck.ExitCode == 0, $"fsck.ext4 -fn found damage ({fsck.ExitCode}): {fsck.Stdout}{fsck.Stderr}");
        Detach();
        StopServer();
        var check = _cli.Run(Pool(["check"]));
        Assert.True(check.ExitCode == 0 && check.Stdout.TrimEnd().EndsWith("clean", StringComparison.Ordinal), $"pool check ({check.ExitCode}): {check.Stdout}{check.Stderr}");
        Serve();
        Attach();
        Verify("a new server");
        AssertHealthy(Info(), "a new server");
        Unmount();
        Detach();
        StopServer();
    }

    // ---- the server, the loop device, the mount ----

    string[] Pool(string[] args) => ["pool", "--pool", PoolDir, .. args];

    string Ok(params string[] args) => _cli.Ok(Pool(args));

    void Serve(bool fuse = true)
    {
        var p = _cli.Start(Pool(["serve", "--socket", Socket, .. fuse ? new[] { "--fuse", FuseDir } : []]));
        _server = p;
        p.StandardInput.Close();
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null) lock (_serverLog) _serverLog.AppendLine(e.Data); // drained: a full pipe would stall the server
        };
        p.BeginErrorReadLine();
        var line = p.StandardOutput.ReadLineAsync();
        if (!line.Wait(ServerTimeout)) throw new Xunit.Sdk.XunitException($"strata pool serve did not start in {ServerTimeout.TotalSeconds} s: {ServerLog()}");
        Assert.True(line.Result?.StartsWith("serving pool ", StringComparison.Ordinal) == true, $"strata pool serve: {line.Result} {ServerLog()}");
        _ = p.StandardOutput.ReadToEndAsync(); // drained too
    }

    void StopServer()
    {
        if (_server is not { } p) return;
        _server = null;
        using (p)
        {
            Posix.TryKill(p.Id, Posix.SIGTERM);
            Assert.True(p.WaitForExit(ServerTimeout), $"strata pool serve did not stop on SIGTERM: {ServerLog()}");
            Assert.True(p.ExitCode == 0, $"strata pool serve exited {p.ExitCode}: {ServerLog()}");
        }
    }

    string ServerLog()
    {
        lock (_serverLog) return _serverLog.ToString();
    }

    void Attach()
    {
        Assert.True(File.Exists(DeviceFile), $"the server shows no {DeviceFile}");
        _loop = Shell.Run("losetup", "-f", "--show", DeviceFile).Check("losetup").Stdout.Trim();
    }

    void Detach()
    {
        if (_loop is null) return;
        Shell.Run("losetup", "-d", _loop).Check("losetup -d");
        _loop = null;
    }

    void Mount()
    {
        Directory.CreateDirectory(Mnt);
        var r = Shell.Run("mount", "-t", "ext4", _loop!, Mnt);
        if (r.ExitCode != 0) throw new Xunit.Sdk.XunitException($"mount failed ({r.ExitCode}): {r.Stderr.Trim()}; the pool: {Diagnosis()}");
        _mounted = true;
    }

    void Unmount()
    {
        if (!_mounted) return;
        Shell.Run("umount", Mnt).Check("umount");
        _mounted = false;
    }

    /// <summary>Drops the caches between the files and the disks, and no others (a global drop_caches or sync would make
    /// every other process on the machine wait): the filesystem's went with its unmount, the loop device's buffers go with
    /// BLKFLSBUF, the FUSE export has none (direct IO), and each disk's FUSE file has its pages dropped.</summary>
    void DropCaches()
    {
        foreach (var d in _disks)
            try
            {
                d.DropCache();
            }
            catch (StrataException)
            {
                // vanished: nothing of it is read any more
            }
        if (_loop is not null) Shell.Run("blockdev", "--flushbufs", _loop).Check("blockdev --flushbufs");
    }

    string DiskSummary()
    {
        var r = _cli.Run(Pool(["info", "--format", "json"]));
        if (r.ExitCode != 0) return $"pool info failed ({r.ExitCode}): {r.Stderr.Trim()}";
        var info = JsonNode.Parse(r.Stdout)!;
        return $"health {info["Health"]}; " + string.Join("; ", info["Disks"]!.AsArray().Select(x =>
            $"{Path.GetFileName(x!["Path"]!.GetValue<string>())} {x["State"]} read/write/checksum errors {x["ReadErrors"]}/{x["WriteErrors"]}/{x["ChecksumErrors"]} repaired {x["Repaired"]} slabs {x["SlabsUsed"]}"));
    }

    void Log(string line) => _output.WriteLine($"{_clock.Elapsed.TotalSeconds,6:0.0} s  {line}");

    string Diagnosis() => $"{DiskSummary()}\nserver log: {ServerLog()}";

    public void Dispose()
    {
        // each step on its own, and bounded: one that fails or hangs must not leave the next undone
        Try(() =>
        {
            if (Mounts.Under(Mnt).Count == 0) return;
            if (Shell.Run("timeout", "60", "umount", Mnt).ExitCode == 0) return;
            KillServer(); // a stuck server holds the filesystem's IO; killed, its FUSE mount fails every request at once
            Shell.Run("umount", "-l", Mnt);
        });
        Try(() =>
        {
            if (_loop is not null) Shell.Run("timeout", "60", "losetup", "-d", _loop);
        });
        Try(() =>
        {
            if (_server is not { } p) return;
            Posix.TryKill(p.Id, Posix.SIGTERM);
            if (!p.WaitForExit(ServerTimeout)) KillServer();
        });
        Try(() => _server?.Dispose());
        foreach (var d in _disks) d.Dispose();
        _temp.Dispose();
    }

    void KillServer()
    {
        if (_server is not { } p || p.HasExited) return;
        p.Kill();
        p.WaitForExit(ServerTimeout);
    }

    void Try(Action step)
    {
        try
        {
            step();
        }
        catch (Exception ex)
        {
            _output.WriteLine($"cleanup: {ex.Message}");
        }
    }
}
