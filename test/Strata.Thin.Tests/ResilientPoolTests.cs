using Strata.Block;
using Strata.Thin.Space;

namespace Strata.Thin.Tests;

/// <summary>
/// A pool over several in-memory disks, each resiliency: capacity by Storage Spaces' rule, data that survives a reopen,
/// bit rot repaired from the other copies or the parity (and an IO error, never wrong bytes, where nothing is left to
/// repair from), and a disk that goes away.
/// </summary>
public sealed class ResilientPoolTests
{
    const uint Bs = ThinPool.MinBlockSize;
    const long Slab = 4 << 20, Meta = 4 << 20;
    static readonly PoolOptions Options = new() { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 };

    internal sealed record Rig(IBlockStore[] Stores, ResilientStore Data, MetadataMirror Metadata, Guid Id)
    {
        public ThinPool Reopen()
        {
            var (data, meta) = DiskSet.Open(Stores.Select((s, i) => ($"disk{i}", Data.Disks[i].Id, (IBlockStore?)s)).ToList(), Id);
            return ThinPool.Open(data, meta, Options);
        }
    }

    internal static (ThinPool Pool, Rig Rig) Make(Resiliency resiliency, IBlockStore[] stores, bool checksums = true)
    {
        var (data, meta, id) = DiskSet.Create(stores.Select((s, i) => ($"disk{i}", s)).ToList(), Bs, resiliency, Slab, Meta, checksums);
        return (ThinPool.Create(data, meta, Bs, Options), new Rig(stores, data, meta, id));
    }

    static IBlockStore[] Disks(params long[] sizes) => sizes.Select((s, i) => (IBlockStore)new MemoryBlockStore(s, $"disk{i}")).ToArray();

    public static TheoryData<Resiliency> All => new(Enum.GetValues<Resiliency>());
    public static TheoryData<Resiliency> Redundant => new(Enum.GetValues<Resiliency>().Where(r => r != Resiliency.Simple));

    [Fact]
    public void MirrorOfDisksOf1_1_2UsesThemAll()
    {
        const long G = 1L << 30;
        var (data, _, _) = DiskSet.Create(Disks(G, G, 2 * G).Select((s, i) => ($"disk{i}", s)).ToList(), Bs, Resiliency.Mirror, 64 << 20, 16 << 20, true);
        // 1 GiB disks hold 15 slabs of 64 MiB after the label and metadata, the 2 GiB one 31: 30 mirrored slabs
        Assert.Equal(30 * (64L << 20), data.Length);
    }

    [Theory]
    [InlineData(Resiliency.Simple, 1, 1, 0)]
    [InlineData(Resiliency.Parity, 3, 2, 1)]
    [InlineData(Resiliency.Parity, 4, 2, 1)]
    [InlineData(Resiliency.Parity, 5, 2, 1)]
    [InlineData(Resiliency.Parity, 6, 4, 1)]
    [InlineData(Resiliency.Parity2, 4, 2, 2)]
    [InlineData(Resiliency.Parity2, 6, 2, 2)]
    [InlineData(Resiliency.Parity2, 7, 4, 2)]
    public void ParityUsesAPowerOfTwoDataColumns(Resiliency r, int disks, int data, int parity)
    {
        var shape = SlabShape.For(r, disks, Bs);
        Assert.Equal((data, parity), (shape.DataColumns, shape.ParityColumns));
    }

    [Fact]
    public void TooFewDisksAreRefused()
    {
        var ex = Assert.Throws<StrataException>(() => DiskSet.Create(Disks(64 << 20, 64 << 20).Select((s, i) => ($"disk{i}", s)).ToList(), Bs, Resiliency.Mirror3, Slab, Meta, true));
        Assert.Contains("needs at least 3 disks", ex.Message);
    }

    [Theory]
    [MemberData(nameof(All))]
    public void DataSurvivesAReopen(Resiliency resiliency)
    {
        var (pool, rig) = Make(resiliency, Disks(64 << 20, 64 << 20, 64 << 20, 96 << 20));
        var rng = new Random(1);
        var expected = new byte[24 << 20];
        using (var dev = CreateDevice(pool, expected.Length))
        {
            WriteRandomly(dev, expected, rng, 200);
            pool.Commit();
            WriteRandomly(dev, expected, rng, 50); // after a commit: the pool copies what the commit maps
            AssertReads(dev, expected);
        }
        pool.Dispose();
        using var again = rig.Reopen();
        using (var dev = again.OpenDevice("d")) AssertReads(dev, expected);
        Assert.True(again.ReadCommitted(m => PoolChecker.Check(rig.Data, m)).Clean);
    }

    [Theory]
    [MemberData(nameof(Redundant))]
    public void BitRotOnOneDiskIsRepaired(Resiliency resiliency)
    {
        var (pool, rig) = Make(resiliency, Disks(64 << 20, 64 << 20, 64 << 20, 64 << 20));
        var rng = new Random(2);
        var expected = new byte[16 << 20];
        using var dev = CreateDevice(pool, expected.Length);
        WriteRandomly(dev, expected, rng, 100);
        pool.Commit();
        var victim = rig.Data.Disks[1];
        Rot(victim, rng, 2000);
        AssertReads(dev, expected);
        Assert.True(victim.ChecksumErrors > 0, "the rot was found");
        Assert.True(victim.Repaired > 0, "and repaired");
        long found = victim.ChecksumErrors;
        AssertReads(dev, expected);
        Assert.Equal(found, victim.ChecksumErrors); // rewritten: the second read finds nothing
        Assert.Equal(0, rig.Data.Unrecoverable);
    }

