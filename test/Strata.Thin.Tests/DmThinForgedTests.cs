using System.Buffers.Binary;
using Strata.Native;
using Strata.Thin.DmThin;

namespace Strata.Thin.Tests;

/// <summary>
/// The dm-thin reader on metadata forged here, node by node with valid checksums, for shapes no tool writes: a node
/// that points at itself, keys out of order or outside their parent's range, a leaf with the wrong value size,
/// a mapping past the pool's data blocks, an unknown device in the mapping tree; and the sharing count against
/// a plain count of references, on random pools.
/// </summary>
public sealed class DmThinForgedTests
{
    const int B = DmMetadata.BlockSize, Bs = 64 * 1024;

    /// <summary>Metadata blocks being forged: 1 is the details tree's leaf, 2 the mapping tree's top leaf.</summary>
    sealed class Forge
    {
        public readonly MemoryBlockStore Meta = new(64 * B, "forged");
        public ulong DataBlocks = 100;

        public void Superblock()
        {
            var s = new byte[B];
            BinaryPrimitives.WriteUInt64LittleEndian(s.AsSpan(32), DmSuperblock.Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(s.AsSpan(40), 2);
            BinaryPrimitives.WriteUInt64LittleEndian(s.AsSpan(48), 1);
            BinaryPrimitives.WriteUInt64LittleEndian(s.AsSpan(64), DataBlocks);
            BinaryPrimitives.WriteUInt64LittleEndian(s.AsSpan(192), 64);
            BinaryPrimitives.WriteUInt64LittleEndian(s.AsSpan(320), 2);
            BinaryPrimitives.WriteUInt64LittleEndian(s.AsSpan(328), 1);
            BinaryPrimitives.WriteUInt32LittleEndian(s.AsSpan(336), Bs / 512);
            BinaryPrimitives.WriteUInt32LittleEndian(s.AsSpan(340), 8);
            BinaryPrimitives.WriteUInt32LittleEndian(s, DmMetadata.Checksum(s, DmMetadata.SuperblockSalt));
            Meta.Write(0, s);
        }

        /// <summary>A node at <paramref name="block"/> of (key, value bytes) pairs.</summary>
        public void Node(ulong block, bool leaf, int valueSize, params (ulong Key, byte[] Value)[] entries)
        {
            var n = new byte[B];
            int max = (B - 32) / (8 + valueSize) / 3 * 3;
            BinaryPrimitives.WriteUInt32LittleEndian(n.AsSpan(4), leaf ? 2u : 1u);
            BinaryPrimitives.WriteUInt64LittleEndian(n.AsSpan(8), block);
            BinaryPrimitives.WriteUInt32LittleEndian(n.AsSpan(16), (uint)entries.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(n.AsSpan(20), (uint)max);
            BinaryPrimitives.WriteUInt32LittleEndian(n.AsSpan(24), (uint)valueSize);
            for (int i = 0; i < entries.Length; i++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(n.AsSpan(32 + 8 * i), entries[i].Key);
                entries[i].Value.CopyTo(n.AsSpan(32 + 8 * max + valueSize * i));
            }
            BinaryPrimitives.WriteUInt32LittleEndian(n, DmMetadata.Checksum(n, DmMetadata.NodeSalt));
            Meta.Write((long)block * B, n);
        }

        public static byte[] U64(ulong v)
        {
            var b = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(b, v);
            return b;
        }

        public static byte[] Mapping(ulong data, uint time = 0) => U64(data << 24 | time);

        /// <summary>Devices 1..n in the details tree and the mapping tree's top level, device i's tree at block 10 + i.</summary>
        public void Devices(int n)
        {
            Node(1, true, 24, [.. Enumerable.Range(1, n).Select(i => ((ulong)i, new byte[24]))]);
            Node(2, true, 8, [.. Enumerable.Range(1, n).Select(i => ((ulong)i, U64(10 + (ulong)i)))]);
        }

        public DmPool Open() => DmPool.Open(new MemoryBlockStore(Bs * (long)DataBlocks, "data"), Meta);
    }

    [Fact]
    public void ANodeThatPointsAtItselfIsDamageNotALoop()
    {
        var f = new Forge();
        f.Superblock();
        f.Devices(2);
        f.Node(11, false, 8, (0, Forge.U64(11)), (100, Forge.U64(20))); // child 0 is the node itself
        f.Node(20, true, 8, (100, Forge.Mapping(5)), (101, Forge.Mapping(6)));
        f.Node(12, true, 8, (0, Forge.Mapping(7)));
        using var pool = f.Open();
        var d1 = pool.Device(1);
        Assert.Equal(2, d1.MappedBlocks); // the good child's two mappings
        var lost = Assert.Single(d1.Unreadable);
        Assert.Equal((0L, 100L), (lost.First, lost.Count));
        Assert.Equal(1, pool.Device(2).MappedBlocks);
    }

    [Fact]
    public void KeysOutOfOrderOrOutsideTheirRangeAndWrongValueSizesAreDamage()
    {
        var f = new Forge();
        f.Superblock();
        f.Devices(3);
        f.Node(11, false, 8, (0, Forge.U64(21)), (50, Forge.U64(22)));
        f.Node(21, true, 8, (0, Forge.Mapping(1)), (60, Forge.Mapping(2))); // 60 is past the 50 its parent gives it
        f.Node(22, true, 8, (50, Forge.Mapping(3)));
        f.Node(12, true, 8, (5, Forge.Mapping(4)), (3, Forge.Mapping(5))); // out of order
        f.Node(13, true, 16, (0, new byte[16])); // a mapping leaf must hold 8-byte values
        using var pool = f.Open();
        var d1 = pool.Device(1);
        Assert.Contains("outside the range", Assert.Single(d1.Unreadable).Why);
        Assert.Equal(1, d1.MappedBlocks);
        Assert.Contains("out of order", Assert.Single(pool.Device(2).Unreadable).Why);
        Assert.Contains("values of 16 bytes", Assert.Single(pool.Device(3).Unreadable).Why);
    }

    [Fact]
    public void AMappingPastTheDataAndADeviceWithoutDetailsAreReported()
    {
        var f = new Forge { DataBlocks = 10 };
        f.Superblock();
        f.Node(1, true, 24, (1, new byte[24]));
        f.Node(2, true, 8, (1, Forge.U64(11)), (9, Forge.U64(12)));
        f.Node(11, true, 8, (0, Forge.Mapping(3)), (1, Forge.Mapping(10))); // data block 10 of 10
        f.Node(12, true, 8, (0, Forge.Mapping(4)));
        using var pool = f.Open();
        var d1 = pool.Device(1);
        Assert.Equal(1, d1.MappedBlocks);
        Assert.Contains("past the pool's 10", Assert.Single(d1.Unreadable).Why);
        Assert.Equal([1u, 9u], pool.Devices.Select(d => d.Id));
        using var dev = pool.OpenDevice(1);
        Assert.Equal(ErrorKind.Io, Assert.Throws<StrataException>(() => dev.Read(Bs, new byte[Bs])).Kind);
    }

    [Fact]
    public void SharingCountsEqualAPlainCountOfReferences()
    {
        var random = new Random(2026);
        for (int round = 0; round < 200; round++)
        {
            int devices = random.Next(1, 6);
            var maps = Enumerable.Range(0, devices).Select(_ => new SortedDictionary<long, long>()).ToList();
            foreach (var m in maps)
                for (int i = random.Next(0, 40); i > 0; i--) m[random.Next(0, 60)] = random.Next(0, 30);
            var list = maps.Select((m, i) =>
            {
                var extents = System.Collections.Immutable.ImmutableArray.CreateBuilder<DmExtent>();
                foreach (var (v, d) in m)
                    if (extents.Count > 0 && extents[^1] is var e && e.VirtualEnd == v && e.Data + e.Length == d) extents[^1] = e with { Length = e.Length + 1 };
                    else extents.Add(new DmExtent(v, d, 1, 0));
                return new DmThinDevice
                {
                    Id = (uint)i, RecordedMappedBlocks = 0, TransactionId = 0, CreationTime = 0, SnapshotTime = 0,
                    Extents = extents.ToImmutable(), Unreadable = [], MappedBlocks = m.Count,
                };
            }).ToList();
            var references = maps.SelectMany(m => m.Values).GroupBy(d => d).ToDictionary(g => g.Key, g => g.Count());
            var expected = maps.Select(m => (long)m.Values.Count(d => references[d] > 1)).ToArray();
            Assert.Equal(expected, DmSharing.SharedBlocks(list));
        }
    }
}
