using System.Buffers.Binary;
using System.Numerics;
using Strata.Native;

namespace Strata.Thin.Metadata;

/// <summary>What a metadata block holds; each kind salts its checksum differently, so a block of one kind is
/// never taken for another.</summary>
enum BlockKind : ushort
{
    Superblock = 1,
    TreeInternal = 2,
    TreeLeaf = 3,
    Devices = 4,
    RefCounts = 5,
    RefIndex = 6,
    Space = 7,
    SumIndex = 8,
    Sums = 9,
}

/// <summary>
/// The 4 KiB metadata block and its 32-byte header, little-endian:
/// <code>
///  0  u32  crc32c of bytes 4..4095, xor the kind's salt
///  4  u16  kind (BlockKind)
///  6  u16  entry count (kind-specific)
///  8  u64  the block's own number (a block written to the wrong place fails its check)
/// 16  u64  transaction that wrote it
/// 24  u64  kind-specific (Devices: the next block of the table, 0 for none)
/// 32       entries
/// </code>
/// Every read validates checksum, kind and number; a block that fails is Corrupt, never used.
/// </summary>
static class MetadataBlock
{
    public const int Size = 4096;
    public const int HeaderSize = 32;
    public const int PayloadSize = Size - HeaderSize;

    static uint Salt(BlockKind kind) => 0x5354_0000u | (uint)kind * 0x9E37u;

    public static BlockKind Kind(ReadOnlySpan<byte> block) => (BlockKind)BinaryPrimitives.ReadUInt16LittleEndian(block[4..]);
    public static int Count(ReadOnlySpan<byte> block) => BinaryPrimitives.ReadUInt16LittleEndian(block[6..]);
    public static ulong Transaction(ReadOnlySpan<byte> block) => BinaryPrimitives.ReadUInt64LittleEndian(block[16..]);
    public static ulong Extra(ReadOnlySpan<byte> block) => BinaryPrimitives.ReadUInt64LittleEndian(block[24..]);

    public static void WriteHeader(Span<byte> block, BlockKind kind, int count, ulong number, ulong transaction, ulong extra = 0)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(block[4..], (ushort)kind);
        BinaryPrimitives.WriteUInt16LittleEndian(block[6..], checked((ushort)count));
        BinaryPrimitives.WriteUInt64LittleEndian(block[8..], number);
        BinaryPrimitives.WriteUInt64LittleEndian(block[16..], transaction);
        BinaryPrimitives.WriteUInt64LittleEndian(block[24..], extra);
    }

    /// <summary>Seals a block: computes its checksum once its header and entries are written.</summary>
    public static void Seal(Span<byte> block) =>
        BinaryPrimitives.WriteUInt32LittleEndian(block, Crc32C(block[4..Size]) ^ Salt(Kind(block)));

    /// <summary>Why <paramref name="block"/>, read from <paramref name="number"/> and expected to be of
    /// <paramref name="kind"/>, is not valid; null when it is.</summary>
    public static string? Problem(ReadOnlySpan<byte> block, ulong number, BlockKind kind)
    {
        var actual = Kind(block);
        if (actual != kind) return $"metadata block {number} is of kind {(ushort)actual}, expected {kind}";
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(block);
        if (stored != (Crc32C(block[4..Size]) ^ Salt(kind))) return $"metadata block {number} ({kind}) fails its checksum";
        ulong self = BinaryPrimitives.ReadUInt64LittleEndian(block[8..]);
        if (self != number) return $"metadata block {number} ({kind}) says it is block {self}";
        return null;
    }

    public static void Validate(ReadOnlySpan<byte> block, ulong number, BlockKind kind)
    {
        if (Problem(block, number, kind) is { } problem) throw StrataException.Corrupt(problem + "; run `strata pool check`");
    }

    /// <summary>Whether a block read from one copy of a mirrored metadata store is whole, without knowing what it should
    /// be: all zeros (never written), or a known kind whose checksum matches; and the transaction that wrote it.</summary>
    public static bool SelfConsistent(ReadOnlySpan<byte> block, out ulong transaction)
    {
        transaction = 0;
        if (block.IndexOfAnyExcept((byte)0) < 0) return true;
        var kind = Kind(block);
        if (kind is < BlockKind.Superblock or > BlockKind.Sums) return false;
        if (BinaryPrimitives.ReadUInt32LittleEndian(block) != (Crc32C(block[4..Size]) ^ Salt(kind))) return false;
        transaction = Transaction(block);
        return true;
    }

    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFF_FFFF;
        int i = 0;
        for (; i + 8 <= data.Length; i += 8) crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
        for (; i < data.Length; i++) crc = BitOperations.Crc32C(crc, data[i]);
        return ~crc;
    }
}
