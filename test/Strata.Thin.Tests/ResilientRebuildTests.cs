using Strata.Block;
using Strata.Thin.Space;

namespace Strata.Thin.Tests;

/// <summary>
/// Rebuild and the disk changes that start one: a failed disk's columns rebuilt into free space of the others (no
/// spare), a disk replaced, removed (emptied while it serves) or added (the pool grows); the pool healthy at the end, its
/// data whole, and a crash in the middle of a rebuild resumed at the next open.
/// </summary>
public sealed class ResilientRebuildTests
{
    const uint Bs = ThinPool.MinBlockSize;

    static (ThinPool Pool, ResilientPoolTests.Rig Rig, ThinDevice Dev, byte[] Expected) Filled(Resiliency r, params long[] sizes) => Filled(r, true, sizes);

    static (ThinPool Pool, ResilientPoolTests.Rig Rig, ThinDevice Dev, byte[] Expected) Filled(Resiliency r, bool checksums, params long[] sizes)
    {
        var stores = sizes.Select((s, i) => (IBlockStore)new FaultyBlockStore(s, $"disk{i}")).ToArray();
        var (pool, rig) = ResilientPoolTests.Make(r, stores, checksums);
        pool.CreateDevice("d", 16 << 20);
        var dev = pool.OpenDevice("d");
        var expected = new byte[16 << 20];
        ResilientPoolTests.WriteRandomly(dev, expected, new Random((int)r), 150);
        pool.Commit();
        return (pool, rig, dev, expected);
    }

    public static TheoryData<Resiliency> Redundant => new(Enum.GetValues<Resiliency>().Where(r => r != Resiliency.Simple));

    [Theory]
    [MemberData(nameof(Redundant))]
    public void AFailedDiskIsRebuiltIntoTheOthersFreeSpace(Resiliency r)
    {
        var (pool, rig, dev, expected) = Filled(r, 64 << 20, 64 << 20, 64 << 20, 64 << 20, 64 << 20);
        rig.Data.FailDisk("disk1");
        var failed = rig.Data.Info();
        Assert.Equal("failed", failed.Disks[1].State);
        // degraded until the rebuild ends, which for these few slabs can be before the look (then healthy, rebuilt)
        if (failed.Health == "healthy") Assert.Equal(0, failed.Disks[1].SlabsUsed);
        else Assert.Contains(failed.Health, new[] { "degraded", "rebuilding" });
        ResilientPoolTests.AssertReads(dev, expected); // degraded: from what is left
        rig.Data.WaitForRebuild();
        Assert.Null(rig.Data.RebuildProgress.Stuck);
        Assert.Equal("healthy", rig.Data.Info().Health);
        Assert.Equal(0, rig.Data.Info().Disks[1].SlabsUsed);
        pool.Commit();
        ResilientPoolTests.AssertReads(dev, expected);
        // the rebuilt pool survives a second failure where its resiliency allows one more
        if (SlabShape.For(r, 5, Bs).Tolerates == 1)
        {
            rig.Data.FailDisk("disk3");
            ResilientPoolTests.AssertReads(dev, expected);
        }
        dev.Dispose();
        pool.Dispose();
        using var again = rig.Reopen();
        using var dev2 = again.OpenDevice("d");
        ResilientPoolTests.AssertReads(dev2, expected);
        Assert.True(again.ReadCommitted(m => PoolChecker.Check(rig.Data, m)).Clean);
    }

