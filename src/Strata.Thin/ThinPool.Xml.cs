using System.Globalization;
using System.Xml;
using Strata.Native;
using Strata.Thin.Metadata;
using Strata.Block;

namespace Strata.Thin;

/// <summary>
/// thin-provisioning-tools' XML (what <c>thin_dump</c> writes and <c>thin_restore</c> reads; 0.9.0's form):
/// <code>
/// &lt;superblock uuid="" time="0" transaction="N" flags="0" version="2" data_block_size="SECTORS" nr_data_blocks="N"&gt;
///   &lt;device dev_id="1" mapped_blocks="N" transaction="0" creation_time="0" snap_time="0"&gt;
///     &lt;range_mapping origin_begin="0" data_begin="100" length="16" time="0"/&gt;
///     &lt;single_mapping origin_block="40" data_block="7" time="0"/&gt;
///   &lt;/device&gt;
/// &lt;/superblock&gt;
/// </code>
/// The format has no device names or sizes: a dump loses them (names become the ids on restore, sizes the end
/// of the last mapped block), and sharing is implied only by two devices mapping the same data block.
/// </summary>
public sealed partial class ThinPool
{
    /// <summary>Writes the committed metadata of the pool on <paramref name="metadata"/> as XML.</summary>
    public static void DumpXml(IBlockStore metadata, Stream output)
    {
        var sb = ReadSuperblock(metadata);
        if (StoreProblems(sb, null, metadata).FirstOrDefault() is { } problem) throw StrataException.Corrupt($"{problem}; run `strata pool check`");
        var meta = new MetadataSpace(metadata, sb.MetadataBlocks);
        var tree = new MappingTree(meta, new DataSpace(meta, sb.DataBlocks));
        var (devices, _) = DeviceTable.Load(meta, sb.DeviceTable, sb.Format);
        using var w = XmlWriter.Create(output, new XmlWriterSettings { Indent = true, IndentChars = "  ", OmitXmlDeclaration = true, NewLineChars = "\n", Encoding = new System.Text.UTF8Encoding(false) });
        w.WriteStartElement("superblock");
        w.WriteAttributeString("uuid", "");
        w.WriteAttributeString("time", "0");
        w.WriteAttributeString("transaction", Num(sb.Transaction));
        w.WriteAttributeString("flags", "0");
        w.WriteAttributeString("version", "2");
        w.WriteAttributeString("data_block_size", Num(sb.DataBlockSize / 512));
        w.WriteAttributeString("nr_data_blocks", Num(sb.DataBlocks));
        foreach (var d in devices.OrderBy(d => d.Id))
        {
            w.WriteStartElement("device");
            w.WriteAttributeString("dev_id", Num(d.Id));
            w.WriteAttributeString("mapped_blocks", Num(d.Mapped));
            w.WriteAttributeString("transaction", "0");
            w.WriteAttributeString("creation_time", "0");
            w.WriteAttributeString("snap_time", "0");
            // runs of consecutive virtual blocks on consecutive data blocks become one range
            ulong runOrigin = 0, runData = 0, runLength = 0;
            void Flush()
            {
                if (runLength == 0) return;
                if (runLength == 1)
                {
                    w.WriteStartElement("single_mapping");
                    w.WriteAttributeString("origin_block", Num(runOrigin));
                    w.WriteAttributeString("data_block", Num(runData));
                }
                else
                {
                    w.WriteStartElement("range_mapping");
                    w.WriteAttributeString("origin_begin", Num(runOrigin));
                    w.WriteAttributeString("data_begin", Num(runData));
                    w.WriteAttributeString("length", Num(runLength));
                }
                w.WriteAttributeString("time", "0");
                w.WriteEndElement();
                runLength = 0;
            }
            foreach (var (vblock, data) in tree.Range(d.Root))
            {
                if (runLength > 0 && vblock == runOrigin + runLength && data == runData + runLength) runLength++;
                else
                {
                    Flush();
                    (runOrigin, runData, runLength) = (vblock, data, 1);
                }
            }
            Flush();
            w.WriteEndElement();
        }
        w.WriteEndElement();
        w.Flush();
        output.Write("\n"u8);
    }

