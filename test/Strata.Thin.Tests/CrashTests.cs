using Xunit.Abstractions;

namespace Strata.Thin.Tests;

/// <summary>
/// Power loss at random points: a pool on <see cref="CrashingBlockStore"/>s runs random operations, then loses
/// power — between operations or in the middle of a commit (its writes, or its flushes, failing from a random one
/// on) — with
/// any subset of the unflushed writes reaching the disk and one possibly torn. The pool must then open at a
/// commit, pass its check, and read back every block as of the last commit that completed, except blocks
/// written after it (a disk with a write cache may hold old or new bytes there).
/// </summary>
public sealed class CrashTests(ITestOutputHelper output)
{
    const int Bs = (int)ThinPool.MinBlockSize;
    static readonly PoolOptions NoTimer = new() { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 };

    /// <summary>Device name -> its blocks that hold data, as 8-byte stamps at a per-block place.</summary>
    sealed class State
    {
        public Dictionary<string, (long Size, Dictionary<long, ulong> Stamps)> Devices = [];

        public State Clone() => new() { Devices = Devices.ToDictionary(kv => kv.Key, kv => (kv.Value.Size, new Dictionary<long, ulong>(kv.Value.Stamps))) };
    }

    static long Place(long vblock) => vblock * Bs + vblock * 8 % (Bs - 8);

    [Theory]
    [InlineData(1, 250)]
    [InlineData(2, 250)]
    [InlineData(3, 250)]
    [InlineData(4, 250)]
    public void ThePoolSurvivesPowerLossAtRandomPoints(int seed, int crashes)
    {
        var random = new Random(seed);
        int midCommit = 0, torn = 0;
        for (int crash = 0; crash < crashes; crash++)
        {
            var data = new CrashingBlockStore(256L * Bs, "data");
            var metadata = new CrashingBlockStore(2L << 20, "metadata");
            var pool = ThinPool.Create(data, metadata, options: NoTimer);
            var state = new State();
            var committed = state.Clone();
            var dirty = new HashSet<(string, long)>();
            ulong stamp = (ulong)crash << 32;
            int steps = random.Next(1, 120);
            string last = "";
            void Committed()
            {
                committed = state.Clone();
                dirty.Clear();
            }
            try
            {
                for (int step = 0; step < steps; step++)
                {
                    var names = state.Devices.Keys.Order(StringComparer.Ordinal).ToList();
                    string? some = names.Count == 0 ? null : names[random.Next(names.Count)];
                    int op = random.Next(100);
                    if (some is null || (op < 8 && names.Count < 6))
                    {
                        string name = $"d{step}";
                        last = "create " + name;
                        pool.CreateDevice(name, 40L * Bs);
                        state.Devices[name] = (40L * Bs, []);
                        Committed();
                    }
                    else if (op < 14 && names.Count < 6)
                    {
                        string name = $"s{step}";
                        last = $"snapshot {some} {name}";
                        pool.Snapshot(some, name);
                        state.Devices[name] = (state.Devices[some].Size, new Dictionary<long, ulong>(state.Devices[some].Stamps));
                        Committed();
                    }
                    else if (op < 17)
                    {
                        last = "delete " + some;
                        pool.DeleteDevice(some);
                        state.Devices.Remove(some);
                        Committed();
                    }
                    else if (op < 75)
                    {
                        long vblock = random.NextInt64(40);
                        last = $"write {some} {vblock}";
                        using (var dev = pool.OpenDevice(some)) dev.Write(Place(vblock), BitConverter.GetBytes(++stamp));
                        state.Devices[some].Stamps[vblock] = stamp;
                        dirty.Add((some, vblock));
                    }
                    else if (op < 85)
                    {
                        long vblock = random.NextInt64(40);
                        last = $"discard {some} {vblock}";
                        using (var dev = pool.OpenDevice(some)) dev.Discard(vblock * Bs, Bs);
                        state.Devices[some].Stamps.Remove(vblock);
                        dirty.Add((some, vblock));
                    }
                    else
                    {
                        last = "flush";
                        pool.Commit();
                        Committed();
                    }
                }
                // power fails: between operations, or in the middle of a last commit
                if (random.Next(3) == 0)
                {
                    midCommit++;
                    if (random.Next(2) == 0) metadata.FailWritesFrom = metadata.Writes + random.Next(1, 12);
                    else metadata.FailFlushesFrom = metadata.Flushes + random.Next(1, 3);
                    try
                    {
                        pool.Commit();
                        Committed(); // it got through before the failure point
                    }
                    catch (Exception ex) when (ex is IOException or Strata.StrataException)
                    {
                    }
                }
            }
            catch (Strata.StrataException ex) when (ex.Kind == Strata.ErrorKind.NoSpace)
            {
                // a full pool is a legitimate state to lose power in
            }
            catch (Exception ex)
            {
                throw new Exception($"seed {seed} crash {crash} ({last}): {ex.Message}", ex);
            }
            var dataAfter = data.Crash(random);
            var metadataAfter = metadata.Crash(random);
            torn++;
            Verify(seed, crash, dataAfter, metadataAfter, committed, dirty);
        }
        output.WriteLine($"seed {seed}: {crashes} power losses, {midCommit} of them in the middle of a commit");
    }

    static void Verify(int seed, int crash, MemoryBlockStore data, MemoryBlockStore metadata, State committed, HashSet<(string, long)> dirty)
    {
        var report = PoolChecker.Check(metadata);
        Assert.True(report.Errors.Count == 0, $"seed {seed} crash {crash}: check after the crash: {string.Join("; ", report.Errors.Take(5))}");
        var pool = ThinPool.Open(data, metadata, NoTimer);
        if (pool.Status().NeedsCheck)
        {
            // a commit failed before the power did: the pool marked itself for a check, as dm-thin does; the
            // operator's repair makes it writable again
            pool.Dispose();
            Assert.True(ThinPool.Repair(data, metadata).Errors.Count == 0, $"seed {seed} crash {crash}: repair");
            pool = ThinPool.Open(data, metadata, NoTimer);
            Assert.False(pool.Status().NeedsCheck);
        }
        using var _ = pool;
        var devices = pool.Devices().Select(d => d.Name).Order(StringComparer.Ordinal).ToList();
        Assert.True(committed.Devices.Keys.Order(StringComparer.Ordinal).SequenceEqual(devices),
            $"seed {seed} crash {crash}: devices {string.Join(",", devices)}, expected {string.Join(",", committed.Devices.Keys.Order(StringComparer.Ordinal))}");
        var buffer = new byte[8];
        foreach (var (name, (size, stamps)) in committed.Devices)
        {
            using var dev = pool.OpenDevice(name);
            Assert.Equal(size, dev.Size);
            for (long vblock = 0; vblock < size / Bs; vblock++)
            {
                if (dirty.Contains((name, vblock))) continue;
                dev.Read(Place(vblock), buffer);
                ulong want = stamps.GetValueOrDefault(vblock);
                Assert.True(BitConverter.ToUInt64(buffer) == want, $"seed {seed} crash {crash}: {name} block {vblock} reads {BitConverter.ToUInt64(buffer)}, committed {want}");
            }
        }
        // and it goes on working: a write, a commit, a clean check
        if (devices.Count > 0)
        {
            using (var dev = pool.OpenDevice(devices[0])) dev.Write(0, new byte[] { 1, 2, 3 });
            pool.Commit();
            var after = PoolChecker.Check(metadata);
            Assert.True(after.Clean, $"seed {seed} crash {crash}: check after recovery: {string.Join("; ", after.Errors.Concat(after.Leaks).Take(5))}");
        }
    }
}
