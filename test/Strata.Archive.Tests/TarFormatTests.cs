using System.Text;
using Strata.Archive.Tar;
using Strata.Native;

namespace Strata.Archive.Tests;

/// <summary>The ustar/PAX/GNU encoding itself: checksums, numbers, long names, xattr records, and a
/// TarWriter → TarReader round trip of every member type.</summary>
public class TarFormatTests
{
    [Fact]
    public void Checksum_IsTheByteSumWithTheFieldAsSpaces_WrittenAsSixOctalDigitsNulSpace()
    {
        var block = new byte[512];
        block[0] = (byte)'a';
        block[TarFormat.ChksumOff] = 0x7F; // whatever is in the field must not count
        TarFormat.WriteChecksum(block);
        int expected = 8 * ' ' + 'a'; // 353 = 0541
        Assert.Equal(expected, TarFormat.ComputeChecksum(block, signed: false));
        Assert.Equal("000541\0 "u8.ToArray(), block.AsSpan(TarFormat.ChksumOff, 8).ToArray());
    }

    [Fact]
    public void Checksum_SignedSumsFromOldWritersAreAccepted_AndAWrongSumIsRefused()
    {
        var header = RawTar.Header("caf\u00e9", size: 0); // 0xC3 0xA9: signed and unsigned sums differ
        int signedSum = TarFormat.ComputeChecksum(header, signed: true);
        Assert.NotEqual(signedSum, TarFormat.ComputeChecksum(header, signed: false));
        TarFormat.TryWriteOctal(header.AsSpan(TarFormat.ChksumOff, 7), signedSum);
        var entries = Apply.ReadAll(RawTar.Concat(header, RawTar.End));
        Assert.Equal("caf\u00e9", Assert.Single(entries).Name);

        TarFormat.TryWriteOctal(header.AsSpan(TarFormat.ChksumOff, 7), signedSum + 1);
        var ex = Assert.Throws<StrataException>(() => Apply.ReadAll(RawTar.Concat(header, RawTar.End)));
        Assert.Equal(ErrorKind.Corrupt, ex.Kind);
        Assert.Contains("checksum mismatch", ex.Message);
    }

    [Theory]
    [InlineData("0000644\0", 0x1A4)]
    [InlineData("    644 ", 0x1A4)]
    [InlineData("644\0\0\0\0\0", 0x1A4)]
    [InlineData("\0\0\0\0\0\0\0\0", 0)]
    [InlineData("7777777\0", 0x1FFFFF)]
    [InlineData("00000000", 0)]
    public void Octal_ParsesPaddedAndTerminatedForms(string field, long expected)
    {
        Assert.True(TarFormat.TryReadNumber(Encoding.ASCII.GetBytes(field), out long v));
        Assert.Equal(expected, v);
    }

    [Theory]
    [InlineData("0000648\0")]
    [InlineData("00006 44")]
    [InlineData("-000001\0")]
    [InlineData("0x1f\0\0\0\0")]
    public void Octal_RejectsAnythingElse(string field) =>
        Assert.False(TarFormat.TryReadNumber(Encoding.ASCII.GetBytes(field), out _));

    [Fact]
    public void Octal_WriteFitsOrRefuses()
    {
        var f8 = new byte[8];
        Assert.True(TarFormat.TryWriteOctal(f8, 0x1FFFFF));
        Assert.Equal("7777777\0"u8.ToArray(), f8);
        Assert.False(TarFormat.TryWriteOctal(f8, 0x200000));
        Assert.False(TarFormat.TryWriteOctal(f8, -1));
        var f12 = new byte[12];
        Assert.True(TarFormat.TryWriteOctal(f12, 0x1FFFFFFFF)); // 8 GiB - 1: the largest ustar size
        Assert.Equal("77777777777\0"u8.ToArray(), f12);
        Assert.False(TarFormat.TryWriteOctal(f12, 0x200000000));
    }

