using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using Strata.Thin;
using Strata.Block;

namespace Strata.ThinBench;

/// <summary>A data store that keeps nothing (writes vanish, reads are zeros): for measuring the metadata alone.</summary>
sealed class NullBlockStore(long length) : IBlockStore
{
    public string Name => "null";
    public long Length => length;
    public void Read(long offset, Span<byte> buffer) => buffer.Clear();
    public void Write(long offset, ReadOnlySpan<byte> data) { }
    public void Flush() { }
    public bool Discard(long offset, long length) => true;
    public bool IsHole(long offset, long length) => true;
    public void Grow(long length) { }
    public void Dispose() { }
}

/// <summary>
/// Metadata costs at scale, the data store a <see cref="NullBlockStore"/> and the metadata in memory: snapshot
/// create (with its commit) at 1k and 1M mapped blocks (O(1): no work per mapped block), delete of a device of
/// that many exclusive blocks (O(mapped)), and discard of all of them (throughput, as data bytes freed per
/// second), and opening the pool. Setup prints the metadata bytes per mapped block.
/// </summary>
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 5)]
public class MetadataBenchmarks
{
    const long Bs = ThinPool.DefaultBlockSize;
    ThinPool _pool = null!;
    MemoryBlockStore _metadata = null!;
    NullBlockStore _data = null!;
    int _n;

    [Params(1_000, 1_000_000)]
    public int Mapped { get; set; }

    ThinPool Fill(string name)
    {
        using var dev = _pool.OpenDevice(name);
        var one = new byte[1];
        for (long b = 0; b < Mapped; b++) dev.Write(b * Bs, one);
        _pool.Commit();
        return _pool;
    }

    [GlobalSetup]
    public void Setup()
    {
        _metadata = new MemoryBlockStore(1L << 30, "metadata");
        _data = new NullBlockStore(3L * Mapped * Bs + (1L << 30));
        _pool = ThinPool.Create(_data, _metadata, options: new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 });
        _pool.CreateDevice("origin", (long)Mapped * Bs);
        Fill("origin");
        var report = PoolChecker.Check(_metadata);
        double perBlock = report.MetadataBlocksUsed * 4096.0 / Mapped;
        Console.WriteLine($"// metadata: {report.MetadataBlocksUsed} blocks of 4 KiB for {Mapped} mapped blocks = {perBlock:0.0} bytes per mapped block; check clean: {report.Clean}");
        File.AppendAllText(Path.Combine(Path.GetTempPath(), "strata-thinbench-metadata.txt"), $"{Mapped} {report.MetadataBlocksUsed} {perBlock:0.00} {report.Clean}\n");
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    [Benchmark]
    public void Snapshot() => _pool.Snapshot("origin", "s" + _n++);

    /// <summary>Opening the pool: metadata block counts are not stored, so open walks the trees to recount them
    /// (and reads the data reference counts). This is the price of that choice.</summary>
    [Benchmark]
    public void Open()
    {
        using var pool = ThinPool.Open(_data, _metadata, new PoolOptions { CommitInterval = TimeSpan.Zero });
    }

    [IterationSetup(Target = nameof(DeleteExclusive))]
    public void MakeExclusive()
    {
        _pool.CreateDevice("victim", (long)Mapped * Bs);
        Fill("victim");
    }

    [Benchmark]
    public void DeleteExclusive() => _pool.DeleteDevice("victim");

    [IterationSetup(Target = nameof(DiscardAll))]
    public void MakeDiscardable() => MakeExclusive();

    [IterationCleanup(Target = nameof(DiscardAll))]
    public void DropDiscarded() => _pool.DeleteDevice("victim");

    /// <summary>Discards the whole device and commits: the blocks freed and their space given back.</summary>
    [Benchmark]
    public void DiscardAll()
    {
        using var dev = _pool.OpenDevice("victim");
        dev.Discard(0, dev.Size);
        _pool.Commit();
    }
}
