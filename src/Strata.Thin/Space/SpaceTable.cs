using System.Buffers.Binary;
using Strata.Native;
using Strata.Thin.Metadata;

namespace Strata.Thin.Space;

/// <summary>A disk as the metadata records it (its path is pool.json's; the disk's label names it by id).</summary>
sealed record DiskEntry(Guid Id, long Slabs, long DataStart, DiskState State);

/// <summary>Everything the metadata records of a resilient pool's space, but its checksums.</summary>
sealed record SpaceRecord(SlabShape Shape, long SlabSize, bool Checksums, IReadOnlyList<DiskEntry> Disks, IReadOnlyList<Column[]?> Slabs);

/// <summary>
/// The space table: a resilient pool's disks and where each slab's columns are, rewritten whole to new metadata
/// blocks by a commit that changed it (creation, a disk's state, a rebuild's progress). A chain of Space blocks, each
/// header's extra field naming the next, whose payloads read as one stream, little-endian:
/// <code>
/// u32 version (1)  u8 resiliency  u8 data columns  u8 parity columns  u8 copies  u8 checksums (0 none, 1 crc32c)
/// u8[3] 0  u64 slab size (bytes, per column)  u32 disks  u32 slabs
/// disks, by slot: u8 state  u8[7] 0  16 bytes id  u64 slabs  u64 data start            (40 bytes each)
/// slabs: per column u16 disk slot, u32 slab of that disk                                 (6 bytes per column)
///        (a slab not placed yet: disk slot 0xFFFF in every column)
/// </code>
/// </summary>
static class SpaceTable
{
    const int HeaderBytes = 32, DiskBytes = 40, ColumnBytes = 6;
    const ushort Unplaced = 0xFFFF;

