using System.Buffers.Binary;

namespace Strata.Thin.Metadata;

/// <summary>
/// The root of a committed transaction. Two slots, metadata blocks 0 and 1: a commit writes the slot the last
/// commit did not use, after everything it points at is durable, so a torn superblock write leaves the other
/// slot's transaction intact. Open takes the valid slot with the higher transaction. Layout after the header
/// (transaction in the header):
/// <code>
/// 32  u64  magic "STRATHIN"       72  u64  device table root (0: none)
/// 40  u32  format version (2, 3)     80  u64  data reference-count index root (0: all free)
/// 44  u32  flags (1: needs_check) 88  u32  next device id
/// 48  u32  data block size        92  u32  reserved
/// 52  u32  metadata block size    96  16 bytes  pool uuid
/// 56  u64  data blocks           112 u64  lost transaction (0: none; see <see cref="SuperblockSlots"/>)
/// 64  u64  metadata blocks       120 u64  space table root (format 3; 0: a pool on one data store)
///                                 128 u64  data checksums root (format 3; 0: none, or all zeros)
/// </code>
/// Format 2 added device owners to the device table (<see cref="DeviceTable"/>); a format 1 pool is read as it is and
/// written as format 2 from its next commit on, in both slots (older Strata then refuses it, by its version; and a slot
/// in a format newer than this Strata's makes open refuse the pool rather than fall back to the other slot). Format 3 is
/// written only by resilient pools (a space table): pools on one data store stay format 2, readable by older Strata.
/// Every field lies in the first 512 bytes, with the checksum: a disk that writes a sector atomically never tears a
/// superblock (the rest of the block is zeros in every version).
/// </summary>
sealed record Superblock
{
    public const ulong Magic = 0x4E49_4854_4152_5453; // "STRATHIN" read little-endian
    public const uint Version = 3;
    /// <summary>The format a pool on one data store writes (no space table).</summary>
    public const uint PlainVersion = 2;
    public const uint NeedsCheckFlag = 1;

    public ulong Transaction { get; init; }
    /// <summary>The format the transaction was written in (1 or <see cref="Version"/>): how its device table reads.</summary>
    public uint Format { get; init; } = PlainVersion;
    public uint Flags { get; init; }
    public uint DataBlockSize { get; init; }
    public ulong DataBlocks { get; init; }
    public ulong MetadataBlocks { get; init; }
    public ulong DeviceTable { get; init; }
    public ulong RefIndex { get; init; }
    public uint NextDeviceId { get; init; }
    public Guid Uuid { get; init; }
    /// <summary>A transaction that a damaged superblock made the pool fall back from, carried by every commit until a
    /// repair acknowledges the loss (0: none).</summary>
    public ulong LostTransaction { get; init; }
    /// <summary>A resilient pool's space table (<see cref="Space.SpaceTable"/>; 0: a pool on one data store).</summary>
    public ulong SpaceTable { get; init; }
    /// <summary>A resilient pool's data checksums (<see cref="Space.ChecksumTable"/>; 0: none).</summary>
    public ulong Sums { get; init; }

    /// <summary>The format this superblock's content needs.</summary>
    public uint NeededFormat => SpaceTable != 0 ? Version : PlainVersion;

    public bool NeedsCheck => (Flags & NeedsCheckFlag) != 0;

    /// <summary>The slot this superblock goes to: transactions alternate between blocks 0 and 1.</summary>
    public ulong Slot => Transaction % 2;

