using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;

namespace Strata.ThinBench;

/// <summary>
/// IO through a thin device against the same pattern on the raw sparse file, in one run: 4 KiB random writes into
/// fresh blocks and into blocks shared with a snapshot (raw: into unwritten and written places), 4 KiB random
/// reads, 1 MiB sequential writes and reads; with 1 and 16 writers. Every operation of an invocation touches a
/// block no earlier operation of the run touched, so "fresh" and "shared" stay what they say; the page cache is
/// warm and nothing is flushed inside the timing (a flush per invocation is timed apart, as Flush).
/// </summary>
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 2, iterationCount: 10)]
[MemoryDiagnoser]
public class IoBenchmarks
{
    const int Ops = 512;
    const long Written = 8192; // blocks written (and, for strata, snapshotted) before the shared-block and read runs
    const long Blocks = 16 * 1024 * 16; // 256 Ki blocks of 64 KiB: a 16 GiB device, sparse
    Target _t = null!;
    long[] _order = [];
    int _next;
    readonly byte[] _small = new byte[4096];
    readonly byte[] _large = new byte[1 << 20];

    [Params("strata", "raw")]
    public string Target { get; set; } = "";

    [Params(1, 16)]
    public int Writers { get; set; }

    [GlobalSetup(Target = nameof(RandomWrite4KFresh))]
    public void SetupEmpty()
    {
        _t = new Target(Target == "strata", Blocks * ThinBench.Target.Bs);
        _order = Shuffled(Blocks, 1);
        new Random(2).NextBytes(_small);
        new Random(3).NextBytes(_large);
    }

    /// <summary>A written region (the first 8,192 blocks, 512 MiB) and, for strata, a snapshot of it: every
    /// later write to it copies its block.</summary>
    [GlobalSetup(Targets = [nameof(RandomWrite4KShared), nameof(RandomRead4K)])]
    public void SetupWritten()
    {
        SetupEmpty();
        for (long b = 0; b < Written; b += 16) _t.Write(b * ThinBench.Target.Bs, _large);
        _t.Flush();
        _t.Pool?.Snapshot("dev", "snap");
        _order = Shuffled(Written, 4);
    }

    [GlobalCleanup]
    public void Cleanup() => _t.Dispose();

    static long[] Shuffled(long n, int seed)
    {
        var a = new long[n];
        for (long i = 0; i < n; i++) a[i] = i;
        new Random(seed).Shuffle(a);
        return a;
    }

    long NextBlock() => _order[Interlocked.Increment(ref _next) % _order.Length];

    void Parallel(Action op)
    {
        if (Writers == 1)
        {
            for (int i = 0; i < Ops; i++) op();
            return;
        }
        var threads = new Thread[Writers];
        for (int w = 0; w < Writers; w++)
        {
            threads[w] = new Thread(() => { for (int i = 0; i < Ops / Writers; i++) op(); });
            threads[w].Start();
        }
        foreach (var t in threads) t.Join();
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public void RandomWrite4KFresh() => Parallel(() => _t.Write(NextBlock() * ThinBench.Target.Bs + 8192, _small));

    [Benchmark(OperationsPerInvoke = Ops)]
    public void RandomWrite4KShared() => Parallel(() => _t.Write(NextBlock() * ThinBench.Target.Bs + 8192, _small));

    [Benchmark(OperationsPerInvoke = Ops)]
    public void RandomRead4K()
    {
        var buffers = new ThreadLocal<byte[]>(() => new byte[4096]);
        Parallel(() => _t.Read(NextBlock() * ThinBench.Target.Bs + 4096, buffers.Value!));
    }
}

/// <summary>1 MiB sequential writes (into fresh blocks, 64 MiB then a flush: fdatasync of the file, or the pool's
/// commit) and reads (of a written region), strata against raw.</summary>
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 2, iterationCount: 10)]
public class SequentialBenchmarks
{
    const long Blocks = 16 * 1024 * 16;
    const long Written = 16384;
    Target _t = null!;
    long _next;
    readonly byte[] _large = new byte[1 << 20];

    [Params("strata", "raw")]
    public string Target { get; set; } = "";

    [GlobalSetup(Target = nameof(SequentialWrite1M))]
    public void SetupEmpty()
    {
        _t = new Target(Target == "strata", Blocks * ThinBench.Target.Bs);
        new Random(3).NextBytes(_large);
    }

    [GlobalSetup(Target = nameof(SequentialRead1M))]
    public void SetupWritten()
    {
        SetupEmpty();
        for (long b = 0; b < Written; b += 16) _t.Write(b * ThinBench.Target.Bs, _large);
        _t.Flush();
    }

    [GlobalCleanup]
    public void Cleanup() => _t.Dispose();

    [Benchmark(OperationsPerInvoke = 64)]
    public void SequentialWrite1M()
    {
        long start = Interlocked.Add(ref _next, 64 * 16) - 64 * 16;
        for (int i = 0; i < 64; i++) _t.Write((start + i * 16) % Blocks * ThinBench.Target.Bs, _large);
        _t.Flush(); // durable throughput: unflushed, the page cache's writeback throttling decides the time
    }

    [Benchmark(OperationsPerInvoke = 64)]
    public void SequentialRead1M()
    {
        long start = Interlocked.Add(ref _next, 64 * 16) - 64 * 16;
        for (int i = 0; i < 64; i++) _t.Read((start + i * 16) % Written * ThinBench.Target.Bs, _large);
    }
}
