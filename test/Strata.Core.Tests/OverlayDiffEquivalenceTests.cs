using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Strata.Archive;
using Strata.Archive.Tar;
using Strata.Core.Drivers.Overlay;
using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Core.Tests;

/// <summary>
/// Overlay's native differ (the upper dir alone, <see cref="OverlayChanges"/>) against the generic one
/// (both trees mounted, <see cref="TreeChanges"/>): for a layer against its direct parent they must agree
/// exactly — change list, DiffSize, diff tar bytes. Random stacks of 2–4 layers are edited through their
/// kernel overlay mounts, so lower layers hold whiteouts and opaque directories as the kernel writes them;
/// the top layer's native diff, applied onto the parent, must rebuild the top layer. Each run tries
/// <see cref="SeedsPerRun"/> random seeds, printed as "seed N"; STRATA_SEED=N runs only that one and prints its operations.
/// </summary>
public sealed class OverlayDiffEquivalenceTests(ITestOutputHelper output)
{
    const int SeedsPerRun = 30;

    [Fact]
    public void NativeDiffEqualsGenericDiff()
    {
        var seeds = Seeds();
        var failures = new List<string>();
        var clock = Stopwatch.StartNew();
        foreach (int seed in seeds)
        {
            output.WriteLine($"seed {seed}");
            var log = new List<string>();
            try
            {
                output.WriteLine("  " + RunSeed(seed, log));
                if (seeds.Count == 1) output.WriteLine($"its operations:\n  {string.Join("\n  ", log)}");
            }
            catch (Exception ex)
            {
                output.WriteLine($"seed {seed} failed; its operations:\n  {string.Join("\n  ", log)}");
                failures.Add($"seed {seed} (rerun with STRATA_SEED={seed}): {ex}");
            }
        }
        output.WriteLine($"{seeds.Count} seed(s) in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(failures.Count == 0, $"{failures.Count} of {seeds.Count} seed(s) failed:\n\n{string.Join("\n\n", failures)}");
    }

    static List<int> Seeds() =>
        Environment.GetEnvironmentVariable("STRATA_SEED") is { Length: > 0 } one
            ? [int.Parse(one, CultureInfo.InvariantCulture)]
            : Enumerable.Range(0, SeedsPerRun).Select(_ => Random.Shared.Next()).ToList();

    /// <summary>Builds and checks one random stack; returns a summary of what it exercised.</summary>
    static string RunSeed(int seed, List<string> log)
    {
        var rng = new Random(seed);
        using var temp = new TempRoot();
        using var store = LayerStore.Open(new StoreOptions { Root = temp.Combine("store"), Driver = "overlay" });
        var caps = ((OverlayDriver)store.Driver).Capabilities;
        Assert.True(caps.NativeDiff, $"this machine diffs overlay layers generically ({caps.WhyNot}{caps.NativeDiffNote}): nothing to compare");
        var generic = new NaiveDiffer(store);

        // tar cannot hold sockets, so a layer rebuilt from a diff that skipped some lacks them: only some seeds make them
        bool sockets = rng.Next(4) == 0;
        store.Create("base", null);
        log.Add($"layer base{(sockets ? " (with sockets)" : "")}");
        Edit(store, "base", root => new RandomTree(root, rng, log, top: false, sockets).Populate());
        string parent = "base";
        int children = 1 + rng.Next(3);
        var summary = new List<string>();
        for (int i = 1; i <= children; i++)
        {
            bool top = i == children;
            string id = top ? "top" : $"mid{i}";
            // some intermediate layers are pulled rather than edited: their upper dir is written by the
            // diff applier (whiteouts, no opaque dirs), not by the kernel
            bool applied = !top && rng.Next(3) == 0;
            string edited = applied ? id + "-edit" : id;
            store.Create(edited, parent, top ? LayerKind.ReadWrite : LayerKind.ReadOnly);
            log.Add($"layer {edited} on {parent}");
            Edit(store, edited, root => new RandomTree(root, rng, log, top, sockets).Mutate(rng.Next(15, 60)));
            var (changes, tar, skipped) = AssertNativeEqualsGeneric(store, generic, edited, parent);
            summary.Add($"{edited}: {Summary(store, edited, changes, tar)}");
            if (applied || top)
            {
                string copy = applied ? id : id + "-copy";
                log.Add($"layer {copy} on {parent}, applied from the native diff of {edited}");
                store.Create(copy, parent, diff: new MemoryStream(tar));
                var (copyChanges, copyTar, _) = AssertNativeEqualsGeneric(store, generic, copy, parent);
                if (skipped.Count == 0)
                {
                    AssertSameChanges(changes, copyChanges, $"{edited} (edited) and {copy} (applied from its diff)", "edited", "applied");
                    AssertSameTar(tar, copyTar, $"{edited} (edited) and {copy} (applied from its diff)", "edited", "applied");
                }
                else log.Add($"  the diff skipped sockets {string.Join(", ", skipped)}: {copy} lacks them, so its changes differ from {edited}'s");
                if (top) AssertSameTree(store, id, copy, changes);
                if (applied) store.Remove(edited);
                summary.Add($"{copy}: {Summary(store, copy, copyChanges, copyTar)}");
            }
            parent = id;
        }
        return string.Join("; ", summary);
    }

    static string Summary(LayerStore store, string id, List<Change> changes, byte[] tar)
    {
        var (whiteouts, opaque) = OverlayMarkers(store.Metadata(id)["UpperDir"]);
        return $"{changes.Count(c => c.Kind == ChangeKind.Add)}A {changes.Count(c => c.Kind == ChangeKind.Modify)}C " +
            $"{changes.Count(c => c.Kind == ChangeKind.Delete)}D, tar {tar.Length / 1024} KiB, upper dir {whiteouts} whiteouts {opaque} opaque";
    }

    /// <summary>Whiteouts (0/0 character devices) and opaque directories in an upper dir.</summary>
    static (int Whiteouts, int Opaque) OverlayMarkers(string dir)
    {
        int whiteouts = 0, opaque = 0;
        foreach (var e in Posix.ReadDir(dir))
        {
            string path = Path.Combine(dir, e.Name);
            var st = Posix.Lstat(path);
            if (st.Kind == FileKind.CharDevice && st.RdevMajor == 0 && st.RdevMinor == 0) whiteouts++;
            if (!st.IsDirectory) continue;
            if (Posix.LgetXattrs(path).Any(x => x.Key == Whiteouts.OverlayOpaqueXattr)) opaque++;
            var (w, o) = OverlayMarkers(path);
            whiteouts += w;
            opaque += o;
        }
        return (whiteouts, opaque);
    }

    static void Edit(LayerStore store, string id, Action<string> edit)
    {
        string dir = store.Mount(id);
        try
        {
            edit(dir);
        }
        finally
        {
            store.Unmount(id);
        }
    }

    /// <summary>Native (the store's differ, against the parent) and generic results must be identical; returns the native ones.</summary>
    static (List<Change> Changes, byte[] Tar, IReadOnlyList<string> SkippedSockets) AssertNativeEqualsGeneric(LayerStore store, NaiveDiffer generic, string id, string parent)
    {
        var native = store.Changes(id);
        var naive = generic.Changes(id, parent);
        AssertSameChanges(native, naive, $"{id}: native and generic", "native", "generic");

        long nativeSize = store.DiffSize(id), naiveSize = generic.DiffSize(id, parent);
        Assert.True(nativeSize == naiveSize, $"{id}: DiffSize is {nativeSize} native, {naiveSize} generic");

        using var nativeTar = new MemoryStream();
        using var naiveTar = new MemoryStream();
        var nativeResult = store.Diff(id, nativeTar);
        var naiveResult = generic.Diff(id, parent, naiveTar);
        byte[] nativeBytes = nativeTar.ToArray();
        AssertSameTar(nativeBytes, naiveTar.ToArray(), $"{id}: native and generic", "native", "generic");
        Assert.True(nativeResult.Size == naiveResult.Size, $"{id}: Diff reports {nativeResult.Size} bytes native, {naiveResult.Size} generic");
        Assert.True(nativeResult.SkippedSockets.SequenceEqual(naiveResult.SkippedSockets), $"{id}: skipped sockets differ");
        Assert.True(nativeResult.Size == nativeSize, $"{id}: Diff carried {nativeResult.Size} bytes but DiffSize says {nativeSize}");
        return (native, nativeBytes, nativeResult.SkippedSockets);
    }

    static void AssertSameChanges(List<Change> a, List<Change> b, string what, string aName, string bName)
    {
        if (a.SequenceEqual(b)) return;
        var onlyA = a.Except(b).ToList();
        var onlyB = b.Except(a).ToList();
        Assert.Fail($"{what} changes differ" + (onlyA.Count + onlyB.Count == 0 ? " (same changes, different order)" : "") +
            $"\nonly {aName}: {string.Join(", ", onlyA)}\nonly {bName}: {string.Join(", ", onlyB)}" +
            $"\n{aName} ({a.Count}):\n  {string.Join("\n  ", a)}\n{bName} ({b.Count}):\n  {string.Join("\n  ", b)}");
    }

    /// <summary>Byte equality first; on a difference, names the first member that differs (header fields and data hash).</summary>
    static void AssertSameTar(byte[] a, byte[] b, string what, string aName, string bName)
    {
        if (a.AsSpan().SequenceEqual(b)) return;
        var left = Members(a);
        var right = Members(b);
        for (int i = 0; i < Math.Max(left.Count, right.Count); i++)
        {
            string l = i < left.Count ? left[i] : "(none)", r = i < right.Count ? right[i] : "(none)";
            if (l != r)
                Assert.Fail($"{what} diff tars differ at member {i} ({left.Count} members {aName}, {right.Count} {bName}):\n  {aName}: {l}\n  {bName}: {r}");
        }
        int at = a.AsSpan().CommonPrefixLength(b);
        Assert.Fail($"{what} diff tars hold the same members but differ at byte {at} ({a.Length} bytes {aName}, {b.Length} {bName})");
    }

    static List<string> Members(byte[] tar)
    {
        var members = new List<string>();
        using var reader = new TarReader(new MemoryStream(tar));
        var buffer = new byte[1 << 16];
        for (TarEntry? e; (e = reader.Next()) is not null;)
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            for (int n; (n = reader.ReadData(buffer)) > 0;) sha.AppendData(buffer, 0, n);
            string xattrs = string.Join(",", (e.Xattrs ?? []).Select(x => x.Key + "=" + Convert.ToHexString(x.Value)));
            members.Add($"{e.Name} type={(char)e.Type} mode={Convert.ToString(e.Mode, 8)} owner={e.Uid}:{e.Gid} size={e.Size} " +
                $"mtime={e.Mtime.Seconds}.{e.Mtime.Nanoseconds:D9} link='{e.LinkName}' dev={e.DevMajor},{e.DevMinor} " +
                $"xattrs=[{xattrs}] data={Convert.ToHexString(sha.GetHashAndReset())[..16]}");
        }
        return members;
    }

