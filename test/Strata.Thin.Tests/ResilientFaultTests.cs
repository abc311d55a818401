using Strata.Block;
using Strata.Thin.Space;
using Xunit.Abstractions;

namespace Strata.Thin.Tests;

/// <summary>
/// Random runs of writes, reads, commits, crashes and reopens on small resilient pools of <see cref="FaultyBlockStore"/>
/// disks, with as many disks failing as the resiliency survives (one for mirror and parity, two for mirror3 and
/// parity2), each failing its own way: bits that rot, writes lost or torn, IO errors on a range, flushes that fail, the
/// disk gone; the failed disks are rebuilt in the background meanwhile, and scrubs (with and without repair) run
/// between the writes. Every read must return exactly what the model holds, and after a crash the pool must hold exactly
/// its last commit. A simple pool (none survives) takes rot on its one disk: its reads are right or an IO error, never
/// wrong bytes. STRATA_FAULT_RUNS sets the runs per case (150 by default, which keeps the test suite short; bench/soak-resilient.sh runs 1,000); a failure names its seed, and
/// STRATA_SEED=N replays that run alone.
/// </summary>
public sealed class ResilientFaultTests(ITestOutputHelper output)
{
    const uint Bs = ThinPool.MinBlockSize;
    const long Slab = 1 << 20, Meta = 1 << 20, DeviceSize = 3 << 20;
    static readonly PoolOptions Options = new() { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 };

