namespace Strata.Block;

/// <summary>
/// A disk as its users see it: <see cref="Size"/> bytes read and written at any offset and length, from many
/// threads at once, with a volatile write cache that <see cref="Flush"/> (or a write with <c>fua</c>) makes
/// durable. Ranges never written read as zeros. <see cref="Discard"/> and <see cref="WriteZeroes"/> both leave
/// the range reading as zeros; discard may also give its space back. <see cref="Allocated"/> tells which ranges
/// hold data (NBD's block status).
/// </summary>
public interface IBlockDevice : IDisposable
{
    long Size { get; }

    /// <summary>The granularity below which writes cost a read-modify-write (the pool's block size).</summary>
    int BlockSize { get; }

    void Read(long offset, Span<byte> buffer);

    /// <summary>Reads like <see cref="Read"/>, and says which ranges of <paramref name="buffer"/> are holes (zeros
    /// with nothing allocated behind them, so a reply can say "zeros" instead of sending them): up to
    /// <c>holes.Length</c> (start, length) pairs, in order, not adjacent; returns how many. Holes past that many
    /// are read as zeros and not reported.</summary>
    int ReadSparse(long offset, Span<byte> buffer, Span<(int Start, int Length)> holes)
    {
        Read(offset, buffer);
        return 0;
    }

    void Write(long offset, ReadOnlySpan<byte> data, bool fua = false);

    void Flush();

    void Discard(long offset, long length);

    void WriteZeroes(long offset, long length);

    /// <summary>The allocated ranges within [offset, offset + length), in order, clipped to it.</summary>
    IReadOnlyList<(long Offset, long Length)> Allocated(long offset, long length);
}
