using System.Diagnostics;
using System.Globalization;
using Strata.Core;
using Strata.Native;
using Strata.OverlayBench;

// Usage: Strata.ThinDriverBench SCENARIO --dir DIR [options]
//   copyup     --dir DIR [--reps 5] [--size-mib 1024]
//   containers --dir DIR --tar ROOTFS.tar [-n 100] [--block 10] [--warmup 5]
//   layers     --dir DIR --tar ROOTFS.tar --drivers btrfs,overlay,vfs [-n 1000] [--vfs-n 20] [--warmup 5]
//              (create + remove of N read-only child layers of a rootfs layer, per driver, on DIR's filesystem)
//   snapshots  --dir DIR --driver thin|btrfs|overlay [-n 10] [--size-mib 1024]
//              (a container layer that wrote SIZE MiB: snapshot it and roll it back, N times: thin and btrfs with
//              LayerStore.CopyLayer and RestoreLayer, overlay with FreezeLayer and ResetLayer)
//   merge      --dir DIR [-n 5] [--files 10000]
//              (overlay: a snapshot holding FILES files in one directory, which the container also has, folded into the
//              container (LayerStore.MergeLayer: a rename each), beside `mv -t` of the same files between two directories)
// copyup and containers run the thin driver and the overlay driver side by side in one process, on stores in DIR (an empty
// directory on the filesystem to measure), alternating which goes first. Everything made is left in DIR; the script
// removes it (and stops the thin pool's server, which the stores stop themselves when they close).
if (args.Length < 1 || args[0] is "-h" or "--help")
{
    Console.Error.WriteLine("usage: Strata.ThinDriverBench copyup|containers|layers|snapshots|merge --dir DIR [--tar FILE] [--drivers D,D] [-n N] [--vfs-n N] [--reps N] [--block N] [--warmup N] [--size-mib N]");
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
        "copyup" => Bench.CopyUp(dir, Int("reps", 5), Int("size-mib", 1024)),
        "containers" => Bench.Containers(dir, Need("tar"), Int("n", 100), Int("block", 10), Int("warmup", 5)),
        "snapshots" => Bench.Snapshots(dir, Need("driver"), Int("n", 10), Int("size-mib", 1024)),
        "merge" => Bench.Merge(dir, Int("n", 5), Int("files", 10_000)),
        "layers" => Bench.Layers(dir, Need("tar"), Need("drivers").Split(','), Int("n", 1000), Int("vfs-n", 20), Int("warmup", 5)),
        _ => throw new ArgumentException($"unknown scenario '{args[0]}'"),
    };
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine(ex.Message);
    return 2;
}

static class Bench
{
    static LayerStore Open(string root, string driver, Dictionary<string, string>? options = null)
    {
        var store = LayerStore.Open(new StoreOptions { Root = root, Driver = driver, DriverOptions = options ?? [] });
        Out.Line($"== {driver} store at {root}");
        return store;
    }

    static void CreateBase(LayerStore store, string id, Stream tar, string what)
    {
        long t = Stopwatch.GetTimestamp();
        store.Create(id, null, diff: tar);
        Out.Line($"== {store.Driver.Name}: base layer '{id}' from {what}: {Out.F(Stats.Ms(Stopwatch.GetTimestamp() - t), 0)} ms (untimed setup)");
    }

    /// <summary>Bytes the thin pool's sparse data file takes on disk.</summary>
    static long ThinData(LayerStore store) => Disk.Allocated(Path.Combine(store.Root, "thin", "data"));

    // ------------------------------------------------------------------------------------------
    // copy-up: 32 KiB written into the middle of a 1 GiB file of the image, through a container's mount
    // ------------------------------------------------------------------------------------------