    public static List<ulong> Write(MetadataSpace meta, SpaceRecord record, ulong transaction)
    {
        int columns = record.Shape.Columns;
        var stream = new byte[HeaderBytes + record.Disks.Count * DiskBytes + record.Slabs.Count * columns * ColumnBytes];
        var s = stream.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(s, 1);
        s[4] = (byte)record.Shape.Resiliency;
        s[5] = (byte)record.Shape.DataColumns;
        s[6] = (byte)record.Shape.ParityColumns;
        s[7] = (byte)record.Shape.Copies;
        s[8] = record.Checksums ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteInt64LittleEndian(s[16..], record.SlabSize);
        BinaryPrimitives.WriteInt32LittleEndian(s[24..], record.Disks.Count);
        BinaryPrimitives.WriteInt32LittleEndian(s[28..], record.Slabs.Count);
        int at = HeaderBytes;
        foreach (var d in record.Disks)
        {
            s[at] = (byte)d.State;
            d.Id.TryWriteBytes(s[(at + 8)..]);
            BinaryPrimitives.WriteInt64LittleEndian(s[(at + 24)..], d.Slabs);
            BinaryPrimitives.WriteInt64LittleEndian(s[(at + 32)..], d.DataStart);
            at += DiskBytes;
        }
        foreach (var slab in record.Slabs)
            for (int c = 0; c < columns; c++)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(s[at..], slab is null ? Unplaced : checked((ushort)slab[c].Disk));
                BinaryPrimitives.WriteUInt32LittleEndian(s[(at + 2)..], slab is null ? 0 : checked((uint)slab[c].Slab));
                at += ColumnBytes;
            }
        var blocks = new List<ulong>();
        for (int i = 0; i * MetadataBlock.PayloadSize < stream.Length; i++) blocks.Add(meta.Allocate());
        var buffer = new byte[MetadataBlock.Size];
        for (int i = 0; i < blocks.Count; i++)
        {
            buffer.AsSpan().Clear();
            int from = i * MetadataBlock.PayloadSize, n = Math.Min(MetadataBlock.PayloadSize, stream.Length - from);
            stream.AsSpan(from, n).CopyTo(buffer.AsSpan(MetadataBlock.HeaderSize));
            MetadataBlock.WriteHeader(buffer, BlockKind.Space, 0, blocks[i], transaction, i + 1 < blocks.Count ? blocks[i + 1] : 0);
            MetadataBlock.Seal(buffer);
            meta.Write(blocks[i], buffer);
        }
        return blocks;
    }

    /// <summary>The table starting at <paramref name="first"/> and its blocks (each counted as used).</summary>
    public static (SpaceRecord Record, List<ulong> Blocks) Load(MetadataSpace meta, ulong first, uint blockSize)
    {
        var chain = new List<ulong>();
        var payload = new List<byte>();
        var buffer = new byte[MetadataBlock.Size];
        var seen = new HashSet<ulong>();
        for (ulong b = first; b != 0; b = MetadataBlock.Extra(buffer))
        {
            if (!seen.Add(b)) throw StrataException.Corrupt($"the space table loops back to metadata block {b}");
            meta.CountAtOpen(b);
            chain.Add(b);
            meta.Read(b, buffer, BlockKind.Space);
            payload.AddRange(buffer.AsSpan(MetadataBlock.HeaderSize).ToArray());
        }
        var s = payload.ToArray().AsSpan();
        string Bad(string what) => $"the space table (metadata block {first}) {what}";
        if (s.Length < HeaderBytes || BinaryPrimitives.ReadUInt32LittleEndian(s) != 1) throw StrataException.Corrupt(Bad("has an unknown version"));
        var resiliency = (Resiliency)s[4];
        if (resiliency is < Resiliency.Simple or > Resiliency.Parity2) throw StrataException.Corrupt(Bad($"names an unknown resiliency {s[4]}"));
        var shape = new SlabShape(resiliency, s[5], s[6], s[7]);
        long slabSize = BinaryPrimitives.ReadInt64LittleEndian(s[16..]);
        int disks = BinaryPrimitives.ReadInt32LittleEndian(s[24..]), slabs = BinaryPrimitives.ReadInt32LittleEndian(s[28..]);
        int columns = shape.Columns;
        if (shape.DataColumns < 1 || columns < 1 || columns > 64 || disks < 1 || disks > 4096 || slabs < 0 || slabSize <= 0 || slabSize % blockSize != 0
            || (long)HeaderBytes + (long)disks * DiskBytes + (long)slabs * columns * ColumnBytes > s.Length)
            throw StrataException.Corrupt(Bad("is inconsistent"));
        int at = HeaderBytes;
        var diskList = new List<DiskEntry>();
        for (int i = 0; i < disks; i++, at += DiskBytes)
        {
            var state = (DiskState)s[at];
            if (state > DiskState.Retired) throw StrataException.Corrupt(Bad($"gives disk {i} an unknown state {s[at]}"));
            diskList.Add(new DiskEntry(new Guid(s.Slice(at + 8, 16)), BinaryPrimitives.ReadInt64LittleEndian(s[(at + 24)..]), BinaryPrimitives.ReadInt64LittleEndian(s[(at + 32)..]), state));
        }
        var slabList = new List<Column[]?>(slabs);
        for (int i = 0; i < slabs; i++)
        {
            if (BinaryPrimitives.ReadUInt16LittleEndian(s[at..]) == Unplaced)
            {
                slabList.Add(null);
                at += columns * ColumnBytes;
                continue;
            }
            var slab = new Column[columns];
            for (int c = 0; c < columns; c++, at += ColumnBytes)
            {
                int disk = BinaryPrimitives.ReadUInt16LittleEndian(s[at..]);
                long diskSlab = BinaryPrimitives.ReadUInt32LittleEndian(s[(at + 2)..]);
                if (disk >= disks || diskSlab >= diskList[disk].Slabs) throw StrataException.Corrupt(Bad($"places slab {i} outside its disks"));
                slab[c] = new Column(disk, diskSlab);
            }
            slabList.Add(slab);
        }
        return (new SpaceRecord(shape, slabSize, s[8] == 1, diskList, slabList), chain);
    }
}
