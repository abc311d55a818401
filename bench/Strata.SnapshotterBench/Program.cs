// The benchmark's command line: probe a snapshot service, or time Prepare + Mounts + Remove on several side by side.
using System.Diagnostics;
using System.Globalization;
using Grpc.Core;
using Strata.SnapshotterBench;

// Usage:
//   Strata.SnapshotterBench probe --target NAME=SOCKET,SNAPSHOTTER[,NS]
//       one Prepare + Mounts + Remove; prints "ok NAME" (exit 0) or "refused NAME: STATUS: DETAIL" (exit 3)
//   Strata.SnapshotterBench ops --target T [--target T]... [-n 1000] [--block 100] [--warmup 50] [--raw FILE]
//       per target: Prepare of an empty snapshot, Commit of it as the base; then N times Prepare(key, parent = base),
//       Mounts(key), Remove(key), each call timed on its own (a Stopwatch around the awaited call), in blocks of
//       BLOCK per target whose order rotates from block to block; WARMUP unmeasured rounds per target first.
//       Prints "ops NAME OP n p50 p90 p99 mean min max" (ms; OP prepare, mounts, remove, and all = the three together);
//       with --raw, every sample of prepare, mounts and remove as "NAME OP MICROSECONDS..." lines (one per op) into FILE.
var inv = CultureInfo.InvariantCulture;
if (args.Length < 1 || args[0] is "-h" or "--help")
{
    Console.Error.WriteLine("usage: Strata.SnapshotterBench probe|ops --target NAME=SOCKET,SNAPSHOTTER[,NS]... [-n N] [--block B] [--warmup W] [--raw FILE]");
    return args.Length < 1 ? 2 : 0;
}
var targets = new List<Target>();
int n = 1000, block = 100, warmup = 50;
string? raw = null;
for (int i = 1; i < args.Length; i += 2)
{
    string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--target": targets.Add(Target.Parse(value)); break;
        case "-n": n = int.Parse(value, inv); break;
        case "--block": block = int.Parse(value, inv); break;
        case "--warmup": warmup = int.Parse(value, inv); break;
        case "--raw": raw = value; break;
        default: Console.Error.WriteLine($"unknown argument {args[i]}"); return 2;
    }
}
if (targets.Count == 0 || block <= 0 || n % block != 0) { Console.Error.WriteLine("need --target, and -n a multiple of --block"); return 2; }
string run = $"bench-{Environment.ProcessId}";

if (args[0] == "probe")
{
    var t = targets[0];
    try
    {
        await t.Prepare($"{run}-probe", null);
        await t.Mounts($"{run}-probe");
        await t.Remove($"{run}-probe");
        Console.WriteLine($"ok {t.Name}");
        return 0;
    }
    catch (RpcException e)
    {
        Console.WriteLine($"refused {t.Name}: {e.StatusCode}: {e.Status.Detail}");
        return 3;
    }
}
if (args[0] != "ops") { Console.Error.WriteLine($"unknown mode {args[0]}"); return 2; }

string Base(Target t) => $"{run}-{t.Name}-base";
foreach (var t in targets)
{
    await t.Prepare(Base(t) + "-active", null);
    await t.Commit(Base(t), Base(t) + "-active");
}
var samples = targets.ToDictionary(t => t.Name, _ => new Samples(n));
var clock = new Stopwatch();
int seq = 0;
async Task Round(Target t, Samples? into)
{
    string key = $"{run}-{t.Name}-{seq++}";
    long a = clock.ElapsedTicks;
    await t.Prepare(key, Base(t));
    long b = clock.ElapsedTicks;
    await t.Mounts(key);
    long c = clock.ElapsedTicks;
    await t.Remove(key);
    long d = clock.ElapsedTicks;
    into?.Add(b - a, c - b, d - c);
}
clock.Start();
foreach (var t in targets)
    for (int i = 0; i < warmup; i++) await Round(t, null);
for (int b = 0; b < n / block; b++)
    for (int k = 0; k < targets.Count; k++)
    {
        var t = targets[(b + k) % targets.Count];
        for (int i = 0; i < block; i++) await Round(t, samples[t.Name]);
    }
foreach (var t in targets)
{
    await t.Remove(Base(t));
    t.Dispose();
}

using var rawOut = raw is null ? null : new StreamWriter(raw);
foreach (var t in targets)
    foreach (var (op, ticks) in samples[t.Name].ByOp())
    {
        double[] ms = ticks.Select(x => x * 1000.0 / Stopwatch.Frequency).ToArray();
        if (op != "all") rawOut?.WriteLine($"{t.Name} {op} " + string.Join(' ', ms.Select(x => (x * 1000).ToString("F0", inv))));
        Array.Sort(ms);
        double P(double q) => ms[Math.Max(0, (int)Math.Ceiling(q * ms.Length) - 1)];
        Console.WriteLine(string.Create(inv, $"ops {t.Name} {op} {ms.Length} {P(0.5):F3} {P(0.9):F3} {P(0.99):F3} {ms.Average():F3} {ms[0]:F3} {ms[^1]:F3}"));
    }
return 0;

/// <summary>The timed rounds of one target, in Stopwatch ticks per call, in the order they ran.</summary>
sealed class Samples(int capacity)
{
    readonly List<long> _prepare = new(capacity), _mounts = new(capacity), _remove = new(capacity);

    public void Add(long prepare, long mounts, long remove)
    {
        _prepare.Add(prepare);
        _mounts.Add(mounts);
        _remove.Add(remove);
    }

    public IEnumerable<(string Op, long[] Ticks)> ByOp()
    {
        yield return ("prepare", _prepare.ToArray());
        yield return ("mounts", _mounts.ToArray());
        yield return ("remove", _remove.ToArray());
        yield return ("all", _prepare.Select((p, i) => p + _mounts[i] + _remove[i]).ToArray());
    }
}
