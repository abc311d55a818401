using System.Buffers.Binary;
using Strata.Block;
using Strata.Thin.Metadata;

namespace Strata.Thin.Space;

/// <summary>
/// The first 4 KiB of every disk of a resilient pool: which pool it belongs to, which disk it is, and where its regions
/// are. Open matches the disks pool.json names to their slots by it, so a disk that was swapped, renamed or belongs to
/// another pool is never used as one of this pool's. Little-endian:
/// <code>
///  0 u64 magic "STRATDSK"   8 u32 version (1)   12 u32 slot   16 16 bytes pool id   32 16 bytes disk id
/// 48 u64 metadata offset   56 u64 metadata length   64 u64 data start   72 u64 slab size   80 u64 slabs
/// 4092 u32 crc32c of bytes 0..4091
/// </code>
/// </summary>
public sealed record DiskLabel(int Slot, Guid Pool, Guid Disk, long MetadataOffset, long MetadataLength, long DataStart, long SlabSize, long Slabs)
{
    public const int Size = 4096;
    const ulong Magic = 0x4B53_4454_4152_5453; // "STRATDSK" read little-endian

    public void Write(IBlockStore store)
    {
        var b = new byte[Size];
        BinaryPrimitives.WriteUInt64LittleEndian(b, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), 1);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(12), Slot);
        Pool.TryWriteBytes(b.AsSpan(16));
        Disk.TryWriteBytes(b.AsSpan(32));
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(48), MetadataOffset);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(56), MetadataLength);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(64), DataStart);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(72), SlabSize);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(80), Slabs);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(Size - 4), MetadataBlock.Crc32C(b.AsSpan(0, Size - 4)));
        store.Write(0, b);
    }

    /// <summary>The label of <paramref name="store"/>, or null with what is there instead.</summary>
    public static DiskLabel? TryRead(IBlockStore store, out string? problem)
    {
        problem = null;
        if (store.Length < Size) { problem = "it is smaller than a disk label"; return null; }
        var b = new byte[Size];
        store.Read(0, b);
        if (BinaryPrimitives.ReadUInt64LittleEndian(b) != Magic) { problem = "it has no Strata disk label"; return null; }
        if (BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(Size - 4)) != MetadataBlock.Crc32C(b.AsSpan(0, Size - 4))) { problem = "its Strata disk label fails its checksum"; return null; }
        if (BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(8)) != 1) { problem = "its Strata disk label is of an unknown version"; return null; }
        var label = new DiskLabel(BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(12)), new Guid(b.AsSpan(16, 16)), new Guid(b.AsSpan(32, 16)),
            BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(48)), BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(56)),
            BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(64)), BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(72)), BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(80)));
        if (label.Slot < 0 || label.MetadataOffset < Size || label.MetadataLength <= 0 || label.DataStart < label.MetadataOffset + label.MetadataLength
            || label.SlabSize <= 0 || label.Slabs < 0 || label.DataStart + label.Slabs * label.SlabSize > store.Length)
        { problem = "its Strata disk label is inconsistent with itself or the disk's size"; return null; }
        return label;
    }
}
