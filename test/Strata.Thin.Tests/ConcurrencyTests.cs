using Strata.Native;

namespace Strata.Thin.Tests;

/// <summary>Many threads on one pool at once: writers (whole blocks, runs of blocks, pieces of blocks) and
/// discarders each on a region of their own, readers checking their neighbours' regions never fail, while
/// snapshots and commits happen underneath. Afterwards every region reads as its writer's model says, and the
/// pool (snapshots included) checks clean.</summary>
public sealed class ConcurrencyTests
{
    const int Bs = (int)ThinPool.MinBlockSize;

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void WritersSnapshotsAndCommitsAtOnceKeepEveryRegionRight(int seed)
    {
        const int threads = 8, blocksPerRegion = 48, steps = 300;
        var data = new MemoryBlockStore(8192L * Bs);
        var metadata = new MemoryBlockStore(32 << 20);
        using var pool = ThinPool.Create(data, metadata, options: new PoolOptions { CommitInterval = TimeSpan.FromMilliseconds(20), AutoextendThreshold = 100 });
        pool.CreateDevice("d", (long)threads * blocksPerRegion * Bs);
        var models = new byte[threads][];
        var failures = new List<Exception>();
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            try
            {
                var random = new Random(seed * 100 + t);
                long regionStart = (long)t * blocksPerRegion * Bs;
                var model = models[t] = new byte[blocksPerRegion * Bs];
                using var dev = pool.OpenDevice("d");
                for (int step = 0; step < steps; step++)
                {
                    int op = random.Next(10);
                    int offset, length;
                    if (op < 3) { offset = random.Next(blocksPerRegion - 4) * Bs; length = random.Next(2, 5) * Bs; } // runs of whole blocks
                    else { offset = random.Next(model.Length - 1); length = random.Next(1, Math.Min(3 * Bs, model.Length - offset)); }
                    if (op < 7)
                    {
                        var bytes = new byte[length];
                        random.NextBytes(bytes);
                        dev.Write(regionStart + offset, bytes, fua: random.Next(50) == 0);
                        bytes.CopyTo(model, offset);
                    }
                    else if (op < 8)
                    {
                        dev.Discard(regionStart + offset, length);
                        Array.Clear(model, offset, length);
                    }
                    else
                    {
                        var got = new byte[length];
                        dev.Read(regionStart + offset, got);
                        Assert.True(got.AsSpan().SequenceEqual(model.AsSpan(offset, length)), $"seed {seed} thread {t} step {step}: a read of its own region differs");
                    }
                }
            }
            catch (Exception ex)
            {
                lock (failures) failures.Add(ex);
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        int snapshots = 0;
        while (workers.Any(w => w.IsAlive))
        {
            pool.Snapshot("d", "s" + snapshots++);
            Thread.Sleep(5);
        }
        workers.ForEach(w => w.Join());
        Assert.True(failures.Count == 0, string.Join("\n", failures.Select(f => f.Message)));
        using (var dev = pool.OpenDevice("d"))
            for (int t = 0; t < threads; t++)
            {
                var got = new byte[blocksPerRegion * Bs];
                dev.Read((long)t * blocksPerRegion * Bs, got);
                Assert.True(got.AsSpan().SequenceEqual(models[t]), $"seed {seed}: region {t} differs at the end");
            }
        pool.Commit();
        var report = PoolChecker.Check(metadata);
        Assert.True(report.Clean, string.Join("; ", report.Errors.Concat(report.Leaks).Take(5)));
        Assert.True(snapshots > 1);
        Assert.Equal(snapshots + 1, pool.Devices().Count);
    }
}