    public void Write(Span<byte> block)
    {
        block.Clear();
        MetadataBlock.WriteHeader(block, BlockKind.Superblock, 0, Slot, Transaction);
        BinaryPrimitives.WriteUInt64LittleEndian(block[32..], Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(block[40..], Format);
        BinaryPrimitives.WriteUInt32LittleEndian(block[44..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(block[48..], DataBlockSize);
        BinaryPrimitives.WriteUInt32LittleEndian(block[52..], MetadataBlock.Size);
        BinaryPrimitives.WriteUInt64LittleEndian(block[56..], DataBlocks);
        BinaryPrimitives.WriteUInt64LittleEndian(block[64..], MetadataBlocks);
        BinaryPrimitives.WriteUInt64LittleEndian(block[72..], DeviceTable);
        BinaryPrimitives.WriteUInt64LittleEndian(block[80..], RefIndex);
        BinaryPrimitives.WriteUInt32LittleEndian(block[88..], NextDeviceId);
        Uuid.TryWriteBytes(block[96..112]);
        BinaryPrimitives.WriteUInt64LittleEndian(block[112..], LostTransaction);
        BinaryPrimitives.WriteUInt64LittleEndian(block[120..], SpaceTable);
        BinaryPrimitives.WriteUInt64LittleEndian(block[128..], Sums);
        MetadataBlock.Seal(block);
    }

    /// <summary>The format version of a sound superblock (checksum, number, magic) that a newer Strata wrote, else 0: a slot
    /// this Strata cannot read but must not take for damage and fall back from.</summary>
    public static uint NewerFormat(ReadOnlySpan<byte> block, ulong slot)
    {
        if (MetadataBlock.Problem(block, slot, BlockKind.Superblock) is not null || BinaryPrimitives.ReadUInt64LittleEndian(block[32..]) != Magic) return 0;
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(block[40..]);
        return version > Version ? version : 0;
    }

    /// <summary>The superblock in slot <paramref name="slot"/>, or null with the reason it is not usable.</summary>
    public static Superblock? TryRead(ReadOnlySpan<byte> block, ulong slot, out string? problem)
    {
        problem = MetadataBlock.Problem(block, slot, BlockKind.Superblock);
        if (problem is not null) return null;
        if (BinaryPrimitives.ReadUInt64LittleEndian(block[32..]) != Magic) { problem = $"superblock {slot} has no Strata magic"; return null; }
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(block[40..]);
        if (version is 0 or > Version) { problem = $"superblock {slot} is format version {version}; this Strata reads versions 1 to {Version}"; return null; }
        if (BinaryPrimitives.ReadUInt32LittleEndian(block[52..]) != MetadataBlock.Size) { problem = $"superblock {slot} has another metadata block size"; return null; }
        var sb = new Superblock
        {
            Transaction = MetadataBlock.Transaction(block),
            Format = version,
            Flags = BinaryPrimitives.ReadUInt32LittleEndian(block[44..]),
            DataBlockSize = BinaryPrimitives.ReadUInt32LittleEndian(block[48..]),
            DataBlocks = BinaryPrimitives.ReadUInt64LittleEndian(block[56..]),
            MetadataBlocks = BinaryPrimitives.ReadUInt64LittleEndian(block[64..]),
            DeviceTable = BinaryPrimitives.ReadUInt64LittleEndian(block[72..]),
            RefIndex = BinaryPrimitives.ReadUInt64LittleEndian(block[80..]),
            NextDeviceId = BinaryPrimitives.ReadUInt32LittleEndian(block[88..]),
            Uuid = new Guid(block[96..112]),
            LostTransaction = BinaryPrimitives.ReadUInt64LittleEndian(block[112..]),
            SpaceTable = version >= 3 ? BinaryPrimitives.ReadUInt64LittleEndian(block[120..]) : 0,
            Sums = version >= 3 ? BinaryPrimitives.ReadUInt64LittleEndian(block[128..]) : 0,
        };
        if (sb.Slot != slot) { problem = $"superblock {slot} holds transaction {sb.Transaction}, which belongs in slot {sb.Slot}"; return null; }
        if (sb.DataBlockSize < ThinPool.MinBlockSize || sb.DataBlockSize > ThinPool.MaxBlockSize || !uint.IsPow2(sb.DataBlockSize))
        { problem = $"superblock {slot} has an invalid data block size {sb.DataBlockSize}"; return null; }
        if (sb.LostTransaction > sb.Transaction) { problem = $"superblock {slot} records transaction {sb.LostTransaction} as lost, after its own {sb.Transaction}"; return null; }
        if (sb.MetadataBlocks < 8 || sb.DeviceTable >= sb.MetadataBlocks || sb.RefIndex >= sb.MetadataBlocks || sb.SpaceTable >= sb.MetadataBlocks || sb.Sums >= sb.MetadataBlocks)
        { problem = $"superblock {slot} points outside the metadata"; return null; }
        return sb;
    }
}
