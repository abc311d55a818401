using Strata.Native;
using Xunit.Abstractions;
using Strata.Block;

namespace Strata.Thin.Tests;

/// <summary>The pool's contract case by case: zero reads, partial writes, block-granular copy-on-write with
/// snapshots, deep trees, space given back on discard and delete, out-of-space and metadata-full behaviour,
/// and check finding damage.</summary>
public sealed class PoolTests(ITestOutputHelper output)
{
    const int Bs = (int)ThinPool.MinBlockSize;
    static readonly PoolOptions NoTimer = new() { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 };

    static (ThinPool Pool, MemoryBlockStore Data, MemoryBlockStore Metadata) NewPool(long dataBlocks = 1024, long metadataBytes = 8 << 20)
    {
        var data = new MemoryBlockStore(dataBlocks * Bs, "data");
        var metadata = new MemoryBlockStore(metadataBytes, "metadata");
        return (ThinPool.Create(data, metadata, options: NoTimer), data, metadata);
    }

    static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    static byte[] ReadAll(IBlockDevice dev, long offset, int length)
    {
        var buffer = new byte[length];
        dev.Read(offset, buffer);
        return buffer;
    }

    static void AssertClean(MemoryBlockStore metadata)
    {
        var report = PoolChecker.Check(metadata);
        Assert.True(report.Clean, string.Join("; ", report.Errors.Concat(report.Leaks).Take(5)));
    }

    [Fact]
    public void UnwrittenBytesReadAsZerosAndAPartialWriteZeroFillsItsBlock()
    {
        var (pool, data, metadata) = NewPool();
        using (pool)
        {
            pool.CreateDevice("a", 10L * Bs);
            using var dev = pool.OpenDevice("a");
            Assert.Equal(new byte[3 * Bs], ReadAll(dev, 0, 3 * Bs));
            var piece = Pattern(1000, 1);
            dev.Write(Bs + 100, piece);
            var block = ReadAll(dev, Bs, Bs);
            Assert.Equal(piece, block.AsSpan(100, 1000).ToArray());
            Assert.True(block.AsSpan(0, 100).IndexOfAnyExcept((byte)0) < 0);
            Assert.True(block.AsSpan(1100).IndexOfAnyExcept((byte)0) < 0);
            Assert.Equal([(Bs, (long)Bs)], dev.Allocated(0, 10L * Bs));
            Assert.Equal(1UL, pool.Devices().Single().Mapped);
            Assert.Throws<StrataException>(() => dev.Write(10L * Bs - 10, new byte[11]));
        }
        AssertClean(metadata);
    }

    [Fact]
    public void AWriteToABlockSharedWithASnapshotCopiesThatBlockOnly()
    {
        var (pool, data, metadata) = NewPool();
        using (pool)
        {
            pool.CreateDevice("origin", 64L * Bs);
            var first = Pattern(8 * Bs, 2);
            using (var dev = pool.OpenDevice("origin")) dev.Write(0, first);
            pool.Snapshot("origin", "snap");
            Assert.Equal(8UL, pool.Status().DataBlocksUsed); // a snapshot copies nothing
            var update = Pattern(32 * 1024, 3);
            using (var dev = pool.OpenDevice("origin")) dev.Write(3 * Bs + 4096, update);
            Assert.Equal(9UL, pool.Status().DataBlocksUsed); // one 64 KiB block copied for a 32 KiB write
            using (var snap = pool.OpenDevice("snap")) Assert.Equal(first, ReadAll(snap, 0, 8 * Bs));
            var expected = (byte[])first.Clone();
            update.CopyTo(expected, 3 * Bs + 4096);
            using (var dev = pool.OpenDevice("origin")) Assert.Equal(expected, ReadAll(dev, 0, 8 * Bs));
            var devices = pool.Devices().ToDictionary(d => d.Name);
            Assert.Equal((8UL, 1UL, 7UL), (devices["origin"].Mapped, devices["origin"].Exclusive, devices["origin"].Shared));
            Assert.Equal((8UL, 1UL, 7UL), (devices["snap"].Mapped, devices["snap"].Exclusive, devices["snap"].Shared));
            // and the other way: a write to the snapshot leaves the origin alone
            using (var snap = pool.OpenDevice("snap")) snap.Write(0, new byte[10]);
            using (var dev = pool.OpenDevice("origin")) Assert.Equal(expected, ReadAll(dev, 0, 8 * Bs));
            pool.Commit();
            AssertClean(metadata);
            pool.DeleteDevice("origin");
            Assert.Equal(8UL, pool.Status().DataBlocksUsed); // what the snapshot maps
        }
        AssertClean(metadata);
    }