    /// <summary>
    /// The layer rebuilt from its diff must show the same tree as the layer, except for what no diff can carry:
    /// sockets the changes list (tar cannot hold them, so the copy shows whatever the parent has at that path), and
    /// two things left out for the paths the changes do not list (those show the parent's state in the copy):
    /// a directory's mtime alone is not a change (TreeChanges ignores it, as Docker does); and a copy-up that
    /// changes nothing (a chmod to the mode a file already has) still gives that name an inode of its own
    /// (index=off), splitting it from its lower hardlinks — which inode an unlisted path shares is left out.
    /// </summary>
    static void AssertSameTree(LayerStore store, string id, string copy, List<Change> changes)
    {
        var carried = changes.Where(c => c.Kind != ChangeKind.Delete).Select(c => c.Path).ToHashSet(StringComparer.Ordinal);
        var sockets = new List<string>();
        bool UnderSocket(string path) => sockets.Any(s => path == s || path.StartsWith(s + "/", StringComparison.Ordinal));
        List<NodeInfo> Comparable(List<NodeInfo> tree) => tree
            .Where(n => !UnderSocket(n.Path))
            .Select(n => carried.Contains(n.Path) ? n : n with { Mtime = n.Kind == FileKind.Directory ? default : n.Mtime, LinkGroup = "" })
            .ToList();
        string layerDir = store.Mount(id);
        try
        {
            string copyDir = store.Mount(copy);
            try
            {
                var layer = TreeSnapshot.Capture(layerDir);
                sockets.AddRange(layer.Where(n => n.Kind == FileKind.Socket && carried.Contains(n.Path)).Select(n => n.Path));
                TreeSnapshot.AssertSame(Comparable(layer), Comparable(TreeSnapshot.Capture(copyDir)), MtimePrecision.Seconds);
            }
            finally
            {
                store.Unmount(copy);
            }
        }
        finally
        {
            store.Unmount(id);
        }
    }

