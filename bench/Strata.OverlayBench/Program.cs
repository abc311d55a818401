using System.Globalization;
using Strata.Core;
using Strata.Native;
using Strata.OverlayBench;

// Usage: Strata.OverlayBench SCENARIO --dir DIR [options]
//   containers --dir DIR --tar ROOTFS.tar [-n 1000] [--vfs 10] [--block 100] [--warmup 20] [--floor 1]
//              (--floor 0: Strata only, e.g. under strace; the timed blocks are marked by a failed statx of
//              /.strata-bench-mark/begin_..., end_...)
//   diff       --dir DIR --tar ROOTFS.tar [--reps 11]
//   copyup     --dir DIR [--reps 3] [--size-mib 1024]
// DIR must be an empty directory on the filesystem to measure (a fresh one: the disk figures are
// statvfs deltas of the whole filesystem). Everything made is left in DIR.

if (args.Length < 1 || args[0] is "-h" or "--help")
{
    Console.Error.WriteLine("usage: Strata.OverlayBench containers|diff|copyup --dir DIR [--tar FILE] [-n N] [--vfs N] [--reps N] [--block N] [--warmup N] [--floor 0|1] [--size-mib N]");
    return args.Length < 1 ? 2 : 0;
}
if (BenchArgs.Parse(args) is not { } a) return 2;
int Int(string key, int def) => a.Int(key, def);
string Need(string key) => a.Need(key);

try
{
    string dir = Path.GetFullPath(Need("dir"));
    Out.Line($"== scenario {args[0]} in {dir} ({FileSystems.Name(dir)}), .NET {Environment.Version}, pid {Environment.ProcessId}");
    return args[0] switch
    {
        "containers" => Scenarios.Containers(dir, Need("tar"), Int("n", 1000), Int("vfs", 10), Int("block", 100), Int("warmup", 20), Int("floor", 1) != 0),
        "diff" => Scenarios.Diff(dir, Need("tar"), Int("reps", 11)),
        "copyup" => Scenarios.CopyUp(dir, Int("reps", 3), Int("size-mib", 1024)),
        _ => throw new ArgumentException($"unknown scenario '{args[0]}'"),
    };
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine(ex.Message);
    return 2;
}