    public static int CopyUp(string dir, int reps, int sizeMib)
    {
        long size = (long)sizeMib << 20, offset = size / 2;
        const int WriteSize = 32 << 10;
        using var overlay = Open(Path.Combine(dir, "overlay-store"), "overlay");
        using var thin = Open(Path.Combine(dir, "thin-store"), "thin", new() { ["thin.basesize"] = $"{sizeMib * 2 + 512}M" });
        var gen = new GeneratedTar(size);
        foreach (var store in new[] { overlay, thin })
        {
            CreateBase(store, "big", new GeneratedTar(size), $"a generated tar of one {sizeMib} MiB file of non-zero data");
            Posix.SyncFileSystem(dir);
        }
        Out.Line($"== per repetition and driver (the drivers alternate which goes first): a container on 'big' is created and mounted (untimed), then");
        Out.Line($"   timed: open(blob, O_WRONLY), pwrite {WriteSize} bytes at {offset}, fsync, close. Untimed: what the write allocated on the host");
        Out.Line($"   (overlay: the upper file's st_blocks*512; thin: growth of the pool's sparse data file; both: statvfs free-bytes delta, settled),");
        Out.Line("   a check of the data through the mount, then unmount + remove.");
        var data = new byte[WriteSize];
        Array.Fill(data, (byte)0x57);
        var rows = new Dictionary<string, List<(double Open, double Write, double Fsync, double Total, long Allocated, long Df)>> { ["overlay"] = [], ["thin"] = [] };
        for (int r = 0; r < reps; r++)
        {
            foreach (var store in r % 2 == 0 ? new[] { thin, overlay } : [overlay, thin])
            {
                string id = $"cu{r}";
                store.Create(id, "big", LayerKind.ReadWrite);
                string path = Path.Combine(store.Mount(id), "blob");
                long dataBefore = store.Driver.Name == "thin" ? ThinData(store) : 0;
                var before = Disk.Settled(dir);
                long t0 = Stopwatch.GetTimestamp();
                var fd = Posix.Open(path, Posix.O_WRONLY);
                long t1 = Stopwatch.GetTimestamp();
                Posix.PwriteAll(fd, data, offset, path);
                long t2 = Stopwatch.GetTimestamp();
                Posix.Fsync(fd, path);
                long t3 = Stopwatch.GetTimestamp();
                fd.Dispose();
                long t4 = Stopwatch.GetTimestamp();
                var after = Disk.Settled(dir);
                long allocated = store.Driver.Name == "thin"
                    ? ThinData(store) - dataBefore
                    : Disk.Allocated(Path.Combine(store.Metadata(id)["UpperDir"], "blob"));
                GeneratedTar.Check(path, gen.Chunk, data, offset, size);
                rows[store.Driver.Name].Add((Stats.Ms(t1 - t0), Stats.Ms(t2 - t1), Stats.Ms(t3 - t2), Stats.Ms(t4 - t0), allocated, before.FreeBytes - after.FreeBytes));
                store.Unmount(id);
                store.Remove(id);
            }
        }
        Out.Line($"  {"driver",-8} {"rep",3} {"open_ms",9} {"pwrite_ms",10} {"fsync_ms",9} {"total_ms",9} {"allocated_bytes",16} {"df_delta_bytes",15}");
        foreach (var (driver, list) in rows)
            for (int r = 0; r < list.Count; r++)
            {
                var x = list[r];
                Out.Line($"  {driver,-8} {r,3} {Out.F(x.Open),9} {Out.F(x.Write),10} {Out.F(x.Fsync),9} {Out.F(x.Total),9} {x.Allocated,16} {x.Df,15}");
            }
        foreach (var (driver, list) in rows)
            Out.Line($"{driver} copy-up median: {Out.F(Stats.Median(list.Select(x => x.Total)), 2)} ms for a {WriteSize / 1024} KiB write + fsync; " +
                     $"allocated {Out.Kib(Stats.Median(list.Select(x => (double)x.Allocated)))}, df {Out.Kib(Stats.Median(list.Select(x => (double)x.Df)))}");
        double thinMs = Stats.Median(rows["thin"].Select(x => x.Total)), overlayMs = Stats.Median(rows["overlay"].Select(x => x.Total));
        double thinBytes = Stats.Median(rows["thin"].Select(x => (double)x.Allocated));
        Out.Line($"ratio overlay / thin (median time): {Out.F(overlayMs / thinMs, 1)}x");
        Out.Line($"goal thin copies at most 64 KiB: {(thinBytes <= 65536 ? "met" : "MISSED")} ({Out.Kib(thinBytes)}); goal under 5 ms: {(thinMs < 5 ? "met" : "MISSED")} ({Out.F(thinMs, 2)} ms)");
        return 0;
    }


    // ------------------------------------------------------------------------------------------
    // create + mount + unmount of N containers, thin against overlay
    // ------------------------------------------------------------------------------------------

