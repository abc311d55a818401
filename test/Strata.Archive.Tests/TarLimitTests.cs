using System.IO.Compression;
using System.Text;
using Strata.Archive.Tar;
using Strata.Testing;

namespace Strata.Archive.Tests;

/// <summary>
/// What a tar can make the reader read and hold before it yields a member: extended headers (PAX 'x' and 'g',
/// GNU 'L' and 'K'), names, link targets and xattrs are bounded, and input past a bound is refused with one
/// InvalidArgument line that names the limit — before the reader reads or allocates what lies beyond it.
/// </summary>
public class TarLimitTests
{
    const int MiB = 1 << 20;

    /// <summary>
    /// Extended headers generated on the fly (the input is never held in memory): <c>count</c> PAX headers of
    /// 1 MiB - 1 KiB each, every one with a keyword of its own, then a member and the end marker. Counts the bytes
    /// the reader takes from it.
    /// </summary>
    sealed class PaxFlood : ReadOnlyStream
    {
        const int DataSize = MiB - 1024;
        readonly byte[] _unit;
        readonly byte[] _tail = RawTar.Concat(RawTar.Header("f"), RawTar.End);
        readonly int _count, _keyAt;
        long _pos;

        public PaxFlood(int count)
        {
            _count = count;
            var header = RawTar.Header("PaxHeaders/f", (byte)'x', size: DataSize);
            string prefix = $"{DataSize} flood.00000000=";
            var data = new byte[DataSize];
            Encoding.ASCII.GetBytes(prefix).CopyTo(data, 0);
            data.AsSpan(prefix.Length, DataSize - prefix.Length - 1).Fill((byte)'v');
            data[^1] = (byte)'\n';
            _keyAt = header.Length + prefix.IndexOf('.') + 1;
            _unit = RawTar.Concat(header, data); // DataSize is a whole number of blocks: no padding
        }

        /// <summary>Bytes handed out so far.</summary>
        public long Taken => _pos;

        public long Total => (long)_count * _unit.Length + _tail.Length;

        public override int Read(Span<byte> buffer)
        {
            int n = 0;
            while (n < buffer.Length && _pos < Total)
            {
                long unit = _pos / _unit.Length;
                ReadOnlySpan<byte> src;
                if (unit < _count)
                {
                    WriteKey((int)unit);
                    src = _unit.AsSpan((int)(_pos % _unit.Length));
                }
                else src = _tail.AsSpan((int)(_pos - (long)_count * _unit.Length));
                int take = Math.Min(buffer.Length - n, src.Length);
                src[..take].CopyTo(buffer[n..]);
                n += take;
                _pos += take;
            }
            return n;
        }

        void WriteKey(int i)
        {
            for (int d = 7; d >= 0; d--, i /= 10) _unit[_keyAt + d] = (byte)('0' + i % 10);
        }
    }