    /// <summary>Thousands of mappings (trees of three levels), snapshots of snapshots, writes to every
    /// generation, discards of whole blocks: every block reads what was last written to it in that device.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void DeepTreesAndSnapshotChainsKeepEveryGenerationApart(int seed)
    {
        var random = new Random(seed);
        const long blocks = 70_000;
        var (pool, data, metadata) = NewPool(dataBlocks: 40_000, metadataBytes: 64 << 20);
        var model = new Dictionary<string, Dictionary<long, ulong>>();
        void Put(string dev, long vblock, ulong value)
        {
            using var d = pool.OpenDevice(dev);
            d.Write(vblock * Bs + (vblock * 7 % (Bs - 8)), BitConverter.GetBytes(value));
            model[dev][vblock] = value;
        }
        void Verify(string dev)
        {
            using var d = pool.OpenDevice(dev);
            var buffer = new byte[8];
            foreach (var (vblock, value) in model[dev])
            {
                d.Read(vblock * Bs + (vblock * 7 % (Bs - 8)), buffer);
                Assert.True(BitConverter.ToUInt64(buffer) == value, $"seed {seed}: {dev} block {vblock}");
            }
            var mapped = d.Allocated(0, d.Size).Sum(r => r.Length / Bs);
            Assert.Equal(model[dev].Count, mapped);
        }
        using (pool)
        {
            pool.CreateDevice("g0", blocks * Bs);
            model["g0"] = [];
            ulong next = 1;
            for (int i = 0; i < 6000; i++) Put("g0", random.NextInt64(blocks), next++);
            pool.Commit();
            AssertClean(metadata);
            for (int g = 1; g <= 4; g++)
            {
                string parent = "g" + (g - 1), name = "g" + g;
                pool.Snapshot(parent, name);
                model[name] = new Dictionary<long, ulong>(model[parent]);
                for (int i = 0; i < 1500; i++) Put(name, random.NextInt64(blocks), next++);
                for (int i = 0; i < 500; i++) Put(parent, random.NextInt64(blocks), next++);
                // discard some whole blocks of the new generation
                using (var d = pool.OpenDevice(name))
                    foreach (long vblock in model[name].Keys.OrderBy(_ => random.Next()).Take(300).ToList())
                    {
                        d.Discard(vblock * Bs, Bs);
                        model[name].Remove(vblock);
                    }
                pool.Commit();
                AssertClean(metadata);
            }
            foreach (var dev in model.Keys) Verify(dev);
            output.WriteLine($"{pool.Status()}; {string.Join(", ", pool.Devices().Select(d => $"{d.Name}: {d.Mapped} mapped, {d.Exclusive} exclusive"))}");
            // deleting the middle of the chain keeps the rest whole
            pool.DeleteDevice("g2");
            model.Remove("g2");
            pool.Commit();
            AssertClean(metadata);
        }
        using (pool = ThinPool.Open(data, metadata, NoTimer))
            foreach (var dev in model.Keys) Verify(dev);
    }

    [Fact]
    public void DiscardAndDeleteGiveTheSpaceBack()
    {
        var (pool, data, metadata) = NewPool();
        using (pool)
        {
            pool.CreateDevice("a", 100L * Bs);
            using (var dev = pool.OpenDevice("a")) dev.Write(0, Pattern(50 * Bs, 4));
            pool.Commit();
            Assert.Equal(50L * Bs, data.Allocated);
            using (var dev = pool.OpenDevice("a"))
            {
                dev.Discard(10L * Bs, 20L * Bs);
                dev.Discard(40L * Bs + 100, 1000); // part of a block: zeroed, not freed
                Assert.Equal(new byte[1000], ReadAll(dev, 40L * Bs + 100, 1000));
            }
            pool.Commit();
            Assert.Equal(30UL, pool.Status().DataBlocksUsed);
            Assert.Equal(30L * Bs, data.Allocated);
            // the freed blocks' space is given back after the commit, and then they are free, not held
            Assert.Equal(pool.Status().DataBlocks - 30, pool.Status().DataBlocksFree);
            pool.DeleteDevice("a");
            Assert.Equal(0UL, pool.Status().DataBlocksUsed);
            Assert.Equal(0L, data.Allocated);
            Assert.Equal(pool.Status().DataBlocks, pool.Status().DataBlocksFree);
        }
        AssertClean(metadata);
    }

