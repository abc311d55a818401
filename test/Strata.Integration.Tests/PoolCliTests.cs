using System.Text.Json;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>`strata pool` as a user runs it: a pool in ROOT/thin by default (or --pool), its devices, info,
/// check and repair, exit codes and one-line errors.</summary>
[Collection(HeavyIo.Name)]
public sealed class PoolCliTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;

    public PoolCliTests() => _cli = new Cli(_temp.Combine("store"));

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void APoolAndItsDevicesFromTheCommandLine()
    {
        string dir = _cli.Ok("pool", "create", "--data-size", "1G", "--metadata-size", "16M");
        Assert.Equal(Path.Combine(_temp.Combine("store"), "thin"), dir);
        // sparse: a 1 GiB pool takes next to nothing
        Assert.True(new FileInfo(Path.Combine(dir, "data")).Length == 1L << 30);
        Assert.True(Shell.Run("du", "-k", Path.Combine(dir, "data")).Check("du").Stdout.StartsWith("0\t"), "the data file is not sparse");

        Assert.Equal("vol", _cli.Ok("pool", "device", "create", "vol", "--size", "100M"));
        Assert.Equal("snap", _cli.Ok("pool", "device", "snapshot", "vol", "snap"));
        Assert.Equal("vol", _cli.Ok("pool", "device", "resize", "vol", "--size", "200M"));
        var devices = JsonDocument.Parse(_cli.Ok("pool", "device", "ls", "--format", "json")).RootElement.EnumerateArray().ToList();
        Assert.Equal(["vol", "snap"], devices.Select(d => d.GetProperty("Name").GetString()));
        Assert.Equal(200L << 20, devices[0].GetProperty("Size").GetInt64());
        Assert.Equal(1, devices[1].GetProperty("Origin").GetInt64());

        var info = JsonDocument.Parse(_cli.Ok("pool", "info", "--format", "json")).RootElement;
        Assert.Equal(64 << 10, info.GetProperty("PoolBlocksize").GetInt64());
        Assert.Equal(1L << 30, info.GetProperty("DataSpaceTotal").GetInt64());
        Assert.Equal(0, info.GetProperty("DataSpaceUsed").GetInt64());
        Assert.Equal(2, info.GetProperty("ThinDevices").GetInt64());
        Assert.Contains("Metadata Space Available: ", _cli.Ok("pool", "info"));

        Assert.EndsWith("clean", _cli.Ok("pool", "check"));
        Assert.Equal("snap\nvol", _cli.Ok("pool", "device", "rm", "snap", "vol"));
        Assert.EndsWith("clean", _cli.Ok("pool", "repair"));
    }

    [Fact]
    public void BadInputGetsOneLineAndTheRightExitCode()
    {
        var none = _cli.Run("pool", "info");
        Assert.Equal(3, none.ExitCode);
        Assert.Equal($"strata: there is no pool in {Path.Combine(_temp.Combine("store"), "thin")} (strata pool create)\n", none.Stderr);

        string pool = _temp.Combine("p");
        _cli.Ok("pool", "--pool", pool, "create", "--data-size", "64M", "--metadata-size", "1M");
        Assert.Equal(4, _cli.Run("pool", "--pool", pool, "create").ExitCode);
        var cases = new (string[] Args, int Code, string Fragment)[]
        {
            (["pool", "--pool", _temp.Combine("q"), "create", "--block-size", "96K"], 2, "power of two"),
            (["pool", "--pool", _temp.Combine("q"), "create", "--data-size", "lots"], 2, "is not a size"),
            (["pool", "--pool", pool, "device", "create", "../x", "--size", "1M"], 2, "invalid device name"),
            (["pool", "--pool", pool, "device", "create", "x", "--size", "0"], 2, "must be positive"),
            (["pool", "--pool", pool, "device", "snapshot", "nope", "x"], 3, "does not exist"),
            (["pool", "--pool", pool, "device", "rm", "nope"], 3, "does not exist"),
        };
        foreach (var (args, code, fragment) in cases)
        {
            var r = _cli.Run(args);
            Assert.True(code == r.ExitCode, $"{string.Join(' ', args)}: exit {r.ExitCode}, expected {code}: {r.Stderr}");
            Assert.Contains(fragment, r.Stderr);
            Assert.Equal(1, r.Stderr.Count(c => c == '\n'));
        }
        Assert.False(Directory.Exists(_temp.Combine("q", "data")) || File.Exists(_temp.Combine("q", "data")), "a refused create left a data file");
        _cli.Ok("pool", "--pool", pool, "device", "create", "x", "--size", "1M");
        Assert.Equal(2, _cli.Run("pool", "--pool", pool, "device", "resize", "x", "--size", "512K").ExitCode);

        // damage: check says so and exits 1; repair refuses to guess at trees
        string metadata = Path.Combine(pool, "metadata");
        using (var f = File.OpenWrite(metadata))
        {
            // the device table is the block after the superblocks that the pool wrote last: damage every used block past them
            var buffer = new byte[4096];
            for (long b = 2; b < 64; b++)
            {
                f.Position = b * 4096 + 200;
                f.WriteByte(0x5A);
            }
        }
        var check = _cli.Run("pool", "--pool", pool, "check");
        Assert.Equal(1, check.ExitCode);
        Assert.Contains("error: ", check.Stdout);
        Assert.NotEqual(0, _cli.Run("pool", "--pool", pool, "repair").ExitCode);
    }

    static void FlipByte(string file, long at)
    {
        using var f = File.Open(file, FileMode.Open, FileAccess.ReadWrite);
        f.Position = at;
        int b = f.ReadByte();
        f.Position = at;
        f.WriteByte((byte)(b ^ 0x10));
    }

    static void Truncate(string file, long length)
    {
        using var f = File.Open(file, FileMode.Open, FileAccess.Write);
        f.SetLength(length);
    }

    /// <summary>One byte of the newest superblock flipped: the pool falls back to the transaction before, which is
    /// right, and says so (open on stderr, info and check with exit 1) until `pool repair` acknowledges the loss.</summary>
    [Fact]
    public void ATransactionLostToADamagedSuperblockIsReportedUntilRepair()
    {
        string pool = _temp.Combine("p"), metadata = Path.Combine(pool, "metadata");
        _cli.Ok("pool", "--pool", pool, "create", "--data-size", "64M", "--metadata-size", "1M");
        _cli.Ok("pool", "--pool", pool, "device", "create", "vol", "--size", "8M");
        _cli.Ok("pool", "--pool", pool, "device", "snapshot", "vol", "snap");
        long newest = JsonDocument.Parse(_cli.Ok("pool", "--pool", pool, "info", "--format", "json")).RootElement.GetProperty("Transaction").GetInt64();
        FlipByte(metadata, newest % 2 * 4096 + 300);

        var check = _cli.Run("pool", "--pool", pool, "check");
        Assert.True(check.ExitCode == 1, $"check after the fallback: exit {check.ExitCode}: {check.Stdout}");
        Assert.Contains($"error: transaction {newest} was lost", check.Stdout);
        var info = _cli.Run("pool", "--pool", pool, "info");
        Assert.Equal(1, info.ExitCode);
        Assert.Contains($"Lost Transaction: {newest}", info.Stdout);
        Assert.Contains($"strata: warning: transaction {newest} was lost", info.Stderr);
        Assert.Equal("vol", _cli.Ok("pool", "--pool", pool, "device", "ls", "--format", "json").Split('"').Single(w => w is "vol" or "snap"));
        var made = _cli.Run("pool", "--pool", pool, "device", "create", "other", "--size", "1M"); // the pool works, and still says so
        Assert.Equal(0, made.ExitCode);
        Assert.Contains($"transaction {newest} was lost", made.Stderr);
        Assert.Equal(1, _cli.Run("pool", "--pool", pool, "check").ExitCode); // a commit since does not make it go away
        var dump = _cli.Run("pool", "--pool", pool, "dump", "--xml");
        Assert.Equal(0, dump.ExitCode);
        Assert.Contains($"strata: warning: transaction {newest} was lost", dump.Stderr);

        Assert.EndsWith("clean", _cli.Ok("pool", "--pool", pool, "repair"));
        Assert.EndsWith("clean", _cli.Ok("pool", "--pool", pool, "check"));
        var after = _cli.Run("pool", "--pool", pool, "info");
        Assert.Equal(0, after.ExitCode);
        Assert.Equal("", after.Stderr);
        Assert.Contains("Lost Transaction: none", after.Stdout);
    }

    /// <summary>Stores cut short: check reports each problem on a line of its own and exits 1, never with a stack
    /// trace and never calling clean a pool that `info` (which opens it) refuses; dump and repair refuse in one line.</summary>
    [Fact]
    public void CheckReportsTruncatedStoresAndNeverCallsThemClean()
    {
        string pool = _temp.Combine("p"), metadata = Path.Combine(pool, "metadata"), data = Path.Combine(pool, "data");
        _cli.Ok("pool", "--pool", pool, "create", "--data-size", "64M", "--metadata-size", "1M");
        for (int i = 0; i < 6; i++)
        {
            _cli.Ok("pool", "--pool", pool, "device", "create", $"d{i}", "--size", "8M");
            var r = _cli.Run(new byte[200_000], "pool", "--pool", pool, "device", "write", $"d{i}", "--offset", (i * 300_000).ToString());
            Assert.True(r.ExitCode == 0, r.Stderr);
            _cli.Ok("pool", "--pool", pool, "device", "snapshot", $"d{i}", $"s{i}");
        }
        Assert.EndsWith("clean", _cli.Ok("pool", "--pool", pool, "check"));
        string saved = _temp.Combine("metadata.saved");
        File.Copy(metadata, saved);

        // dump reads the metadata alone: a short data store does not stop it (thin_dump's way: the metadata is what
        // one saves from a damaged pool)
        void AssertReported(string what, string fragment, bool dumps = false)
        {
            var check = _cli.Run("pool", "--pool", pool, "check");
            Assert.True(check.ExitCode == 1, $"{what}: check exited {check.ExitCode}: {check.Stdout}{check.Stderr}");
            Assert.Contains("error: ", check.Stdout);
            Assert.Contains(fragment, check.Stdout);
            Assert.DoesNotContain("clean", check.Stdout.Split('\n').Last(l => l.Length > 0));
            Assert.Equal("", check.Stderr);
            foreach (var args in dumps ? new[] { new[] { "info" }, ["repair"] } : [["info"], ["dump", "--xml"], ["repair"]])
            {
                var r = _cli.Run(["pool", "--pool", pool, .. args]);
                Assert.True(r.ExitCode != 0, $"{what}: pool {args[0]} succeeded");
                Assert.True(r.Stderr.StartsWith("strata: ", StringComparison.Ordinal) && r.Stderr.Count(c => c == '\n') == 1, $"{what}: pool {args[0]}: {r.Stderr}");
            }
        }
        foreach (long length in new long[] { 8192, 12345, 20480, 65536 })
        {
            File.Copy(saved, metadata, overwrite: true);
            Truncate(metadata, length);
            AssertReported($"metadata cut to {length}", $"{metadata} is {length} bytes");
        }
        File.Copy(saved, metadata, overwrite: true);
        Assert.EndsWith("clean", _cli.Ok("pool", "--pool", pool, "check"));
        Truncate(data, 1 << 20);
        AssertReported("data cut to 1 MiB", $"{data} is {1 << 20} bytes", dumps: true);
        Assert.Contains("<superblock", _cli.Ok("pool", "--pool", pool, "dump", "--xml"));
    }

    /// <summary>Real processes on real files: `pool device write` killed with SIGKILL at random moments,
    /// between writes that completed (flushed) before and snapshots taken before each kill. After each kill
    /// the pool checks clean, every completed write outside the killed one's range reads back whole, and the
    /// snapshot reads exactly as before the killed write (shared blocks are copied, never written in place).</summary>
    [Fact]
    public async Task APoolSurvivesWritersKilledMidWrite()
    {
        var random = new Random(20261201);
        const long killedAt = 4L << 20, killedLength = 160L << 20;
        _cli.Ok("pool", "create", "--data-size", "2G", "--metadata-size", "64M");
        _cli.Ok("pool", "device", "create", "v", "--size", "1G");
        var completed = new Dictionary<long, byte[]>();
        void Complete(long offset, int length)
        {
            var chunk = new byte[length];
            random.NextBytes(chunk);
            var r = _cli.Run(chunk, "pool", "device", "write", "v", "--offset", offset.ToString());
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Equal(length.ToString(), r.Out);
            completed[offset] = chunk;
        }
        Complete(0, 4 << 20);
        int killedMidWrite = 0;
        for (int round = 0; round < 6; round++)
        {
            Complete(killedAt + killedLength + round * (8L << 20), 8 << 20);
            _cli.Ok("pool", "device", "snapshot", "v", $"s{round}");
            string before = Digest($"s{round}", killedAt, (int)killedLength);
            var big = new byte[killedLength];
            random.NextBytes(big);
            int wait = random.Next(10, 150);
            using (var p = _cli.Start("pool", "device", "write", "v", "--offset", killedAt.ToString()))
            {
                var feed = Task.Run(() =>
                {
                    try
                    {
                        p.StandardInput.BaseStream.Write(big);
                        p.StandardInput.Close();
                    }
                    catch (IOException)
                    {
                        // killed
                    }
                });
                await Task.Delay(wait);
                Shell.Run("kill", "-KILL", p.Id.ToString());
                await p.WaitForExitAsync();
                await feed.WaitAsync(TimeSpan.FromSeconds(30));
                if (p.ExitCode != 0) killedMidWrite++;
            }
            var check = _cli.Run("pool", "check");
            Assert.True(check.ExitCode == 0, $"round {round} (killed after {wait} ms): check: {check.Stdout}{check.Stderr}");
            foreach (var (offset, bytes) in completed)
                Assert.True(ReadBytes("v", offset, bytes.Length).AsSpan().SequenceEqual(bytes), $"round {round}: the completed write at {offset} does not read back");
            Assert.True(before == Digest($"s{round}", killedAt, (int)killedLength), $"round {round}: snapshot s{round} changed under the killed write");
        }
        Assert.True(killedMidWrite >= 3, $"only {killedMidWrite} of 6 writers were still running when killed");
    }

    string Digest(string device, long offset, int length) => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(ReadBytes(device, offset, length)));

    byte[] ReadBytes(string device, long offset, int length)
    {
        using var p = _cli.Start("pool", "device", "read", device, "--offset", offset.ToString(), "--length", length.ToString());
        p.StandardInput.Close();
        var ms = new MemoryStream();
        p.StandardOutput.BaseStream.CopyTo(ms);
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"pool device read {device}: {p.StandardError.ReadToEnd()}");
        return ms.ToArray();
    }
}