    static StrataException Refused(Action read, string fragment)
    {
        var ex = Assert.ThrowsAny<StrataException>(read);
        Assert.True(ex.Kind == ErrorKind.InvalidArgument, $"expected InvalidArgument, got {ex.Kind}: {ex.Message}");
        Assert.Contains(fragment, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        return ex;
    }

    [Fact]
    public void ConsecutivePaxHeadersWithDistinctKeys_AreRefusedAtTheLimit_BeforeTheReaderTakesTheRest()
    {
        var flood = new PaxFlood(64);
        using var reader = new TarReader(flood);
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        Refused(() => reader.Next(), "extended headers before one member exceed the limit of 1 MiB");
        allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
        // the second header is the one refused: nothing of its data is read, and the stream gave at most the
        // reader's buffer (1 MiB) beyond it; nothing of the size of a header was allocated for the headers
        Assert.Equal(MiB, reader.Position); // header, data, and the second header's block
        Assert.InRange(flood.Taken, 0, 2 * MiB);
        Assert.True(flood.Total > 60L * MiB);
        Assert.InRange(allocated, 0, MiB / 2);
    }

    [Fact]
    public void APaxFloodInAGzipLayer_IsRefusedByTheApplier_AndLeavesTheTargetEmpty()
    {
        using var tmp = new TempRoot();
        string target = tmp.Dir("target");
        var gz = new MemoryStream();
        using (var z = new GZipStream(gz, CompressionLevel.Fastest, leaveOpen: true)) new PaxFlood(64).CopyTo(z);
        Assert.InRange(gz.Length, 0, 2 * MiB); // 64 MiB of headers in little space, as the attack sends them
        gz.Position = 0;
        using var input = LayerInput.Open(gz);
        Refused(() => LayerApplier.Apply(input, target), "exceed the limit of 1 MiB");
        Assert.Empty(Directory.GetFileSystemEntries(target));
    }

    [Theory]
    [InlineData('x')]
    [InlineData('g')]
    [InlineData('L')]
    [InlineData('K')]
    public void OneExtendedHeaderOverTheLimit_IsRefusedFromItsHeaderAlone(char type)
    {
        // only the header block is there: the refusal must not wait for (or read) the data it declares
        var tar = RawTar.Header("meta", (byte)type, size: MiB + 1);
        using var reader = new TarReader(new MemoryStream(tar));
        var ex = Refused(() => reader.Next(), $"extended headers before one member exceed the limit of 1 MiB ({MiB + 1} bytes)");
        Assert.Contains("(header at byte 0)", ex.Message);
    }

    static byte[] Pax(params (string Key, string Value)[] records)
    {
        var rec = new List<byte>();
        foreach (var (k, v) in records) TarFormat.AppendPaxRecord(rec, k, Encoding.UTF8.GetBytes(v));
        return Meta('x', rec.ToArray());
    }

    static byte[] Meta(char type, byte[] data)
    {
        var padded = new byte[(data.Length + 511) / 512 * 512];
        data.CopyTo(padded, 0);
        return RawTar.Concat(RawTar.Header("meta", (byte)type, size: data.Length), padded);
    }

    [Fact]
    public void ExtendedHeadersUpToTheLimitTogether_AreRead_OneByteMoreIsNot()
    {
        var name = Encoding.ASCII.GetBytes("long/" + new string('n', 200) + "\0");
        var link = Encoding.ASCII.GetBytes("target/" + new string('t', 200) + "\0");
        var global = Encoding.ASCII.GetBytes("52 comment=4f0e2bd4e0ffcbd4af4b9e36b8d0e38ac31f3c28\n");
        static byte[] Filler(int size)
        {
            var rec = new List<byte>();
            TarFormat.AppendPaxRecord(rec, "comment", new byte[size - 17]);
            Assert.Equal(size, rec.Count);
            return rec.ToArray();
        }
        int rest = MiB - name.Length - link.Length - global.Length;
        var atLimit = RawTar.Concat(Meta('g', global), Meta('L', name), Meta('K', link), Meta('x', Filler(rest)),
            RawTar.Header("short", (byte)'2', link: "t"), RawTar.End);
        var e = Assert.Single(Apply.ReadAll(atLimit));
        Assert.Equal(("long/" + new string('n', 200), "target/" + new string('t', 200)), (e.Name, e.LinkName));

        var overLimit = RawTar.Concat(Meta('g', global), Meta('L', name), Meta('K', link), Meta('x', Filler(rest + 1)),
            RawTar.Header("short", (byte)'2', link: "t"), RawTar.End);
        Refused(() => Apply.ReadAll(overLimit), $"exceed the limit of 1 MiB ({MiB + 1} bytes)");
    }

    [Fact]
    public void TheLimitCountsPerMember_SoEveryMemberMayUseIt()
    {
        var b = new List<byte[]>();
        for (int i = 0; i < 4; i++)
        {
            var rec = new List<byte>();
            TarFormat.AppendPaxRecord(rec, "comment", new byte[MiB - 1024]);
            b.Add(Meta('x', rec.ToArray()));
            b.Add(RawTar.Header($"f{i}"));
        }
        b.Add(RawTar.End);
        Assert.Equal(["f0", "f1", "f2", "f3"], Apply.ReadAll(RawTar.Concat([.. b])).Select(e => e.Name));
    }

    [Theory]
    [InlineData('g')]
    [InlineData('x')]
    public void ManySmallExtendedHeadersBeforeOneMember_AreRefused(char type)
    {
        var empty = RawTar.Header("meta", (byte)type, size: 0);
        var sixteen = RawTar.Concat([.. Enumerable.Repeat(empty, 16), RawTar.Header("f"), RawTar.End]);
        Assert.Equal("f", Assert.Single(Apply.ReadAll(sixteen)).Name);
        var seventeen = RawTar.Concat([.. Enumerable.Repeat(empty, 17), RawTar.Header("f"), RawTar.End]);
        Refused(() => Apply.ReadAll(seventeen), "more than 16 extended headers before one member (header at byte 8192)");
    }

    [Fact]
    public void NamesAndLinkTargetsLongerThanPathMax_AreReadAsGoReadsThem()
    {
        // the applier creates paths deeper than PATH_MAX a component at a time: only the extended headers' bound applies
        string deep = string.Join('/', Enumerable.Repeat(new string('d', 254), 40)) + "/f"; // 10,202 bytes
        var tar = RawTar.Concat(Pax(("path", deep), ("linkpath", deep)), RawTar.Header("s", (byte)'2', link: "t"), RawTar.End);
        Assert.Equal((deep, deep), Apply.ReadAll(tar).Select(e => (e.Name, e.LinkName)).Single());
        var gnu = RawTar.Concat(Meta('L', Encoding.ASCII.GetBytes(deep + "\0")), RawTar.Header("f"), RawTar.End);
        Assert.Equal(deep, Apply.ReadAll(gnu).Single().Name);
    }

    [Fact]
    public void XattrsBeyondWhatLinuxCanHold_AreRefused()
    {
        static byte[] WithXattrs(params (string Name, int Size)[] xattrs)
        {
            var rec = new List<byte>();
            foreach (var (name, size) in xattrs) TarFormat.AppendPaxRecord(rec, "SCHILY.xattr." + name, new byte[size]);
            return RawTar.Concat(Meta('x', rec.ToArray()), RawTar.Header("f"), RawTar.End);
        }
        var largest = Assert.Single(Apply.ReadAll(WithXattrs(("user." + new string('n', 250), 65536))).Single().Xattrs!);
        Assert.Equal(65536, largest.Value.Length);

        Refused(() => Apply.ReadAll(WithXattrs(("user.big", 65537))), "xattr 'user.big' of 65537 bytes exceeds the limit of 64 KiB (Linux's XATTR_SIZE_MAX)");
        Refused(() => Apply.ReadAll(WithXattrs(("user." + new string('n', 251), 1))), "xattr name of 256 bytes exceeds the limit of 255 bytes (Linux's XATTR_NAME_MAX)");
        Refused(() => Apply.ReadAll(WithXattrs(("", 1))), "xattr with an empty name");
        // 300 names of 250 bytes: more than a file's xattr names may take together
        var many = Enumerable.Range(0, 300).Select(i => ($"user.{i:D3}" + new string('n', 242), 0)).ToArray();
        Refused(() => Apply.ReadAll(WithXattrs(many)), "xattr names of 75300 bytes exceed the limit of 64 KiB (Linux's XATTR_LIST_MAX)");
    }

    [Fact]
    public void MembersDeepInDistinctDirectories_CostTheApplierMemoryPerComponent_NotAWholePathPerAncestor()
    {
        // A member in a directory 1,000 deep implies 1,000 ancestors, and an opaque marker later in the tar must keep
        // them. Held as whole paths they take a quadratic 2 MB per member (a few dozen bytes of gzip), 17 MB here.
        using var tmp = new TempRoot();
        string target = tmp.Dir("target");
        string chain = string.Join('/', Enumerable.Repeat("d", 1000));
        var tar = new TarBuilder();
        for (int i = 0; i < 8; i++)
        {
            Directory.CreateDirectory(Path.Combine(target, $"c{i}", chain)); // as a layer below would have them
            tar.File($"c{i}/{chain}/f", "x");
        }
        var bytes = tar.Bytes();
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        Apply.Tar(bytes, target);
        allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
        Assert.Equal("x", File.ReadAllText(Path.Combine(target, "c7", chain, "f")));
        Assert.InRange(allocated, 0, 4 * MiB);
    }
}
