// An in-memory twin of a disk for tests: an IBlockDevice kept in a dictionary of blocks, with handles that share
// its bytes the way opens of one device do.
using Strata.Block;
using Strata.Native;

namespace Strata.Testing;

/// <summary>
/// A disk in memory (see <see cref="IBlockDevice"/>): blocks of <see cref="BlockSize"/> bytes are allocated when
/// first written and dropped when wholly discarded or zeroed (partly covered blocks are zeroed in place), so
/// <see cref="Allocated"/> and the holes of <see cref="ReadSparse"/> come in whole blocks, as a thin device's do.
/// Out-of-range IO throws an InvalidArgument <see cref="StrataException"/>. <see cref="Open"/> gives another handle
/// on the same bytes; every handle counts in <see cref="OpenHandles"/> until disposed. One lock: simple, not fast.
/// </summary>
public sealed class MemoryBlockDevice : IBlockDevice
{
    sealed class Disk(long size, int blockSize)
    {
        public readonly object Lock = new();
        public readonly SortedDictionary<long, byte[]> Blocks = [];
        public readonly long Size = size;
        public readonly int BlockSize = blockSize;
        public int Opens, Flushes, FuaWrites;
    }

    readonly Disk _disk;
    int _closed;

    public MemoryBlockDevice(long size, int blockSize = 64 * 1024)
        : this(new Disk(size, blockSize))
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 512);
    }

    MemoryBlockDevice(Disk disk)
    {
        _disk = disk;
        lock (disk.Lock) disk.Opens++;
    }

    /// <summary>Another handle on the same bytes.</summary>
    public MemoryBlockDevice Open() => new(_disk);

    public long Size => _disk.Size;
    public int BlockSize => _disk.BlockSize;

    /// <summary>Handles not yet disposed.</summary>
    public int OpenHandles
    {
        get { lock (_disk.Lock) return _disk.Opens; }
    }

    /// <summary>Calls of <see cref="Flush"/>, through any handle.</summary>
    public int Flushes
    {
        get { lock (_disk.Lock) return _disk.Flushes; }
    }

    /// <summary>Writes made with <c>fua</c>, through any handle.</summary>
    public int FuaWrites
    {
        get { lock (_disk.Lock) return _disk.FuaWrites; }
    }

    public void Read(long offset, Span<byte> buffer) => ReadSparse(offset, buffer, default);

    public int ReadSparse(long offset, Span<byte> buffer, Span<(int Start, int Length)> holes)
    {
        int count = 0;
        lock (_disk.Lock)
        {
            Check(offset, buffer.Length);
            for (int done = 0; done < buffer.Length;)
            {
                var (block, at, n) = Piece(offset + done, buffer.Length - done);
                if (_disk.Blocks.TryGetValue(block, out var bytes)) bytes.AsSpan(at, n).CopyTo(buffer.Slice(done, n));
                else
                {
                    buffer.Slice(done, n).Clear();
                    if (count > 0 && holes[count - 1].Start + holes[count - 1].Length == done) holes[count - 1].Length += n;
                    else if (count < holes.Length) holes[count++] = (done, n);
                }
                done += n;
            }
        }
        return count;
    }

    public void Write(long offset, ReadOnlySpan<byte> data, bool fua = false)
    {
        lock (_disk.Lock)
        {
            Check(offset, data.Length);
            for (int done = 0; done < data.Length;)
            {
                var (block, at, n) = Piece(offset + done, data.Length - done);
                if (!_disk.Blocks.TryGetValue(block, out var bytes)) _disk.Blocks[block] = bytes = new byte[_disk.BlockSize];
                data.Slice(done, n).CopyTo(bytes.AsSpan(at));
                done += n;
            }
            if (fua) _disk.FuaWrites++;
        }
    }

    public void Flush()
    {
        lock (_disk.Lock)
        {
            ObjectDisposedException.ThrowIf(_closed != 0, this);
            _disk.Flushes++;
        }
    }

    public void Discard(long offset, long length)
    {
        lock (_disk.Lock)
        {
            Check(offset, length);
            for (long done = 0; done < length;)
            {
                var (block, at, n) = Piece(offset + done, length - done);
                if (n == _disk.BlockSize) _disk.Blocks.Remove(block);
                else if (_disk.Blocks.TryGetValue(block, out var bytes)) bytes.AsSpan(at, n).Clear();
                done += n;
            }
        }
    }

    public void WriteZeroes(long offset, long length) => Discard(offset, length);

    public IReadOnlyList<(long Offset, long Length)> Allocated(long offset, long length)
    {
        var ranges = new List<(long Offset, long Length)>();
        lock (_disk.Lock)
        {
            Check(offset, length);
            long bs = _disk.BlockSize;
            foreach (long block in _disk.Blocks.Keys)
            {
                long start = Math.Max(offset, block * bs), end = Math.Min(offset + length, (block + 1) * bs);
                if (start >= end) continue;
                if (ranges.Count > 0 && ranges[^1].Offset + ranges[^1].Length == start) ranges[^1] = (ranges[^1].Offset, end - ranges[^1].Offset);
                else ranges.Add((start, end - start));
            }
        }
        return ranges;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0)
            lock (_disk.Lock) _disk.Opens--;
    }

    (long Block, int At, int Length) Piece(long position, long left)
    {
        long bs = _disk.BlockSize;
        int at = (int)(position % bs);
        return (position / bs, at, (int)Math.Min(bs - at, left));
    }

    void Check(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(_closed != 0, this);
        if (offset < 0 || length < 0 || offset > _disk.Size || length > _disk.Size - offset)
            throw StrataException.Invalid($"{length} bytes at {offset} are outside the memory device ({_disk.Size} bytes)");
    }
}