    public static TheoryData<Resiliency, bool> Cases => new()
    {
        { Resiliency.Simple, true }, { Resiliency.Mirror, true }, { Resiliency.Mirror3, true }, { Resiliency.Parity, true }, { Resiliency.Parity2, true },
        { Resiliency.Mirror, false }, { Resiliency.Parity2, false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void NoReadIsWrongAndEveryCommitSurvives(Resiliency resiliency, bool checksums)
    {
        int runs = int.TryParse(Environment.GetEnvironmentVariable("STRATA_FAULT_RUNS"), out int n) ? n : 150;
        int baseSeed = (int)resiliency * 100_000 + (checksums ? 0 : 50_000);
        if (Environment.GetEnvironmentVariable("STRATA_SEED") is { Length: > 0 } one)
        {
            Run(resiliency, checksums, int.Parse(one));
            return;
        }
        for (int i = 0; i < runs; i++) Run(resiliency, checksums, baseSeed + i);
        output.WriteLine($"{runs} runs of {ResiliencyNames.Name(resiliency)} (checksums {(checksums ? "on" : "off")}), seeds {baseSeed}..{baseSeed + runs - 1}");
    }

    void Run(Resiliency resiliency, bool checksums, int seed)
    {
        string step = "create";
        var trail = new List<string>();
        try
        {
            Steps(resiliency, checksums, seed, s =>
            {
                step = s;
                trail.Add(s);
            });
        }
        catch (Exception ex)
        {
            throw new Xunit.Sdk.XunitException($"{ResiliencyNames.Name(resiliency)} (checksums {(checksums ? "on" : "off")}) seed {seed} (STRATA_SEED={seed}) failed at {step}: {ex.GetType().Name}: {ex.Message}\nsteps: {string.Join(", ", trail.TakeLast(40))}\n{ex.StackTrace}");
        }
    }

    static void Steps(Resiliency resiliency, bool checksums, int seed, Action<string> at)
    {
        var rng = new Random(seed);
        int diskCount = SlabShape.MinimumDisks(resiliency) + rng.Next(3);
        var disks = Enumerable.Range(0, diskCount).Select(i => new FaultyBlockStore((8 << 20) + rng.Next(5) * (1 << 20), $"disk{i}")).ToArray();
        var (data, meta, id) = DiskSet.Create(disks.Select((d, i) => ($"disk{i}", (IBlockStore)d)).ToList(), Bs, resiliency, Slab, Meta, checksums);
        var ids = data.Disks.Select(d => d.Id).ToArray();
        var pool = ThinPool.Create(data, meta, Bs, Options);
        pool.CreateDevice("d", DeviceSize);
        pool.Commit();
        var model = new byte[DeviceSize];
        var committed = (byte[])model.Clone();
        // bytes a failed write may or may not have changed (only where rot on a simple pool fails a write)
        var unknown = new bool[DeviceSize];
        var committedUnknown = new bool[DeviceSize];
        bool Same(ReadOnlySpan<byte> got, long offset)
        {
            for (int i = 0; i < got.Length; i++)
                if (got[i] != model[offset + i] && !unknown[offset + i]) return false;
            return true;
        }
        int tolerates = SlabShape.For(resiliency, diskCount, Bs).Tolerates;
        // the disks that fail in this run, and how; the rest stay sound
        var victims = Enumerable.Range(0, diskCount).OrderBy(_ => rng.Next()).Take(tolerates).ToList();
        bool simpleRot = resiliency == Resiliency.Simple && checksums && rng.Next(2) == 0;
        var dev = pool.OpenDevice("d");
        int ops = 25 + rng.Next(20);
        for (int op = 0; op < ops; op++)
        {
            int kind = rng.Next(100);
            if (kind < 45)
            {
                int length = rng.Next(3) switch { 0 => 512 * rng.Next(1, 9), 1 => 4096 * rng.Next(1, 20), _ => (int)Bs * rng.Next(1, 4) };
                long offset = rng.NextInt64((DeviceSize - length) / 512) * 512;
                at($"write {op} ({length} at {offset})");
                var bytes = new byte[length];
                rng.NextBytes(bytes);
                try
                {
                    dev.Write(offset, bytes);
                }
                catch (StrataException ex) when (simpleRot && ex.Kind == ErrorKind.Io)
                {
                    // a part of a sector that rotted cannot be rewritten: the write stopped somewhere in its range
                    Array.Fill(unknown, true, (int)offset, length);
                    continue;
                }
                bytes.CopyTo(model, offset);
                Array.Fill(unknown, false, (int)offset, length);
            }
            else if (kind < 65)
            {
                at($"read {op}");
                int length = 4096 * rng.Next(1, 64);
                long offset = rng.NextInt64((DeviceSize - length) / 512) * 512;
                var got = new byte[length];
                if (simpleRot)
                {
                    try
                    {
                        dev.Read(offset, got);
                    }
                    catch (StrataException ex) when (ex.Kind == ErrorKind.Io)
                    {
                        continue; // rot on the only copy: an IO error is the right answer
                    }
                }
                else dev.Read(offset, got);
                if (!Same(got, offset)) throw new Exception($"read of {length} bytes at {offset} returned wrong bytes");
            }
            else if (kind < 75)
            {
                bool repair = rng.Next(2) == 0;
                at($"scrub {op}{(repair ? " --repair" : "")}");
                var report = data.Scrub(repair);
                // within what the resiliency survives, a scrub finds nothing it cannot repair (a simple pool's rot it cannot)
                if (checksums && !simpleRot && report.Unrecoverable > 0) throw new Exception($"the scrub found {report.Unrecoverable} unrecoverable sectors");
            }
            else if (kind < 80)
            {
                at($"commit {op}");
                pool.Commit();
                committed = (byte[])model.Clone();
                committedUnknown = (bool[])unknown.Clone();
            }
            else if (kind < 92)
            {
                at($"fault {op}{(simpleRot ? " (rot)" : "")}");
                if (simpleRot) disks[0].FlipBits(data.Disks[0].DataStart, Slab * 2, 1 + rng.Next(4), rng);
                if (victims.Count == 0) continue;
                var victim = victims[rng.Next(victims.Count)];
                var d = disks[victim];
                var disk = data.Disks[victim];
                long dataBytes = Math.Max(1, disk.Slabs) * Slab;
                int how = checksums ? rng.Next(6) : 3 + rng.Next(3);
                at($"fault {op}: disk {victim} {how switch { 0 => "rot", 1 => "loses writes", 2 => "tears writes", 3 => "fails a range", 4 => "fails flushes", _ => "vanishes" }}");
                switch (how)
                {
                    case 0: d.FlipBits(disk.DataStart, dataBytes, 1 + rng.Next(8), rng); break;
                    case 1: d.LoseWrites(0.5, new Random(rng.Next())); break;
                    case 2: d.TearWrites(0.5, new Random(rng.Next())); break;
                    case 3: d.FailRange(disk.DataStart + rng.NextInt64(dataBytes), 1 << 16); break;
                    case 4: d.FailFlushesFrom = d.Flushes + 1; break;
                    default: d.Vanish(); break;
                }
                if (checksums && rng.Next(4) == 0) d.FlipBits(DiskLabel.Size, Meta, 1 + rng.Next(4), rng); // metadata rot too
            }
            else
            {
                at($"crash {op}");
                dev.Dispose();
                // no Dispose of the pool: power is cut, nothing more is written
                for (int i = 0; i < disks.Length; i++) disks[i] = disks[i].Crash(rng);
                model = (byte[])committed.Clone();
                unknown = (bool[])committedUnknown.Clone();
                (data, meta) = DiskSet.Open(disks.Select((s, i) => ($"disk{i}", ids[i], (IBlockStore?)s)).ToList(), id);
                at($"reopen {op}");
                pool = ThinPool.Open(data, meta, Options);
                dev = pool.OpenDevice("d");
                var all = new byte[DeviceSize];
                if (!simpleRot)
                {
                    dev.Read(0, all);
                    if (!all.AsSpan().SequenceEqual(model)) throw new Exception("after the crash the device is not its last commit");
                }
            }
        }
        at("final check");
        pool.Commit();
        var final = new byte[DeviceSize];
        if (!simpleRot)
        {
            dev.Read(0, final);
            if (!final.AsSpan().SequenceEqual(model)) throw new Exception("the device's final bytes differ from the model");
            var check = pool.ReadCommitted(m => PoolChecker.Check(m));
            if (!check.Clean) throw new Exception("check: " + string.Join("; ", check.Errors.Concat(check.Leaks)));
        }
        dev.Dispose();
        pool.Dispose();
    }
}