    public static int Containers(string dir, string tar, int n, int block, int warmup)
    {
        using var overlay = Open(Path.Combine(dir, "overlay-store"), "overlay");
        using var thin = Open(Path.Combine(dir, "thin-store"), "thin", new() { ["thin.basesize"] = "10G" });
        foreach (var store in new[] { overlay, thin })
            using (var f = File.OpenRead(tar)) CreateBase(store, "base", f, tar);
        var totals = new Dictionary<string, List<double>> { ["overlay"] = [], ["thin"] = [] };
        var phases = new Dictionary<string, Dictionary<string, List<double>>>
        {
            ["overlay"] = new() { ["create"] = [], ["mount"] = [], ["unmount"] = [], ["remove"] = [] },
            ["thin"] = new() { ["create"] = [], ["mount"] = [], ["unmount"] = [], ["remove"] = [] },
        };
        for (int w = 0; w < warmup; w++)
            foreach (var store in new[] { overlay, thin })
            {
                Cycle.CreateMountUnmount(store, $"warm{w}", null);
                store.Remove($"warm{w}");
            }
        Out.Line($"== {warmup} warm-up containers per driver (not counted); then {n} per driver in blocks of {block}, the drivers alternating per block;");
        Out.Line("   each container: Create (read-write child of base) + Mount + Unmount timed; Remove timed apart; syncfs between blocks (untimed)");
        var cpu = new Dictionary<string, ForeignCpu> { ["overlay"] = new(), ["thin"] = new() };
        for (int b = 0; b * block < n; b++)
        {
            int from = b * block, to = Math.Min(n, from + block);
            foreach (var store in b % 2 == 0 ? new[] { thin, overlay } : [overlay, thin])
            {
                string name = store.Driver.Name;
                Posix.SyncFileSystem(dir);
                cpu[name].Start();
                for (int i = from; i < to; i++) totals[name].Add(Cycle.CreateMountUnmount(store, $"c{i:D4}", phases[name]));
                cpu[name].Stop();
            }
        }
        foreach (var store in new[] { overlay, thin })
            for (int i = 0; i < n; i++)
            {
                long t = Stopwatch.GetTimestamp();
                store.Remove($"c{i:D4}");
                phases[store.Driver.Name]["remove"].Add(Stats.Ms(Stopwatch.GetTimestamp() - t));
            }
        foreach (var (name, list) in totals) Out.Raw($"{name}: create+mount+unmount", list);
        Out.Line("");
        Out.Line($"per container, {n} per driver:");
        Out.PercentileHeader();
        foreach (var (name, list) in totals)
        {
            Out.PercentileRow($"{name} create+mount+unmount", list);
            foreach (var (phase, p) in phases[name]) Out.PercentileRow($"  {name} {phase}", p);
        }
        foreach (var (name, c) in cpu) Out.Line($"  other processes' user CPU during {name}'s blocks: {Out.F(c.Seconds, 2)} s");
        double thinP50 = Stats.Percentile(totals["thin"].Order().ToArray(), 50), overlayP50 = Stats.Percentile(totals["overlay"].Order().ToArray(), 50);
        Out.Line($"ratio thin / overlay (p50): {Out.F(thinP50 / overlayP50, 1)}x");
        Out.Line($"goal thin p50 < 100 ms: {(thinP50 < 100 ? "met" : "MISSED")} ({Out.F(thinP50, 1)} ms)");
        return 0;
    }

    // ------------------------------------------------------------------------------------------
    // snapshot and rollback of a container layer that wrote SIZE MiB (the operations `container snapshot create` and
    // `container rollback` do, in process: the CLI's start and store open are not in it)
    // ------------------------------------------------------------------------------------------