    /// <summary>
    /// Writes or edits one layer's tree through its mount, every choice drawn from one seeded generator (so a seed
    /// replays the same operations) and logged. In the top layer two edits are shaped so that its diff can rebuild
    /// it: directory mtimes are not touched on their own, and a new hardlink to a file also changes that file
    /// (a diff carries only changed paths, so a link to an unchanged lower file cannot be expressed).
    /// </summary>
    sealed class RandomTree(string root, Random rng, List<string> log, bool top, bool sockets)
    {
        static readonly string[] Names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        // a long name needs PAX; "\uDCFF\uDC80" are the bytes 0xFF 0x80, not UTF-8 (see PathEncoding)
        static readonly string[] RareNames = ["with space", "ünïcødé", "n" + new string('L', 110), "x.tar", "new\nline", "bad\uDCFF\uDC80"];
        static readonly uint[] FileModes = Octal("644", "600", "755", "4755", "2755", "6755", "444", "1644", "0", "640");
        static readonly uint[] DirModes = Octal("755", "700", "1777", "2755", "555", "711", "775");
        static readonly uint[] NodeModes = Octal("644", "600", "666", "660");
        static readonly uint[] Ids = [0, 0, 0, 1, 2, 1000, 65534, 123456];
        // never 0:0: overlayfs reads a 0:0 character device in any layer as a whiteout, even in a base layer's plain tree
        static readonly (uint, uint)[] CharDevices = [(1, 3), (1, 5), (4, 64), (10, 229), (136, 1)];
        static readonly (uint, uint)[] BlockDevices = [(7, 0), (7, 3), (8, 1), (259, 5), (253, 0)];

