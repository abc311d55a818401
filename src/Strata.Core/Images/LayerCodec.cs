namespace Strata.Core.Images;

/// <summary>Layer blob compression: gzip (BCL) and zstd (ZstdSharp), by media type or by the blob's first bytes.</summary>
public static class LayerCodec
{
    /// <summary>The tar inside a layer blob; disposing it disposes <paramref name="blob"/> unless <paramref name="leaveOpen"/>.
    /// Corrupt compressed data reads as StrataException Corrupt ("gzip: ..." / "zstd: ...").</summary>
    public static Stream Decompress(Stream blob, LayerCompression compression, bool leaveOpen = false) => throw new NotImplementedException();

    /// <summary>A stream that compresses what is written to it into <paramref name="output"/> (None: passes it through).</summary>
    public static Stream Compress(Stream output, LayerCompression compression, bool leaveOpen = false) => throw new NotImplementedException();

    /// <summary>The compression the first bytes of a blob show (gzip 1f 8b, zstd 28 b5 2f fd), else None.</summary>
    public static LayerCompression Sniff(ReadOnlySpan<byte> head) => throw new NotImplementedException();

    /// <summary>The OCI media type of a layer so compressed.</summary>
    public static string MediaType(LayerCompression compression) => throw new NotImplementedException();
}
