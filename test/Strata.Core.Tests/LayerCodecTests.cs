using System.IO.Compression;
using Strata.Core.Images;
using ZstdSharp;
using ZstdSharp.Unsafe;

namespace Strata.Core.Tests;

/// <summary>
/// <see cref="LayerCodec"/>: what it compresses it gives back, for none, gzip and zstd; the first bytes of its
/// output tell the compression back; media types map both ways; corrupt data reads as one Corrupt line; streams
/// handed to it are left open when asked; zstd frames do not depend on the machine's core count.
/// </summary>
public sealed class LayerCodecTests
{
    static readonly byte[] Data = new LayerTar()
        .Dir("etc/").File("etc/os-release", "ID=codec\n")
        .File("big", Enumerable.Range(0, 300_000).Select(i => (byte)(i * 7919 >> 5)).ToArray())
        .Bytes();

    internal static byte[] Compress(byte[] data, LayerCompression compression)
    {
        var ms = new MemoryStream();
        using (var c = LayerCodec.Compress(ms, compression, leaveOpen: true)) c.Write(data);
        return ms.ToArray();
    }

    static byte[] Decompress(byte[] blob, LayerCompression compression)
    {
        using var d = LayerCodec.Decompress(new MemoryStream(blob), compression);
        var ms = new MemoryStream();
        d.CopyTo(ms);
        return ms.ToArray();
    }

    [Theory]
    [InlineData(LayerCompression.None)]
    [InlineData(LayerCompression.Gzip)]
    [InlineData(LayerCompression.Zstd)]
    public void WhatIsCompressedDecompressesToItself(LayerCompression compression)
    {
        var blob = Compress(Data, compression);
        if (compression == LayerCompression.None) Assert.Equal(Data, blob);
        else Assert.InRange(blob.Length, 1, Data.Length / 2);
        Assert.Equal(compression, LayerCodec.Sniff(blob));
        Assert.Equal(Data, Decompress(blob, compression));
    }

    [Theory]
    [InlineData(LayerCompression.None)]
    [InlineData(LayerCompression.Gzip)]
    [InlineData(LayerCompression.Zstd)]
    public async Task AsyncReadsDecompressToo(LayerCompression compression)
    {
        await using var d = LayerCodec.Decompress(new MemoryStream(Compress(Data, compression)), compression);
        var ms = new MemoryStream();
        await d.CopyToAsync(ms);
        Assert.Equal(Data, ms.ToArray());
    }

    [Fact]
    public void GzipAndZstdBlobsAreReadByOtherDecoders()
    {
        using (var gz = new GZipStream(new MemoryStream(Compress(Data, LayerCompression.Gzip)), CompressionMode.Decompress))
        {
            var ms = new MemoryStream();
            gz.CopyTo(ms);
            Assert.Equal(Data, ms.ToArray());
        }
        Assert.Equal(Data, new Decompressor().Unwrap(Compress(Data, LayerCompression.Zstd)).ToArray());
    }

    [Fact]
    public void ZstdFramesCarryAChecksumAndDoNotDependOnTheCoreCount()
    {
        var ours = Compress(Data, LayerCompression.Zstd);
        // frame header descriptor (the byte after the magic): bit 2 is the content checksum flag
        Assert.True((ours[4] & 0x04) != 0, "the frame has no content checksum");
        foreach (int workers in new[] { 1, 3 })
        {
            var ms = new MemoryStream();
            using (var z = new CompressionStream(ms, 3, leaveOpen: true))
            {
                z.SetParameter(ZSTD_cParameter.ZSTD_c_checksumFlag, 1);
                z.SetParameter(ZSTD_cParameter.ZSTD_c_nbWorkers, workers);
                z.Write(Data);
            }
            Assert.True(ours.AsSpan().SequenceEqual(ms.ToArray()), $"the frame differs from one made with {workers} worker(s)");
        }
    }

