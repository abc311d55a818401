// The contract of IBlockDevice (src/Strata.Block/IBlockDevice.cs) as tests: every implementation's test class derives
// from this one and says only how to make a device.
using Strata.Block;
using Strata.Native;
using Xunit;

namespace Strata.Testing;

/// <summary>
/// What every <see cref="IBlockDevice"/> does: reads and writes at any offset and length (unaligned, across block
/// boundaries) read back; ranges never written read as zeros; flush and FUA writes keep the data; discard and
/// write-zeroes leave zeros; <see cref="IBlockDevice.Allocated"/> covers what was written, in order, clipped to the
/// query; <see cref="IBlockDevice.ReadSparse"/> reads what <see cref="IBlockDevice.Read"/> reads and reports holes
/// only where nothing is allocated; IO outside the device is refused with an InvalidArgument
/// <see cref="StrataException"/>; concurrent writers to distinct ranges (sharing blocks) do not disturb each other.
/// Randomized tests use fixed seeds, printed on failure.
/// </summary>
public abstract class BlockDeviceConformance : IDisposable
{
    protected const long DeviceSize = 8L << 20;

    readonly List<IBlockDevice> _devices = [];

    /// <summary>A new, never written device of <paramref name="size"/> bytes, open; the suite disposes it.</summary>
    protected abstract IBlockDevice Create(long size);

    /// <summary>Releases what <see cref="Create"/> needed (a pool), after the suite's devices are disposed.</summary>
    protected virtual void Cleanup()
    {
    }

    IBlockDevice NewDevice(long size = DeviceSize)
    {
        var device = Create(size);
        _devices.Add(device);
        return device;
    }

    public void Dispose()
    {
        foreach (var d in _devices) d.Dispose();
        Cleanup();
        GC.SuppressFinalize(this);
    }

    static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    static byte[] ReadAll(IBlockDevice device, long offset, int length)
    {
        var buffer = new byte[length];
        buffer.AsSpan().Fill(0xEE); // a device that leaves the buffer alone does not pass for zeros
        device.Read(offset, buffer);
        return buffer;
    }

    /// <summary>The first byte where the device differs from <paramref name="expected"/> (from <paramref name="offset"/>), for messages.</summary>
    static string FirstDifference(IBlockDevice device, byte[] expected, long offset = 0)
    {
        var actual = ReadAll(device, offset, expected.Length);
        int i = actual.AsSpan().CommonPrefixLength(expected);
        return i == expected.Length ? "none" : $"byte {offset + i}: read {actual[i]}, expected {expected[i]}";
    }

    [Fact]
    public void SizeAndBlockSizeAreWhatWasAskedFor()
    {
        var d = NewDevice();
        Assert.Equal(DeviceSize, d.Size);
        Assert.InRange(d.BlockSize, 512, (int)DeviceSize);
    }

    [Fact]
    public void ANewDeviceReadsAsZerosAndHasNothingAllocated()
    {
        var d = NewDevice();
        Assert.True(ReadAll(d, 0, (int)DeviceSize).AsSpan().IndexOfAnyExcept((byte)0) < 0, "a new device does not read as zeros");
        Assert.Empty(d.Allocated(0, DeviceSize));
    }

    [Fact]
    public void AWriteAcrossABlockBoundaryReadsBackAndLeavesItsNeighboursZero()
    {
        var d = NewDevice();
        int bs = d.BlockSize;
        var data = Pattern(301, 1);
        d.Write(bs - 100, data);
        Assert.Equal(data, ReadAll(d, bs - 100, data.Length));
        var around = ReadAll(d, 0, 3 * bs);
        Assert.True(around.AsSpan(0, bs - 100).IndexOfAnyExcept((byte)0) < 0, "bytes before the write are not zeros");
        Assert.True(around.AsSpan(bs - 100 + 301).IndexOfAnyExcept((byte)0) < 0, "bytes after the write are not zeros");
        var unaligned = ReadAll(d, bs - 37, 50); // a read that starts and ends inside blocks, over the boundary
        Assert.Equal(data.AsSpan(63, 50).ToArray(), unaligned);
    }

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    public void RandomWritesAtAnyOffsetAndLengthReadBackAsAModelSays(int seed)
    {
        var d = NewDevice();
        var model = new byte[DeviceSize];
        var random = new Random(seed);
        int bs = d.BlockSize;
        for (int i = 0; i < 200; i++)
        {
            int length = random.Next(4) switch { 0 => random.Next(1, 16), 1 => random.Next(1, 2 * bs + 3), 2 => bs, _ => random.Next(1, 5 * bs) };
            long offset = random.Next(4) == 0 ? (long)random.Next(0, (int)(DeviceSize / bs)) * bs : random.NextInt64(0, DeviceSize - length + 1);
            var data = Pattern(length, random.Next());
            d.Write(offset, data, fua: random.Next(8) == 0);
            data.CopyTo(model, offset);
            if (i % 50 == 49)
                Assert.True(ReadAll(d, 0, (int)DeviceSize).AsSpan().SequenceEqual(model), $"seed {seed}, after {i + 1} writes: {FirstDifference(d, model)}");
        }
        // reads of any offset and length see the same bytes
        for (int i = 0; i < 100; i++)
        {
            int length = random.Next(0, 3 * bs);
            long offset = random.NextInt64(0, DeviceSize - length + 1);
            Assert.True(ReadAll(d, offset, length).AsSpan().SequenceEqual(model.AsSpan((int)offset, length)), $"seed {seed}: {length} bytes at {offset}");
        }
    }

