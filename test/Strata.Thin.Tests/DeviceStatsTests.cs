using System.Diagnostics;
using Strata.Native;

namespace Strata.Thin.Tests;

/// <summary>The pool's IO statistics (<see cref="DeviceCounters"/>, <see cref="ThinPool.Stats"/>): every request kind
/// counted with its bytes, copy-on-write and allocation as the write path did them, failures for want of space, one set
/// of counters per device across its opens, exact under concurrent IO, gone with the device.</summary>
public sealed class DeviceStatsTests
{
    const int Bs = (int)ThinPool.MinBlockSize;
    static readonly PoolOptions NoTimer = new() { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100, NoSpaceTimeout = TimeSpan.Zero };

    static ThinPool NewPool(long dataBlocks = 1024) =>
        ThinPool.Create(new MemoryBlockStore(dataBlocks * Bs, "data"), new MemoryBlockStore(8 << 20, "metadata"), options: NoTimer);

    static DeviceStats Of(ThinPool pool, string name) => pool.Stats([name]).Devices.Single();

    /// <summary>The busy time's unit (2^20 Stopwatch ticks) in ns, and a little more.</summary>
    static readonly long BusyUnit = (long)((1L << 20) * 1e9 / Stopwatch.Frequency) + 1;

    [Fact]
    public void BusyTimeIsTheTimeARequestWasInFlightAndShowsWhileItIs()
    {
        var counters = new DeviceCounters();
        var outside = Stopwatch.StartNew();
        long start = counters.Start();
        var inside = Stopwatch.StartNew();
        Thread.Sleep(50);
        var during = counters.Read("d", 1);
        Assert.Equal(1L, during.InFlight);
        Assert.InRange(during.BusyNs, (long)inside.Elapsed.TotalNanoseconds - 2 * BusyUnit, long.MaxValue); // up to now, while in flight
        counters.EndRead(start, 4096);
        long elapsed = (long)outside.Elapsed.TotalNanoseconds;
        Thread.Sleep(20); // idle: not busy
        var after = counters.Read("d", 1);
        Assert.Equal((0L, 1L, 4096L), (after.InFlight, after.Reads, after.ReadBytes));
        Assert.InRange(after.BusyNs, 50_000_000 - 2 * BusyUnit, elapsed + BusyUnit);
        Assert.InRange(after.ReadNs, 50_000_000, elapsed);
    }

    [Fact]
    public void EveryRequestKindCountsWithItsBytesAndTime()
    {
        using var pool = NewPool();
        pool.CreateDevice("a", 64L * Bs);
        var stopwatch = Stopwatch.StartNew();
        using (var dev = pool.OpenDevice("a"))
        {
            dev.Write(0, new byte[4096]);             // a partial block: one fresh block
            dev.Write(4L * Bs, new byte[3 * Bs]);     // a run of three fresh blocks
            dev.Write(100, new byte[10]);             // in place
            var buffer = new byte[2 * Bs];
            dev.Read(0, buffer);
            dev.Read(10L * Bs, buffer.AsSpan(0, 512)); // a hole reads too
            dev.Flush();
            dev.Discard(4L * Bs, Bs);
            dev.WriteZeroes(20L * Bs, 100);
        }
        long elapsed = (long)stopwatch.Elapsed.TotalNanoseconds;
        var s = Of(pool, "a");
        Assert.Equal(("a", 3L, 4096L + 3 * Bs + 10), (s.Name, s.Writes, s.WriteBytes));
        Assert.Equal((2L, 2L * Bs + 512), (s.Reads, s.ReadBytes));
        Assert.Equal((1L, 2L, (long)Bs + 100), (s.Flushes, s.Discards, s.DiscardBytes));
        Assert.Equal((4L, 0L, 0L, 0L), (s.AllocatedBlocks, s.CowBlocks, s.NoSpaceErrors, s.InFlight));
        Assert.All([s.ReadNs, s.WriteNs, s.FlushNs, s.DiscardNs], ns => Assert.InRange(ns, 1, elapsed));
        Assert.InRange(s.BusyNs, 0, elapsed + BusyUnit); // counted in units of about a millisecond, as the kernel's io_ticks
    }

