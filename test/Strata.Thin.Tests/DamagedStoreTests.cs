using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Thin.Tests;

/// <summary>Check against open on damaged stores (files cut short, bytes flipped): check reports what it finds,
/// never throws, and never calls clean a pool that does not open.</summary>
public sealed class DamagedStoreTests(ITestOutputHelper output) : IDisposable
{
    const int Bs = (int)ThinPool.MinBlockSize;
    static readonly PoolOptions NoTimer = new() { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 };
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    string DataFile => _temp.Combine("data");
    string MetadataFile => _temp.Combine("metadata");

    /// <summary>A pool on files with a few devices, snapshots and writes, closed; its metadata spreads over a few
    /// dozen blocks (each commit writes new ones).</summary>
    void MakePool()
    {
        using var data = FileBlockStore.Create(DataFile, 256L * Bs);
        using var metadata = FileBlockStore.Create(MetadataFile, 1 << 20);
        using var pool = ThinPool.Create(data, metadata, options: NoTimer);
        for (int i = 0; i < 6; i++)
        {
            pool.CreateDevice($"d{i}", 32L * Bs);
            using (var dev = pool.OpenDevice($"d{i}")) dev.Write(i * 3L * Bs, new byte[2 * Bs + 100]);
            pool.Snapshot($"d{i}", $"s{i}");
        }
    }

    static void Truncate(string file, long length)
    {
        using var f = new FileStream(file, FileMode.Open, FileAccess.Write);
        f.SetLength(length);
    }

    /// <summary>What check says and whether the pool opens, on the files as they are now.</summary>
    (CheckReport Report, string? OpenFailure) CheckAndOpen()
    {
        using var data = FileBlockStore.Open(DataFile);
        using var metadata = FileBlockStore.Open(MetadataFile);
        var report = PoolChecker.Check(data, metadata);
        try
        {
            using var pool = ThinPool.Open(data, metadata, NoTimer);
            foreach (var name in pool.DeviceNames())
            {
                using var dev = pool.OpenDevice(name);
                dev.Read(0, new byte[dev.Size]);
            }
            return (report, null);
        }
        catch (StrataException ex)
        {
            return (report, ex.Message);
        }
    }

    [Theory]
    [InlineData(8192)]
    [InlineData(12345)]
    [InlineData(20480)]
    [InlineData(65536)]
    public void ATruncatedMetadataFileIsReportedNotCrashedOn(long length)
    {
        MakePool();
        Truncate(MetadataFile, length);
        var (report, openFailure) = CheckAndOpen();
        Assert.NotNull(openFailure);
        Assert.False(report.Clean, $"check called clean a pool that does not open ({openFailure})");
        Assert.Contains(report.Errors, e => e.Contains(MetadataFile) && e.Contains($"{length} bytes"));
    }

    [Fact]
    public void ADataFileSmallerThanThePoolIsReported()
    {
        MakePool();
        Truncate(DataFile, 1 << 20);
        var (report, openFailure) = CheckAndOpen();
        Assert.NotNull(openFailure);
        Assert.False(report.Clean, $"check called clean a pool that does not open ({openFailure})");
        Assert.Contains(report.Errors, e => e.Contains(DataFile) && e.Contains($"{1 << 20} bytes"));
        Assert.Throws<StrataException>(() =>
        {
            using var data = FileBlockStore.Open(DataFile);
            using var metadata = FileBlockStore.Open(MetadataFile);
            ThinPool.Repair(data, metadata); // not what repair rebuilds
        });
    }

    /// <summary>A damaged last leaf of a tree of several levels is reported (check looked for the device's last key
    /// by reading that leaf again, unguarded, and threw).</summary>
    [Fact]
    public void ADamagedLastLeafOfADeepTreeIsReported()
    {
        var data = new MemoryBlockStore(1024L * Bs, "data");
        var metadata = new MemoryBlockStore(8 << 20, "metadata");
        using (var pool = ThinPool.Create(data, metadata, options: NoTimer))
        {
            pool.CreateDevice("a", 1000L * Bs);
            using var dev = pool.OpenDevice("a");
            for (long b = 0; b < 600; b++) dev.Write(b * Bs, new byte[] { 1 });
        }
        var buffer = new byte[4096];
        ulong last = PoolChecker.Check(metadata).Referenced.Where(b => { metadata.Read((long)b * 4096, buffer); return buffer[4] == 3; })
            .MaxBy(b => { metadata.Read((long)b * 4096, buffer); return BitConverter.ToUInt64(buffer, 32); });
        metadata.Read((long)last * 4096, buffer);
        buffer[200] ^= 1;
        metadata.Write((long)last * 4096, buffer);
        var report = PoolChecker.Check(data, metadata);
        Assert.Contains(report.Errors, e => e.Contains($"metadata block {last}") && e.Contains("checksum"));
    }