    [Fact]
    public void AFullPoolFailsWritesAtOnceAndWorksAgainAfterADelete()
    {
        var (pool, data, metadata) = NewPool(dataBlocks: 16);
        using (pool)
        {
            pool.CreateDevice("a", 12L * Bs);
            pool.CreateDevice("b", 12L * Bs);
            using (var a = pool.OpenDevice("a")) a.Write(0, Pattern(12 * Bs, 5));
            using var b = pool.OpenDevice("b");
            b.Write(0, Pattern(4 * Bs, 6));
            var started = System.Diagnostics.Stopwatch.StartNew();
            var full = Assert.Throws<StrataException>(() => b.Write(4L * Bs, new byte[] { 1 }));
            started.Stop();
            output.WriteLine($"the failing write returned in {started.Elapsed.TotalMilliseconds:0.###} ms: {full.Message}");
            Assert.Equal(ErrorKind.NoSpace, full.Kind);
            // reads, the status and flushes go on
            Assert.Equal(Pattern(4 * Bs, 6), ReadAll(b, 0, 4 * Bs));
            Assert.Equal(16UL, pool.Status().DataBlocksUsed);
            b.Flush();
            pool.DeleteDevice("a");
            b.Write(4L * Bs, new byte[] { 1 });
            Assert.Equal(new byte[] { 1 }, ReadAll(b, 4L * Bs, 1));
        }
        AssertClean(metadata);
    }

    [Fact]
    public void FullMetadataMakesThePoolReadOnlyAtItsLastCommitWithNeedsCheck()
    {
        // 16 metadata blocks: two superblocks and room for a handful of nodes
        var (pool, data, metadata) = NewPool(dataBlocks: 4096, metadataBytes: 16 * 4096);
        byte[] committed;
        using (pool)
        {
            pool.CreateDevice("a", 4000L * Bs);
            using var dev = pool.OpenDevice("a");
            dev.Write(0, Pattern(Bs, 7));
            pool.Commit();
            committed = ReadAll(dev, 0, Bs);
            var ex = Assert.Throws<StrataException>(() =>
            {
                for (long i = 1; i < 4000; i++) dev.Write(i * Bs, new byte[] { 9 }); // many leaves, many count blocks
                pool.Commit();
            });
            Assert.Equal(ErrorKind.ReadOnly, ex.Kind);
            Assert.Contains("metadata", ex.Message);
            Assert.True(pool.Status().NeedsCheck);
            Assert.Equal(ErrorKind.ReadOnly, Assert.Throws<StrataException>(() => dev.Write(0, new byte[1])).Kind);
            // back at the last commit: what it mapped reads as before, what came after is unmapped again
            Assert.Equal(committed, ReadAll(dev, 0, Bs));
            Assert.Equal(new byte[Bs], ReadAll(dev, Bs, Bs));
            Assert.Equal(1UL, pool.Devices().Single().Mapped);
        }
        AssertClean(metadata);
        using (pool = ThinPool.Open(data, metadata, NoTimer))
        {
            Assert.True(pool.Status().NeedsCheck);
            Assert.Equal(ErrorKind.ReadOnly, Assert.Throws<StrataException>(() => pool.CreateDevice("b", Bs)).Kind);
        }
    }

    [Fact]
    public void CheckFindsADamagedBlockAndOpenRefusesToUseIt()
    {
        var (pool, data, metadata) = NewPool();
        using (pool)
        {
            pool.CreateDevice("a", 10L * Bs);
            using (var dev = pool.OpenDevice("a")) dev.Write(0, Pattern(3 * Bs, 8));
        }
        AssertClean(metadata);
        // flip one byte in each block the committed transaction uses
        var buffer = new byte[4096];
        var used = PoolChecker.Check(metadata).Referenced;
        Assert.NotEmpty(used);
        foreach (long b in used.Select(u => (long)u))
        {
            metadata.Read(b * 4096, buffer);
            var damaged = (byte[])buffer.Clone();
            damaged[100] ^= 0x40;
            metadata.Write(b * 4096, damaged);
            var report = PoolChecker.Check(metadata);
            Assert.False(report.Clean, $"a flipped byte in metadata block {b} went unnoticed");
            Assert.Contains(report.Errors, e => e.Contains("checksum"));
            metadata.Write(b * 4096, buffer);
        }
        AssertClean(metadata);
        // a pool whose tree node is damaged opens (the walk at open reads internal nodes) but refuses the read
        ulong node = PoolChecker.Check(metadata).Referenced.First(b => { metadata.Read((long)b * 4096, buffer); return buffer[4] == 3; });
        metadata.Read((long)node * 4096, buffer);
        buffer[200] ^= 1;
        metadata.Write((long)node * 4096, buffer);
        var ex = Assert.ThrowsAny<StrataException>(() =>
        {
            using var reopened = ThinPool.Open(data, metadata, NoTimer);
            using var dev = reopened.OpenDevice("a");
            dev.Read(0, new byte[10]);
        });
        Assert.Equal(ErrorKind.Corrupt, ex.Kind);
        Assert.Contains("checksum", ex.Message);
    }

