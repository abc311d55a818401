using System.Diagnostics;
using System.Security.Cryptography;
using Strata.Archive.Tar;
using Strata.Core;
using Strata.Core.Drivers.Overlay;
using Strata.Native;

namespace Strata.OverlayBench;

public static class Scenarios
{
    const uint Dir0755 = 0x1ED;

    static LayerStore OpenStore(string root, string driver)
    {
        var store = LayerStore.Open(new StoreOptions { Root = root, Driver = driver });
        foreach (var (k, v) in store.Status()) Out.Line($"== {driver} store: {k}: {v}");
        return store;
    }

    static void CreateBase(LayerStore store, string id, Stream tar, string what)
    {
        long t = Stopwatch.GetTimestamp();
        store.Create(id, null, diff: tar);
        Out.Line($"== base layer '{id}' from {what}: {Out.F(Stats.Ms(Stopwatch.GetTimestamp() - t), 0)} ms (apply + syncfs, untimed setup)");
    }

    // ------------------------------------------------------------------------------------------
    // 1. create + mount + unmount of N containers, against the kernel floor and the vfs driver
    // ------------------------------------------------------------------------------------------

    sealed class Variant(string name)
    {
        public string Name { get; } = name;
        public List<double> Total { get; } = [];
        public ForeignCpu Cpu { get; } = new();
        public long Bytes;
        public long Inodes;
    }

