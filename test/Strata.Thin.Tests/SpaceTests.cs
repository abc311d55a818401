using System.Diagnostics;
using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;
using Strata.Block;

namespace Strata.Thin.Tests;

/// <summary>Running out of space without hanging: a bounded wait for space, autoextend of the stores at the
/// threshold (never past their maximum), the low-water event, and real sparse files growing.</summary>
public sealed class SpaceTests(ITestOutputHelper output)
{
    const int Bs = (int)ThinPool.MinBlockSize;

    [Fact]
    public async Task AWriteWaitsForSpaceUpToItsTimeoutAndNoLonger()
    {
        (ThinPool, IBlockDevice) Full(TimeSpan timeout)
        {
            var options = new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100, NoSpaceTimeout = timeout };
            var pool = ThinPool.Create(new MemoryBlockStore(16L * Bs), new MemoryBlockStore(1 << 20), options: options);
            pool.CreateDevice("a", 16L * Bs);
            pool.CreateDevice("b", 16L * Bs);
            using (var a = pool.OpenDevice("a")) a.Write(0, new byte[16 * Bs]);
            return (pool, pool.OpenDevice("b"));
        }
        var (short_, b1) = Full(TimeSpan.FromMilliseconds(300));
        using (short_)
        using (b1)
        {
            var watch = Stopwatch.StartNew();
            var full = Assert.Throws<StrataException>(() => b1.Write(0, new byte[] { 1 }));
            watch.Stop();
            output.WriteLine($"gave up after {watch.Elapsed.TotalMilliseconds:0} ms");
            Assert.Equal(ErrorKind.NoSpace, full.Kind);
            Assert.True(watch.Elapsed.TotalMilliseconds >= 290, $"gave up after {watch.Elapsed.TotalMilliseconds} ms, before its timeout");
        }
        // a delete while a writer waits lets it through (a long timeout: a busy machine must not make it expire)
        var (pool, b) = Full(TimeSpan.FromSeconds(60));
        using (pool)
        using (b)
        {
            var writer = Task.Run(() => b.Write(0, new byte[] { 2 }));
            await Task.Delay(100);
            if (writer.IsCompleted) await writer; // surfaces what ended it
            Assert.False(writer.IsCompleted, "the write did not wait for space");
            pool.Status(); // the status answers while a write waits
            pool.DeleteDevice("a");
            await writer.WaitAsync(TimeSpan.FromSeconds(30)); // TimeoutException: the waiting write did not go through after the delete
            var one = new byte[1];
            b.Read(0, one);
            Assert.Equal(2, one[0]);
        }
    }

    [Fact]
    public void TheDataStoreGrowsAtTheThresholdUpToItsMaximumAndTheLowWaterEventFiresPerCrossing()
    {
        var data = new MemoryBlockStore(10L * Bs);
        var metadata = new MemoryBlockStore(1 << 20);
        var options = new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 80, AutoextendPercent = 20, MaxDataSize = 20L * Bs, LowWaterBlocks = 3 };
        using var pool = ThinPool.Create(data, metadata, options: options);
        var events = new List<PoolStatus>();
        pool.LowWater += s => { lock (events) events.Add(s); };
        pool.CreateDevice("a", 40L * Bs);
        using var dev = pool.OpenDevice("a");
        var sizes = new List<ulong>();
        for (int b = 0; b < 20; b++)
        {
            dev.Write((long)b * Bs, new byte[] { 1 });
            sizes.Add(pool.Status().DataBlocks);
        }
        output.WriteLine("data blocks after each write: " + string.Join(" ", sizes));
        Assert.Equal(10UL, sizes[0]);
        Assert.Equal(20UL, sizes[^1]); // grown in steps of 20%, never past the maximum
        Assert.True(sizes.Zip(sizes.Skip(1)).All(p => p.Second >= p.First));
        Assert.Contains(12UL, sizes);
        Assert.Equal(20L * Bs, data.Length);
        Assert.Equal(ErrorKind.NoSpace, Assert.Throws<StrataException>(() => dev.Write(20L * Bs, new byte[] { 1 })).Kind);
        pool.Commit();
        var report = PoolChecker.Check(metadata);
        Assert.True(report.Clean, string.Join("; ", report.Errors));
        // the event runs on the thread pool: give it time, however busy the machine
        for (int i = 0; i < 100 && events.Count == 0; i++) Thread.Sleep(50);
        Thread.Sleep(100);
        lock (events)
        {
            // once per crossing: each growth lifts the free blocks above the mark again, so a few, never one per write
            Assert.InRange(events.Count, 1, 6);
            Assert.All(events, e => Assert.True(e.DataBlocksFree < 3));
        }
        // the grown size is the pool's from now on
        pool.Dispose();
        using var reopened = ThinPool.Open(data, metadata, options with { AutoextendThreshold = 100 });
        Assert.Equal(20UL, reopened.Status().DataBlocks);
    }

    [Fact]
    public void TheMetadataStoreGrowsBeforeItFills()
    {
        var data = new MemoryBlockStore(8192L * Bs);
        var metadata = new MemoryBlockStore(16 * 4096);
        var options = new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 80, AutoextendPercent = 50 };
        using var pool = ThinPool.Create(data, metadata, options: options);
        pool.CreateDevice("a", 8000L * Bs);
        using var dev = pool.OpenDevice("a");
        for (long b = 0; b < 4000; b++) dev.Write(b * Bs, new byte[] { 1 }); // 16 metadata blocks would not hold this
        pool.Commit();
        Assert.True(pool.Status().MetadataBlocks > 16);
        Assert.False(pool.Status().NeedsCheck);
        Assert.True(PoolChecker.Check(metadata).Clean);
    }

    [Fact]
    public void APoolOnRealSparseFilesGrowsTheFileAndGivesSpaceBack()
    {
        using var temp = new TempRoot();
        var options = new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 50, AutoextendPercent = 100 };
        using var dir = PoolDirectory.Create(temp.Combine("pool"), 8L * Bs, 1 << 20, ThinPool.DefaultBlockSize, options: options);
        string dataFile = temp.Combine("pool", "data");
        dir.Pool.CreateDevice("a", 64L * Bs);
        using (var dev = dir.Pool.OpenDevice("a"))
        {
            dev.Write(0, new byte[6 * Bs].Select((_, i) => (byte)(i % 251 + 1)).ToArray());
            dev.Write(10L * Bs + 100, new byte[] { 7 }); // a partial write into a fresh block: one page, not 64 KiB
        }
        dir.Pool.Commit();
        Assert.True(new FileInfo(dataFile).Length > 8L * Bs, "the data file did not grow");
        long allocated = Posix.Lstat(dataFile).Blocks * 512;
        output.WriteLine($"data file {new FileInfo(dataFile).Length} bytes, {allocated} allocated");
        Assert.InRange(allocated, 6L * Bs + 4096, 6L * Bs + 64 * 1024);
        using (var dev = dir.Pool.OpenDevice("a")) dev.Discard(0, 6L * Bs);
        dir.Pool.Commit();
        Assert.True(Posix.Lstat(dataFile).Blocks * 512 <= 64 * 1024, "the discarded blocks' space was not given back");
    }
}
