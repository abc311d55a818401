using System.IO.Compression;
using Strata.Testing;
using ZstdSharp;
using ZstdSharp.Unsafe;

namespace Strata.Archive.Tests;

/// <summary>
/// <see cref="LayerInput"/>, the door of `strata layer apply` and the Docker plugin's ApplyDiff: a plain, gzip or
/// zstd tar opens as the tar it is (told by its first bytes); corrupt or truncated compressed data is refused
/// with one Corrupt line naming the format, at open or while it is read.
/// </summary>
public class LayerInputTests
{
    /// <summary>A layer big enough to span several zstd blocks (128 KiB each) and deflate blocks.</summary>
    static readonly byte[] Tar = new TarBuilder()
        .Dir("etc/").File("etc/os-release", "ID=zstd\n")
        .File("big", Enumerable.Range(0, 400_000).Select(i => (byte)(i * 7919 >> 5)).ToArray())
        .Bytes();

    public enum Format { Plain, Gzip, Zstd }

    static byte[] Compressed(Format format, byte[] data)
    {
        if (format == Format.Plain) return data;
        var ms = new MemoryStream();
        if (format == Format.Gzip)
        {
            using var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true);
            gz.Write(data);
        }
        else
        {
            using var zstd = new CompressionStream(ms, 3, leaveOpen: true);
            zstd.SetParameter(ZSTD_cParameter.ZSTD_c_checksumFlag, 1);
            zstd.Write(data);
        }
        return ms.ToArray();
    }

    static byte[] ReadAll(byte[] input)
    {
        var raw = new MemoryStream(input);
        using var tar = LayerInput.Open(raw);
        var ms = new MemoryStream();
        tar.CopyTo(ms);
        return ms.ToArray();
    }

    static StrataException Corrupt(Func<object> read, string fragment)
    {
        var ex = Assert.Throws<StrataException>(read);
        Assert.True(ex.Kind == ErrorKind.Corrupt, $"expected Corrupt, got {ex.Kind}: {ex.Message}");
        Assert.StartsWith(fragment, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        return ex;
    }

    [Theory]
    [InlineData(Format.Plain)]
    [InlineData(Format.Gzip)]
    [InlineData(Format.Zstd)]
    public void ATarOpensAsItselfWhateverItsCompression(Format format)
    {
        var input = Compressed(format, Tar);
        if (format != Format.Plain) Assert.NotEqual(Tar.Length, input.Length);
        Assert.Equal(Tar, ReadAll(input));
    }

    [Fact]
    public void AZstdLayerOfConcatenatedFramesOpensWhole()
    {
        // `zstd` and pzstd may write a layer as several frames one after the other
        var input = Compressed(Format.Zstd, Tar[..2048]).Concat(Compressed(Format.Zstd, Tar[2048..])).ToArray();
        Assert.Equal(Tar, ReadAll(input));
    }

    [Fact]
    public void AZstdLayerIsAppliedLikeAnyOther()
    {
        using var tmp = new TempRoot();
        string target = tmp.Dir("target");
        using var input = LayerInput.Open(new MemoryStream(Compressed(Format.Zstd, Tar)));
        LayerApplier.Apply(input, target);
        Assert.Equal("ID=zstd\n", File.ReadAllText(Path.Combine(target, "etc/os-release")));
        Assert.Equal(400_000, new FileInfo(Path.Combine(target, "big")).Length);
    }

    [Fact]
    public void AZstdLayerWithABadChecksumIsRefusedWhenRead()
    {
        var bad = Compressed(Format.Zstd, Tar);
        bad[^1] ^= 0xff; // the frame's content checksum (XXH64, low 4 bytes)
        Corrupt(() => ReadAll(bad), "zstd: ");
    }

    [Fact]
    public void ZstdDataCorruptInTheMiddleIsRefused()
    {
        var bad = Compressed(Format.Zstd, Tar);
        for (int i = bad.Length / 3; i < bad.Length / 3 + 64; i++) bad[i] ^= 0x5a;
        Corrupt(() => ReadAll(bad), "zstd: ");
    }

    [Fact]
    public void ATruncatedZstdLayerIsRefused()
    {
        var zstd = Compressed(Format.Zstd, Tar);
        Corrupt(() => ReadAll(zstd[..(zstd.Length / 2)]), "zstd: the data ends inside a frame");
    }

    [Fact]
    public void AZstdMagicFollowedByNoFrameIsRefusedAtOpen()
    {
        byte[] input = [0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        Corrupt(() => LayerInput.Open(new MemoryStream(input)), "zstd: ");
    }

    [Fact]
    public void AZstdLayerOfSomethingOtherThanATarIsRefusedAtOpen()
    {
        var notTar = Compressed(Format.Zstd, "just some text, not a tar header, and rather short"u8.ToArray());
        Assert.Throws<StrataException>(() => LayerInput.Open(new MemoryStream(notTar)));
    }

    [Fact]
    public void ClosingTheLayerLeavesTheCallersStreamOpen()
    {
        var raw = new MemoryStream(Compressed(Format.Zstd, Tar));
        LayerInput.Open(raw).Dispose();
        Assert.True(raw.CanRead);
    }
}
