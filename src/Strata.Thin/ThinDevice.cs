using Strata.Block;

namespace Strata.Thin;

/// <summary>An open thin device of a <see cref="ThinPool"/>: its IO goes through the pool, and every request counts in
/// the device's <see cref="DeviceCounters"/> (shared by every open of the device). Disposing it closes it (a device
/// can be deleted only when no one has it open).</summary>
public sealed class ThinDevice : IBlockDevice
{
    readonly ThinPool _pool;
    readonly DeviceCounters _counters;
    int _closed;

    internal ThinDevice(ThinPool pool, uint id, string name, DeviceCounters counters)
    {
        _pool = pool;
        _counters = counters;
        Id = id;
        Name = name;
    }

    public uint Id { get; }
    public string Name { get; }

    public long Size => _pool.SizeOf(Id);
    public int BlockSize => (int)_pool.BlockSize;

    public void Read(long offset, Span<byte> buffer) => ReadSparse(offset, buffer, default);

    public int ReadSparse(long offset, Span<byte> buffer, Span<(int Start, int Length)> holes)
    {
        long start = _counters.Start();
        int found;
        try
        {
            found = _pool.Read(Id, offset, buffer, holes);
        }
        catch
        {
            _counters.EndFailed(noSpace: false);
            throw;
        }
        _counters.EndRead(start, buffer.Length);
        return found;
    }

    public void Write(long offset, ReadOnlySpan<byte> data, bool fua = false)
    {
        long start = _counters.Start();
        try
        {
            _pool.Write(Id, offset, data, fua, _counters);
        }
        catch (Exception ex)
        {
            _counters.EndFailed(noSpace: ex is StrataException { Kind: ErrorKind.NoSpace });
            throw;
        }
        _counters.EndWrite(start, data.Length);
    }

    public void Flush()
    {
        long start = _counters.Start();
        try
        {
            _pool.Commit();
        }
        catch
        {
            _counters.EndFailed(noSpace: false);
            throw;
        }
        _counters.EndFlush(start);
    }

    public void Discard(long offset, long length) => Unmap(offset, length);

    public void WriteZeroes(long offset, long length) => Unmap(offset, length);

    void Unmap(long offset, long length)
    {
        long start = _counters.Start();
        try
        {
            _pool.Unmap(Id, offset, length, _counters);
        }
        catch (Exception ex)
        {
            _counters.EndFailed(noSpace: ex is StrataException { Kind: ErrorKind.NoSpace });
            throw;
        }
        _counters.EndDiscard(start, length);
    }

    public IReadOnlyList<(long Offset, long Length)> Allocated(long offset, long length) => _pool.Allocated(Id, offset, length);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0) _pool.Closed(Id);
    }
}
