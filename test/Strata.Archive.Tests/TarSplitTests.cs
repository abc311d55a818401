using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Strata.Archive.Tar;
using Bcl = System.Formats.Tar;

namespace Strata.Archive.Tests;

/// <summary>
/// Docker's tar-split: a tar made by System.Formats.Tar (PAX headers, a long name, links, an empty and a 1 MiB file)
/// is split here as tar-split splits one (raw segments around each file's contents), and assembled again from the
/// files, byte for byte; a malformed tar-split, a missing or short file are one clear error.
/// </summary>
public sealed class TarSplitTests
{
    static readonly string LongName = "deep/" + new string('d', 120) + "/file.txt";

    /// <summary>The tar and the contents of its regular files by name.</summary>
    static (byte[] Tar, Dictionary<string, byte[]> Files, List<string> Names) MakeTar()
    {
        var files = new Dictionary<string, byte[]>
        {
            ["etc/motd"] = Encoding.UTF8.GetBytes("hello from the layer\n"),
            ["empty"] = [],
            [LongName] = Encoding.UTF8.GetBytes("long\n"),
            ["big.bin"] = new byte[(1 << 20) + 3],
        };
        new Random(23).NextBytes(files["big.bin"]);
        var names = new List<string>();
        var ms = new MemoryStream();
        using (var w = new Bcl.TarWriter(ms, Bcl.TarEntryFormat.Pax, leaveOpen: true))
        {
            void Add(Bcl.TarEntry e, byte[]? data = null)
            {
                if (data is not null) e.DataStream = new MemoryStream(data);
                w.WriteEntry(e);
                names.Add(e.Name);
            }
            Add(new Bcl.PaxTarEntry(Bcl.TarEntryType.Directory, "etc/"));
            Add(new Bcl.PaxTarEntry(Bcl.TarEntryType.RegularFile, "etc/motd"), files["etc/motd"]);
            Add(new Bcl.PaxTarEntry(Bcl.TarEntryType.RegularFile, "empty"), files["empty"]);
            Add(new Bcl.PaxTarEntry(Bcl.TarEntryType.SymbolicLink, "etc/link") { LinkName = "motd" });
            Add(new Bcl.PaxTarEntry(Bcl.TarEntryType.HardLink, "etc/hard") { LinkName = "etc/motd" });
            Add(new Bcl.PaxTarEntry(Bcl.TarEntryType.RegularFile, LongName), files[LongName]);
            Add(new Bcl.PaxTarEntry(Bcl.TarEntryType.RegularFile, "big.bin"), files["big.bin"]);
        }
        return (ms.ToArray(), files, names);
    }

    /// <summary>Splits a tar as tar-split does: the bytes before each entry's contents (its headers, and the padding of
    /// the one before) are a segment, the contents of a regular file a file entry, the rest of the tar a last segment.</summary>
    static byte[] Split(byte[] tar, List<string> names, Func<int, string?>? extra = null)
    {
        var lines = new List<string>();
        long segment = 0, o = 0;
        int entry = 0;
        void Segment(long from, long to) =>
            lines.Add(JsonSerializer.Serialize(new { type = 2, payload = Convert.ToBase64String(tar, (int)from, (int)(to - from)), position = lines.Count }));
        while (o + 512 <= tar.Length && tar.AsSpan((int)o, 512).IndexOfAnyExcept((byte)0) >= 0)
        {
            char type = (char)tar[o + 156];
            long size = Convert.ToInt64(Encoding.ASCII.GetString(tar, (int)o + 124, 12).Trim('\0', ' '), 8);
            long next = o + 512 + (size + 511) / 512 * 512;
            if (type is 'x' or 'g' or 'L' or 'K')
            {
                o = next;
                continue;
            }
            Segment(segment, o + 512);
            long contents = type is '0' or '\0' ? size : 0;
            lines.Add(extra?.Invoke(lines.Count) ?? JsonSerializer.Serialize(new { type = 1, name = names[entry++], size = contents, payload = "AAAAAAAAAAA=", position = lines.Count }));
            segment = o + 512 + contents;
            o = next;
        }
        Segment(segment, tar.Length);
        var packed = new MemoryStream();
        using (var gz = new GZipStream(packed, CompressionLevel.Fastest, leaveOpen: true))
            gz.Write(Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n"));
        return packed.ToArray();
    }

    [Fact]
    public void ATarIsAssembledAgainByteForByte()
    {
        var (tar, files, names) = MakeTar();
        var packed = Split(tar, names);
        var output = new MemoryStream();
        var opened = new List<string>();
        long n = TarSplit.Assemble(new MemoryStream(packed), name =>
        {
            opened.Add(name);
            return files.TryGetValue(name, out var bytes) ? new MemoryStream(bytes) : null;
        }, output);
        Assert.Equal(tar.Length, n);
        Assert.Equal(tar, output.ToArray());
        Assert.Equal(["etc/motd", LongName, "big.bin"], opened); // files of no size are not opened
    }

    [Fact]
    public void BadInputIsOneClearError()
    {
        var (tar, files, names) = MakeTar();
        void Refused(byte[] packed, string fragment, Func<string, Stream?>? open = null)
        {
            var ex = Assert.Throws<StrataException>(() => TarSplit.Assemble(new MemoryStream(packed),
                open ?? (name => files.TryGetValue(name, out var b) ? new MemoryStream(b) : null), Stream.Null));
            Assert.Equal(ErrorKind.Corrupt, ex.Kind);
            Assert.Contains(fragment, ex.Message);
        }
        var good = Split(tar, names);
        Refused(good, "which the layer does not have", name => name == "big.bin" ? null : new MemoryStream(files[name]));
        Refused(good, "holds 5 bytes where the layer's tar had", name => new MemoryStream(name == "big.bin" ? new byte[5] : files[name]));
        Refused(Split(tar, names, i => i == 3 ? "{\"type\":1,\"name\":\"x\",\"size\":1,\"position\":7}" : null), "says it is entry 7");
        Refused(Split(tar, names, i => i == 3 ? "{\"type\":9,\"position\":3}" : null), "has type 9");
        Refused(Split(tar, names, i => i == 3 ? "{not json" : null), "is not JSON");
        Refused(Split(tar, names, i => i == 3 ? "{\"type\":1,\"size\":-4,\"position\":3}" : null), "size is not a count of bytes");
        Refused(Split(tar, names, i => i == 3 ? "{\"type\":2,\"payload\":\"!!\",\"position\":3}" : null), "payload is not base64");
        Refused(Split(tar, names, i => i == 3 ? "{\"type\":1,\"size\":1,\"position\":3}" : null), "a file without a name");
    }
}
