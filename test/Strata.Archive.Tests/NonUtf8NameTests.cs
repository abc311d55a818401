using Strata.Native;
using Strata.Testing;

namespace Strata.Archive.Tests;

/// <summary>File names are bytes: names that are not UTF-8 (Latin-1 in old packages) keep their exact bytes.</summary>
public class NonUtf8NameTests
{
    [Fact]
    public void GnuTarArchivesWithLatin1NamesApplyExactly()
    {
        using var temp = new TempRoot();
        string src = temp.Dir("src"), dst = temp.Dir("dst");
        Shell.Sh($"cd '{src}' && mkdir \"$(printf 'd\\351')\" && printf a > \"$(printf 'd\\351')/caf\\351\" && printf b > \"$(printf 'caf\\350')\" && ln -s \"$(printf 'caf\\350')\" link").Check("make names");
        Shell.Run("tar", "--numeric-owner", "-C", src, "-cf", temp.Combine("x.tar"), ".").Check("tar -c");
        using (var f = File.OpenRead(temp.Combine("x.tar"))) LayerApplier.Apply(f, dst);
        TreeSnapshot.AssertSame(src, dst, MtimePrecision.Seconds);
        Assert.Equal("caf\uDCE8", Posix.ReadLink(Path.Combine(dst, "link")));
    }

    [Fact]
    public void LongLatin1NamesGoToPaxMarkedBinaryAndGnuTarReadsThemExactly()
    {
        using var temp = new TempRoot();
        string src = temp.Dir("src"), dst = temp.Dir("dst");
        string name = new string('x', 120) + "\uDCE9";
        using (Posix.Open(Path.Combine(src, name), Posix.O_WRONLY | Posix.O_CREAT, 0x1A4)) { }
        var tar = new MemoryStream();
        DiffWriter.Write(tar, src, TreeChanges.Compute(src, null));
        Assert.True(tar.ToArray().AsSpan().IndexOf("hdrcharset=BINARY"u8) >= 0, "the PAX header lacks hdrcharset=BINARY");
        File.WriteAllBytes(temp.Combine("x.tar"), tar.ToArray());
        Shell.Run("tar", "--numeric-owner", "-C", dst, "-xpf", temp.Combine("x.tar")).Check("tar -x");
        Assert.Equal([name], Posix.ReadDir(dst).Select(e => e.Name));
    }

    [Fact]
    public void OurDiffOfLatin1NamesExtractsExactlyWithGnuTar()
    {
        using var temp = new TempRoot();
        string src = temp.Dir("src"), dst = temp.Dir("dst");
        using (Posix.Open(Path.Combine(src, "caf\uDCE9"), Posix.O_WRONLY | Posix.O_CREAT, 0x1A4)) { }
        using (var f = File.Create(temp.Combine("x.tar"))) DiffWriter.Write(f, src, TreeChanges.Compute(src, null));
        Shell.Run("tar", "--numeric-owner", "-C", dst, "-xpf", temp.Combine("x.tar")).Check("tar -x");
        Assert.Equal("caf\\351\n", Shell.Run("ls", "-b", dst).Check("ls").Stdout);
    }
}