    /// <summary>A device table naming one device twice (checksums intact: as a faulty writer or a hand edit would
    /// leave it) is Corrupt to open, as check says, not an unhandled ArgumentException.</summary>
    [Fact]
    public void ADeviceTableNamingADeviceTwiceIsCorrupt()
    {
        var data = new MemoryBlockStore(64L * Bs, "data");
        var metadata = new MemoryBlockStore(1 << 20, "metadata");
        using (var pool = ThinPool.Create(data, metadata, options: NoTimer))
        {
            pool.CreateDevice("d1", Bs);
            pool.CreateDevice("d2", Bs);
        }
        var buffer = new byte[4096];
        ulong table = PoolChecker.Check(metadata).Referenced.Single(b => { metadata.Read((long)b * 4096, buffer); return buffer[4] == 4; });
        metadata.Read((long)table * 4096, buffer);
        int second = buffer.AsSpan(32).IndexOf("d2"u8) + 32;
        buffer[second + 1] = (byte)'1';
        Strata.Thin.Metadata.MetadataBlock.Seal(buffer);
        metadata.Write((long)table * 4096, buffer);
        Assert.Contains(PoolChecker.Check(data, metadata).Errors, e => e.Contains("d1"));
        var ex = Assert.Throws<StrataException>(() => ThinPool.Open(data, metadata, NoTimer).Dispose());
        Assert.Equal(ErrorKind.Corrupt, ex.Kind);
    }

    /// <summary>Random damage, seeded: a store cut at a random length, or random bytes of the metadata flipped.
    /// Whatever check says clean must open and read.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void CheckNeverCallsCleanAPoolThatDoesNotOpen(int seed)
    {
        var random = new Random(seed);
        MakePool();
        string dataCopy = _temp.Combine("data.good"), metadataCopy = _temp.Combine("metadata.good");
        File.Copy(DataFile, dataCopy);
        File.Copy(MetadataFile, metadataCopy);
        int refused = 0;
        for (int round = 0; round < 60; round++)
        {
            File.Copy(dataCopy, DataFile, overwrite: true);
            File.Copy(metadataCopy, MetadataFile, overwrite: true);
            string what;
            switch (random.Next(3))
            {
                case 0:
                    long cut = random.NextInt64(new FileInfo(MetadataFile).Length);
                    Truncate(MetadataFile, cut);
                    what = $"metadata cut to {cut}";
                    break;
                case 1:
                    long dataCut = random.NextInt64(new FileInfo(DataFile).Length);
                    Truncate(DataFile, dataCut);
                    what = $"data cut to {dataCut}";
                    break;
                default:
                    using (var f = new FileStream(MetadataFile, FileMode.Open, FileAccess.ReadWrite))
                    {
                        long at = random.NextInt64(64 * 4096);
                        f.Position = at;
                        int b = f.ReadByte();
                        f.Position = at;
                        f.WriteByte((byte)(b ^ (1 << random.Next(8))));
                        what = $"metadata byte {at} flipped";
                    }
                    break;
            }
            (CheckReport report, string? openFailure) result;
            try
            {
                result = CheckAndOpen();
            }
            catch (Exception ex) when (ex is not StrataException)
            {
                throw new Exception($"seed {seed} round {round} ({what}): {ex.GetType().Name}: {ex.Message}", ex);
            }
            if (result.openFailure is not null)
            {
                refused++;
                Assert.False(result.report.Clean, $"seed {seed} round {round} ({what}): check says clean, open says: {result.openFailure}");
            }
        }
        output.WriteLine($"seed {seed}: {refused} of 60 damaged pools did not open; check reported each");
    }
}
