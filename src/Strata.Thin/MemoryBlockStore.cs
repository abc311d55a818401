using Strata.Block;

namespace Strata.Thin;

/// <summary>A block store in memory, sparse (pages never written read as zeros and take no memory), for
/// tests and benchmarks of the engine without a filesystem under it. Every write is durable at once.</summary>
public sealed class MemoryBlockStore(long length, string name = "memory") : IBlockStore
{
    const int PageSize = 4096;
    readonly Dictionary<long, byte[]> _pages = [];
    readonly object _lock = new();
    long _length = length;

    public string Name => name;

    public long Length => Interlocked.Read(ref _length);

    /// <summary>Bytes of pages held (what a sparse file would occupy).</summary>
    public long Allocated
    {
        get { lock (_lock) return (long)_pages.Count * PageSize; }
    }

    public void Read(long offset, Span<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        lock (_lock)
            for (int done = 0; done < buffer.Length;)
            {
                long page = (offset + done) / PageSize;
                int at = (int)((offset + done) % PageSize), n = Math.Min(PageSize - at, buffer.Length - done);
                if (_pages.TryGetValue(page, out var bytes)) bytes.AsSpan(at, n).CopyTo(buffer.Slice(done, n));
                else buffer.Slice(done, n).Clear();
                done += n;
            }
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        CheckRange(offset, data.Length);
        lock (_lock)
            for (int done = 0; done < data.Length;)
            {
                long page = (offset + done) / PageSize;
                int at = (int)((offset + done) % PageSize), n = Math.Min(PageSize - at, data.Length - done);
                if (!_pages.TryGetValue(page, out var bytes))
                {
                    if (data.Slice(done, n).IndexOfAnyExcept((byte)0) < 0)
                    {
                        done += n; // zeros onto a page never written: it reads as zeros already
                        continue;
                    }
                    _pages[page] = bytes = new byte[PageSize];
                }
                data.Slice(done, n).CopyTo(bytes.AsSpan(at, n));
                done += n;
            }
    }

    public void Flush() { }

    public bool Discard(long offset, long length)
    {
        CheckRange(offset, length);
        lock (_lock)
            for (long pos = offset; pos < offset + length;)
            {
                long page = pos / PageSize;
                int at = (int)(pos % PageSize);
                int n = (int)Math.Min(PageSize - at, offset + length - pos);
                if (_pages.TryGetValue(page, out var bytes))
                {
                    if (n == PageSize) _pages.Remove(page);
                    else bytes.AsSpan(at, n).Clear();
                }
                pos += n;
            }
        return true;
    }

    public bool IsHole(long offset, long length)
    {
        lock (_lock)
            for (long page = offset / PageSize; page * PageSize < offset + length; page++)
                if (_pages.ContainsKey(page)) return false;
        return true;
    }

    public void Grow(long length)
    {
        lock (_lock) if (length > _length) _length = length;
    }

    void CheckRange(long offset, long count)
    {
        if (offset < 0 || count < 0 || offset + count > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{Name}: {count} bytes at {offset} are outside its {Length} bytes");
    }

    public void Dispose() { }
}