        int _budget;
        /// <summary>While a deleted directory is made again: what it held, as (name, kind) by parent path.</summary>
        Dictionary<string, List<Node>>? _old;

        static uint[] Octal(params string[] modes) => modes.Select(m => Convert.ToUInt32(m, 8)).ToArray();

        readonly record struct Node(string Path, FileKind Kind);

        string Full(string rel) => rel.Length == 0 ? root : root + "/" + rel;

        T Pick<T>(IReadOnlyList<T> items) => items[rng.Next(items.Count)];

        /// <summary>The deeper of two random picks: whole-directory edits should not wipe most of the tree.</summary>
        string PickDeep(IReadOnlyList<string> dirs)
        {
            string a = Pick(dirs), b = Pick(dirs);
            return Depth(b) > Depth(a) ? b : a;
        }

        void Log(string what) => log.Add("  " + what);

        static bool IsUtf8(string path) => path.AsSpan().IndexOfAnyInRange('\uDC80', '\uDCFF') < 0;

        static int Depth(string path) => path.Length == 0 ? 0 : path.Count(c => c == '/') + 1;

        /// <summary>Every path of the tree (root excluded), parents before children, in ordinal order.</summary>
        List<Node> Scan()
        {
            var nodes = new List<Node>();
            void Walk(string dir)
            {
                foreach (var e in Posix.ReadDir(Full(dir)))
                {
                    string path = LayerPath.Join(dir, e.Name);
                    var kind = Posix.Lstat(Full(path)).Kind;
                    nodes.Add(new Node(path, kind));
                    if (kind == FileKind.Directory) Walk(path);
                }
            }
            Walk("");
            return nodes;
        }