    public static int Snapshots(string dir, string driver, int n, int sizeMib)
    {
        var options = driver == "thin" ? new Dictionary<string, string> { ["thin.basesize"] = $"{sizeMib * 2 + 512}M" } : null;
        using var store = Open(Path.Combine(dir, driver + "-snapshots"), driver, options);
        store.Create("base", null);
        store.Create("c", "base", LayerKind.ReadWrite);
        string path = Path.Combine(store.Mount("c"), "data");
        var chunk = new byte[1 << 20];
        new Random(1).NextBytes(chunk);
        using (var f = new FileStream(path, FileMode.CreateNew))
        {
            for (int i = 0; i < sizeMib; i++) f.Write(chunk);
            f.Flush(flushToDisk: true);
        }
        store.Unmount("c");
        Posix.SyncFileSystem(dir);
        bool chain = store.SnapshotsInChain;
        Out.Line(chain
            ? $"== {driver}: container layer 'c' wrote {sizeMib} MiB (untimed); then per repetition: timed FreezeLayer(c, c.rN) (its changes move into c.rN), sync (untimed),"
            : $"== {driver}: container layer 'c' wrote {sizeMib} MiB (untimed); then per repetition: timed CopyLayer(c, c.rN), sync (untimed),");
        Out.Line(chain
            ? "   timed ResetLayer(c, c.rN), untimed MergeLayer(c.rN) (the changes move back into c) and sync"
            : "   timed RestoreLayer(c, c.rN), untimed Remove(c.rN) and sync");
        var snapshot = new List<double>();
        var rollback = new List<double>();
        for (int r = 0; r < n; r++)
        {
            long t0 = Stopwatch.GetTimestamp();
            if (chain) store.FreezeLayer("c", $"c.r{r}");
            else store.CopyLayer("c", $"c.r{r}");
            long t1 = Stopwatch.GetTimestamp();
            Posix.SyncFileSystem(dir);
            long t2 = Stopwatch.GetTimestamp();
            if (chain) store.ResetLayer("c", $"c.r{r}");
            else store.RestoreLayer("c", $"c.r{r}");
            long t3 = Stopwatch.GetTimestamp();
            snapshot.Add(Stats.Ms(t1 - t0));
            rollback.Add(Stats.Ms(t3 - t2));
            if (chain) store.MergeLayer($"c.r{r}");
            else store.Remove($"c.r{r}");
            Posix.SyncFileSystem(dir);
            Out.Line($"  {driver,-6} rep {r,2}: snapshot {Out.F(snapshot[^1], 2)} ms, rollback {Out.F(rollback[^1], 2)} ms");
        }
        Out.Line($"{driver} snapshot median {Out.F(Stats.Median(snapshot), 2)} ms (min {Out.F(snapshot.Min(), 2)}, max {Out.F(snapshot.Max(), 2)}); " +
            $"rollback median {Out.F(Stats.Median(rollback), 2)} ms (min {Out.F(rollback.Min(), 2)}, max {Out.F(rollback.Max(), 2)}), {n} repetitions");
        store.Remove("c");
        store.Remove("base");
        return 0;
    }

    // ------------------------------------------------------------------------------------------
    // overlay's merge of a snapshot (what `container snapshot rm` does, in process) beside mv of the same files
    // ------------------------------------------------------------------------------------------

    public static int Merge(string dir, int n, int files)
    {
        using var store = Open(Path.Combine(dir, "overlay-merge"), "overlay");
        store.Create("base", null);
        store.Create("c", "base", LayerKind.ReadWrite);
        Out.Line($"== per repetition, untimed: c writes {files} files of 100 bytes in many/, is frozen into snapshot c.rN, then rewrites many/0 (so");
        Out.Line($"   its upper dir has many/ too, and the fold renames the files one by one); the same {files} files are written in mv/src/, and sync;");
        Out.Line("   timed, in turns: MergeLayer(c.rN), and `mv -t mv/dst mv/src/*` (one process, the files as its arguments)");
        var merge = new List<double>();
        var mv = new List<double>();
        var content = new string('x', 100);
        string peer = Path.Combine(dir, "mv");
        for (int r = 0; r < n; r++)
        {
            string tree = store.Mount("c");
            Directory.CreateDirectory(Path.Combine(tree, "many"));
            for (int i = 0; i < files; i++) File.WriteAllText(Path.Combine(tree, "many", i.ToString(CultureInfo.InvariantCulture)), content);
            store.Unmount("c");
            store.FreezeLayer("c", $"c.r{r}");
            File.WriteAllText(Path.Combine(store.Mount("c"), "many", "0"), "changed");
            store.Unmount("c");
            if (Directory.Exists(peer)) Directory.Delete(peer, recursive: true);
            Directory.CreateDirectory(Path.Combine(peer, "src"));
            Directory.CreateDirectory(Path.Combine(peer, "dst"));
            var names = new List<string>();
            for (int i = 0; i < files; i++)
            {
                string f = Path.Combine(peer, "src", i.ToString(CultureInfo.InvariantCulture));
                File.WriteAllText(f, content);
                names.Add(f);
            }
            Posix.SyncFileSystem(dir);
            double MergeOnce()
            {
                long t0 = Stopwatch.GetTimestamp();
                store.MergeLayer($"c.r{r}");
                return Stats.Ms(Stopwatch.GetTimestamp() - t0);
            }
            double MvOnce()
            {
                var start = new ProcessStartInfo("mv") { UseShellExecute = false };
                start.ArgumentList.Add("-t");
                start.ArgumentList.Add(Path.Combine(peer, "dst"));
                foreach (var f in names) start.ArgumentList.Add(f);
                long t0 = Stopwatch.GetTimestamp();
                using (var p = Process.Start(start)!)
                {
                    p.WaitForExit();
                    if (p.ExitCode != 0) throw new InvalidOperationException($"mv exited with {p.ExitCode}");
                }
                return Stats.Ms(Stopwatch.GetTimestamp() - t0);
            }
            if (r % 2 == 0)
            {
                merge.Add(MergeOnce());
                mv.Add(MvOnce());
            }
            else
            {
                mv.Add(MvOnce());
                merge.Add(MergeOnce());
            }
            Out.Line($"  rep {r,2}: merge {Out.F(merge[^1], 1)} ms, mv {Out.F(mv[^1], 1)} ms");
        }
        Out.Line($"overlay merge of {files} files median {Out.F(Stats.Median(merge), 1)} ms (min {Out.F(merge.Min(), 1)}, max {Out.F(merge.Max(), 1)}); " +
            $"mv median {Out.F(Stats.Median(mv), 1)} ms (min {Out.F(mv.Min(), 1)}, max {Out.F(mv.Max(), 1)}); merge/mv {Out.F(Stats.Median(merge) / Stats.Median(mv), 2)}x, {n} repetitions");
        return 0;
    }