    public static int Containers(string dir, string tar, int n, int vfsCount, int block, int warmup, bool floor)
    {
        var strata = new Variant("strata overlay");
        var floor2 = new Variant("kernel floor, mount(2)");
        var floorNew = new Variant("kernel floor, fsopen API");
        var record = new Variant("record rewrite (reference)");
        var phases = new Dictionary<string, List<double>> { ["create"] = [], ["mount"] = [], ["unmount"] = [] };
        string root = Path.Combine(dir, "overlay-store");
        double strataP50;
        using (var store = OpenStore(root, "overlay"))
        {
            var caps = ((OverlayDriver)store.Driver).Capabilities;
            Out.Line($"== overlay options on every mount: {string.Join(',', caps.FeatureOptions)}; native diff: {caps.NativeDiff}; store mounts with {(Mounter.CanAppendLowerdirs ? "fsopen/fsconfig(lowerdir+)/fsmount/move_mount" : "mount(2)")}");
            using (var f = File.OpenRead(tar)) CreateBase(store, "base", f, tar);
            string baseDiff = store.Metadata("base")["UpperDir"];
            string floorRoot = Path.Combine(dir, "floor");
            Posix.MkdirAt(FileDescriptor.Cwd, floorRoot, 0x1C0);
            // what one record write costs on this filesystem, without tracing: AtomicFile.Write (temp file, fsync,
            // rename over, fsync of the directory) of a real record over the same file, as Mount and Unmount do
            string recordRef = Path.Combine(dir, "record-ref");
            Posix.MkdirAt(FileDescriptor.Cwd, recordRef, 0x1C0);
            byte[] recordBytes = File.ReadAllBytes(Path.Combine(root, "layers", "base.json"));
            string recordFile = Path.Combine(recordRef, "c.json");
            AtomicFile.Write(recordFile, recordBytes);
            var parents = new[] { Path.Combine(root, "overlay"), Path.Combine(root, "overlay", "l"), Path.Combine(root, "layers"), floorRoot };
            var parentsBefore = parents.Select(Disk.Allocated).ToArray();

            // warm-up (JIT, the store's overlay probe, the dentry cache of the base tree): made and removed, not counted
            for (int w = 0; w < warmup; w++)
            {
                Cycle.CreateMountUnmount(store, $"warm{w:D3}", null);
                store.Remove($"warm{w:D3}");
                FloorOne(baseDiff, Path.Combine(floorRoot, $"warm{w:D3}"), caps.FeatureOptions, fsopen: false);
                FloorOne(baseDiff, Path.Combine(floorRoot, $"warmnew{w:D3}"), caps.FeatureOptions, fsopen: true);
                Strata.Archive.FileTree.Remove(Path.Combine(floorRoot, $"warm{w:D3}"));
                Strata.Archive.FileTree.Remove(Path.Combine(floorRoot, $"warmnew{w:D3}"));
                AtomicFile.Write(recordFile, recordBytes);
            }
            Out.Line($"== {warmup} warm-up rounds of each variant done (not counted); now {n} of each, in blocks of {block}, the variants' order rotating per block;");
            Out.Line("   before and after each block (untimed): syncfs and statvfs until it settles, so no variant pays for another's write-back");
            if (floor) Out.Line($"   reference: one record rewrite = AtomicFile.Write of a {recordBytes.Length}-byte layer record over the same file (create temp, write, fsync, rename, fsync dir)");

            var variants = floor ? new[] { strata, floor2, floorNew, record } : new[] { strata };
            var space = Disk.Settled(dir);
            for (int b = 0; b * block < n; b++)
            {
                int from = b * block, to = Math.Min(n, from + block);
                for (int k = 0; k < variants.Length; k++)
                {
                    var v = variants[(k + b) % variants.Length];
                    Mark($"begin {v.Name} block {b}");
                    v.Cpu.Start();
                    for (int i = from; i < to; i++)
                    {
                        if (v == strata) v.Total.Add(Cycle.CreateMountUnmount(store, $"c{i:D4}", phases));
                        else if (v == record) v.Total.Add(RecordOne(recordFile, recordBytes));
                        else v.Total.Add(FloorOne(baseDiff, Path.Combine(floorRoot, $"{(v == floor2 ? "m" : "f")}{i:D4}"), caps.FeatureOptions, fsopen: v == floorNew));
                    }
                    v.Cpu.Stop();
                    Mark($"end {v.Name} block {b}");
                    var after = Disk.Settled(dir);
                    v.Bytes += space.FreeBytes - after.FreeBytes;
                    v.Inodes += after.UsedInodes - space.UsedInodes;
                    space = after;
                }
            }

            Out.Line("");
            foreach (var v in variants) Out.Raw(v.Name + ": create+mount+unmount", v.Total);
            foreach (var (k, list) in phases) Out.Raw($"strata overlay: {k} phase", list);
            Out.Line("");
            Out.Line($"per container, {n} containers (strata: create+mount+unmount; floor: mkdir x4 + overlay mount + umount; record rewrite: one AtomicFile.Write):");
            Out.PercentileHeader();
            foreach (var v in variants) Out.PercentileRow(v.Name, v.Total);
            foreach (var (k, list) in phases) Out.PercentileRow("  strata " + k + " phase", list);
            Out.Line("disk per container (statvfs free-bytes and used-inode deltas over all of them / n; settled after syncfs):");
            foreach (var v in variants)
                Out.Line($"  {v.Name,-28} {Out.Kib((double)v.Bytes / n),12} {Out.F((double)v.Inodes / n, 2),6} inodes   (total {v.Bytes} bytes, {v.Inodes} inodes; other processes' user CPU meanwhile {Out.F(v.Cpu.Seconds, 2)} s)");

            Out.Line("what one container is made of (c0000; st_blocks*512 per entry):");
            long sum = 0;
            foreach (var (path, bytes) in Inventory(root, "c0000"))
            {
                Out.Line($"  {bytes,8} {path}");
                sum += bytes;
            }
            Out.Line($"  {sum,8} total; the directories holding all containers grew by:");
            for (int i = 0; i < parents.Length; i++)
                Out.Line($"  {Disk.Allocated(parents[i]) - parentsBefore[i],8} {Path.GetRelativePath(dir, parents[i])}/ ({Out.F((Disk.Allocated(parents[i]) - parentsBefore[i]) / (double)n, 1)} bytes per container)");

            strataP50 = Stats.Percentile(strata.Total.Order().ToArray(), 50);
            double perContainer = (double)strata.Bytes / n;
            if (floor)
            {
                double floorP50 = Stats.Percentile(floor2.Total.Order().ToArray(), 50), floorNewP50 = Stats.Percentile(floorNew.Total.Order().ToArray(), 50);
                Out.Line($"ratio strata / kernel floor (p50): {Out.F(strataP50 / floorP50, 1)}x vs mount(2), {Out.F(strataP50 / floorNewP50, 1)}x vs fsopen API");
            }
            Out.Line($"goal p50 < 5 ms: {(strataP50 < 5 ? "met" : "MISSED")} ({Out.F(strataP50)} ms)");
            Out.Line($"goal < 16 KiB of disk per container: {(perContainer < 16384 ? "met" : "MISSED")} ({Out.Kib(perContainer)})");

            // removal, for completeness
            var removed = new List<double>();
            for (int i = 0; i < n; i++)
            {
                long t = Stopwatch.GetTimestamp();
                store.Remove($"c{i:D4}");
                removed.Add(Stats.Ms(Stopwatch.GetTimestamp() - t));
            }
            var afterRemove = Disk.Settled(dir);
            Out.Raw("strata overlay: remove", removed);
            Out.PercentileHeader();
            Out.PercentileRow("strata overlay remove", removed);
            Out.Line($"  space returned by removing them: {Out.Kib((double)(afterRemove.FreeBytes - space.FreeBytes) / n)} and {Out.F((double)(space.UsedInodes - afterRemove.UsedInodes) / n, 2)} inodes per container");
        }

        if (vfsCount > 0) Vfs(dir, tar, vfsCount, strataP50);
        return 0;
    }