        bool Exists(string path) => Posix.TryLstat(Full(path), out _);

        string? FreeName(string dir)
        {
            for (int i = 0; i < 8; i++)
            {
                string name = rng.Next(12) == 0 ? Pick(RareNames) : Pick(Names);
                if (!Exists(LayerPath.Join(dir, name))) return name;
            }
            return null;
        }

        UnixTime RandomTime() => new(rng.NextInt64(978_307_200, 1_893_456_000), (uint)rng.Next(1_000_000_000));

        // ---- the base layer ----

        public void Populate()
        {
            _budget = 80 + rng.Next(100);
            int n = 8 + rng.Next(9);
            for (int i = 0; i < n && _budget > 0; i++)
                if (FreeName("") is { } name) CreateEntry(name);
        }

        // ---- entries with random attributes ----

        /// <summary>A file, directory (with some content), symlink, hardlink, fifo, socket or device node at a free path.</summary>
        void CreateEntry(string path)
        {
            _budget--;
            int pick = rng.Next(100);
            if (pick < 25 && Depth(path) < 5) CreateDir(path, rng.Next(Math.Max(0, 4 - Depth(path)), 11 - 2 * Depth(path)));
            else if (pick < 62) CreateFile(path);
            else if (pick < 74) CreateSymlink(path);
            else if (pick >= 84 || !TryLink(path))
            {
                if (pick < 90) CreateNode(path, FileKind.Fifo);
                else if (pick < 93 && sockets) CreateNode(path, FileKind.Socket);
                else CreateNode(path, rng.Next(2) == 0 ? FileKind.CharDevice : FileKind.BlockDevice);
            }
        }

        void CreateDir(string path, int children)
        {
            Posix.MkdirAt(FileDescriptor.Cwd, Full(path), 0x1C0);
            Log($"mkdir {path}");
            for (int i = 0; i < children && _budget > 0; i++)
            {
                // re-creating a deleted directory: often reuse its old names, so new entries stand over deleted lower ones
                if (_old?.GetValueOrDefault(path) is { Count: > 0 } old && rng.Next(2) == 0)
                {
                    var o = Pick(old);
                    string child = LayerPath.Join(path, o.Path);
                    if (Exists(child)) continue;
                    if (o.Kind == FileKind.Directory && Depth(child) < 5)
                    {
                        _budget--;
                        CreateDir(child, rng.Next(0, 3));
                    }
                    else CreateEntry(child);
                }
                else if (FreeName(path) is { } name) CreateEntry(LayerPath.Join(path, name));
            }
            Log($"  attrs {path} {SetAttributes(path, FileKind.Directory, DirModes)}");
        }

        void CreateFile(string path)
        {
            string content = WriteContent(path);
            Log($"file {path} {content} {SetAttributes(path, FileKind.Regular, FileModes)}");
        }

        void CreateSymlink(string path)
        {
            string target = rng.Next(5) switch
            {
                0 => "../" + Pick(Names),
                1 => "/etc/" + Pick(Names),
                2 => new string('t', 150),
                3 => Pick(Names) + "/" + Pick(Names),
                _ => Pick(Names),
            };
            Posix.SymlinkAt(target, FileDescriptor.Cwd, Full(path));
            Log($"symlink {path} -> {(target.Length > 20 ? target[..20] + "..." : target)} {SetAttributes(path, FileKind.Symlink, [])}");
        }

