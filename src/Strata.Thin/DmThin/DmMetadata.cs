using System.Buffers.Binary;
using Strata.Block;
using Strata.Native;
using Strata.Thin.Metadata;

namespace Strata.Thin.DmThin;

/// <summary>
/// The metadata device of a dm-thin pool, read block by block and never written: 4 KiB blocks, each (but for bitmap
/// and index blocks of the space maps, which this reader does not need) checksummed as persistent-data does it:
/// crc32c (seed ~0, no final inversion) of bytes 4..4096, XORed with a salt per block type, stored little-endian in
/// bytes 0..4; bytes 8..16 hold the block's own number. A block that fails either is damage, reported with its
/// number, never followed.
/// </summary>
public sealed class DmMetadata : IDisposable
{
    public const int BlockSize = 4096;

    /// <summary>Salts of the block types (persistent-data's SUPERBLOCK_CSUM_XOR and BTREE_CSUM_XOR).</summary>
    public const uint SuperblockSalt = 160774, NodeSalt = 121107;

    readonly IBlockStore _store;

    public DmMetadata(IBlockStore store)
    {
        _store = store;
        Blocks = store.Length / BlockSize;
    }

    /// <summary>Whole blocks the metadata file or device holds.</summary>
    public long Blocks { get; }

    public string Name => _store.Name;

    /// <summary>persistent-data's checksum of a block.</summary>
    public static uint Checksum(ReadOnlySpan<byte> block, uint salt) => ~MetadataBlock.Crc32C(block[4..]) ^ salt;

    /// <summary>Reads block <paramref name="number"/> into <paramref name="block"/> and checks its checksum and its
    /// self-reference; returns what is wrong (null: nothing).</summary>
    public string? TryRead(ulong number, Span<byte> block, uint salt)
    {
        if (number >= (ulong)Blocks) return $"metadata block {number} is past the end of {Name} ({Blocks} blocks)";
        _store.Read((long)number * BlockSize, block[..BlockSize]);
        if (BinaryPrimitives.ReadUInt32LittleEndian(block) != Checksum(block[..BlockSize], salt))
            return $"metadata block {number} fails its checksum";
        ulong self = BinaryPrimitives.ReadUInt64LittleEndian(block[8..]);
        if (self != number) return $"metadata block {number} says it is block {self} (misplaced or from another device)";
        return null;
    }

    public void Dispose() => _store.Dispose();
}