    [Fact]
    public void FlushAndFuaWritesKeepTheData()
    {
        var d = NewDevice();
        var a = Pattern(5000, 2);
        var b = Pattern(d.BlockSize + 17, 3);
        d.Write(123, a, fua: true);
        d.Write(3L * d.BlockSize - 5, b);
        d.Flush();
        d.Flush(); // with nothing new to flush
        Assert.Equal(a, ReadAll(d, 123, a.Length));
        Assert.Equal(b, ReadAll(d, 3L * d.BlockSize - 5, b.Length));
    }

    [Fact]
    public void DiscardLeavesZerosAndKeepsTheBytesAroundIt() => ZeroingLeavesZeros((d, offset, length) => d.Discard(offset, length));

    [Fact]
    public void WriteZeroesLeavesZerosAndKeepsTheBytesAroundIt() => ZeroingLeavesZeros((d, offset, length) => d.WriteZeroes(offset, length));

    void ZeroingLeavesZeros(Action<IBlockDevice, long, long> zero)
    {
        var d = NewDevice();
        int bs = d.BlockSize;
        var data = Pattern(5 * bs, 4);
        d.Write(0, data);
        // unaligned at both ends, over three whole blocks; then a piece inside one block; then whole blocks
        zero(d, bs / 2 + 3, 3 * bs);
        zero(d, 4 * bs + 10, 20);
        var expected = (byte[])data.Clone();
        expected.AsSpan(bs / 2 + 3, 3 * bs).Clear();
        expected.AsSpan(4 * bs + 10, 20).Clear();
        Assert.True(ReadAll(d, 0, 5 * bs).AsSpan().SequenceEqual(expected), FirstDifference(d, expected));
        zero(d, 0, 5 * bs);
        Assert.True(ReadAll(d, 0, 5 * bs).AsSpan().IndexOfAnyExcept((byte)0) < 0, "whole blocks zeroed do not read as zeros");
        zero(d, 6 * bs, bs); // never written
        Assert.True(ReadAll(d, 6 * bs, bs).AsSpan().IndexOfAnyExcept((byte)0) < 0);
        // and the range can be written again
        d.Write(bs, data.AsSpan(0, 100));
        Assert.Equal(data.AsSpan(0, 100).ToArray(), ReadAll(d, bs, 100));
    }

    [Fact]
    public void AllocatedCoversWhatWasWrittenInOrderClippedToTheQuery()
    {
        var d = NewDevice();
        int bs = d.BlockSize;
        // blocks 1, 3 (a few bytes), 4 and 7 written; 0, 2, 5, 6 never
        d.Write(bs, Pattern(bs, 5));
        d.Write(3L * bs + 100, Pattern(10, 6));
        d.Write(4L * bs, Pattern(bs, 7));
        d.Write(7L * bs + bs - 1, [1]);
        var written = new[] { (bs, bs), (3L * bs + 100, 10L), (4L * bs, bs), (8L * bs - 1, 1L) };
        foreach (var (qOffset, qLength) in new[] { (0L, DeviceSize), (bs / 2L, 4L * bs), (3L * bs + 105, 2L * bs), (8L * bs - 1, 1L), (5L * bs, 2L * bs) })
        {
            var ranges = d.Allocated(qOffset, qLength);
            string shown = $"Allocated({qOffset}, {qLength}) = [{string.Join(", ", ranges)}]";
            long previousEnd = -1;
            foreach (var (offset, length) in ranges)
            {
                Assert.True(length > 0, $"an empty range: {shown}");
                Assert.True(offset > previousEnd, $"out of order, overlapping or adjacent: {shown}");
                Assert.True(offset >= qOffset && offset + length <= qOffset + qLength, $"not clipped to the query: {shown}");
                previousEnd = offset + length;
            }
            foreach (var (wOffset, wLength) in written)
            {
                long start = Math.Max(wOffset, qOffset), end = Math.Min(wOffset + wLength, qOffset + qLength);
                if (start < end) Assert.True(ranges.Any(r => r.Offset <= start && end <= r.Offset + r.Length), $"{end - start} bytes written at {start} are not covered: {shown}");
            }
            foreach (long never in new[] { 0L, 2L, 5L, 6L })
                Assert.False(ranges.Any(r => r.Offset < (never + 1) * bs && never * bs < r.Offset + r.Length), $"block {never} was never written: {shown}");
        }
        Assert.Empty(d.Allocated(DeviceSize, 0));
    }

