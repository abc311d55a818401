using System.Buffers.Binary;
using System.Security.Cryptography;
using Strata.Native;
using Strata.Testing;
using Strata.Thin.DmThin;

namespace Strata.Thin.Tests;

/// <summary>
/// The dm-thin metadata reader against metadata thin_restore (thin-provisioning-tools 0.9) built, v1 and v2: every
/// device reads as the document and the data file say, the mappings equal thin_dump's, the sharing thin_ls's; damage
/// (a flipped node, a truncated data or metadata file, the wrong files, an unknown version) is one clear error or
/// a reported range, and nothing is ever written to either file.
/// </summary>
public sealed class DmThinReaderTests : IDisposable
{
    const int Bs = DmThinFixture.BlockSize;
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    [ThinToolsFact]
    public void Version1DevicesReadAsTheirMappingsSay() => DevicesReadAsTheirMappingsSay(1);

    [ThinToolsFact]
    public void Version2DevicesReadAsTheirMappingsSay() => DevicesReadAsTheirMappingsSay(2);

    void DevicesReadAsTheirMappingsSay(int version)
    {
        var f = DmThinFixture.Create(_temp.Path, version);
        string dataHash = Hash(f.Data), metaHash = Hash(f.Metadata);
        var stamps = (File.GetLastWriteTimeUtc(f.Data), File.GetLastWriteTimeUtc(f.Metadata));
        using (var pool = DmPool.Open(f.Data, f.Metadata))
        {
            Assert.Equal((uint)version, pool.Superblock.Version);
            Assert.Equal(7UL, pool.Superblock.TransactionId);
            Assert.Equal(Bs, pool.BlockSize);
            Assert.Empty(pool.Problems);
            Assert.Equal([1u, 2u, 3u, 4u], pool.Devices.Select(d => d.Id));

            // the mappings are thin_dump's
            var dumped = DmThinFixture.ParseDump(Shell.Run("thin_dump", f.Metadata).Check("thin_dump").Stdout);
            foreach (var dev in pool.Devices)
            {
                var ours = new SortedDictionary<long, (long, uint)>();
                foreach (var e in dev.Extents)
                    for (long i = 0; i < e.Length; i++) ours[e.Virtual + i] = (e.Data + i, e.Time);
                Assert.Equal(dumped[dev.Id], ours);
                Assert.Equal(f.Mappings[dev.Id], ours);
                Assert.Empty(dev.Unreadable);
            }

            // the sharing is thin_ls's
            var ls = Shell.Run("thin_ls", "--no-headers", "-o", "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS", f.Metadata).Check("thin_ls").Stdout;
            var expected = ls.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray())
                .Select(c => (c[0], c[1], c[2], c[3]));
            Assert.Equal(expected, pool.Devices.Select(d => ((long)d.Id, d.MappedBlocks, d.ExclusiveBlocks, d.SharedBlocks)));
            Assert.Equal(1, pool.Device(1).ExclusiveBlocks);
            Assert.Equal(2, pool.Device(2).ExclusiveBlocks);

            // whole devices read as expected (1, 2, 4), and every mapped block and the holes between of the big one
            foreach (uint id in new uint[] { 1, 2, 4 })
            {
                var d = pool.Device(id);
                Assert.Equal(id == 4 ? 0 : (f.Mappings[id].Keys.Max() + 1) * Bs, d.Size);
                using var dev = pool.OpenDevice(id);
                var all = new byte[d.Size];
                dev.Read(0, all);
                for (long b = 0; b < d.Size / Bs; b++)
                    Assert.True(f.Expected(id, b).AsSpan().SequenceEqual(all.AsSpan((int)(b * Bs), Bs)), $"device {id} block {b}");
            }
            using (var big = pool.OpenDevice(3))
            {
                var block = new byte[2 * Bs];
                for (long b = 0; b < 6000; b += 2)
                {
                    big.Read(b * Bs, block.AsSpan(0, Math.Min(2 * Bs, (int)(big.Size - b * Bs))));
                    Assert.True(f.Expected(3, b).AsSpan().SequenceEqual(block.AsSpan(0, Bs)), $"device 3 block {b}");
                    if (b + 1 < 6000) Assert.True(block.AsSpan(Bs).IndexOfAnyExcept((byte)0) < 0, $"device 3 block {b + 1}");
                }
                // a read across many extents is one call, and the holes are reported as such
                var sparse = new byte[8 * Bs];
                var holes = new (int, int)[8];
                Assert.Equal(4, big.ReadSparse(100L * Bs, sparse, holes));
                Assert.Equal((Bs, Bs), holes[0]);
                Assert.Equal([(100L * Bs, (long)Bs), (102L * Bs, Bs), (104L * Bs, Bs), (106L * Bs, Bs)], big.Allocated(100L * Bs, 8 * Bs));
                var ex = Assert.Throws<StrataException>(() => big.Write(0, new byte[1]));
                Assert.Equal(ErrorKind.ReadOnly, ex.Kind);
            }
        }
        Assert.Equal(dataHash, Hash(f.Data));
        Assert.Equal(metaHash, Hash(f.Metadata));
        Assert.Equal(stamps, (File.GetLastWriteTimeUtc(f.Data), File.GetLastWriteTimeUtc(f.Metadata)));
    }

    /// <summary>The metadata block of a leaf of device 3's tree (the only keys past 1000): found by its header.</summary>
    static long LeafOfDevice3(byte[] meta)
    {
        for (long b = 1; b < meta.Length / 4096; b++)
        {
            var node = meta.AsSpan((int)(b * 4096), 4096);
            if (BinaryPrimitives.ReadUInt32LittleEndian(node[4..]) == 2 && BinaryPrimitives.ReadUInt32LittleEndian(node[24..]) == 8
                && BinaryPrimitives.ReadUInt32LittleEndian(node[16..]) > 0 && BinaryPrimitives.ReadUInt64LittleEndian(node[32..]) > 1000
                && BinaryPrimitives.ReadUInt64LittleEndian(node[32..]) < 5000)
                return b;
        }
        throw new InvalidOperationException("no leaf of device 3");
    }

    [ThinToolsFact]
    public void AFlippedNodeMakesItsRangeUnreadableAndTheRestServed()
    {
        var f = DmThinFixture.Create(_temp.Path);
        var meta = File.ReadAllBytes(f.Metadata);
        long leaf = LeafOfDevice3(meta);
        long firstKey = BinaryPrimitives.ReadInt64LittleEndian(meta.AsSpan((int)(leaf * 4096 + 32)));
        meta[leaf * 4096 + 300] ^= 0x40;
        File.WriteAllBytes(f.Metadata, meta);

        using var pool = DmPool.Open(f.Data, f.Metadata);
        var d3 = pool.Device(3);
        var lost = Assert.Single(d3.Unreadable);
        Assert.Equal(firstKey, lost.First);
        Assert.Contains($"metadata block {leaf} fails its checksum", lost.Why);
        using (var dev = pool.OpenDevice(3))
        {
            var ex = Assert.Throws<StrataException>(() => dev.Read(firstKey * Bs, new byte[Bs]));
            Assert.Equal(ErrorKind.Io, ex.Kind);
            Assert.Contains("unreadable", ex.Message);
            Assert.DoesNotContain('\n', ex.Message);
            var block = new byte[Bs];
            dev.Read(0, block); // before the damaged leaf
            Assert.Equal(f.Expected(3, 0), block);
        }
        foreach (uint id in new uint[] { 1, 2 })
        {
            Assert.Empty(pool.Device(id).Unreadable);
            using var dev = pool.OpenDevice(id);
            var block = new byte[Bs];
            dev.Read(40L * Bs, block);
            Assert.Equal(f.Expected(id, 40), block);
        }
    }

    [ThinToolsFact]
    public void ATruncatedDataFileServesWhatItStillHas()
    {
        var f = DmThinFixture.Create(_temp.Path);
        using (var s = new FileStream(f.Data, FileMode.Open)) s.SetLength(300L * Bs); // data blocks 300 and on are gone
        using var pool = DmPool.Open(f.Data, f.Metadata);
        Assert.Contains(pool.Problems, p => p.Contains("truncated"));
        using var d1 = pool.OpenDevice(1);
        var all = new byte[pool.Device(1).Size];
        d1.Read(0, all); // device 1's data is all below block 300
        Assert.Equal(f.Expected(1, 52), all[(52 * Bs)..]);
        using var d2 = pool.OpenDevice(2);
        var ex = Assert.Throws<StrataException>(() => d2.Read(60L * Bs, new byte[Bs])); // block 60 is data block 300
        Assert.Equal(ErrorKind.Io, ex.Kind);
        Assert.Contains("past the end", ex.Message);
    }

    [ThinToolsFact]
    public void ATruncatedMetadataFileReportsTheDevicesItLost()
    {
        var f = DmThinFixture.Create(_temp.Path);
        var meta = File.ReadAllBytes(f.Metadata);
        long leaf = LeafOfDevice3(meta);
        using (var s = new FileStream(f.Metadata, FileMode.Open)) s.SetLength(leaf * 4096);
        using var pool = DmPool.Open(f.Data, f.Metadata);
        Assert.Contains(pool.Problems, p => p.Contains("truncated"));
        Assert.Contains(pool.Device(3).Unreadable, u => u.Why.Contains("past the end"));
    }

    [ThinToolsFact]
    public void WrongFilesAndUnknownVersionsAreOneClearError()
    {
        var f = DmThinFixture.Create(_temp.Path);
        void Refused(string data, string metadata, ErrorKind kind, string fragment)
        {
            var ex = Assert.ThrowsAny<StrataException>(() => DmPool.Open(data, metadata).Dispose());
            Assert.Equal(kind, ex.Kind);
            Assert.Contains(fragment, ex.Message);
            Assert.DoesNotContain('\n', ex.Message);
        }
        // the two files swapped; a Strata pool's metadata; nothing at all
        Refused(f.Metadata, f.Data, ErrorKind.Corrupt, "not dm-thin metadata");
        var strataMeta = _temp.Combine("strata-meta");
        using (var pool = ThinPool.Create(new MemoryBlockStore(1 << 24), FileBlockStore.Create(strataMeta, 1 << 20))) { }
        Refused(f.Data, strataMeta, ErrorKind.Corrupt, "not dm-thin metadata");
        var empty = _temp.Combine("empty");
        File.WriteAllBytes(empty, []);
        Refused(f.Data, empty, ErrorKind.Corrupt, "shorter than one 4 KiB block");
        Refused(f.Data, _temp.Combine("missing"), ErrorKind.NotFound, "missing");

        var good = File.ReadAllBytes(f.Metadata);
        void WithSuperblock(Action<byte[]> change, ErrorKind kind, string fragment, bool reseal = true)
        {
            var bytes = (byte[])good.Clone();
            change(bytes);
            if (reseal) BinaryPrimitives.WriteUInt32LittleEndian(bytes, DmMetadata.Checksum(bytes.AsSpan(0, 4096), DmMetadata.SuperblockSalt));
            var path = _temp.Combine("changed");
            File.WriteAllBytes(path, bytes);
            Refused(f.Data, path, kind, fragment);
        }
        WithSuperblock(b => b[100] ^= 1, ErrorKind.Corrupt, "superblock is damaged: metadata block 0 fails its checksum", reseal: false);
        WithSuperblock(b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(40), 3), ErrorKind.Unsupported, "version 3 is unknown");
        WithSuperblock(b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(360), 1), ErrorKind.Unsupported, "incompatible features");
        WithSuperblock(b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(336), 100), ErrorKind.Corrupt, "not a multiple of 64 KiB");
        WithSuperblock(b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(320), 1 << 30), ErrorKind.Corrupt, "tree roots");
        WithSuperblock(b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(64), ulong.MaxValue), ErrorKind.Corrupt, "more than a mapping can name");

        // the metadata of a bigger pool over this data file: its blocks past the file are reported, not read as zeros
        File.WriteAllText(_temp.Combine("other.xml"), "<superblock uuid=\"\" time=\"0\" transaction=\"1\" data_block_size=\"128\" nr_data_blocks=\"100000\">" +
            "<device dev_id=\"9\" mapped_blocks=\"1\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\"><single_mapping origin_block=\"0\" data_block=\"99999\" time=\"0\"/></device></superblock>");
        var other = _temp.Combine("other-meta");
        Shell.Run("truncate", "-s", "8M", other).Check("truncate");
        Shell.Run("thin_restore", "-i", _temp.Combine("other.xml"), "-o", other).Check("thin_restore");
        using var mixed = DmPool.Open(f.Data, other);
        Assert.Contains(mixed.Problems, p => p.Contains("the data of another pool"));
        using var dev = mixed.OpenDevice(9);
        Assert.Equal(ErrorKind.Io, Assert.Throws<StrataException>(() => dev.Read(0, new byte[Bs])).Kind);
    }

    [Fact]
    public void FilesystemTypesAndSizesAreReadFromExt4AndXfsSuperblocks()
    {
        foreach (var (mkfs, size) in new[] { ("mkfs.ext4", 64L << 20), ("mkfs.xfs", 320L << 20) })
        {
            if (!Shell.Has(mkfs)) continue;
            var img = _temp.Combine(mkfs + ".img");
            Shell.Run("truncate", "-s", size.ToString(), img).Check("truncate");
            Shell.Run(mkfs, "-q", img).Check(mkfs);
            var head = new byte[FilesystemProbe.ProbeLength];
            using (var s = File.OpenRead(img)) s.ReadExactly(head);
            Assert.Equal(size, FilesystemProbe.Size(head));
            Assert.Equal(mkfs[5..], FilesystemProbe.Type(head));
        }
        Assert.Equal(0, FilesystemProbe.Size(new byte[FilesystemProbe.ProbeLength]));
        Assert.Null(FilesystemProbe.Type(new byte[FilesystemProbe.ProbeLength]));
    }
}
