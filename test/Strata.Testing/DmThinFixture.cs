using System.Buffers.Binary;
using System.Text;

namespace Strata.Testing;

/// <summary>
/// A dm-thin pool made by thin-provisioning-tools for tests: thin_restore builds the metadata from a document
/// written here (a base device of ranges and single mappings, a snapshot of it sharing most of its blocks and owning
/// two, a device of 3,000 single mappings whose tree has internal nodes, an empty device), and the data file gets a
/// known pattern in each mapped data block, so every device's expected bytes are known.
/// </summary>
public sealed class DmThinFixture
{
    public const int BlockSize = 64 * 1024;
    public const long DataBlocks = 4000;

    /// <summary>Device id -> virtual block -> (data block, time).</summary>
    public SortedDictionary<uint, SortedDictionary<long, (long Data, uint Time)>> Mappings { get; } = [];

    public required string Data { get; init; }
    public required string Metadata { get; init; }
    public required string Xml { get; init; }

    /// <summary>Bytes of a device that are a data block's (the rest of a block reads as zeros).</summary>
    public static void Fill(long dataBlock, Span<byte> block)
    {
        block.Clear();
        for (int i = 0; i < 512; i++) block[i] = (byte)(dataBlock * 31 + i * 7 + (dataBlock >> 8));
        BinaryPrimitives.WriteInt64LittleEndian(block[^8..], dataBlock);
    }

    /// <summary>The expected bytes of one virtual block of a device.</summary>
    public byte[] Expected(uint device, long block)
    {
        var bytes = new byte[BlockSize];
        if (Mappings[device].TryGetValue(block, out var m)) Fill(m.Data, bytes);
        return bytes;
    }

    public static DmThinFixture Create(string dir, int version = 2)
    {
        var maps = new SortedDictionary<uint, SortedDictionary<long, (long, uint)>>
        {
            [1] = [], [2] = [], [3] = [], [4] = [],
        };
        for (int i = 0; i < 16; i++) maps[1][i] = (100 + i, 0);
        maps[1][40] = (7, 0);
        for (int i = 0; i < 3; i++) maps[1][50 + i] = (200 + i, 1);
        foreach (var (k, v) in maps[1]) maps[2][k] = v; // a snapshot of 1 at time 1 ...
        maps[2][50] = (150, 2); // ... that wrote block 50 (copied) and block 60 since
        maps[2][60] = (300, 2);
        for (int i = 0; i < 3000; i++) maps[3][2 * i] = (400 + i, 1);

        var xml = new StringBuilder();
        xml.Append($"<superblock uuid=\"\" time=\"2\" transaction=\"7\" version=\"{version}\" data_block_size=\"{BlockSize / 512}\" nr_data_blocks=\"{DataBlocks}\">\n");
        foreach (var (dev, map) in maps)
        {
            xml.Append($"  <device dev_id=\"{dev}\" mapped_blocks=\"{map.Count}\" transaction=\"{dev}\" creation_time=\"{(dev == 2 ? 1 : 0)}\" snap_time=\"{(dev is 1 or 2 ? 1 : 0)}\">\n");
            foreach (var (v, (d, t)) in map) xml.Append($"    <single_mapping origin_block=\"{v}\" data_block=\"{d}\" time=\"{t}\"/>\n");
            xml.Append("  </device>\n");
        }
        xml.Append("</superblock>\n");
        string xmlPath = Path.Combine(dir, "pool.xml"), meta = Path.Combine(dir, "metadata"), data = Path.Combine(dir, "data");
        File.WriteAllText(xmlPath, xml.ToString());
        Shell.Run("truncate", "-s", "16M", meta).Check("truncate");
        Shell.Run("thin_restore", "-i", xmlPath, "-o", meta).Check("thin_restore");
        using (var f = new FileStream(data, FileMode.CreateNew))
        {
            f.SetLength(DataBlocks * BlockSize);
            var block = new byte[BlockSize];
            foreach (long d in maps.Values.SelectMany(m => m.Values).Select(m => m.Item1).Distinct())
            {
                Fill(d, block);
                f.Position = d * BlockSize;
                f.Write(block, 0, 512);
                f.Position = (d + 1) * BlockSize - 8;
                f.Write(block, BlockSize - 8, 8);
            }
        }
        var fixture = new DmThinFixture { Data = data, Metadata = meta, Xml = xml.ToString() };
        foreach (var (k, v) in maps) fixture.Mappings[k] = v;
        return fixture;
    }