    [Fact]
    public void RepairRebuildsWrongCountsAndClearsNeedsCheck()
    {
        var (pool, data, metadata) = NewPool(dataBlocks: 4096, metadataBytes: 16 * 4096);
        using (pool)
        {
            pool.CreateDevice("a", 4000L * Bs);
            using var dev = pool.OpenDevice("a");
            dev.Write(0, Pattern(3 * Bs, 9));
            pool.Commit();
            Assert.Throws<StrataException>(() =>
            {
                for (long i = 3; i < 4000; i++) dev.Write(i * Bs, new byte[] { 9 });
                pool.Commit();
            });
            Assert.True(pool.Status().NeedsCheck);
        }
        // damage the counts: one mapped block counted twice, one unmapped block counted once (a leak)
        var buffer = new byte[4096];
        ulong counts = PoolChecker.Check(metadata).Referenced.First(b => { metadata.Read((long)b * 4096, buffer); return buffer[4] == 5; });
        metadata.Read((long)counts * 4096, buffer);
        int mapped = Enumerable.Range(0, 1016).First(i => BitConverter.ToUInt32(buffer, 32 + i * 4) == 1);
        int unmapped = Enumerable.Range(0, 1016).First(i => BitConverter.ToUInt32(buffer, 32 + i * 4) == 0);
        BitConverter.TryWriteBytes(buffer.AsSpan(32 + mapped * 4), 2u);
        BitConverter.TryWriteBytes(buffer.AsSpan(32 + unmapped * 4), 1u);
        Strata.Thin.Metadata.MetadataBlock.Seal(buffer);
        metadata.Write((long)counts * 4096, buffer);
        var damaged = PoolChecker.Check(metadata);
        Assert.Single(damaged.Errors);
        Assert.Single(damaged.Leaks);

        var repaired = ThinPool.Repair(data, metadata);
        Assert.True(repaired.Clean, string.Join("; ", repaired.Errors.Concat(repaired.Leaks)));
        using (pool = ThinPool.Open(data, metadata, NoTimer))
        {
            Assert.False(pool.Status().NeedsCheck);
            using var dev = pool.OpenDevice("a");
            Assert.Equal(Pattern(3 * Bs, 9), ReadAll(dev, 0, 3 * Bs));
            dev.Write(5L * Bs, new byte[] { 1 }); // writable again
        }
        AssertClean(metadata);
    }

    /// <summary>Found in review: after a snapshot, breaking the sharing of a block from both sides within one
    /// transaction brought its count back to 1, and the next write went in place into a block the last commit
    /// still mapped from the snapshot. Opening the stores as a crash would leave them (every data write on disk,
    /// the metadata as last committed) must show the snapshot as it was.</summary>
    [Fact]
    public void AnUncommittedWriteNeverChangesWhatTheLastCommitMaps()
    {
        var (pool, data, metadata) = NewPool();
        using (pool)
        {
            pool.CreateDevice("a", 8L * Bs);
            var original = Pattern(2 * Bs, 10);
            using (var a = pool.OpenDevice("a")) a.Write(0, original);
            pool.Snapshot("a", "s"); // committed: a and s share one leaf mapping blocks 0 and 1
            using (var a = pool.OpenDevice("a")) a.Write(Bs, new byte[] { 1 }); // a's leaf copied: block 0's count 2
            using (var s = pool.OpenDevice("s")) s.Write(0, new byte[] { 2 }); // s copies block 0: its count back to 1
            using (var a = pool.OpenDevice("a")) a.Write(0, new byte[] { 3 }); // must copy too: the last commit shares it
            using var crashed = ThinPool.Open(data, metadata, NoTimer);
            using (var s = crashed.OpenDevice("s")) Assert.Equal(original, ReadAll(s, 0, 2 * Bs));
            using (var a = crashed.OpenDevice("a")) Assert.Equal(original, ReadAll(a, 0, 2 * Bs));
        }
    }