        void CreateNode(string path, FileKind kind)
        {
            var (major, minor) = kind switch
            {
                FileKind.CharDevice => Pick(CharDevices),
                FileKind.BlockDevice => Pick(BlockDevices),
                _ => (0u, 0u),
            };
            Posix.MknodAt(FileDescriptor.Cwd, Full(path), (uint)kind | 0x1A4, major, minor);
            Log($"{kind} {path} {major}:{minor} {SetAttributes(path, kind, NodeModes)}");
        }

        /// <summary>Links a random non-directory to <paramref name="path"/>; false when there is none.</summary>
        bool TryLink(string path)
        {
            var sources = Scan().Where(n => n.Kind != FileKind.Directory && n.Path != path).ToList();
            if (sources.Count == 0) return false;
            var source = Pick(sources);
            Posix.LinkAt(FileDescriptor.Cwd, Full(source.Path), FileDescriptor.Cwd, Full(path));
            Log($"link {path} => {source.Path}");
            if (top && source.Kind == FileKind.Regular) Touch(source.Path);
            return true;
        }

        /// <summary>Random bytes, some files sparse (holes between a few written extents); returns a description.</summary>
        string WriteContent(string path)
        {
            bool sparse = rng.Next(7) == 0;
            long size = sparse ? rng.Next(4096, 200_000) : rng.Next(4) switch
            {
                0 => rng.Next(17),
                1 => rng.Next(513),
                2 => rng.Next(8193),
                _ => rng.Next(65537),
            };
            using var fd = Posix.Open(Full(path), Posix.O_WRONLY | Posix.O_CREAT | Posix.O_TRUNC | Posix.O_NOFOLLOW, 0x1A4);
            if (sparse)
            {
                Posix.Ftruncate(fd, size, path);
                for (int i = rng.Next(1, 4); i > 0; i--)
                {
                    long at = rng.NextInt64(size);
                    var chunk = new byte[Math.Min(rng.Next(1, 5000), size - at)];
                    rng.NextBytes(chunk);
                    Posix.PwriteAll(fd, chunk, at, path);
                }
            }
            else
            {
                var data = new byte[size];
                rng.NextBytes(data);
                Posix.WriteAll(fd, data, path);
            }
            return $"size={size}{(sparse ? " sparse" : "")}";
        }

        /// <summary>Owner, mode, some xattrs and (in lower layers always, in the top sometimes) a random mtime.</summary>
        string SetAttributes(string path, FileKind kind, uint[] modes)
        {
            string full = Full(path);
            uint uid = Pick(Ids), gid = Pick(Ids);
            Posix.LchownAt(FileDescriptor.Cwd, full, uid, gid); // before chmod: chown clears setuid/setgid
            string what = $"owner={uid}:{gid}";
            if (kind != FileKind.Symlink)
            {
                uint mode = Pick(modes);
                Posix.ChmodAt(FileDescriptor.Cwd, full, mode);
                what += $" mode={Convert.ToString(mode, 8)}";
            }
            for (int i = rng.Next(4) - 1; i > 0; i--) what += " " + SetXattr(path, kind);
            if (!top || rng.Next(2) == 0)
            {
                var t = RandomTime();
                Posix.LutimesAt(FileDescriptor.Cwd, full, t, t);
                what += $" mtime={t.Seconds}";
            }
            return what;
        }

        string SetXattr(string path, FileKind kind)
        {
            // user.* is only allowed on files and directories; trusted.* (as root) on anything
            string key = kind is FileKind.Regular or FileKind.Directory && rng.Next(2) == 0 ? $"user.u{rng.Next(3)}" : $"trusted.t{rng.Next(3)}";
            var value = new byte[rng.Next(5) == 0 ? 0 : rng.Next(1, 48)];
            rng.NextBytes(value);
            Posix.LsetXattr(Full(path), key, value);
            return $"{key}={Convert.ToHexString(value)}";
        }