    /// <summary>A marker for syscall traces (strace -f): a failed statx of /.strata-bench-mark/WHAT, outside any timed region.</summary>
    static void Mark(string what) => Posix.TryLstat("/.strata-bench-mark/" + what.Replace(' ', '_'), out _);

    static double RecordOne(string file, byte[] content)
    {
        long t0 = Stopwatch.GetTimestamp();
        AtomicFile.Write(file, content);
        return Stats.Ms(Stopwatch.GetTimestamp() - t0);
    }

    /// <summary>The kernel floor: mkdir of a container dir and its upper, work and merged dirs, an overlay mount
    /// over the base's tree with the store's options, and umount; no fsync, no records. Returns ms.</summary>
    static double FloorOne(string lower, string cdir, IReadOnlyList<string> features, bool fsopen)
    {
        long t0 = Stopwatch.GetTimestamp();
        string upper = Path.Combine(cdir, "upper"), work = Path.Combine(cdir, "work"), merged = Path.Combine(cdir, "merged");
        Posix.MkdirAt(FileDescriptor.Cwd, cdir, 0x1C9);
        Posix.MkdirAt(FileDescriptor.Cwd, upper, Dir0755);
        Posix.MkdirAt(FileDescriptor.Cwd, work, 0x1C0);
        Posix.MkdirAt(FileDescriptor.Cwd, merged, 0x1C0);
        int err;
        if (!fsopen)
        {
            string data = $"lowerdir={lower},upperdir={upper},workdir={work}" + string.Concat(features.Select(o => "," + o));
            err = Posix.TryMount("overlay", merged, "overlay", 0, data);
            if (err != 0) throw new ErrnoException(err, "mount overlay", merged);
        }
        else
        {
            err = Posix.TryFsOpen("overlay", out var fs);
            if (err != 0) throw new ErrnoException(err, "fsopen", merged);
            using (fs)
            {
                var pairs = new List<(string, string)> { ("source", "overlay"), ("lowerdir+", lower), ("upperdir", upper), ("workdir", work) };
                foreach (var o in features) pairs.Add((o[..o.IndexOf('=')], o[(o.IndexOf('=') + 1)..]));
                foreach (var (k, v) in pairs)
                    if ((err = Posix.TryFsConfigString(fs!, k, v)) != 0) throw new ErrnoException(err, $"fsconfig {k}={v}", merged);
                if ((err = Posix.TryFsCreate(fs!)) != 0) throw new ErrnoException(err, "fsconfig create", merged);
                if ((err = Posix.TryFsMountAt(fs!, merged)) != 0) throw new ErrnoException(err, "fsmount", merged);
            }
        }
        if ((err = Posix.TryUnmount(merged, 0)) != 0) throw new ErrnoException(err, "umount", merged);
        return Stats.Ms(Stopwatch.GetTimestamp() - t0);
    }