    [Fact]
    public void SimplePoolReadsRotAsAnIoErrorNeverAsData()
    {
        var (pool, rig) = Make(Resiliency.Simple, Disks(64 << 20));
        var expected = new byte[4 << 20];
        using var dev = CreateDevice(pool, expected.Length);
        new Random(3).NextBytes(expected);
        dev.Write(0, expected);
        pool.Commit();
        var disk = rig.Data.Disks[0];
        var sector = new byte[4096];
        disk.Store!.Read(disk.DataStart + 8192, sector); // the pool's first data block holds the device's first
        sector[100] ^= 0x10;
        disk.Store.Write(disk.DataStart + 8192, sector);
        var buffer = new byte[expected.Length];
        var ex = Assert.Throws<StrataException>(() => dev.Read(0, buffer));
        Assert.Equal(ErrorKind.Io, ex.Kind);
        Assert.Contains("fails its checksum", ex.Message);
        var other = new byte[8192];
        dev.Read(0, other); // the sectors around it are fine
        Assert.Equal(expected.AsSpan(0, 8192).ToArray(), other);
    }

    [Theory]
    [MemberData(nameof(Redundant))]
    public void WithoutChecksumsAnUnreadableDiskIsReadAround(Resiliency resiliency)
    {
        var stores = Disks(64 << 20, 64 << 20, 64 << 20, 64 << 20);
        var (pool, rig) = Make(resiliency, stores, checksums: false);
        var rng = new Random(4);
        var expected = new byte[8 << 20];
        using var dev = CreateDevice(pool, expected.Length);
        WriteRandomly(dev, expected, rng, 60);
        pool.Commit();
        rig.Data.Disks[2].Fail("test", writeError: false);
        AssertReads(dev, expected);
        WriteRandomly(dev, expected, rng, 60);
        pool.Commit();
        AssertReads(dev, expected);
    }

    [Theory]
    [InlineData(Resiliency.Mirror)]
    [InlineData(Resiliency.Parity)]
    public void AFullPoolFailsWritesWithNoSpaceAtOnce(Resiliency resiliency)
    {
        var (pool, rig) = Make(resiliency, Disks(24 << 20, 24 << 20, 24 << 20));
        long usable = rig.Data.Length;
        pool.CreateDevice("d", usable * 2);
        using var dev = pool.OpenDevice("d");
        var chunk = new byte[1 << 20];
        new Random(6).NextBytes(chunk);
        long written = 0;
        Action fill = () =>
        {
            for (; ; written += chunk.Length) dev.Write(written, chunk);
        };
        var ex = Assert.Throws<StrataException>(fill);
        Assert.Equal(ErrorKind.NoSpace, ex.Kind);
        Assert.InRange(written, usable - (2 << 20), usable); // all of it, up to the last blocks' metadata
        var back = new byte[chunk.Length];
        dev.Read(0, back);
        Assert.Equal(chunk, back); // what fit reads back
        pool.Commit();
    }

    static ThinDevice CreateDevice(ThinPool pool, long size)
    {
        pool.CreateDevice("d", size);
        return pool.OpenDevice("d");
    }

    internal static void WriteRandomly(ThinDevice dev, byte[] expected, Random rng, int writes)
    {
        for (int i = 0; i < writes; i++)
        {
            int length = rng.Next(4) switch { 0 => 512 * rng.Next(1, 9), 1 => 4096 * rng.Next(1, 40), 2 => rng.Next(1, 3000), _ => (int)Bs * rng.Next(1, 5) };
            long offset = rng.Next(3) == 0 ? rng.NextInt64(expected.Length - length) : rng.NextInt64((expected.Length - length) / 512) * 512;
            var data = new byte[length];
            rng.NextBytes(data);
            dev.Write(offset, data);
            data.CopyTo(expected, offset);
        }
    }

    internal static void AssertReads(ThinDevice dev, byte[] expected)
    {
        var got = new byte[expected.Length];
        dev.Read(0, got);
        for (int i = 0; i < got.Length; i += 4096)
            if (!got.AsSpan(i, Math.Min(4096, got.Length - i)).SequenceEqual(expected.AsSpan(i, Math.Min(4096, got.Length - i))))
                Assert.Fail($"bytes {i}..{i + 4096} differ");
    }

    /// <summary>Flips bits all over a disk's slabs.</summary>
    static void Rot(Disk disk, Random rng, int flips)
    {
        var b = new byte[1];
        for (int i = 0; i < flips; i++)
        {
            long at = disk.DataStart + rng.NextInt64(disk.Slabs * Slab);
            disk.Store!.Read(at, b);
            b[0] ^= (byte)(1 << rng.Next(8));
            disk.Store.Write(at, b);
        }
    }
}
