using System.Buffers.Binary;

namespace Strata.Thin.DmThin;

/// <summary>
/// What filesystem is at the start of a device, and its size, from its superblock: for devices whose own size is kept
/// elsewhere (dm-thin's, in the device-mapper table: a device served smaller than its filesystem does not mount), and
/// to mount them with the right read-only options.
/// Knows ext2/3/4 (superblock at byte 1024: s_blocks_count_lo at +4, s_log_block_size at +24, magic 0xEF53 at +56,
/// s_feature_incompat at +96 with 0x80 = 64bit, s_blocks_count_hi at +336; little-endian) and xfs (byte 0: "XFSB",
/// sb_blocksize u32 at +4, sb_dblocks u64 at +8; big-endian).
/// </summary>
public static class FilesystemProbe
{
    /// <summary>Bytes from the device's start that <see cref="Size"/> and <see cref="Type"/> need.</summary>
    public const int ProbeLength = 4096;

    /// <summary>The filesystem's size in bytes, or 0 when the bytes hold no superblock it knows.</summary>
    public static long Size(ReadOnlySpan<byte> head)
    {
        if (head.Length < ProbeLength) return 0;
        if (head[..4].SequenceEqual("XFSB"u8))
        {
            uint blockSize = BinaryPrimitives.ReadUInt32BigEndian(head[4..]);
            ulong blocks = BinaryPrimitives.ReadUInt64BigEndian(head[8..]);
            return blockSize is >= 512 and <= 65536 && blocks < (1UL << 40) ? (long)blocks * blockSize : 0;
        }
        var ext = head.Slice(1024, 1024);
        if (BinaryPrimitives.ReadUInt16LittleEndian(ext[56..]) == 0xEF53)
        {
            uint log = BinaryPrimitives.ReadUInt32LittleEndian(ext[24..]);
            ulong count = BinaryPrimitives.ReadUInt32LittleEndian(ext[4..]);
            if ((BinaryPrimitives.ReadUInt32LittleEndian(ext[96..]) & 0x80) != 0)
                count |= (ulong)BinaryPrimitives.ReadUInt32LittleEndian(ext[336..]) << 32;
            return log <= 6 && count < (1UL << 40) ? (long)count << (int)(10 + log) : 0;
        }
        return 0;
    }

    /// <summary>"xfs" or "ext4" (ext2 and ext3 mount as ext4), or null when the bytes hold neither's superblock.</summary>
    public static string? Type(ReadOnlySpan<byte> head) =>
        head.Length < ProbeLength ? null
        : head[..4].SequenceEqual("XFSB"u8) ? "xfs"
        : BinaryPrimitives.ReadUInt16LittleEndian(head[(1024 + 56)..]) == 0xEF53 ? "ext4"
        : null;

    /// <summary>The options that mount <paramref name="type"/> read-only without replaying a journal (a device that
    /// cannot be written must not be: ext4's noload, xfs's norecovery); xfs also with nouuid, since snapshots of one
    /// filesystem share its UUID and xfs refuses a second mount of a UUID (Docker mounts its devices so too).</summary>
    public static string ReadOnlyOptions(string type) => type == "xfs" ? "norecovery,nouuid" : "noload";
}
