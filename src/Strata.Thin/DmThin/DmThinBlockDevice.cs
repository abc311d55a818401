using Strata.Block;
using Strata.Native;

namespace Strata.Thin.DmThin;

/// <summary>
/// A dm-thin device's bytes, read-only: mapped blocks are read from the pool's data file (a run of consecutive
/// blocks in one read), unmapped ones read as zeros (and are holes to <see cref="ReadSparse"/> and
/// <see cref="Allocated"/>), blocks whose mapping is unreadable or whose data lies past the end of the data file
/// fail the read with an IO error naming them. Writes of any kind fail: the pool is opened read-only.
/// </summary>
public sealed class DmThinBlockDevice(DmThinDevice device, IBlockStore data, long blockSize) : IBlockDevice
{
    public long Size => device.Size;

    /// <summary>The block size a device of a pool of <paramref name="poolBlockSize"/> shows its readers (NBD's preferred
    /// size, FUSE's block): the pool's, at most 1 MiB (dm-thin's blocks go up to 1 GiB; no reader wants requests that large).</summary>
    public static int ExportBlockSize(long poolBlockSize) => (int)Math.Min(poolBlockSize, 1 << 20);

    public int BlockSize => ExportBlockSize(blockSize);

    public void Read(long offset, Span<byte> buffer) => ReadSparse(offset, buffer, []);

    public int ReadSparse(long offset, Span<byte> buffer, Span<(int Start, int Length)> holes)
    {
        CheckRange(offset, buffer.Length);
        int found = 0, done = 0;
        while (done < buffer.Length)
        {
            long at = offset + done, block = at / blockSize;
            int i = device.ExtentAtOrBefore(block);
            int n;
            if (i >= 0 && block < device.Extents[i].VirtualEnd)
            {
                var e = device.Extents[i];
                n = (int)Math.Min(buffer.Length - done, e.VirtualEnd * blockSize - at);
                long from = (e.Data + block - e.Virtual) * blockSize + at % blockSize;
                if (from + n > data.Length)
                    throw StrataException.Io($"thin device {device.Id}: blocks {block} to {(at + n - 1) / blockSize} map to data past the end of {data.Name} ({data.Length} bytes): truncated?");
                data.Read(from, buffer.Slice(done, n));
            }
            else
            {
                long next = i + 1 < device.Extents.Length ? device.Extents[i + 1].Virtual * blockSize : long.MaxValue;
                n = (int)Math.Min(buffer.Length - done, next - at);
                if (device.UnreadableIn(block, (at + n + blockSize - 1) / blockSize) is { } u)
                    throw StrataException.Io($"thin device {device.Id}: {u}");
                buffer.Slice(done, n).Clear();
                if (found < holes.Length)
                {
                    if (found > 0 && holes[found - 1].Start + holes[found - 1].Length == done) holes[found - 1].Length += n;
                    else holes[found++] = (done, n);
                }
            }
            done += n;
        }
        return found;
    }

    public IReadOnlyList<(long Offset, long Length)> Allocated(long offset, long length)
    {
        CheckRange(offset, length);
        var ranges = new List<(long, long)>();
        long end = offset + length;
        for (int i = Math.Max(0, device.ExtentAtOrBefore(offset / blockSize)); i < device.Extents.Length; i++)
        {
            var e = device.Extents[i];
            long from = Math.Max(offset, e.Virtual * blockSize), to = Math.Min(end, e.VirtualEnd * blockSize);
            if (from >= end) break;
            if (from >= to) continue;
            if (ranges.Count > 0 && ranges[^1] is var (o, l) && o + l == from) ranges[^1] = (o, to - o);
            else ranges.Add((from, to - from));
        }
        return ranges;
    }

    public void Write(long offset, ReadOnlySpan<byte> data, bool fua = false) => throw ReadOnly();

    public void Flush() { }

    public void Discard(long offset, long length) => throw ReadOnly();

    public void WriteZeroes(long offset, long length) => throw ReadOnly();

    StrataException ReadOnly() => StrataException.ReadOnly($"thin device {device.Id} of a dm-thin pool is served read-only");

    void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Size - length)
            throw StrataException.Invalid($"thin device {device.Id}: {length} bytes at {offset} are outside its {Size} bytes");
    }

    public void Dispose() { }
}