    [Fact]
    public void AFlushAfterTheMetadataFilledUpSaysTheWritesWereLost()
    {
        var (pool, data, metadata) = NewPool(dataBlocks: 4096, metadataBytes: 16 * 4096);
        using (pool)
        {
            pool.CreateDevice("a", 4000L * Bs);
            using var dev = pool.OpenDevice("a");
            try
            {
                for (long i = 0; i < 4000; i++) dev.Write(i * Bs, new byte[] { 9 });
            }
            catch (StrataException)
            {
                // the metadata filled up during the writes, or it will at the flush
            }
            var flush = Assert.Throws<StrataException>(dev.Flush);
            Assert.Equal(ErrorKind.ReadOnly, flush.Kind);
            Assert.Equal(ErrorKind.ReadOnly, Assert.Throws<StrataException>(dev.Flush).Kind); // and it keeps saying so
        }
    }

    /// <summary>A failed flush of the data is never forgotten: the kernel reports a lost write-back once, so a later
    /// flush that "succeeds" would call writes durable that are gone. Every flush after it fails, also once the
    /// failure has made the pool read-only (a read-only pool still flushes writes in place: they must not pass).</summary>
    [Fact]
    public void AFailedDataFlushFailsEveryLaterFlush()
    {
        var data = new CrashingBlockStore(64L * Bs, "data");
        using var pool = ThinPool.Create(data, new MemoryBlockStore(8 << 20, "metadata"), options: NoTimer);
        pool.CreateDevice("a", 8L * Bs);
        using var dev = pool.OpenDevice("a");
        dev.Write(0, Pattern(Bs, 1));
        dev.Flush();
        dev.Write(4096, Pattern(4096, 2)); // in place: no metadata changes, only a flush of the data makes it durable
        data.FailFlushesFrom = data.Flushes + 1;
        Assert.Equal(ErrorKind.Io, Assert.Throws<StrataException>(dev.Flush).Kind);
        data.FailFlushesFrom = null; // the disk takes flushes again
        for (int i = 0; i < 3; i++)
        {
            try
            {
                dev.Write(8192, Pattern(4096, 3 + i));
            }
            catch (StrataException ex) when (ex.Kind == ErrorKind.ReadOnly)
            {
                // the pool went read-only on the failure: fine, as long as no flush passes
            }
            Assert.Throws<StrataException>(dev.Flush);
        }
    }

    [Fact]
    public void TheMetadataGrowsWhenACopyNeedsItWithoutANewDataBlock()
    {
        var data = new MemoryBlockStore(8192L * Bs);
        var metadata = new MemoryBlockStore(64 * 4096);
        var options = new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 95, AutoextendPercent = 50 };
        using var pool = ThinPool.Create(data, metadata, options: options);
        pool.CreateDevice("a", 8000L * Bs);
        using (var dev = pool.OpenDevice("a"))
            for (long i = 0; i < 8000; i += 2) dev.Write(i * Bs, new byte[1]);
        pool.Snapshot("a", "s");
        ulong before = pool.Status().MetadataBlocks;
        // discards allocate no data block, but copy every shared leaf they touch
        using (var dev = pool.OpenDevice("a")) dev.Discard(0, 8000L * Bs);
        pool.Commit();
        Assert.False(pool.Status().NeedsCheck);
        Assert.True(PoolChecker.Check(metadata).Clean);
        output.WriteLine($"metadata blocks {before} -> {pool.Status().MetadataBlocks}");
    }

    [Fact]
    public void DeviceNamesAndSizesAreChecked()
    {
        var (pool, _, _) = NewPool();
        using (pool)
        {
            Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => pool.CreateDevice("../x", Bs)).Kind);
            Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => pool.CreateDevice("a", 0)).Kind);
            pool.CreateDevice("a", Bs);
            Assert.Equal(ErrorKind.AlreadyExists, Assert.Throws<StrataException>(() => pool.CreateDevice("a", Bs)).Kind);
            Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => pool.Snapshot("nope", "b")).Kind);
            Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => pool.ResizeDevice("a", Bs - 1)).Kind);
            using (pool.OpenDevice("a"))
                Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => pool.DeleteDevice("a")).Kind);
            pool.DeleteDevice("a");
            Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => ThinPool.Create(new MemoryBlockStore(1 << 30), new MemoryBlockStore(1 << 20), 96 * 1024)).Kind);
        }
    }
}