    [Fact]
    public void Base256_PositiveValuesParse_NegativeAndOverflowingDoNot()
    {
        Assert.True(TarFormat.TryReadNumber([0x80, 0, 0, 0, 0, 0, 0x12, 0x34], out long small));
        Assert.Equal(0x1234, small);
        byte[] tenGiB = [0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x80, 0, 0, 0];
        Assert.True(TarFormat.TryReadNumber(tenGiB, out long big));
        Assert.Equal(10L << 30, big);
        Assert.False(TarFormat.TryReadNumber([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], out _)); // -1
        byte[] overflow = [0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        Assert.False(TarFormat.TryReadNumber(overflow, out _));
    }

    [Fact]
    public void Base256_InRealHeaders_GivesLargeIdsAndSizes()
    {
        var h = RawTar.Header("big", size: 0);
        RawTar.WithBase256(h, TarFormat.UidOff, 8, [0xFF, 0xFF, 0xFF, 0xFE]);
        RawTar.WithBase256(h, TarFormat.SizeOff, 12, [0x02, 0x80, 0, 0, 0]);
        using var reader = new TarReader(new MemoryStream(RawTar.Concat(h, RawTar.End)));
        var e = reader.Next()!;
        Assert.Equal(0xFFFFFFFEu, e.Uid);
        Assert.Equal(10L << 30, e.Size);
    }

    static List<TarEntry> RoundTrip(params TarEntry[] entries)
    {
        var b = new TarBuilder();
        foreach (var e in entries) b.Entry(e);
        return Apply.ReadAll(b.Bytes());
    }

    static byte[] Raw(params TarEntry[] entries)
    {
        var b = new TarBuilder();
        foreach (var e in entries) b.Entry(e);
        return b.Bytes();
    }

    /// <summary>Counts PAX extended headers by walking the archive header by header.</summary>
    static int PaxHeaders(byte[] tar)
    {
        int n = 0;
        for (int at = 0; !TarFormat.IsZeroBlock(tar.AsSpan(at, 512));)
        {
            Assert.True(TarFormat.TryReadNumber(tar.AsSpan(at + TarFormat.SizeOff, 12), out long size));
            if (tar[at + TarFormat.TypeOff] == 'x') n++;
            at += 512 + (int)((size + 511) / 512 * 512);
        }
        return n;
    }

    [Fact]
    public void LongNames_UpTo256SplitIntoPrefix_LongerOnesUsePaxPath()
    {
        string dir150 = string.Join('/', Enumerable.Repeat(new string('d', 49), 3)); // 149 chars
        string split = dir150 + "/" + new string('f', 90);                           // 240 chars, splittable
        string tooLong = dir150 + "/" + new string('g', 99) + "/" + new string('h', 50); // > 256
        string longComponent = "x/" + new string('y', 120);                            // 122, name part > 100
        var splitTar = Raw(new TarEntry { Name = split, Type = TarEntryType.Regular });
        Assert.Equal(0, PaxHeaders(splitTar));
        Assert.Equal(dir150, TarFormat.ReadString(splitTar.AsSpan(TarFormat.PrefixOff, TarFormat.PrefixLen)));
        Assert.Equal(1, PaxHeaders(Raw(new TarEntry { Name = tooLong, Type = TarEntryType.Regular })));
        Assert.Equal(1, PaxHeaders(Raw(new TarEntry { Name = longComponent, Type = TarEntryType.Regular })));

        var back = RoundTrip(
            new TarEntry { Name = split, Type = TarEntryType.Regular },
            new TarEntry { Name = tooLong, Type = TarEntryType.Regular },
            new TarEntry { Name = longComponent, Type = TarEntryType.Regular },
            new TarEntry { Name = tooLong + "-dir/", Type = TarEntryType.Directory },
            new TarEntry { Name = new string('e', 100), Type = TarEntryType.Regular });
        Assert.Equal([split, tooLong, longComponent, tooLong + "-dir/", new string('e', 100)], back.Select(e => e.Name));
        Assert.Equal(TarEntryType.Directory, back[3].Type);
    }

    [Fact]
    public void LongName_WhoseFirst100BytesEndInASlash_StaysARegularFile()
    {
        // The ustar name field of a PAX-named member holds the name cut at 100 bytes; when that cut ends in
        // '/', the old "trailing slash means directory" rule must not turn the file into a directory.
        string name = new string('a', 99) + "/" + new string('b', 101) + "/" + new string('c', 60);
        var back = RoundTrip(new TarEntry { Name = name, Type = TarEntryType.Regular, Size = 0 });
        Assert.Equal(name, back[0].Name);
        Assert.Equal(TarEntryType.Regular, back[0].Type);
    }

    [Fact]
    public void LongLinkNames_Over100UsePaxLinkpath()
    {
        string exact = new string('t', 100), longer = "/" + string.Join('/', Enumerable.Repeat("target", 40));
        Assert.Equal(0, PaxHeaders(Raw(new TarEntry { Name = "s", Type = TarEntryType.Symlink, LinkName = exact })));
        Assert.Equal(1, PaxHeaders(Raw(new TarEntry { Name = "s", Type = TarEntryType.Symlink, LinkName = longer })));
        var back = RoundTrip(
            new TarEntry { Name = "s1", Type = TarEntryType.Symlink, LinkName = exact },
            new TarEntry { Name = "s2", Type = TarEntryType.Symlink, LinkName = longer },
            new TarEntry { Name = "h", Type = TarEntryType.HardLink, LinkName = longer[1..] });
        Assert.Equal([exact, longer, longer[1..]], back.Select(e => e.LinkName));
    }

    [Fact]
    public void PaxXattrs_CarryBinaryValuesExactly()
    {
        byte[] binary = [0, 1, 2, (byte)'\n', (byte)'=', (byte)' ', 0xFF, 0x80, 0];
        byte[] big = new byte[60_000];
        new Random(7).NextBytes(big);
        var xattrs = new List<KeyValuePair<string, byte[]>>
        {
            new("security.capability", Fs.CapNetBindService),
            new("trusted.overlay.opaque", "y"u8.ToArray()),
            new("user.big", big),
            new("user.binary", binary),
            new("user.empty", []),
        };
        var back = RoundTrip(new TarEntry { Name = "f", Type = TarEntryType.Regular, Xattrs = xattrs });
        var got = back[0].Xattrs!;
        Assert.Equal(xattrs.Select(x => x.Key), got.Select(x => x.Key));
        for (int i = 0; i < xattrs.Count; i++) Assert.Equal(xattrs[i].Value, got[i].Value);
    }

    [Fact]
    public void XattrNamesWithEqualsAndPercent_AreEscapedAsGnuTarDoes()
    {
        var xattrs = new List<KeyValuePair<string, byte[]>> { new("user.a=b%3D%c", [1]) };
        var tar = Raw(new TarEntry { Name = "f", Type = TarEntryType.Regular, Xattrs = xattrs });
        Assert.Contains("SCHILY.xattr.user.a%3Db%253D%25c=\u0001\n", System.Text.Encoding.Latin1.GetString(tar));
        Assert.Equal("user.a=b%3D%c", Assert.Single(Apply.ReadAll(tar)[0].Xattrs!).Key);
        Assert.Equal("100%", TarFormat.DecodeXattrName("100%"));
        Assert.Equal("%2", TarFormat.DecodeXattrName("%2"));
        Assert.Equal("a=", TarFormat.DecodeXattrName("a%3D"));
        Assert.Equal("%3D", TarFormat.DecodeXattrName("%253D"));
    }

    [Fact]
    public void PaxRecordLength_CountsItsOwnDigits_AtEveryDigitBoundary()
    {
        // "LEN key=value\n": LEN includes itself, so lengths around 9/10, 99/100, 999/1000 are the tricky ones
        for (int valueLen = 0; valueLen < 1100; valueLen++)
        {
            var rec = new List<byte>();
            TarFormat.AppendPaxRecord(rec, "k", new byte[valueLen]);
            var bytes = rec.ToArray();
            int sp = Array.IndexOf(bytes, (byte)' ');
            int declared = int.Parse(Encoding.ASCII.GetString(bytes, 0, sp));
            Assert.Equal(bytes.Length, declared);
            Assert.Equal((byte)'\n', bytes[^1]);
        }
    }

    [Fact]
    public void LargeIds_UsePaxRecords_AndComeBackExactly()
    {
        var entries = RoundTrip(
            new TarEntry { Name = "a", Type = TarEntryType.Regular, Uid = 0x1FFFFF, Gid = 0x1FFFFF },
            new TarEntry { Name = "b", Type = TarEntryType.Regular, Uid = 3_000_000, Gid = 4_294_967_294 },
            new TarEntry { Name = "c", Type = TarEntryType.Directory, Uid = 65534, Gid = 65534 });
        Assert.Equal([(0x1FFFFFu, 0x1FFFFFu), (3_000_000u, 4_294_967_294u), (65534u, 65534u)], entries.Select(e => (e.Uid, e.Gid)));
        Assert.Equal(0, PaxHeaders(Raw(new TarEntry { Name = "a", Type = TarEntryType.Regular, Uid = 0x1FFFFF })));
        Assert.Equal(1, PaxHeaders(Raw(new TarEntry { Name = "b", Type = TarEntryType.Regular, Uid = 0x200000 })));
    }

    [Fact]
    public void SizesBeyondUstar_UsePaxSize()
    {
        var ms = new MemoryStream();
        using (var w = new TarWriter(ms))
        {
            w.WriteHeader(new TarEntry { Name = "huge", Type = TarEntryType.Regular, Size = 10L << 30 });
            w.Finish(); // data is never written: only the header is read back below
        }
        using var reader = new TarReader(new MemoryStream(ms.ToArray()));
        var e = reader.Next()!;
        Assert.Equal(10L << 30, e.Size);
    }

    [Fact]
    public void AFileThatShrankDuringTheArchive_FailsIt_InsteadOfBecomingZeros()
    {
        string dir = Directory.CreateTempSubdirectory("strata-shrink-").FullName;
        try
        {
            string file = Path.Combine(dir, "log");
            File.WriteAllBytes(file, new byte[100]);
            using var fd = Posix.Open(file, Posix.O_RDONLY, 0);
            using var w = new TarWriter(new MemoryStream());
            w.WriteHeader(new TarEntry { Name = "log", Type = TarEntryType.Regular, Size = 4000 }); // its size when stat'ed
            var ex = Assert.Throws<StrataException>(() => w.WriteFileData(fd, 4000, "log"));
            Assert.Equal(ErrorKind.Io, ex.Kind);
            Assert.Contains("log shrank from 4000 to 100 bytes", ex.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void EveryEntryType_RoundTripsWithAllAttributes()
    {
        var data = new Dictionary<string, byte[]>
        {
            ["empty"] = [],
            ["block"] = Enumerable.Range(0, 512).Select(i => (byte)i).ToArray(),
            ["block+1"] = Enumerable.Range(0, 513).Select(i => (byte)(i * 7)).ToArray(),
            ["suid"] = "#!/bin/sh\n"u8.ToArray(),
        };
        var xattr = new List<KeyValuePair<string, byte[]>> { new("user.k", [9, 0, 9]) };
        var entries = new List<TarEntry>
        {
            new() { Name = "dir/", Type = TarEntryType.Directory, Mode = 0x3C5 /* 01705 */, Uid = 1, Gid = 2, Mtime = new UnixTime(1_000_000_000, 0), Xattrs = xattr },
            new() { Name = "empty", Type = TarEntryType.Regular, Mode = 0x1A4 /* 0644 */, Mtime = new UnixTime(1, 0) },
            new() { Name = "block", Type = TarEntryType.Regular, Mode = 0x180 /* 0600 */, Size = 512, Mtime = new UnixTime(0x1FFFFFFFF, 0) },
            new() { Name = "block+1", Type = TarEntryType.Regular, Mode = 0x1A4, Size = 513, Uid = 65534, Gid = 65534 },
            new() { Name = "suid", Type = TarEntryType.Regular, Mode = 0x9ED /* 04755 */, Size = 10 },
            new() { Name = "hard", Type = TarEntryType.HardLink, LinkName = "suid", Mode = 0x9ED },
            new() { Name = "sym", Type = TarEntryType.Symlink, LinkName = "../x y/z", Mode = 0x1FF /* 0777 */ },
            new() { Name = "chr", Type = TarEntryType.CharDevice, Mode = 0x1B6 /* 0666 */, DevMajor = 1, DevMinor = 3 },
            new() { Name = "blk", Type = TarEntryType.BlockDevice, Mode = 0x1B0 /* 0660 */, DevMajor = 259, DevMinor = 0xFFFFF },
            new() { Name = "fifo", Type = TarEntryType.Fifo, Mode = 0x5A4 /* 02644 */ },
        };
        var ms = new MemoryStream();
        using (var w = new TarWriter(ms))
        {
            foreach (var e in entries)
            {
                w.WriteHeader(e);
                if (e.Type != TarEntryType.Regular) continue;
                w.WriteData(data[e.Name]);
                w.Pad(e.Size);
            }
            w.Finish();
        }
        using var reader = new TarReader(new MemoryStream(ms.ToArray()));
        foreach (var want in entries)
        {
            var got = reader.Next();
            Assert.NotNull(got);
            Assert.Equal(
                (want.Name, want.Type, want.LinkName, want.Mode, want.Uid, want.Gid, want.Size, want.Mtime, want.DevMajor, want.DevMinor),
                (got.Name, got.Type, got.LinkName, got.Mode, got.Uid, got.Gid, got.Size, got.Mtime, got.DevMajor, got.DevMinor));
            Assert.Equal(want.Xattrs?.Select(x => (x.Key, Convert.ToHexString(x.Value))), got.Xattrs?.Select(x => (x.Key, Convert.ToHexString(x.Value))));
            if (want.Type == TarEntryType.Regular)
            {
                var buf = new byte[want.Size + 10];
                int n = 0, r;
                while ((r = reader.ReadData(buf.AsSpan(n))) > 0) n += r;
                Assert.Equal(data[want.Name], buf[..n]);
            }
        }
        Assert.Null(reader.Next());
    }

    [Fact]
    public void MtimesOutsideTheOctalRange_UsePaxMtime_AndWholeSeconds()
    {
        var back = RoundTrip(
            new TarEntry { Name = "before-1970", Type = TarEntryType.Regular, Mtime = new UnixTime(-31_536_000, 0) },
            new TarEntry { Name = "after-2242", Type = TarEntryType.Regular, Mtime = new UnixTime(0x200000000, 0) },
            new TarEntry { Name = "fraction", Type = TarEntryType.Regular, Mtime = new UnixTime(5, 999) });
        Assert.Equal([new UnixTime(-31_536_000, 0), new UnixTime(0x200000000, 0), new UnixTime(5, 0)], back.Select(e => e.Mtime));
        Assert.Equal(0, PaxHeaders(Raw(new TarEntry { Name = "fraction", Type = TarEntryType.Regular, Mtime = new UnixTime(5, 999) })));
    }

    [Fact]
    public void Writer_IsDeterministic()
    {
        static byte[] Make() => new TarBuilder().Dir("d/").File("d/f", "x", xattrs: [new("user.a", [1])]).Symlink("l", "d/f").Bytes();
        Assert.Equal(Make(), Make());
    }

    [Fact]
    public void Reader_OldStyleDirectoryWithTrailingSlash_IsADirectory()
    {
        var entries = Apply.ReadAll(RawTar.Concat(RawTar.Header("old/", type: 0, mode: Fs.Dir0755), RawTar.End));
        Assert.Equal(TarEntryType.Directory, Assert.Single(entries).Type);
    }

    [Fact]
    public void Reader_HeaderOnlyTypesCarryNoData_WhateverTheirSizeField()
    {
        // a symlink header claiming 600 bytes is followed directly by the next header (as GNU tar and Go read it)
        var tar = RawTar.Concat(RawTar.Header("l", (byte)'2', size: 600, link: "t"), RawTar.Header("f", size: 2), RawTar.Data("hi"), RawTar.End);
        var entries = Apply.ReadAll(tar);
        Assert.Equal(["l", "f"], entries.Select(e => e.Name));
        Assert.Equal(0, entries[0].Size);
    }

    [Fact]
    public void Reader_PaxFractionalAndNegativeMtimes()
    {
        static TarEntry WithMtime(string value)
        {
            var rec = new List<byte>();
            TarFormat.AppendPaxRecord(rec, "mtime", Encoding.ASCII.GetBytes(value));
            var pax = RawTar.Header("PaxHeaders/f", (byte)'x', size: rec.Count);
            var data = new byte[(rec.Count + 511) / 512 * 512];
            rec.CopyTo(data);
            return Assert.Single(Apply.ReadAll(RawTar.Concat(pax, data, RawTar.Header("f"), RawTar.End)));
        }
        Assert.Equal(new UnixTime(1_795_254_039, 65_750_620), WithMtime("1795254039.06575062").Mtime);
        Assert.Equal(new UnixTime(12, 0), WithMtime("12").Mtime);
        Assert.Equal(new UnixTime(-2, 500_000_000), WithMtime("-1.5").Mtime); // -1.5 s is 2 s before the epoch plus 0.5 s
    }

    [Fact]
    public void Reader_RefusesDataAfterTheEndMarker()
    {
        var tar = RawTar.Concat(RawTar.Header("a"), new byte[512], RawTar.Header("b"), RawTar.End);
        var ex = Assert.Throws<StrataException>(() => Apply.ReadAll(tar));
        Assert.Equal(ErrorKind.Corrupt, ex.Kind);
        Assert.Contains("after the end-of-archive marker", ex.Message);
    }

    [Fact]
    public void Reader_RefusesUnsupportedMemberTypes()
    {
        var ex = Assert.Throws<StrataException>(() => Apply.ReadAll(RawTar.Concat(RawTar.Header("s", (byte)'S'), RawTar.End)));
        Assert.Equal(ErrorKind.Unsupported, ex.Kind);
        Assert.Contains("sparse", ex.Message);
        ex = Assert.Throws<StrataException>(() => Apply.ReadAll(RawTar.Concat(RawTar.Header("v", (byte)'V'), RawTar.End)));
        Assert.Equal(ErrorKind.Unsupported, ex.Kind);
        Assert.Contains("member type 'V'", ex.Message);
    }

    [Fact]
    public void Reader_RefusesMalformedPaxRecords()
    {
        var body = "99 path=x\n"u8.ToArray(); // declares more than is there
        var tar = RawTar.Concat(RawTar.Header("PaxHeaders/x", (byte)'x', size: body.Length), RawTar.Data("99 path=x\n"), RawTar.Header("x"), RawTar.End);
        var ex = Assert.Throws<StrataException>(() => Apply.ReadAll(tar));
        Assert.Equal(ErrorKind.Corrupt, ex.Kind);
        Assert.Contains("malformed PAX record", ex.Message);
    }
}
