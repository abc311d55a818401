using System.Xml.Linq;
using Strata.Native;
using Strata.Testing;
using Strata.Block;

namespace Strata.Thin.Tests;

/// <summary>
/// Interop with Debian's thin-provisioning-tools (0.9.0): what `strata pool dump --xml` writes, thin_restore
/// builds into dm-thin metadata that thin_check passes; what thin_dump writes of metadata thin_restore made
/// from a hand-written document, Strata restores into a pool that maps the same blocks. Bad documents are
/// refused whole.
/// </summary>
public sealed class ThinToolsTests : IDisposable
{
    const int Bs = (int)ThinPool.MinBlockSize;
    static readonly PoolOptions NoTimer = new() { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 };
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>Every device's mappings, from an XML document: dev_id -> (virtual block -> data block).</summary>
    static SortedDictionary<string, SortedDictionary<ulong, ulong>> Mappings(string xml)
    {
        var result = new SortedDictionary<string, SortedDictionary<ulong, ulong>>(StringComparer.Ordinal);
        foreach (var dev in XDocument.Parse(xml).Root!.Elements("device"))
        {
            var map = result[(string)dev.Attribute("dev_id")!] = [];
            foreach (var m in dev.Elements())
                if (m.Name == "single_mapping") map[(ulong)m.Attribute("origin_block")!] = (ulong)m.Attribute("data_block")!;
                else
                    for (ulong i = 0; i < (ulong)m.Attribute("length")!; i++)
                        map[(ulong)m.Attribute("origin_begin")! + i] = (ulong)m.Attribute("data_begin")! + i;
        }
        return result;
    }