    [Fact]
    public void WritesToBlocksASnapshotSharesCountAsCopiesOnWrite()
    {
        using var pool = NewPool();
        pool.CreateDevice("origin", 64L * Bs);
        using (var dev = pool.OpenDevice("origin")) dev.Write(0, new byte[8 * Bs]);
        pool.Snapshot("origin", "snap");
        using (var snap = pool.OpenDevice("snap"))
        {
            snap.Write(10, new byte[100]);           // one shared block, partly: copied
            snap.Write(2L * Bs, new byte[4 * Bs]);   // four shared blocks, whole (one run)
            snap.Write(7L * Bs, new byte[Bs]);       // one shared block, whole
            snap.Write(20L * Bs, new byte[Bs]);      // unmapped: allocated, not a copy
            snap.Write(20, new byte[100]);           // the snapshot's own block now: in place
        }
        var s = Of(pool, "snap");
        Assert.Equal((6L, 7L, 5L), (s.CowBlocks, s.AllocatedBlocks, s.Writes));
        Assert.Equal((0L, 8L), (Of(pool, "origin").CowBlocks, Of(pool, "origin").AllocatedBlocks));
    }

    [Fact]
    public void AWriteThatFindsNoSpaceCountsAsANoSpaceFailureAndNotAsAWrite()
    {
        using var pool = NewPool(dataBlocks: 4);
        pool.CreateDevice("a", 64L * Bs);
        using var dev = pool.OpenDevice("a");
        dev.Write(0, new byte[4 * Bs]);
        var ex = Assert.Throws<StrataException>(() => dev.Write(10L * Bs, new byte[Bs]));
        Assert.Equal(ErrorKind.NoSpace, ex.Kind);
        var s = Of(pool, "a");
        Assert.Equal((1L, (long)4 * Bs, 1L, 0L), (s.Writes, s.WriteBytes, s.NoSpaceErrors, s.InFlight));
    }

    [Fact]
    public void OpensOfOneDeviceShareItsCountersAndADeletedDeviceTakesThemAlong()
    {
        using var pool = NewPool();
        pool.CreateDevice("a", 16L * Bs);
        pool.CreateDevice("never", 16L * Bs);
        using (var one = pool.OpenDevice("a"))
        using (var two = pool.OpenDevice("a"))
        {
            one.Write(0, new byte[512]);
            two.Write(512, new byte[512]);
        }
        Assert.Equal(2L, Of(pool, "a").Writes);
        Assert.Equal(Of(pool, "never") with { }, new DeviceStats("never", Of(pool, "never").Id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
        Assert.Equal(["a", "never"], pool.Stats().Devices.Select(d => d.Name));
        pool.DeleteDevice("a");
        pool.CreateDevice("a", 16L * Bs);
        Assert.Equal(0L, Of(pool, "a").Writes);
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => pool.Stats(["nosuch"])).Kind);
    }

    [Fact]
    public void CommitsAndSpaceAreThePools()
    {
        using var pool = NewPool();
        var before = pool.Stats();
        pool.CreateDevice("a", 16L * Bs); // a device change commits
        using (var dev = pool.OpenDevice("a"))
        {
            dev.Write(0, new byte[2 * Bs]);
            dev.Flush();
            dev.Flush(); // nothing changed: no commit
        }
        var after = pool.Stats();
        Assert.Equal(before.Commits + 2, after.Commits);
        Assert.True(after.CommitNs > before.CommitNs);
        Assert.Equal((before.DataBytesUsed + 2 * Bs, 1024L * Bs, (uint)Bs), (after.DataBytesUsed, after.DataBytes, after.BlockSize));
        Assert.True(after.MetadataBytesUsed > 0 && after.MetadataBytes == 8 << 20);
        Assert.True(after.Since <= after.At);
    }

    [Fact]
    public void CountsAreExactUnderConcurrentIo()
    {
        using var pool = NewPool();
        pool.CreateDevice("a", 256L * Bs);
        const int threads = 8, each = 500;
        Parallel.For(0, threads, t =>
        {
            using var dev = pool.OpenDevice("a");
            var buffer = new byte[4096];
            for (int i = 0; i < each; i++)
            {
                long at = ((long)t * 32 + i % 32) * Bs + i % 8 * 4096;
                dev.Write(at, buffer);
                dev.Read(at, buffer);
            }
        });
        var s = Of(pool, "a");
        Assert.Equal((8L * each, 8L * each * 4096, 8L * each, 8L * each * 4096), (s.Writes, s.WriteBytes, s.Reads, s.ReadBytes));
        Assert.Equal((256L, 0L), (s.AllocatedBlocks, s.InFlight));
    }
}
