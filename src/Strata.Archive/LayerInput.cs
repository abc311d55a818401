using Strata.Archive.Tar;

namespace Strata.Archive;

/// <summary>
/// A layer as handed over from outside: a tar, or a gzip- or zstd-compressed tar (OCI <c>tar+gzip</c>,
/// <c>tar+zstd</c>; told apart by their first bytes, decompressed on the fly). <see cref="Open"/> reads and
/// checks the first header before it returns, so a caller can refuse input that is not a layer at all before
/// it changes anything. Corrupt compressed data reads as Corrupt ("gzip: ...", "zstd: ..."). Disposing the
/// result releases the decompressor; the caller's stream stays the caller's.
/// </summary>
public static class LayerInput
{
    public static Stream Open(Stream raw)
    {
        byte[] head = ReadUpTo(raw, TarFormat.BlockSize);
        Stream rest = raw;
        if (head.AsSpan().StartsWith(DecompressedStream.GzipMagic))
            rest = DecompressedStream.Gzip(new PrefixedStream(head, raw, ownsRest: false));
        else if (head.AsSpan().StartsWith(DecompressedStream.ZstdMagic))
            rest = DecompressedStream.Zstd(new PrefixedStream(head, raw, ownsRest: false));
        try
        {
            if (rest != raw) head = ReadUpTo(rest, TarFormat.BlockSize);
            if (head.Length == 0) throw StrataException.Corrupt("tar: the input is empty");
            if (head.Length < TarFormat.BlockSize) throw StrataException.Corrupt($"tar: archive is truncated at byte {head.Length}");
            TarReader.CheckHeaderBlock(head);
        }
        catch
        {
            if (rest != raw) rest.Dispose(); // the decompressor's buffers; the caller's stream stays open
            throw;
        }
        return new PrefixedStream(head, rest, ownsRest: rest != raw);
    }

    static byte[] ReadUpTo(Stream s, int count)
    {
        var buf = new byte[count];
        int got = 0;
        while (got < count)
        {
            int n = s.Read(buf, got, count - got);
            if (n == 0) break;
            got += n;
        }
        return got == count ? buf : buf[..got];
    }

    /// <summary>Bytes already read, then the rest of the stream; read-only, forward-only.</summary>
    sealed class PrefixedStream(byte[] prefix, Stream rest, bool ownsRest) : ReadOnlyStream
    {
        int _pos;

        public override int Read(Span<byte> buffer)
        {
            if (_pos < prefix.Length)
            {
                int n = Math.Min(buffer.Length, prefix.Length - _pos);
                prefix.AsSpan(_pos, n).CopyTo(buffer);
                _pos += n;
                return n;
            }
            return rest.Read(buffer);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing && ownsRest) rest.Dispose();
            base.Dispose(disposing);
        }
    }
}
