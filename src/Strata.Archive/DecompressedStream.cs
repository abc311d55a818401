using System.IO.Compression;
using ZstdSharp;
using ZstdSharp.Unsafe;

namespace Strata.Archive;

/// <summary>
/// The bytes of a gzip (RFC 1952, BCL) or zstd (RFC 8878, ZstdSharp) stream, decompressed as they are read.
/// Compressed data that is corrupt or ends inside a frame reads as a StrataException Corrupt, one line
/// starting with the format ("gzip: ...", "zstd: ..."); the decompressors' own exceptions never get out.
/// Disposing it disposes the compressed stream unless it was opened with leaveOpen.
/// </summary>
public sealed class DecompressedStream : ReadOnlyStream
{
    /// <summary>The first bytes of a gzip member.</summary>
    public static ReadOnlySpan<byte> GzipMagic => [0x1f, 0x8b];

    /// <summary>The first bytes of a zstd frame (0xFD2FB528, little-endian).</summary>
    public static ReadOnlySpan<byte> ZstdMagic => [0x28, 0xb5, 0x2f, 0xfd];

    /// <summary>zstd's default limit on a frame's window (2^27, 128 MiB): the memory a frame may make the decoder
    /// allocate. Frames made with `zstd --long` beyond it are refused, as the zstd tool refuses them by default.</summary>
    const int ZstdWindowLogMax = 27;

    readonly Stream _decompressor;
    readonly string _format;

    DecompressedStream(Stream decompressor, string format)
    {
        _decompressor = decompressor;
        _format = format;
    }

    public static DecompressedStream Gzip(Stream compressed, bool leaveOpen = false) =>
        new(new GZipStream(compressed, CompressionMode.Decompress, leaveOpen), "gzip");

    public static DecompressedStream Zstd(Stream compressed, bool leaveOpen = false)
    {
        var zstd = new DecompressionStream(compressed, checkEndOfStream: true, leaveOpen: leaveOpen);
        zstd.SetParameter(ZSTD_dParameter.ZSTD_d_windowLogMax, ZstdWindowLogMax);
        return new(zstd, "zstd");
    }

    public override int Read(Span<byte> buffer)
    {
        try
        {
            return _decompressor.Read(buffer);
        }
        catch (Exception ex) when (Refusal(ex) is { } refusal)
        {
            throw refusal;
        }
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        try
        {
            return await _decompressor.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (Refusal(ex) is { } refusal)
        {
            throw refusal;
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <summary>What a decompressor's complaint about its input means to the user; null for anything else (IO errors
    /// of the stream below pass as they are).</summary>
    StrataException? Refusal(Exception ex) => ex switch
    {
        InvalidDataException => StrataException.Corrupt($"{_format}: {ex.Message}"),
        ZstdException { Code: ZSTD_ErrorCode.ZSTD_error_frameParameter_windowTooLarge } =>
            StrataException.Unsupported($"zstd: the data needs a window larger than {1 << (ZstdWindowLogMax - 20)} MiB (made with zstd --long?), more than Strata decodes"),
        ZstdException => StrataException.Corrupt($"zstd: {ex.Message}"),
        // ZstdSharp's word for compressed data that stops inside a frame
        EndOfStreamException when _decompressor is DecompressionStream => StrataException.Corrupt("zstd: the data ends inside a frame (truncated)"),
        _ => null,
    };

    protected override void Dispose(bool disposing)
    {
        if (disposing) _decompressor.Dispose();
        base.Dispose(disposing);
    }
}
