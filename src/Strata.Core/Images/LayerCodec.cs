using System.IO.Compression;
using Strata.Archive;
using ZstdSharp;
using ZstdSharp.Unsafe;

namespace Strata.Core.Images;

/// <summary>Layer blob compression: gzip (BCL) and zstd (ZstdSharp), by media type or by the blob's first bytes.</summary>
public static class LayerCodec
{
    /// <summary>zstd's level as containerd and Docker write tar+zstd layers (zstd's own default).</summary>
    const int ZstdLevel = 3;

    /// <summary>zstd worker threads. A frame is the same for any count of at least one (zstdmt cuts jobs by size, not
    /// by worker), so a layer's digest does not depend on the machine that compressed it; never 0, whose
    /// single-threaded frames differ. At most 4: each worker holds a job of a few MiB.</summary>
    static int ZstdWorkers => Math.Clamp(Environment.ProcessorCount, 1, 4);

    /// <summary>The tar inside a layer blob; disposing it disposes <paramref name="blob"/> unless <paramref name="leaveOpen"/>.
    /// Corrupt compressed data reads as StrataException Corrupt ("gzip: ..." / "zstd: ...").</summary>
    public static Stream Decompress(Stream blob, LayerCompression compression, bool leaveOpen = false) => compression switch
    {
        LayerCompression.None => leaveOpen ? new Borrowed(blob) : blob,
        LayerCompression.Gzip => DecompressedStream.Gzip(blob, leaveOpen),
        LayerCompression.Zstd => DecompressedStream.Zstd(blob, leaveOpen),
        _ => throw new ArgumentOutOfRangeException(nameof(compression)),
    };

    /// <summary>A stream that compresses what is written to it into <paramref name="output"/> (None: passes it through).</summary>
    public static Stream Compress(Stream output, LayerCompression compression, bool leaveOpen = false)
    {
        switch (compression)
        {
            case LayerCompression.None:
                return leaveOpen ? new Borrowed(output) : output;
            case LayerCompression.Gzip:
                // Fastest (zlib-ng level 1), as ContainerStore's commit writes its blobs: compression is on the critical
                // path of commit and push, and level 1 ran twice as fast as Optimal (level 6) on a 2 GB tar of /usr, for
                // blobs about 30% larger. Whoever wants pushes both small and fast takes zstd, which beats both.
                return new GZipStream(output, CompressionLevel.Fastest, leaveOpen);
            case LayerCompression.Zstd:
                var zstd = new CompressionStream(output, ZstdLevel, leaveOpen: leaveOpen);
                try
                {
                    zstd.SetParameter(ZSTD_cParameter.ZSTD_c_checksumFlag, 1); // as the zstd tool and containerd write frames
                    zstd.SetParameter(ZSTD_cParameter.ZSTD_c_nbWorkers, ZstdWorkers);
                }
                catch
                {
                    zstd.Dispose();
                    throw;
                }
                return zstd;
            default:
                throw new ArgumentOutOfRangeException(nameof(compression));
        }
    }

    /// <summary>The compression the first bytes of a blob show (gzip 1f 8b, zstd 28 b5 2f fd), else None.</summary>
    public static LayerCompression Sniff(ReadOnlySpan<byte> head) =>
        head.StartsWith(DecompressedStream.GzipMagic) ? LayerCompression.Gzip
        : head.StartsWith(DecompressedStream.ZstdMagic) ? LayerCompression.Zstd
        : LayerCompression.None;

    /// <summary>The OCI media type of a layer so compressed.</summary>
    public static string MediaType(LayerCompression compression) => compression switch
    {
        LayerCompression.None => MediaTypes.OciLayer,
        LayerCompression.Gzip => MediaTypes.OciLayerGzip,
        LayerCompression.Zstd => MediaTypes.OciLayerZstd,
        _ => throw new ArgumentOutOfRangeException(nameof(compression)),
    };

    /// <summary>A caller's stream lent out: everything passes through but Dispose, which leaves it open.</summary>
    sealed class Borrowed(Stream inner) : Stream
    {
        public override bool CanRead => inner.CanRead;
        public override bool CanWrite => inner.CanWrite;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override int Read(Span<byte> buffer) => inner.Read(buffer);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.ReadAsync(buffer, offset, count, cancellationToken);
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.WriteAsync(buffer, offset, count, cancellationToken);
        public override void Flush() => inner.Flush();
        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