        void Touch(string path)
        {
            var t = RandomTime();
            Posix.LutimesAt(FileDescriptor.Cwd, Full(path), t, t);
            Log($"touch {path} {t.Seconds}.{t.Nanoseconds:D9}");
        }

        void RemoveTree(string path)
        {
            if (Posix.Lstat(Full(path)).IsDirectory)
            {
                foreach (var e in Posix.ReadDir(Full(path))) RemoveTree(LayerPath.Join(path, e.Name));
                Posix.UnlinkAt(FileDescriptor.Cwd, Full(path), directory: true);
            }
            else Posix.UnlinkAt(FileDescriptor.Cwd, Full(path), directory: false);
        }

        // ---- edits of a child layer, through its overlay mount ----

        public void Mutate(int count)
        {
            for (int done = 0, tries = 0; done < count && tries < count * 4; tries++)
            {
                _budget = 8;
                if (MutateOnce()) done++;
            }
        }

        bool MutateOnce()
        {
            var nodes = Scan();
            var dirs = nodes.Where(n => n.Kind == FileKind.Directory).Select(n => n.Path).ToList();
            var dirsAndRoot = dirs.Prepend("").ToList();
            var nonDirs = nodes.Where(n => n.Kind != FileKind.Directory).ToList();
            var files = nonDirs.Where(n => n.Kind == FileKind.Regular).Select(n => n.Path).ToList();
            switch (rng.Next(30))
            {
                case 0 or 1 or 2 or 3 or 4 or 5:
                {
                    string dir = Pick(dirsAndRoot);
                    if (FreeName(dir) is not { } name) return false;
                    Log("create:");
                    CreateEntry(LayerPath.Join(dir, name));
                    return true;
                }
                case 6:
                {
                    string dir = Pick(dirsAndRoot);
                    if (FreeName(dir) is not { } name) return false;
                    return TryLink(LayerPath.Join(dir, name));
                }
                case 7 or 8 when files.Count > 0:
                {
                    string f = Pick(files);
                    Log($"overwrite {f} {WriteContent(f)}");
                    return true;
                }
                case 9 when files.Count > 0:
                {
                    string f = Pick(files);
                    using var fd = Posix.Open(Full(f), Posix.O_WRONLY | Posix.O_NOFOLLOW);
                    var data = new byte[rng.Next(1, 8193)];
                    rng.NextBytes(data);
                    Posix.PwriteAll(fd, data, Posix.Fstat(fd).Size, f);
                    Log($"append {f} {data.Length}");
                    return true;
                }
                case 10 when files.Count > 0:
                {
                    string f = Pick(files);
                    using var fd = Posix.Open(Full(f), Posix.O_WRONLY | Posix.O_NOFOLLOW);
                    long size = Posix.Fstat(fd).Size;
                    long to = rng.Next(2) == 0 ? rng.NextInt64(size + 1) : size + rng.Next(1, 100_000);
                    Posix.Ftruncate(fd, to, f);
                    Log($"truncate {f} {size} -> {to}");
                    return true;
                }
                case 11 or 12 when nodes.Count > 0:
                {
                    var n = Pick(nodes);
                    if (n.Kind == FileKind.Symlink) return false;
                    uint mode = Pick(n.Kind switch { FileKind.Directory => DirModes, FileKind.Regular => FileModes, _ => NodeModes });
                    Posix.ChmodAt(FileDescriptor.Cwd, Full(n.Path), mode);
                    Log($"chmod {Convert.ToString(mode, 8)} {n.Path}");
                    return true;
                }
                case 13 or 14 when nodes.Count > 0:
                {
                    var n = Pick(nodes);
                    uint uid = Pick(Ids), gid = Pick(Ids);
                    Posix.LchownAt(FileDescriptor.Cwd, Full(n.Path), uid, gid);
                    Log($"chown {uid}:{gid} {n.Path}");
                    return true;
                }
                case 15 or 16 when nodes.Count > 0:
                {
                    var n = Pick(nodes);
                    if (top && n.Kind == FileKind.Directory) return false;
                    Touch(n.Path);
                    return true;
                }
                case 17 or 18 when nodes.Count > 0:
                {
                    var n = Pick(nodes);
                    Log($"setxattr {n.Path} {SetXattr(n.Path, n.Kind)}");
                    return true;
                }
                case 19 when nodes.Count > 0:
                {
                    var n = Pick(nodes);
                    var keys = Posix.LgetXattrs(Full(n.Path)).Select(x => x.Key).Where(LayerXattrs.IsContent).ToList();
                    if (keys.Count == 0) return false;
                    string key = Pick(keys);
                    Posix.LremoveXattr(Full(n.Path), key);
                    Log($"removexattr {n.Path} {key}");
                    return true;
                }
                case 20 or 21 when nonDirs.Count > 0:
                {
                    string f = Pick(nonDirs).Path;
                    Posix.UnlinkAt(FileDescriptor.Cwd, Full(f), directory: false);
                    Log($"rm {f}");
                    return true;
                }
                case 22 when dirs.Count > 0:
                {
                    string d = PickDeep(dirs);
                    RemoveTree(d);
                    Log($"rm -rf {d}");
                    return true;
                }
                case 23 or 24 when dirs.Count > 0:
                {
                    // over a lower directory this makes an opaque one
                    string d = Pick(dirs);
                    _old = nodes.Where(n => n.Path.StartsWith(d + "/", StringComparison.Ordinal))
                        .GroupBy(n => LayerPath.Parent(n.Path))
                        .ToDictionary(g => g.Key, g => g.Select(n => new Node(LayerPath.Base(n.Path), n.Kind)).ToList());
                    RemoveTree(d);
                    Log($"rm -rf {d}, then make it again:");
                    CreateDir(d, rng.Next(1, 5));
                    _old = null;
                    return true;
                }
                case 25 when nonDirs.Count > 0:
                {
                    string f = Pick(nonDirs).Path;
                    Posix.UnlinkAt(FileDescriptor.Cwd, Full(f), directory: false);
                    Log($"rm {f}, replaced by a directory:");
                    CreateDir(f, rng.Next(0, 3));
                    return true;
                }
                case 26 when dirs.Count > 0:
                {
                    string d = PickDeep(dirs);
                    RemoveTree(d);
                    Log($"rm -rf {d}, replaced by a file:");
                    CreateFile(d);
                    return true;
                }
                case 27 or 28 when nonDirs.Count > 0:
                {
                    // a lower file is copied up and renamed; an existing non-directory at the target is replaced
                    string f = Pick(nonDirs).Path;
                    string dir = Pick(dirsAndRoot);
                    string to = LayerPath.Join(dir, rng.Next(3) == 0 ? Pick(Names) : FreeName(dir) ?? Pick(Names));
                    if (to == f || (Exists(to) && Posix.Lstat(Full(to)).IsDirectory)) return false;
                    Posix.Rename(Full(f), Full(to));
                    Log($"rename {f} -> {to}");
                    return true;
                }
                case 29 when dirs.Count > 0:
                {
                    // rename(2) of a lower directory fails with EXDEV (redirect_dir is off); mv then copies and deletes
                    string d = PickDeep(dirs);
                    var targets = dirsAndRoot.Where(t => t != d && !t.StartsWith(d + "/", StringComparison.Ordinal)).ToList();
                    string dir = Pick(targets);
                    if (FreeName(dir) is not { } name) return false;
                    string to = LayerPath.Join(dir, name);
                    if (!IsUtf8(d) || !IsUtf8(to)) return false; // a program's arguments are UTF-8 here
                    Shell.Run("mv", "-T", Full(d), Full(to)).Check($"mv {d} {to}");
                    Log($"mv {d} -> {to}");
                    return true;
                }
                default:
                    return false;
            }
        }
    }
}
