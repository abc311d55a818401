using System.Text;
using Strata.Archive.Tar;
using Strata.Testing;
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

    [Fact]
    public void ATarIsAssembledAgainByteForByte()
    {
        var (tar, files, names) = MakeTar();
        var packed = TarSplitMaker.Split(tar, names);
        var output = new MemoryStream();
        var opened = new List<string>();
        using (var assembled = TarSplit.Open(new MemoryStream(packed), name =>
        {
            opened.Add(name);
            return files.TryGetValue(name, out var bytes) ? new MemoryStream(bytes) : null;
        }))
            assembled.CopyTo(output);
        long n = output.Length;
        Assert.Equal(tar.Length, n);
        Assert.Equal(tar, output.ToArray());
        Assert.Equal(tar.Length, TarSplit.Length(new MemoryStream(packed)));
        // read as a stream, in small and odd reads
        using var stream = TarSplit.Open(new MemoryStream(packed), name => new MemoryStream(files[name]));
        var again = new MemoryStream();
        var small = new byte[777];
        int got;
        while ((got = stream.Read(small, 0, small.Length)) > 0) again.Write(small, 0, got);
        Assert.Equal(tar, again.ToArray());
        Assert.Equal(["etc/motd", LongName, "big.bin"], opened); // files of no size are not opened
    }

    [Fact]
    public void BadInputIsOneClearError()
    {
        var (tar, files, names) = MakeTar();
        void Refused(byte[] packed, string fragment, Func<string, Stream?>? open = null)
        {
            var ex = Assert.Throws<StrataException>(() => TarSplit.Open(new MemoryStream(packed),
                open ?? (name => files.TryGetValue(name, out var b) ? new MemoryStream(b) : null)).CopyTo(Stream.Null));
            Assert.Equal(ErrorKind.Corrupt, ex.Kind);
            Assert.Contains(fragment, ex.Message);
        }
        var good = TarSplitMaker.Split(tar, names);
        Refused(good, "which the layer does not have", name => name == "big.bin" ? null : new MemoryStream(files[name]));
        Refused(good, "holds 5 bytes where the layer's tar had", name => new MemoryStream(name == "big.bin" ? new byte[5] : files[name]));
        Refused(TarSplitMaker.Split(tar, names, i => i == 3 ? "{\"type\":1,\"name\":\"x\",\"size\":1,\"position\":7}" : null), "says it is entry 7");
        Refused(TarSplitMaker.Split(tar, names, i => i == 3 ? "{\"type\":9,\"position\":3}" : null), "has type 9");
        Refused(TarSplitMaker.Split(tar, names, i => i == 3 ? "{not json" : null), "is not JSON");
        Refused(TarSplitMaker.Split(tar, names, i => i == 3 ? "{\"type\":1,\"size\":-4,\"position\":3}" : null), "size is not a count of bytes");
        Refused(TarSplitMaker.Split(tar, names, i => i == 3 ? "{\"type\":2,\"payload\":\"!!\",\"position\":3}" : null), "payload is not base64");
        Refused(TarSplitMaker.Split(tar, names, i => i == 3 ? "{\"type\":1,\"size\":1,\"position\":3}" : null), "a file without a name");
    }
}