    [Fact]
    public void ReadSparseReadsWhatReadReadsAndItsHolesAreUnallocatedZeros()
    {
        var d = NewDevice();
        int bs = d.BlockSize;
        d.Write(bs, Pattern(bs, 8));
        d.Write(3L * bs + 4096, Pattern(4096, 9));
        d.Write(6L * bs - 3, Pattern(6, 10));
        foreach (var (offset, length) in new[] { (0L, 8 * bs), (bs / 2L, 3 * bs), (2L * bs, bs), (3L * bs + 4096, 100), (0L, 0) })
        {
            var plain = ReadAll(d, offset, length);
            var sparse = new byte[length];
            sparse.AsSpan().Fill(0xEE);
            var holes = new (int Start, int Length)[64];
            int count = d.ReadSparse(offset, sparse, holes);
            string shown = $"ReadSparse({offset}, {length}) holes [{string.Join(", ", holes.Take(count))}]";
            Assert.True(plain.AsSpan().SequenceEqual(sparse), $"reads other bytes than Read: {shown}");
            var allocated = d.Allocated(offset, length);
            int previousEnd = -1;
            foreach (var (start, n) in holes.Take(count))
            {
                Assert.True(n > 0 && start > previousEnd && start + n <= length, $"holes out of order, adjacent or outside the buffer: {shown}");
                previousEnd = start + n;
                Assert.True(sparse.AsSpan(start, n).IndexOfAnyExcept((byte)0) < 0, $"a hole that is not zeros: {shown}");
                Assert.False(allocated.Any(r => r.Offset < offset + start + n && offset + start < r.Offset + r.Length),
                    $"a hole over an allocated range [{string.Join(", ", allocated)}]: {shown}");
            }
            // with room for one hole, the bytes are the same and at most one is reported
            var one = new (int Start, int Length)[1];
            var again = new byte[length];
            Assert.InRange(d.ReadSparse(offset, again, one), 0, 1);
            Assert.True(plain.AsSpan().SequenceEqual(again), $"reads other bytes with room for one hole: {shown}");
        }
    }

    [Fact]
    public void IoOutsideTheDeviceIsRefusedAsAnInvalidArgument()
    {
        var d = NewDevice();
        long size = d.Size;
        var buffer = new byte[20];
        void Refused(string what, Action io)
        {
            var ex = Assert.ThrowsAny<StrataException>(io);
            Assert.True(ex.Kind == ErrorKind.InvalidArgument, $"{what}: {ex.Kind}: {ex.Message}");
        }
        Refused("read over the end", () => d.Read(size - 10, buffer));
        Refused("read past the end", () => d.Read(size + 4096, buffer));
        Refused("read at a negative offset", () => d.Read(-1, buffer));
        Refused("write over the end", () => d.Write(size - 10, buffer));
        Refused("write past the end", () => d.Write(size, buffer));
        Refused("write at a negative offset", () => d.Write(-20, buffer));
        Refused("sparse read over the end", () => d.ReadSparse(size - 10, buffer, new (int, int)[4]));
        Refused("discard over the end", () => d.Discard(size - 10, 20));
        Refused("write-zeroes over the end", () => d.WriteZeroes(size - 10, 20));
        Refused("a negative discard", () => d.Discard(0, -1));
        Refused("allocated over the end", () => d.Allocated(size - 10, 20));
        // the last bytes themselves are fine, and nothing was written by the refused writes
        d.Write(size - 20, buffer.AsSpan(0, 20));
        d.Read(size - 20, buffer);
        Assert.Equal([(size - 20, 20L)], d.Allocated(size - 20, 20));
        Assert.Empty(d.Allocated(0, size - d.BlockSize));
    }

    /// <summary>Eight writers, each owning every eighth 1000-byte piece of the first blocks (so neighbours share
    /// blocks, and a read-modify-write of one must not lose another's bytes), write their pieces over and over.</summary>
    [Theory]
    [InlineData(21)]
    public void ConcurrentWritersToDistinctRangesDoNotDisturbEachOther(int seed)
    {
        var d = NewDevice();
        const int writers = 8, piece = 1000;
        int span = 4 * d.BlockSize;
        var model = new byte[span];
        var tasks = Enumerable.Range(0, writers).Select(w => Task.Run(() =>
        {
            var random = new Random(seed + w);
            var mine = Enumerable.Range(0, span / piece).Where(p => p % writers == w).ToArray();
            for (int round = 0; round < 5; round++)
            {
                random.Shuffle(mine);
                foreach (int p in mine)
                {
                    var data = Pattern(Math.Min(piece, span - p * piece), random.Next());
                    d.Write((long)p * piece, data);
                    if (round == 4) lock (model) data.CopyTo(model, p * piece);
                }
            }
        })).ToArray();
        Task.WaitAll(tasks);
        Assert.True(ReadAll(d, 0, span).AsSpan().SequenceEqual(model), $"seed {seed}: {FirstDifference(d, model)}");
    }
}