    [Theory]
    [InlineData(Resiliency.Mirror, false)]
    [InlineData(Resiliency.Parity, true)]
    public void AReplacedDiskTakesTheOldOnesColumns(Resiliency r, bool dead)
    {
        var (pool, rig, dev, expected) = Filled(r, 64 << 20, 64 << 20, 64 << 20);
        if (dead)
        {
            // parity on three disks spans all three: a dead one's columns have nowhere to go until a disk comes
            rig.Data.FailDisk("disk0");
            rig.Data.WaitForRebuild();
            Assert.Contains("no disk in use has a free slab", rig.Data.RebuildProgress.Stuck);
            Assert.Equal("degraded", rig.Data.Info().Health);
            ResilientPoolTests.AssertReads(dev, expected);
        }
        // else a disk in use, replaced while it serves: its columns move to the new disk, the emptiest
        var fresh = new FaultyBlockStore(64 << 20, "disk3");
        pool.ReadCommitted(m =>
        {
            rig.Data.ReplaceDisk("disk0", DiskSet.Join(rig.Data, rig.Metadata, rig.Id, "disk3", fresh));
            return 0;
        });
        rig.Data.WaitForRebuild();
        var info = rig.Data.Info();
        Assert.Null(rig.Data.RebuildProgress.Stuck);
        Assert.Equal("healthy", info.Health);
        Assert.Equal("retired", info.Disks[0].State);
        Assert.True(info.Disks[3].SlabsUsed > 0);
        ResilientPoolTests.AssertReads(dev, expected);
        pool.Commit();
        dev.Dispose();
        pool.Dispose();
        var stores = rig.Stores.Append(fresh).ToArray();
        var (data, meta) = DiskSet.Open(stores.Select((s, i) => ($"disk{i}", i < 3 ? rig.Data.Disks[i].Id : info.Disks.Count > 3 ? rig.Data.Disks[3].Id : Guid.Empty, (IBlockStore?)s)).ToList(), rig.Id);
        using var again = ThinPool.Open(data, meta, new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 });
        using var dev2 = again.OpenDevice("d");
        ResilientPoolTests.AssertReads(dev2, expected);
        Assert.Equal(DiskState.Retired, data.Disks[0].State);
    }

    [Fact]
    public void ARemovedDiskIsEmptiedWhileItServesThenRetired()
    {
        var (pool, rig, dev, expected) = Filled(Resiliency.Mirror, 64 << 20, 64 << 20, 64 << 20);
        var busy = rig.Data.Info().Disks.OrderByDescending(d => d.SlabsUsed).First();
        Assert.True(busy.SlabsUsed > 0);
        rig.Data.RemoveDisk(busy.Path);
        ResilientPoolTests.AssertReads(dev, expected); // it serves while it empties
        rig.Data.WaitForRebuild();
        Assert.Null(rig.Data.RebuildProgress.Stuck);
        Assert.Equal("retired", rig.Data.Info().Disks[busy.Slot].State);
        Assert.Equal(0, rig.Data.Info().Disks[busy.Slot].SlabsUsed);
        Assert.Equal("healthy", rig.Data.Info().Health);
        ResilientPoolTests.AssertReads(dev, expected);
        pool.Commit();
        // two disks left: a mirror cannot lose another
        var other = rig.Data.Info().Disks.First(d => d.State == "healthy");
        var ex = Assert.Throws<StrataException>(() => rig.Data.RemoveDisk(other.Path));
        Assert.Contains("needs 2 disks in use, 1 would be left", ex.Message);
        dev.Dispose();
        pool.Dispose();
        using var again = rig.Reopen();
        using var dev2 = again.OpenDevice("d");
        ResilientPoolTests.AssertReads(dev2, expected);
    }

    [Fact]
    public void AnAddedDiskGrowsThePool()
    {
        var (pool, rig, dev, expected) = Filled(Resiliency.Mirror, 64 << 20, 64 << 20);
        ulong before = pool.Status().DataBlocks;
        pool.ReadCommitted(m =>
        {
            rig.Data.AddDisk(DiskSet.Join(rig.Data, rig.Metadata, rig.Id, "disk2", new FaultyBlockStore(128 << 20, "disk2")), grow: true);
            return 0;
        });
        pool.Commit();
        Assert.True(pool.Status().DataBlocks > before, $"{pool.Status().DataBlocks} blocks after the add, {before} before");
        ResilientPoolTests.AssertReads(dev, expected);
        // the new space takes writes
        pool.ResizeDevice("d", 100 << 20);
        var more = new byte[60 << 20];
        new Random(5).NextBytes(more);
        dev.Write(16 << 20, more);
        pool.Commit();
        var got = new byte[more.Length];
        dev.Read(16 << 20, got);
        Assert.Equal(more, got);
        Assert.True(pool.ReadCommitted(m => PoolChecker.Check(rig.Data, m)).Clean);
    }

    [Fact]
    public void ADiskMissingAtOpenStaysOutOfUseWhenItComesBack()
    {
        // no checksums: a stale copy read as current would be wrong bytes, with nothing to tell
        var (pool, rig, dev, expected) = Filled(Resiliency.Mirror, false, 64 << 20, 64 << 20);
        dev.Dispose();
        pool.Dispose();
        var options = new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 };
        var ids = rig.Data.Disks.Select(d => d.Id).ToArray();
        var (data, meta) = DiskSet.Open([("disk0", ids[0], rig.Stores[0]), ("disk1", ids[1], null)], rig.Id);
        using (var degraded = ThinPool.Open(data, meta, options))
        {
            Assert.Contains(data.Info().Health, new[] { "degraded", "rebuilding" });
            Assert.True(((IPoolData)data).Dirty, "the open found a disk missing that the metadata has in use: the next commit says so");
            degraded.Commit();
        }
        (data, meta) = DiskSet.Open([("disk0", ids[0], rig.Stores[0]), ("disk1", ids[1], null)], rig.Id);
        using (var degraded = ThinPool.Open(data, meta, options))
        {
            Assert.False(((IPoolData)data).Dirty, "recorded by the last commit");
            using var d = degraded.OpenDevice("d");
            ResilientPoolTests.WriteRandomly(d, expected, new Random(11), 80); // disk1 misses all of it
            degraded.Commit();
        }
        (data, meta) = DiskSet.Open([("disk0", ids[0], rig.Stores[0]), ("disk1", ids[1], rig.Stores[1])], rig.Id);
        using var back = ThinPool.Open(data, meta, options);
        Assert.False(data.Disks[1].InUse, "a disk that was missing is not taken back as current");
        using var dev2 = back.OpenDevice("d");
        ResilientPoolTests.AssertReads(dev2, expected);
    }

    [Fact]
    public void ABlockWrittenWhileItsColumnMovesIsWholeAfterTheSwap()
    {
        // the new place holds junk (a disk reused): a partial write into a fresh block must not trust it to be a hole
        var (pool, rig, dev, expected) = Filled(Resiliency.Mirror, false, 64 << 20, 64 << 20, 64 << 20);
        foreach (var s in rig.Stores)
        {
            var disk = rig.Data.Disks[Array.IndexOf(rig.Stores, s)];
            var junk = new byte[disk.Slabs * (4L << 20) - (8L << 20)];
            new Random(12).NextBytes(junk);
            s.Write(disk.DataStart + (8L << 20), junk); // every slab past the first two: free space, not a hole
        }
        rig.Data.FailDisk("disk0");
        for (int i = 0; i < 40; i++)
        {
            var piece = new byte[512];
            new Random(i).NextBytes(piece);
            long at = (i * 7L % 256) * 65536 + 1024;
            dev.Write(at, piece);
            piece.CopyTo(expected, at);
        }
        rig.Data.WaitForRebuild();
        pool.Commit();
        rig.Data.FailDisk(rig.Data.Info().Disks.First(d => d.State == "healthy" && d.SlabsUsed > 0).Path);
        ResilientPoolTests.AssertReads(dev, expected); // from the rebuilt copies alone
    }

    [Fact]
    public void ARebuildCutShortByACrashResumesAtTheNextOpen()
    {
        var (pool, rig, dev, expected) = Filled(Resiliency.Mirror, 64 << 20, 64 << 20, 64 << 20, 64 << 20);
        rig.Data.FailDisk("disk0");
        pool.Commit(); // the failure is recorded
        Thread.Sleep(20); // some of the rebuild, maybe
        pool.Commit();
        var crashed = rig.Stores.Select(s => (IBlockStore)((FaultyBlockStore)s).Crash(new Random(3))).ToArray();
        var (data, meta) = DiskSet.Open(crashed.Select((s, i) => ($"disk{i}", rig.Data.Disks[i].Id, (IBlockStore?)s)).ToList(), rig.Id);
        using var again = ThinPool.Open(data, meta, new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 });
        Assert.Equal(DiskState.Failed, data.Disks[0].State); // recorded: its copies stay out of use
        data.WaitForRebuild();
        Assert.Equal("healthy", data.Info().Health);
        using var dev2 = again.OpenDevice("d");
        ResilientPoolTests.AssertReads(dev2, expected);
        pool.Dispose();
    }
}
