using System.Buffers.Binary;
using Strata.Native;

namespace Strata.Thin.DmThin;

/// <summary>
/// dm-thin's superblock, block 0 of the metadata device, as the kernel (drivers/md/dm-thin-metadata.c) and
/// thin-provisioning-tools write it. Little-endian, packed:
/// <code>
///   0  u32 csum             4  u32 flags (bit 0: needs_check)   8  u64 blocknr (0)
///  16  u8[16] uuid         32  u64 magic (27022010)            40  u32 version (1 or 2)   44  u32 time
///  48  u64 transaction id  56  u64 held root (a metadata snapshot; 0: none)
///  64  data space map root (128 bytes: u64 nr_blocks, u64 nr_allocated, u64 bitmap root, u64 ref count root)
/// 192  metadata space map root (128 bytes, the same fields)
/// 320  u64 data mapping root (dev id -> (virtual block -> data block &lt;&lt; 24 | time))
/// 328  u64 device details root (dev id -> details)
/// 336  u32 data block size (512-byte sectors)   340 u32 metadata block size (sectors: 8)
/// 344  u64 metadata nr blocks   352 u32 compat   356 u32 compat_ro   360 u32 incompat
/// </code>
/// Versions 1 and 2 share this layout (2 added the needs_check flag); incompat flags are none so far, and a
/// superblock with any is refused, as the kernel refuses it.
/// </summary>
public sealed record DmSuperblock
{
    public const ulong Magic = 27022010;
    public const uint NeedsCheckFlag = 1;

    public required uint Flags { get; init; }
    public required Guid Uuid { get; init; }
    public required uint Version { get; init; }
    public required uint Time { get; init; }
    public required ulong TransactionId { get; init; }
    public required ulong HeldRoot { get; init; }
    public required ulong DataBlocks { get; init; }
    public required ulong DataBlocksAllocated { get; init; }
    public required ulong MetadataBlocks { get; init; }
    public required ulong MetadataBlocksAllocated { get; init; }
    public required ulong MappingRoot { get; init; }
    public required ulong DetailsRoot { get; init; }
    /// <summary>Bytes per data block: a multiple of 64 KiB from 64 KiB to 1 GiB.</summary>
    public required long DataBlockSize { get; init; }

    public bool NeedsCheck => (Flags & NeedsCheckFlag) != 0;

    /// <summary>Reads and checks block 0; throws one line naming <paramref name="metadata"/> when it is not a dm-thin
    /// superblock this reader understands.</summary>
    public static DmSuperblock Read(DmMetadata metadata)
    {
        string name = metadata.Name;
        if (metadata.Blocks < 1) throw StrataException.Corrupt($"{name} is not dm-thin metadata: it is shorter than one 4 KiB block");
        var block = new byte[DmMetadata.BlockSize];
        string? problem = metadata.TryRead(0, block, DmMetadata.SuperblockSalt);
        ulong magic = BinaryPrimitives.ReadUInt64LittleEndian(block.AsSpan(32));
        if (magic != Magic)
            throw StrataException.Corrupt(block.AsSpan().IndexOfAnyExcept((byte)0) < 0
                ? $"{name} is not dm-thin metadata: its first block is all zeros (a pool never activated, or the data file given as --metadata?)"
                : $"{name} is not dm-thin metadata: no dm-thin superblock magic in block 0 (the data file given as --metadata, or another format?)");
        if (problem is not null) throw StrataException.Corrupt($"{name}: the dm-thin superblock is damaged: {problem}");
        var s = block.AsSpan();
        uint version = U32(s, 40);
        if (version is < 1 or > 2) throw StrataException.Unsupported($"{name}: dm-thin metadata version {version} is unknown (this reader knows versions 1 and 2)");
        uint incompat = U32(s, 360);
        if (incompat != 0) throw StrataException.Unsupported($"{name}: the dm-thin superblock has incompatible features 0x{incompat:x} this reader does not know");
        uint metaSectors = U32(s, 340);
        if (metaSectors != DmMetadata.BlockSize / 512)
            throw StrataException.Unsupported($"{name}: metadata blocks of {metaSectors} sectors (dm-thin writes 8: 4 KiB)");
        uint dataSectors = U32(s, 336);
        if (dataSectors < 128 || dataSectors > 2097152 || dataSectors % 128 != 0)
            throw StrataException.Corrupt($"{name}: data block size of {dataSectors} sectors is not a multiple of 64 KiB between 64 KiB and 1 GiB");
        var sb = new DmSuperblock
        {
            Flags = U32(s, 4),
            Uuid = new Guid(s.Slice(16, 16)),
            Version = version,
            Time = U32(s, 44),
            TransactionId = U64(s, 48),
            HeldRoot = U64(s, 56),
            DataBlocks = U64(s, 64),
            DataBlocksAllocated = U64(s, 72),
            MetadataBlocks = U64(s, 192),
            MetadataBlocksAllocated = U64(s, 200),
            MappingRoot = U64(s, 320),
            DetailsRoot = U64(s, 328),
            DataBlockSize = dataSectors * 512L,
        };
        if (sb.DataBlocks >= 1UL << 40) // a mapping holds a data block in 40 bits
            throw StrataException.Corrupt($"{name}: the dm-thin superblock counts {sb.DataBlocks} data blocks, more than a mapping can name");
        if (sb.DataBlocksAllocated > sb.DataBlocks || sb.MetadataBlocksAllocated > sb.MetadataBlocks)
            throw StrataException.Corrupt($"{name}: the dm-thin superblock's space maps count more blocks used than they hold");
        if (sb.MappingRoot == 0 || sb.DetailsRoot == 0 || sb.MappingRoot >= (ulong)metadata.Blocks || sb.DetailsRoot >= (ulong)metadata.Blocks)
            throw StrataException.Corrupt($"{name}: the dm-thin superblock's tree roots ({sb.MappingRoot}, {sb.DetailsRoot}) are not blocks of its {metadata.Blocks}");
        return sb;
    }

    static uint U32(ReadOnlySpan<byte> s, int at) => BinaryPrimitives.ReadUInt32LittleEndian(s[at..]);
    static ulong U64(ReadOnlySpan<byte> s, int at) => BinaryPrimitives.ReadUInt64LittleEndian(s[at..]);
}
