using Strata.Native;
using Strata.Thin;
using Strata.Block;

namespace Strata.ThinBench;

/// <summary>Where a benchmark writes: a thin device of a pool on sparse files, or the raw sparse file the pool's
/// data would live in (the physical limit), both in one fresh directory (BENCH_DIR, default /var/tmp).</summary>
sealed class Target : IDisposable
{
    public const int Bs = 64 * 1024;
    readonly string _dir;
    readonly PoolDirectory? _pool;
    readonly FileDescriptor? _raw;
    public readonly IBlockDevice? Device;

    public Target(bool strata, long size, string? snapshotOf = null)
    {
        _dir = Path.Combine(Environment.GetEnvironmentVariable("BENCH_DIR") ?? "/var/tmp", "strata-thinbench-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_dir);
        Size = size;
        if (strata)
        {
            _pool = PoolDirectory.Create(_dir, size * 2 + (1L << 30), 1L << 30, ThinPool.DefaultBlockSize, options: new PoolOptions());
            _pool.Pool.CreateDevice("dev", size);
            Device = _pool.Pool.OpenDevice("dev");
        }
        else
        {
            string file = Path.Combine(_dir, "raw");
            _raw = Posix.Open(file, Posix.O_RDWR | Posix.O_CREAT | Posix.O_EXCL, 0x180);
            Posix.Ftruncate(_raw, size, file);
        }
    }

    public long Size { get; }
    public ThinPool? Pool => _pool?.Pool;

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (Device is not null) Device.Write(offset, data);
        else Posix.PwriteAll(_raw!, data, offset, "raw");
    }

    public void Read(long offset, Span<byte> buffer)
    {
        if (Device is not null) Device.Read(offset, buffer);
        else Posix.Pread(_raw!, buffer, offset, "raw");
    }

    public void Flush()
    {
        if (Device is not null) Device.Flush();
        else Posix.Fdatasync(_raw!, "raw");
    }

    public void Dispose()
    {
        Device?.Dispose();
        _pool?.Dispose();
        _raw?.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