    // ------------------------------------------------------------------------------------------
    // create + remove of N layers on a rootfs layer, per driver (btrfs vs overlay vs vfs with reflinks)
    // ------------------------------------------------------------------------------------------

    public static int Layers(string dir, string tar, string[] drivers, int n, int vfsN, int warmup)
    {
        var rows = new List<(string Driver, List<double> Create, List<double> Remove, List<double> Total)>();
        foreach (var driver in drivers)
        {
            int count = driver == "vfs" ? vfsN : n;
            using var store = Open(Path.Combine(dir, driver + "-store"), driver);
            foreach (var field in store.Status()) Out.Line($"   {field.Key}: {field.Value}");
            using (var f = File.OpenRead(tar)) CreateBase(store, "base", f, tar);
            for (int w = 0; w < warmup; w++)
            {
                store.Create($"warm{w}", "base");
                store.Remove($"warm{w}");
            }
            var create = new List<double>();
            var remove = new List<double>();
            var total = new List<double>();
            Posix.SyncFileSystem(dir);
            for (int i = 0; i < count; i++)
            {
                string id = $"l{i:D4}";
                long t0 = Stopwatch.GetTimestamp();
                store.Create(id, "base");
                long t1 = Stopwatch.GetTimestamp();
                store.Remove(id);
                long t2 = Stopwatch.GetTimestamp();
                create.Add(Stats.Ms(t1 - t0));
                remove.Add(Stats.Ms(t2 - t1));
                total.Add(Stats.Ms(t2 - t0));
            }
            rows.Add((driver, create, remove, total));
            Out.Raw($"{driver}: create+remove", total);
        }
        Out.Line("");
        Out.Line($"create + remove of a read-only child of the rootfs layer ({n} for btrfs and overlay, {vfsN} for vfs), on {FileSystems.Name(dir)}:");
        Out.PercentileHeader();
        foreach (var (driver, create, remove, total) in rows)
        {
            Out.PercentileRow($"{driver} create+remove", total);
            Out.PercentileRow($"  {driver} create", create);
            Out.PercentileRow($"  {driver} remove", remove);
        }
        if (rows.FirstOrDefault(r => r.Driver == "btrfs") is { Total: { Count: > 0 } btrfs })
        {
            double p50 = Stats.Percentile(btrfs.Order().ToArray(), 50);
            foreach (var (driver, _, _, total) in rows.Where(r => r.Driver != "btrfs"))
                Out.Line($"ratio {driver} / btrfs (p50): {Out.F(Stats.Percentile(total.Order().ToArray(), 50) / p50, 1)}x");
            Out.Line($"goal btrfs p50 < 5 ms: {(p50 < 5 ? "met" : "MISSED")} ({Out.F(p50, 2)} ms)");
        }
        return 0;
    }

}
