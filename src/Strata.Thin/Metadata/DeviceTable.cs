using System.Buffers.Binary;
using System.Text;
using Strata.Native;

namespace Strata.Thin.Metadata;

/// <summary>One thin device as the metadata keeps it.</summary>
sealed class DeviceRecord
{
    public required uint Id { get; init; }
    public required string Name { get; init; }
    public ulong Size { get; set; }
    /// <summary>Root of its mapping tree (0: nothing mapped).</summary>
    public ulong Root { get; set; }
    public ulong Mapped { get; set; }
    /// <summary>The device it was snapshotted from when it was made (0: none).</summary>
    public uint Origin { get; init; }
    public ulong CreatedTransaction { get; init; }
    public long CreatedUnixMs { get; init; }
    /// <summary>Who holds the device (e.g. "layer abc" for the thin driver's layers), or null: deleting it is refused to
    /// anyone else unless forced. Text for people; the pool does not interpret it.</summary>
    public string? Owner { get; init; }
}

/// <summary>
/// The device table: every device's record, rewritten whole to new metadata blocks at a commit that changed it
/// (it is small: thousands of devices fit in a few blocks). A chain of Devices blocks, each header's extra field
/// naming the next. An entry, little-endian, as format 2 writes it:
/// <code>
///  0 u32 id   4 u32 origin   8 u64 size (bytes)   16 u64 root   24 u64 mapped blocks
/// 32 u64 created transaction   40 i64 created (unix ms)   48 u8 name length   49 u8 owner length (0: none)
/// 50 name (UTF-8, 1..128 bytes), then owner (UTF-8, 0..255 bytes)
/// </code>
/// Format 1 (superblock version 1) had no owner: its name started at 49.
/// </summary>
static class DeviceTable
{
    const int Fixed = 50;
    public const int MaxName = 128;
    public const int MaxOwner = 255; // "layer " and a layer id of up to 128 bytes fit

    /// <summary>The records of the table starting at <paramref name="first"/>, written in <paramref name="format"/> (the
    /// superblock's), and the blocks it takes (each counted as used in <paramref name="meta"/>).</summary>
    public static (List<DeviceRecord> Devices, List<ulong> Blocks) Load(MetadataSpace meta, ulong first, uint format)
    {
        int fixedSize = format >= 2 ? Fixed : Fixed - 1;
        var devices = new List<DeviceRecord>();
        var buffer = new byte[MetadataBlock.Size];
        var seen = new HashSet<ulong>();
        var chain = new List<ulong>();
        var ids = new HashSet<uint>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (ulong b = first; b != 0;)
        {
            if (!seen.Add(b)) throw StrataException.Corrupt($"the device table loops back to metadata block {b}");
            chain.Add(b);
            meta.CountAtOpen(b);
            meta.Read(b, buffer, BlockKind.Devices);
            int count = MetadataBlock.Count(buffer), at = MetadataBlock.HeaderSize;
            for (int i = 0; i < count; i++)
            {
                if (at + fixedSize > MetadataBlock.Size) throw StrataException.Corrupt($"device table block {b} overflows");
                var e = buffer.AsSpan(at);
                int nameLength = e[48], ownerLength = format >= 2 ? e[49] : 0;
                if (nameLength is 0 or > MaxName || at + fixedSize + nameLength > MetadataBlock.Size)
                    throw StrataException.Corrupt($"device table block {b} has an entry with a bad name length");
                if (ownerLength > MaxOwner || at + fixedSize + nameLength + ownerLength > MetadataBlock.Size)
                    throw StrataException.Corrupt($"device table block {b} has an entry with a bad owner length");
                var d = new DeviceRecord
                {
                    Id = BinaryPrimitives.ReadUInt32LittleEndian(e),
                    Origin = BinaryPrimitives.ReadUInt32LittleEndian(e[4..]),
                    Size = BinaryPrimitives.ReadUInt64LittleEndian(e[8..]),
                    Root = BinaryPrimitives.ReadUInt64LittleEndian(e[16..]),
                    Mapped = BinaryPrimitives.ReadUInt64LittleEndian(e[24..]),
                    CreatedTransaction = BinaryPrimitives.ReadUInt64LittleEndian(e[32..]),
                    CreatedUnixMs = BinaryPrimitives.ReadInt64LittleEndian(e[40..]),
                    Name = Encoding.UTF8.GetString(e.Slice(fixedSize, nameLength)),
                    Owner = ownerLength == 0 ? null : Encoding.UTF8.GetString(e.Slice(fixedSize + nameLength, ownerLength)),
                };
                if (!ids.Add(d.Id)) throw StrataException.Corrupt($"the device table holds device id {d.Id} twice");
                if (!names.Add(d.Name)) throw StrataException.Corrupt($"the device table holds device name {d.Name} twice");
                devices.Add(d);
                at += fixedSize + nameLength + ownerLength;
            }
            b = MetadataBlock.Extra(buffer);
        }
        return (devices, chain);
    }

    /// <summary>Writes the table to new blocks, in format 2, and returns them, first first (none for no devices).</summary>
    public static List<ulong> Write(MetadataSpace meta, IReadOnlyCollection<DeviceRecord> devices, ulong transaction)
    {
        var blocks = new List<(byte[] Buffer, ulong Block, int Count)>();
        byte[]? current = null;
        int at = 0, count = 0;
        ulong currentBlock = 0;
        foreach (var d in devices.OrderBy(d => d.Id))
        {
            var name = Encoding.UTF8.GetBytes(d.Name);
            var owner = d.Owner is null ? [] : Encoding.UTF8.GetBytes(d.Owner);
            if (current is null || at + Fixed + name.Length + owner.Length > MetadataBlock.Size)
            {
                if (current is not null) blocks.Add((current, currentBlock, count));
                current = new byte[MetadataBlock.Size];
                currentBlock = meta.Allocate();
                at = MetadataBlock.HeaderSize;
                count = 0;
            }
            var e = current.AsSpan(at);
            BinaryPrimitives.WriteUInt32LittleEndian(e, d.Id);
            BinaryPrimitives.WriteUInt32LittleEndian(e[4..], d.Origin);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], d.Size);
            BinaryPrimitives.WriteUInt64LittleEndian(e[16..], d.Root);
            BinaryPrimitives.WriteUInt64LittleEndian(e[24..], d.Mapped);
            BinaryPrimitives.WriteUInt64LittleEndian(e[32..], d.CreatedTransaction);
            BinaryPrimitives.WriteInt64LittleEndian(e[40..], d.CreatedUnixMs);
            e[48] = (byte)name.Length;
            e[49] = (byte)owner.Length;
            name.CopyTo(e[Fixed..]);
            owner.CopyTo(e[(Fixed + name.Length)..]);
            at += Fixed + name.Length + owner.Length;
            count++;
        }
        if (current is not null) blocks.Add((current, currentBlock, count));
        for (int i = 0; i < blocks.Count; i++)
        {
            var (buffer, block, n) = blocks[i];
            MetadataBlock.WriteHeader(buffer, BlockKind.Devices, n, block, transaction, i + 1 < blocks.Count ? blocks[i + 1].Block : 0);
            MetadataBlock.Seal(buffer);
            meta.Write(block, buffer);
        }
        return blocks.Select(b => b.Block).ToList();
    }
}