    static string Dump(IBlockStore metadata)
    {
        var ms = new MemoryStream();
        ThinPool.DumpXml(metadata, ms);
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    [ThinToolsFact]
    public void OurDumpPassesThinRestoreAndThinCheck()
    {
        var data = new MemoryBlockStore(4096L * Bs);
        var metadata = new MemoryBlockStore(8 << 20);
        using (var pool = ThinPool.Create(data, metadata, options: NoTimer))
        {
            pool.CreateDevice("base", 3000L * Bs);
            using (var dev = pool.OpenDevice("base"))
            {
                dev.Write(0, new byte[40 * Bs]); // a run: one range_mapping
                for (long b = 100; b < 2900; b += 7) dev.Write(b * Bs + 5, new byte[] { 1 }); // many single ones, a deep tree
            }
            pool.Snapshot("base", "snap");
            using (var dev = pool.OpenDevice("snap")) dev.Write(3L * Bs, new byte[] { 2 });
            pool.CreateDevice("empty", Bs);
        }
        string xml = Dump(metadata);
        Assert.Contains("<range_mapping ", xml);
        string xmlFile = _temp.Combine("strata.xml"), meta = _temp.Combine("meta");
        File.WriteAllText(xmlFile, xml);
        Shell.Run("truncate", "-s", "64M", meta).Check("truncate");
        Shell.Run("thin_restore", "-i", xmlFile, "-o", meta).Check("thin_restore");
        Shell.Run("thin_check", meta).Check("thin_check");
        // and thin_dump reads back the same mappings
        Assert.Equal(Mappings(xml), Mappings(Shell.Run("thin_dump", meta).Check("thin_dump").Stdout));
    }

    [ThinToolsFact]
    public void ThinDumpOfThinRestoredMetadataRestoresIntoAPool()
    {
        const string handWritten = """
            <superblock uuid="" time="1" transaction="3" data_block_size="128" nr_data_blocks="1000">
              <device dev_id="1" mapped_blocks="20" transaction="0" creation_time="0" snap_time="1">
                <range_mapping origin_begin="0" data_begin="100" length="16" time="0"/>
                <single_mapping origin_block="40" data_block="7" time="0"/>
                <range_mapping origin_begin="50" data_begin="200" length="3" time="1"/>
              </device>
              <device dev_id="7" mapped_blocks="2" transaction="0" creation_time="1" snap_time="1">
                <single_mapping origin_block="0" data_block="100" time="0"/>
                <single_mapping origin_block="5" data_block="300" time="1"/>
              </device>
            </superblock>
            """;
        string xmlFile = _temp.Combine("hand.xml"), meta = _temp.Combine("meta");
        File.WriteAllText(xmlFile, handWritten);
        Shell.Run("truncate", "-s", "16M", meta).Check("truncate");
        Shell.Run("thin_restore", "-i", xmlFile, "-o", meta).Check("thin_restore");
        string dumped = Shell.Run("thin_dump", meta).Check("thin_dump").Stdout;

        var data = new MemoryBlockStore(1000L * Bs);
        var metadata = new MemoryBlockStore(8 << 20);
        // the data the mappings point at is where the restore leaves it
        data.Write(7L * Bs, new byte[] { 0x77 });
        data.Write(300L * Bs + 1, new byte[] { 0x30 });
        ThinPool.RestoreXml(data, metadata, new MemoryStream(System.Text.Encoding.UTF8.GetBytes(dumped)));
        Assert.True(PoolChecker.Check(metadata).Clean);
        Assert.Equal(Mappings(handWritten), Mappings(Dump(metadata)));
        using var pool = ThinPool.Open(data, metadata, NoTimer);
        Assert.Equal(["1", "7"], pool.Devices().Select(d => d.Name));
        var devices = pool.Devices().ToDictionary(d => d.Name);
        Assert.Equal(20UL, devices["1"].Mapped);
        Assert.Equal(1UL, devices["7"].Exclusive); // data block 100 is shared with device 1
        var buffer = new byte[2];
        using (var dev = pool.OpenDevice("1")) dev.Read(40L * Bs, buffer);
        Assert.Equal(0x77, buffer[0]);
        using (var dev = pool.OpenDevice("7")) dev.Read(5L * Bs, buffer);
        Assert.Equal(0x30, buffer[1]);
    }

    [Fact]
    public void ARestoreTooBigForTheMetadataIsRefusedBeforeAnythingIsReplaced()
    {
        var data = new MemoryBlockStore(100_000L * Bs);
        var metadata = new MemoryBlockStore(64 * 4096);
        using (var pool = ThinPool.Create(data, metadata, options: NoTimer)) pool.CreateDevice("kept", Bs);
        string xml = "<superblock data_block_size=\"128\" nr_data_blocks=\"100000\"><device dev_id=\"1\">"
            + string.Concat(Enumerable.Range(0, 50_000).Select(i => $"<single_mapping origin_block=\"{i * 2}\" data_block=\"{i}\"/>"))
            + "</device></superblock>";
        var ex = Assert.Throws<StrataException>(() => ThinPool.RestoreXml(data, metadata, new MemoryStream(System.Text.Encoding.UTF8.GetBytes(xml))));
        Assert.Equal(ErrorKind.NoSpace, ex.Kind);
        using var reopened = ThinPool.Open(data, metadata, NoTimer);
        Assert.Equal(["kept"], reopened.Devices().Select(d => d.Name));
    }

    [Theory]
    [InlineData("<superblock data_block_size=\"128\" nr_data_blocks=\"10\"><device dev_id=\"1\"><single_mapping origin_block=\"18446744073709551000\" data_block=\"1\"/></device></superblock>", "past the pool")]
    [InlineData("<superblock data_block_size=\"100\" nr_data_blocks=\"10\"/>", "power of two")]
    [InlineData("<superblock data_block_size=\"128\" nr_data_blocks=\"10\"><device dev_id=\"1\"><single_mapping origin_block=\"0\" data_block=\"10\"/></device></superblock>", "past the pool")]
    [InlineData("<superblock data_block_size=\"128\" nr_data_blocks=\"10\"><device dev_id=\"1\"><range_mapping origin_begin=\"0\" data_begin=\"1\" length=\"2\"/><single_mapping origin_block=\"1\" data_block=\"5\"/></device></superblock>", "twice")]
    [InlineData("<superblock data_block_size=\"128\" nr_data_blocks=\"10\"><device dev_id=\"1\"/><device dev_id=\"1\"/></superblock>", "appears twice")]
    [InlineData("<superblock data_block_size=\"128\" nr_data_blocks=\"10\"><device dev_id=\"x\"/></superblock>", "not a number")]
    [InlineData("<superblock data_block_size=\"128\" nr_data_blocks=\"10\"><device dev_id=\"1\">", "malformed")]
    [InlineData("<!DOCTYPE x [<!ENTITY e \"e\">]><superblock/>", "malformed")]
    [InlineData("<superblock data_block_size=\"128\" nr_data_blocks=\"99999\"/>", "holds only")]
    public void ABadDocumentIsRefusedAndTheMetadataIsUntouched(string xml, string fragment)
    {
        var data = new MemoryBlockStore(100L * Bs);
        var metadata = new MemoryBlockStore(1 << 20);
        using (var pool = ThinPool.Create(data, metadata, options: NoTimer)) pool.CreateDevice("kept", Bs);
        var ex = Assert.Throws<StrataException>(() => ThinPool.RestoreXml(data, metadata, new MemoryStream(System.Text.Encoding.UTF8.GetBytes(xml))));
        Assert.Contains(fragment, ex.Message);
        using var reopened = ThinPool.Open(data, metadata, NoTimer);
        Assert.Equal(["kept"], reopened.Devices().Select(d => d.Name));
    }
}