    static string Num(ulong n) => n.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// Replaces the metadata on <paramref name="metadata"/> by a new pool holding what <paramref name="xml"/>
    /// describes (its block size, and the data blocks each device maps; the data store is used as it is, so
    /// restored mappings find their data where they left it). Devices are named by their ids. Validated whole
    /// before anything is written: a mapping past the data store, a block mapped twice in one device, or a
    /// malformed document is an error that leaves the metadata untouched. Devices held by an owner now (see
    /// <see cref="DeleteDevice"/>) would all go: that is refused unless <paramref name="force"/>; a pool whose device
    /// table cannot be read is restored all the same (restore is how one recovers it).
    /// </summary>
    public static void RestoreXml(IBlockStore data, IBlockStore metadata, Stream xml, bool force = false)
    {
        if (!force && HeldDevices(metadata).FirstOrDefault() is { } held)
            throw StrataException.InUse($"thin device {held.Name} is held by {held.Owner}, and a restore replaces every device: it would break {held.Owner} (and any other owner's devices); --force restores all the same");
        var (blockSize, dataBlocks, devices) = ParseXml(xml);
        if ((ulong)data.Length / blockSize < dataBlocks)
            throw StrataException.Invalid($"the XML describes {dataBlocks} data blocks of {blockSize} bytes; {data.Name} holds only {(ulong)data.Length / blockSize}");
        // refuse before anything is replaced when the metadata store cannot hold it (leaves at least half full,
        // the counts of every data block, the device table, the superblocks, and a margin)
        ulong total = (ulong)devices.Values.Sum(d => (long)d.Count);
        ulong need = 2 + total / (Node.Capacity / 2) + total / 10_000 + (ulong)data.Length / blockSize / DataSpace.CountsPerBlock + 8 + (ulong)devices.Count / 40 + 16;
        ulong have = (ulong)metadata.Length / MetadataBlock.Size;
        if (need > have) throw new StrataException(ErrorKind.NoSpace, $"the metadata store ({have} blocks of 4 KiB) is too small for {total} mappings (about {need} blocks)");
        using var pool = Create(data, metadata, blockSize, new PoolOptions { CommitInterval = TimeSpan.Zero });
        lock (pool._lock)
        {
            foreach (var (id, mappings) in devices)
            {
                var d = new DeviceRecord
                {
                    Id = id, Name = Num(id), Size = mappings.Count == 0 ? blockSize : (mappings.Keys.Max() + 1) * blockSize,
                    CreatedTransaction = 1, CreatedUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
                };
                foreach (var (vblock, block) in mappings)
                {
                    d.Root = pool._tree.Insert(d.Root, vblock, block, out _);
                    pool._space.Claim(block);
                    d.Mapped++;
                }
                pool._devices[d.Name] = d;
                pool._byId[d.Id] = d;
            }
            pool._committed = pool._committed with { NextDeviceId = devices.Count == 0 ? 1 : Math.Min(devices.Keys.Max() + 1, MaxDeviceId) };
            pool._dirty = true;
            pool.CommitLocked();
        }
    }

    /// <summary>The devices with an owner in the committed metadata; none when it cannot be read.</summary>
    static IEnumerable<DeviceRecord> HeldDevices(IBlockStore metadata)
    {
        List<DeviceRecord> devices;
        try
        {
            var sb = ReadSuperblock(metadata);
            if (StoreProblems(sb, null, metadata).Any()) return [];
            (devices, _) = DeviceTable.Load(new MetadataSpace(metadata, sb.MetadataBlocks), sb.DeviceTable, sb.Format);
        }
        catch (StrataException)
        {
            return [];
        }
        return devices.Where(d => d.Owner is not null);
    }

    static (uint BlockSize, ulong DataBlocks, SortedDictionary<uint, SortedDictionary<ulong, ulong>> Devices) ParseXml(Stream xml)
    {
        var devices = new SortedDictionary<uint, SortedDictionary<ulong, ulong>>();
        uint blockSize = 0;
        ulong dataBlocks = 0;
        SortedDictionary<ulong, ulong>? current = null;
        uint currentId = 0;
        try
        {
            using var r = XmlReader.Create(xml, new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null, IgnoreComments = true, IgnoreWhitespace = true });
            while (r.Read())
            {
                if (r.NodeType != XmlNodeType.Element) continue;
                switch (r.Name)
                {
                    case "superblock":
                        ulong sectors = Attr(r, "data_block_size");
                        if (sectors == 0 || sectors * 512 < MinBlockSize || sectors * 512 > MaxBlockSize || !ulong.IsPow2(sectors))
                            throw StrataException.Invalid($"data_block_size {sectors} (sectors) is not a power of two from 64 KiB to 1 GiB; Strata pools need one");
                        blockSize = (uint)(sectors * 512);
                        dataBlocks = Attr(r, "nr_data_blocks");
                        break;
                    case "device":
                        if (blockSize == 0) throw StrataException.Invalid("a <device> comes before <superblock>");
                        ulong id = Attr(r, "dev_id");
                        if (id is 0 or > MaxDeviceId) throw StrataException.Invalid($"dev_id {id} is not from 1 to {MaxDeviceId}");
                        currentId = (uint)id;
                        if (!devices.TryAdd(currentId, current = [])) throw StrataException.Invalid($"dev_id {id} appears twice");
                        break;
                    case "single_mapping":
                        Add(Attr(r, "origin_block"), Attr(r, "data_block"), 1);
                        break;
                    case "range_mapping":
                        Add(Attr(r, "origin_begin"), Attr(r, "data_begin"), Attr(r, "length"));
                        break;
                    default:
                        throw StrataException.Invalid($"unknown element <{r.Name}>");
                }
            }
        }
        catch (XmlException ex)
        {
            throw StrataException.Invalid($"the XML is malformed: {ex.Message}");
        }
        if (blockSize == 0) throw StrataException.Invalid("the XML has no <superblock>");
        return (blockSize, dataBlocks, devices);

        void Add(ulong origin, ulong dataBlock, ulong length)
        {
            if (current is null) throw StrataException.Invalid("a mapping outside a <device>");
            if (length == 0 || length > dataBlocks || dataBlock > dataBlocks - length || origin > (ulong)long.MaxValue / MaxBlockSize - length)
                throw StrataException.Invalid($"device {currentId}: a mapping of {length} block(s) at data block {dataBlock} is past the pool's {dataBlocks} data blocks");
            for (ulong i = 0; i < length; i++)
                if (!current.TryAdd(origin + i, dataBlock + i)) throw StrataException.Invalid($"device {currentId} maps block {origin + i} twice");
        }
    }

    static ulong Attr(XmlReader r, string name)
    {
        string? text = r.GetAttribute(name);
        if (text is null) throw StrataException.Invalid($"<{r.Name}> has no {name}");
        if (!ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong value))
            throw StrataException.Invalid($"<{r.Name}> {name}=\"{(text.Length > 30 ? text[..30] + "..." : text)}\" is not a number");
        return value;
    }
}