    /// <summary>Every file of one overlay layer: its directory tree, its overlay/l link and its record.</summary>
    static List<(string Path, long Bytes)> Inventory(string root, string id)
    {
        var list = new List<(string, long)>();
        string layerDir = Path.Combine(root, "overlay", id);
        list.Add(($"overlay/{id}/", Disk.Allocated(layerDir)));
        foreach (var p in Directory.EnumerateFileSystemEntries(layerDir, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }).Order(StringComparer.Ordinal))
            list.Add((Path.GetRelativePath(root, p) + (Posix.Lstat(p).IsDirectory ? "/" : ""), Disk.Allocated(p)));
        string links = Path.Combine(root, "overlay", "l");
        foreach (var e in Posix.ReadDir(links))
            if (Posix.ReadLink(Path.Combine(links, e.Name)) == $"../{id}/diff")
                list.Add(($"overlay/l/{e.Name} -> ../{id}/diff", Disk.Allocated(Path.Combine(links, e.Name))));
        list.Add(($"layers/{id}.json", Disk.Allocated(Path.Combine(root, "layers", id + ".json"))));
        return list;
    }

    static void Vfs(string dir, string tar, int count, double overlayP50)
    {
        Out.Line("");
        Out.Line($"== vfs driver on the same filesystem: {count} containers (each a copy of the whole base tree), after one unmeasured warm-up");
        using var store = OpenStore(Path.Combine(dir, "vfs-store"), "vfs");
        using (var f = File.OpenRead(tar)) CreateBase(store, "base", f, tar);
        Cycle.CreateMountUnmount(store, "warm", null);
        store.Remove("warm");
        var phases = new Dictionary<string, List<double>> { ["create"] = [], ["mount"] = [], ["unmount"] = [] };
        var total = new List<double>();
        var cpu = new ForeignCpu();
        var before = Disk.Settled(dir);
        cpu.Start();
        for (int i = 0; i < count; i++) total.Add(Cycle.CreateMountUnmount(store, $"v{i:D3}", phases));
        cpu.Stop();
        var after = Disk.Settled(dir);
        Out.Raw("strata vfs: create+mount+unmount", total);
        Out.PercentileHeader();
        Out.PercentileRow("strata vfs", total);
        foreach (var (k, list) in phases) Out.PercentileRow("  vfs " + k + " phase", list);
        double bytes = (double)(before.FreeBytes - after.FreeBytes) / count, inodes = (double)(after.UsedInodes - before.UsedInodes) / count;
        Out.Line($"disk per vfs container: {Out.Mib(bytes)} ({Out.Kib(bytes)}), {Out.F(inodes, 1)} inodes (other processes' user CPU meanwhile {Out.F(cpu.Seconds, 2)} s)");
        Out.Line($"ratio vfs median / overlay p50: {Out.F(Stats.Median(total) / overlayP50, 0)}x");
    }

    // ------------------------------------------------------------------------------------------
    // 2. diff of a container that changed one file: native (upper dir) vs generic (tree compare)
    // ------------------------------------------------------------------------------------------

    public static int Diff(string dir, string tar, int reps)
    {
        using var store = OpenStore(Path.Combine(dir, "diff-store"), "overlay");
        var caps = ((OverlayDriver)store.Driver).Capabilities;
        Out.Line($"== native diff available: {caps.NativeDiff} {caps.NativeDiffNote}");
        using (var f = File.OpenRead(tar)) CreateBase(store, "base", f, tar);
        store.Create("ctr", "base", LayerKind.ReadWrite);
        string merged = store.Mount("ctr");
        const string changed = "etc/debian_version";
        File.WriteAllText(Path.Combine(merged, changed), "12.99-strata-bench\n");
        store.Unmount("ctr");
        string upper = store.Metadata("ctr")["UpperDir"];
        Out.Line($"== container 'ctr' (read-write child of base) had {changed} rewritten through its mount, then was unmounted; its upper dir holds:");
        foreach (var p in Directory.EnumerateFileSystemEntries(upper, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }).Order(StringComparer.Ordinal))
            Out.Line($"   {Path.GetRelativePath(upper, p)}");
        var generic = new NaiveDiffer((ILayerMounter)store);
        Out.Line($"== native: store.Diff(\"ctr\", stream) (against its parent); generic: new NaiveDiffer(store).Diff(\"ctr\", \"base\", stream)");
        Out.Line($"   (mounts ctr for the comparison and unmounts it after); output to a new MemoryStream each time; 2 warm-up runs each, then {reps} each, alternating which goes first");

        byte[] nativeTar = [], genericTar = [];
        var native = new List<double>();
        var naive = new List<double>();
        var cpu = new ForeignCpu();
        for (int r = -2; r < reps; r++)
        {
            for (int k = 0; k < 2; k++)
            {
                bool doNative = (k == 0) == (r % 2 == 0);
                var ms = new MemoryStream();
                if (r >= 0) cpu.Start();
                long t = Stopwatch.GetTimestamp();
                if (doNative) store.Diff("ctr", ms);
                else generic.Diff("ctr", "base", ms);
                double elapsed = Stats.Ms(Stopwatch.GetTimestamp() - t);
                if (r < 0) continue;
                cpu.Stop();
                (doNative ? native : naive).Add(elapsed);
                if (doNative) nativeTar = ms.ToArray();
                else genericTar = ms.ToArray();
            }
        }
        Out.Raw("native diff", native);
        Out.Raw("generic diff", naive);
        double mn = Stats.Median(native), mg = Stats.Median(naive);
        Out.Line($"  {"what",-14} {"n",3} {"median_ms",10} {"min_ms",9} {"max_ms",9}");
        Out.Line($"  {"native",-14} {native.Count,3} {Out.F(mn),10} {Out.F(native.Min()),9} {Out.F(native.Max()),9}");
        Out.Line($"  {"generic",-14} {naive.Count,3} {Out.F(mg),10} {Out.F(naive.Min()),9} {Out.F(naive.Max()),9}");
        Out.Line($"  (other processes' user CPU during the measured runs: {Out.F(cpu.Seconds, 2)} s)");
        Out.Line($"ratio generic / native (medians): {Out.F(mg / mn, 1)}x; min/min {Out.F(naive.Min() / native.Min(), 1)}x");
        Out.Line($"goal native < 20 ms: {(mn < 20 ? "met" : "MISSED")} ({Out.F(mn)} ms)");
        Out.Line($"goal native >= 20x faster than generic: {(mg / mn >= 20 ? "met" : "MISSED")} ({Out.F(mg / mn, 1)}x)");

        var a = Members(nativeTar);
        var b = Members(genericTar);
        Out.Line($"native tar: {nativeTar.Length} bytes, {a.Count} members; generic tar: {genericTar.Length} bytes, {b.Count} members");
        foreach (var m in a) Out.Line($"   native : {m}");
        foreach (var m in b) Out.Line($"   generic: {m}");
        bool same = a.SequenceEqual(b);
        Out.Line($"same entries (name, type, mode, owner, size, mtime, link, device, xattrs, data sha256): {(same ? "yes" : "NO")}; byte-identical tars: {(nativeTar.AsSpan().SequenceEqual(genericTar) ? "yes" : "no")}");
        return same ? 0 : 1;
    }

    static List<string> Members(byte[] tar)
    {
        var list = new List<string>();
        using var r = new TarReader(new MemoryStream(tar));
        while (r.Next() is { } e)
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buf = new byte[65536];
            int n;
            while ((n = r.ReadData(buf)) > 0) sha.AppendData(buf, 0, n);
            string xattrs = e.Xattrs is null ? "-" : string.Join(';', e.Xattrs.Select(x => $"{x.Key}={Convert.ToHexString(x.Value)}"));
            list.Add($"{e.Name} type={(char)e.Type} mode={Convert.ToString(e.Mode, 8)} {e.Uid}:{e.Gid} size={e.Size} mtime={e.Mtime.Seconds} link='{e.LinkName}' dev={e.DevMajor},{e.DevMinor} xattrs={xattrs} sha256={Convert.ToHexString(sha.GetHashAndReset())[..16]}");
        }
        return list;
    }

    // ------------------------------------------------------------------------------------------
    // 3. copy-up: 32 KiB written into the middle of a 1 GiB lower file through a container's mount
    // ------------------------------------------------------------------------------------------

    public static int CopyUp(string dir, int reps, int sizeMib)
    {
        long size = (long)sizeMib << 20, offset = size / 2;
        const int WriteSize = 32 << 10;
        using var store = OpenStore(Path.Combine(dir, "copyup-store"), "overlay");
        var gen = new GeneratedTar(size);
        CreateBase(store, "big", gen, $"a generated tar of one {sizeMib} MiB file 'blob' of non-zero pseudo-random data");
        string lowerFile = Path.Combine(store.Metadata("big")["UpperDir"], "blob");
        Out.Line($"== lower file {lowerFile}: {Posix.Lstat(lowerFile).Size} bytes, {Disk.Allocated(lowerFile)} allocated; page cache warm (just written)");
        Out.Line($"== per repetition: a new container on 'big' is created and mounted (untimed), then timed: open(merged/blob, O_WRONLY) [overlayfs copies the file up here],");
        Out.Line($"   pwrite {WriteSize} bytes at offset {offset}, fsync, close. Then (untimed) the upper file's st_blocks*512 and the statvfs free-bytes delta (settled),");
        Out.Line($"   a check of the data through the mount, and for scale a second open+pwrite+fsync+close of {WriteSize} bytes in the now copied-up file; then unmount + remove.");
        var data = new byte[WriteSize];
        Array.Fill(data, (byte)0x57);
        var rows = new List<(double Open, double Write, double Fsync, double Close, double Total, long Upper, long Df, double Again)>();
        var cpu = new ForeignCpu();
        for (int r = 0; r < reps; r++)
        {
            string id = $"cu{r}";
            store.Create(id, "big", LayerKind.ReadWrite);
            string path = Path.Combine(store.Mount(id), "blob");
            var before = Disk.Settled(dir);
            cpu.Start();
            long t0 = Stopwatch.GetTimestamp();
            var fd = Posix.Open(path, Posix.O_WRONLY);
            long t1 = Stopwatch.GetTimestamp();
            Posix.PwriteAll(fd, data, offset, path);
            long t2 = Stopwatch.GetTimestamp();
            Posix.Fsync(fd, path);
            long t3 = Stopwatch.GetTimestamp();
            fd.Dispose();
            long t4 = Stopwatch.GetTimestamp();
            cpu.Stop();
            var after = Disk.Settled(dir);
            string upperFile = Path.Combine(store.Metadata(id)["UpperDir"], "blob");
            long upper = Disk.Allocated(upperFile);
            GeneratedTar.Check(path, gen.Chunk, data, offset, size);
            long a0 = Stopwatch.GetTimestamp();
            using (var again = Posix.Open(path, Posix.O_WRONLY))
            {
                Posix.PwriteAll(again, data, offset / 2, path);
                Posix.Fsync(again, path);
            }
            double againMs = Stats.Ms(Stopwatch.GetTimestamp() - a0);
            rows.Add((Stats.Ms(t1 - t0), Stats.Ms(t2 - t1), Stats.Ms(t3 - t2), Stats.Ms(t4 - t3), Stats.Ms(t4 - t0), upper, before.FreeBytes - after.FreeBytes, againMs));
            store.Unmount(id);
            store.Remove(id);
        }
        Out.Line($"  {"rep",3} {"open_ms",10} {"pwrite_ms",10} {"fsync_ms",10} {"close_ms",9} {"total_ms",10} {"upper st_blocks*512",20} {"df delta bytes",15} {"2nd write_ms",12}");
        for (int r = 0; r < rows.Count; r++)
        {
            var x = rows[r];
            Out.Line($"  {r,3} {Out.F(x.Open),10} {Out.F(x.Write),10} {Out.F(x.Fsync),10} {Out.F(x.Close),9} {Out.F(x.Total),10} {x.Upper,20} {x.Df,15} {Out.F(x.Again),12}");
        }
        Out.Line($"  (other processes' user CPU during the timed parts: {Out.F(cpu.Seconds, 2)} s)");
        double medTotal = Stats.Median(rows.Select(x => x.Total)), medDf = Stats.Median(rows.Select(x => (double)x.Df));
        Out.Line($"copy-up median: {Out.F(medTotal, 1)} ms for a {WriteSize / 1024} KiB write (open {Out.F(Stats.Median(rows.Select(x => x.Open)), 1)} ms); " +
                 $"upper file allocates {Out.Mib(Stats.Median(rows.Select(x => (double)x.Upper)))}, df says {Out.Mib(medDf)} ({Out.Kib(medDf)}) newly used; " +
                 $"a second 32 KiB write+fsync once copied up: {Out.F(Stats.Median(rows.Select(x => x.Again)), 2)} ms");
        return 0;
    }

}