    /// <summary>A pool whose devices hold disk images (an ext4 made by mkfs.ext4 -d, say): each image block that is not
    /// all zeros is mapped, in order, to the next data block; zero blocks stay unmapped, as on a thin device.</summary>
    public static DmThinFixture FromImages(string dir, IReadOnlyDictionary<uint, string> images)
    {
        string xmlPath = Path.Combine(dir, "pool.xml"), meta = Path.Combine(dir, "metadata"), data = Path.Combine(dir, "data");
        var maps = new SortedDictionary<uint, SortedDictionary<long, (long, uint)>>();
        long next = 0;
        using (var f = new FileStream(data, FileMode.CreateNew))
        {
            var block = new byte[BlockSize];
            foreach (var (id, image) in images)
            {
                var map = maps[id] = [];
                using var input = File.OpenRead(image);
                for (long b = 0; input.Position < input.Length; b++)
                {
                    int n = input.ReadAtLeast(block, BlockSize, throwOnEndOfStream: false);
                    block.AsSpan(n).Clear();
                    if (block.AsSpan().IndexOfAnyExcept((byte)0) < 0) continue;
                    map[b] = (next, 0);
                    f.Position = next++ * BlockSize;
                    f.Write(block);
                }
            }
            f.SetLength(Math.Max(next, 1) * BlockSize);
        }
        var xml = new StringBuilder($"<superblock uuid=\"\" time=\"0\" transaction=\"1\" data_block_size=\"{BlockSize / 512}\" nr_data_blocks=\"{Math.Max(next, 1)}\">\n");
        foreach (var (id, map) in maps)
        {
            xml.Append($"  <device dev_id=\"{id}\" mapped_blocks=\"{map.Count}\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">\n");
            foreach (var (v, (d, _)) in map) xml.Append($"    <single_mapping origin_block=\"{v}\" data_block=\"{d}\" time=\"0\"/>\n");
            xml.Append("  </device>\n");
        }
        xml.Append("</superblock>\n");
        File.WriteAllText(xmlPath, xml.ToString());
        Shell.Run("truncate", "-s", "16M", meta).Check("truncate");
        Shell.Run("thin_restore", "-i", xmlPath, "-o", meta).Check("thin_restore");
        var fixture = new DmThinFixture { Data = data, Metadata = meta, Xml = xml.ToString() };
        foreach (var (k, v) in maps) fixture.Mappings[k] = v;
        return fixture;
    }

    /// <summary>Each device's mappings as thin_dump writes them (ranges expanded): device -> block -> (data, time).</summary>
    public static SortedDictionary<uint, SortedDictionary<long, (long Data, uint Time)>> ParseDump(string xml)
    {
        var result = new SortedDictionary<uint, SortedDictionary<long, (long, uint)>>();
        foreach (var dev in System.Xml.Linq.XDocument.Parse(xml).Root!.Elements("device"))
        {
            var map = result[(uint)dev.Attribute("dev_id")!] = [];
            foreach (var m in dev.Elements())
                if (m.Name == "single_mapping") map[(long)m.Attribute("origin_block")!] = ((long)m.Attribute("data_block")!, (uint)m.Attribute("time")!);
                else
                    for (long i = 0; i < (long)m.Attribute("length")!; i++)
                        map[(long)m.Attribute("origin_begin")! + i] = ((long)m.Attribute("data_begin")! + i, (uint)m.Attribute("time")!);
        }
        return result;
    }
}
