using Strata.Block;

namespace Strata.Thin;

/// <summary>An open thin device of a <see cref="ThinPool"/>: its IO goes through the pool. Disposing it closes it
/// (a device can be deleted only when no one has it open).</summary>
public sealed class ThinDevice : IBlockDevice
{
    readonly ThinPool _pool;
    int _closed;

    internal ThinDevice(ThinPool pool, uint id, string name)
    {
        _pool = pool;
        Id = id;
        Name = name;
    }

    public uint Id { get; }
    public string Name { get; }

    public long Size => _pool.SizeOf(Id);
    public int BlockSize => (int)_pool.BlockSize;

    public void Read(long offset, Span<byte> buffer) => _pool.Read(Id, offset, buffer, default);
    public int ReadSparse(long offset, Span<byte> buffer, Span<(int Start, int Length)> holes) => _pool.Read(Id, offset, buffer, holes);
    public void Write(long offset, ReadOnlySpan<byte> data, bool fua = false) => _pool.Write(Id, offset, data, fua);
    public void Flush() => _pool.Commit();
    public void Discard(long offset, long length) => _pool.Unmap(Id, offset, length);
    public void WriteZeroes(long offset, long length) => _pool.Unmap(Id, offset, length);
    public IReadOnlyList<(long Offset, long Length)> Allocated(long offset, long length) => _pool.Allocated(Id, offset, length);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0) _pool.Closed(Id);
    }
}