    [Theory]
    [InlineData(new byte[] { 0x1f, 0x8b }, LayerCompression.Gzip)]
    [InlineData(new byte[] { 0x1f, 0x8b, 0x08, 0x00 }, LayerCompression.Gzip)]
    [InlineData(new byte[] { 0x28, 0xb5, 0x2f, 0xfd }, LayerCompression.Zstd)]
    [InlineData(new byte[] { 0x28, 0xb5, 0x2f, 0xfd, 0x04 }, LayerCompression.Zstd)]
    [InlineData(new byte[] { 0x28, 0xb5, 0x2f }, LayerCompression.None)]
    [InlineData(new byte[] { 0x1f }, LayerCompression.None)]
    [InlineData(new byte[] { 0x8b, 0x1f }, LayerCompression.None)]
    [InlineData(new byte[] { 0xfd, 0x2f, 0xb5, 0x28 }, LayerCompression.None)]
    [InlineData(new byte[0], LayerCompression.None)]
    public void SniffTellsTheCompressionFromTheFirstBytes(byte[] head, LayerCompression expected) =>
        Assert.Equal(expected, LayerCodec.Sniff(head));

    [Fact]
    public void ATarSniffsAsUncompressed() => Assert.Equal(LayerCompression.None, LayerCodec.Sniff(Data));

    [Theory]
    [InlineData(LayerCompression.None, MediaTypes.OciLayer)]
    [InlineData(LayerCompression.Gzip, MediaTypes.OciLayerGzip)]
    [InlineData(LayerCompression.Zstd, MediaTypes.OciLayerZstd)]
    public void MediaTypesMapBothWays(LayerCompression compression, string mediaType)
    {
        Assert.Equal(mediaType, LayerCodec.MediaType(compression));
        Assert.Equal(compression, MediaTypes.Layer(mediaType));
    }

    [Fact]
    public void TheNondistributableZstdTypeIsZstd() =>
        Assert.Equal(LayerCompression.Zstd, MediaTypes.Layer("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"));

    [Theory]
    [InlineData(LayerCompression.Gzip, "gzip: ")]
    [InlineData(LayerCompression.Zstd, "zstd: ")]
    public void CorruptDataReadsAsOneCorruptLine(LayerCompression compression, string prefix)
    {
        var bad = Compress(Data, compression);
        for (int i = bad.Length / 3; i < bad.Length / 3 + 64; i++) bad[i] ^= 0x5a;
        var ex = Assert.Throws<StrataException>(() => Decompress(bad, compression));
        Assert.Equal(ErrorKind.Corrupt, ex.Kind);
        Assert.StartsWith(prefix, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void ATruncatedZstdBlobReadsAsCorrupt()
    {
        var blob = Compress(Data, LayerCompression.Zstd);
        var ex = Assert.Throws<StrataException>(() => Decompress(blob[..(blob.Length / 2)], LayerCompression.Zstd));
        Assert.Equal(ErrorKind.Corrupt, ex.Kind);
        Assert.Equal("zstd: the data ends inside a frame (truncated)", ex.Message);
    }

    [Fact]
    public void AZstdFrameThatNeedsAHugeWindowIsUnsupported()
    {
        // a frame header declaring a 256 MiB window (Window_Descriptor 0x90: window log 10 + exponent 18), as
        // `zstd --long=28` writes it: more than the 128 MiB the decoder lets input make it allocate
        byte[] frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x90, 0x01, 0x00, 0x00];
        var ex = Assert.Throws<StrataException>(() => Decompress(frame, LayerCompression.Zstd));
        Assert.Equal(ErrorKind.Unsupported, ex.Kind);
        Assert.StartsWith("zstd: the data needs a window larger than 128 MiB", ex.Message);
    }

    [Theory]
    [InlineData(LayerCompression.None)]
    [InlineData(LayerCompression.Gzip)]
    [InlineData(LayerCompression.Zstd)]
    public void StreamsAreLeftOpenOnlyWhenAsked(LayerCompression compression)
    {
        var output = new MemoryStream();
        LayerCodec.Compress(output, compression, leaveOpen: true).Dispose();
        Assert.True(output.CanWrite);
        LayerCodec.Compress(output, compression).Dispose();
        Assert.False(output.CanWrite);

        var blob = new MemoryStream(Compress(Data, compression));
        LayerCodec.Decompress(blob, compression, leaveOpen: true).Dispose();
        Assert.True(blob.CanRead);
        LayerCodec.Decompress(blob, compression).Dispose();
        Assert.False(blob.CanRead);
    }
}
