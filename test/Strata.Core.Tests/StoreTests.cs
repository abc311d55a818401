using System.Collections.Concurrent;
using Strata.Archive.Tar;
using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Core.Tests;

public sealed class StoreTests(ITestOutputHelper output) : IDisposable
{
    readonly TempRoot _temp = new();

    string Root => _temp.Combine("store");

    LayerStore Open(TimeSpan? wait = null) => LayerStore.Open(new StoreOptions { Root = Root, Driver = "vfs", LockWait = wait ?? TimeSpan.FromSeconds(5) });

    public void Dispose() => _temp.Dispose();

    [Theory]
    [InlineData("")]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData("../escape")]
    [InlineData("a/b")]
    [InlineData("/abs")]
    [InlineData("-dash")]
    [InlineData("_under")]
    [InlineData("sp ace")]
    [InlineData("nul\0")]
    [InlineData("newline\n")]
    public void InvalidIdsAreRefusedAndTouchNothing(string id)
    {
        using var store = Open();
        var before = Directory.GetFileSystemEntries(_temp.Path, "*", SearchOption.AllDirectories).Order().ToList();
        var ex = Assert.Throws<StrataException>(() => store.Create(id, null));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.StartsWith("invalid layer id", ex.Message);
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => store.Create("ok", id)).Kind);
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => store.Remove(id)).Kind);
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => store.Mount(id)).Kind);
        var after = Directory.GetFileSystemEntries(_temp.Path, "*", SearchOption.AllDirectories).Order().ToList();
        Assert.Equal(before, after);
    }

    [Fact]
    public void IdsOf128CharactersAreTheLimit()
    {
        using var store = Open();
        store.Create(new string('a', 128), null);
        Assert.Throws<StrataException>(() => store.Create(new string('b', 129), null));
    }

    [Fact]
    public void OneProcessOwnsAStore()
    {
        using var store = Open();
        var ex = Assert.Throws<StrataException>(() => Open(TimeSpan.Zero));
        Assert.Equal(ErrorKind.InUse, ex.Kind);
        Assert.Contains($"pid {Environment.ProcessId}", ex.Message);
    }

    [Fact]
    public void MountCountsLiveApartFromRecords()
    {
        using (var store = Open())
        {
            store.Create("a", null);
            store.Create("b", null);
            store.Mount("a");
            store.Mount("a");
            Assert.Equal("2\n", File.ReadAllText(Path.Combine(Root, "mounts", "a")));
            Assert.Contains("\"Mounts\": 0", File.ReadAllText(Path.Combine(Root, "layers", "a.json")));
        }
        // a record from before counts moved out carries its own; a crash may leave a count unreadable
        string record = Path.Combine(Root, "layers", "b.json");
        File.WriteAllText(record, File.ReadAllText(record).Replace("\"Mounts\": 0", "\"Mounts\": 3"));
        File.WriteAllText(Path.Combine(Root, "mounts", "a"), "");
        File.WriteAllText(Path.Combine(Root, "mounts", "gone"), "1\n");
        using (var store = Open())
        {
            Assert.Equal(0, store.Inspect("a").Mounts);
            Assert.Contains("mount count of a was unreadable; counted as 0", store.Swept);
            Assert.Contains("mounts/gone", store.Swept);
            Assert.Equal(3, store.Inspect("b").Mounts);
            Assert.Equal("3\n", File.ReadAllText(Path.Combine(Root, "mounts", "b")));
            Assert.Contains("\"Mounts\": 0", File.ReadAllText(record));
            for (int i = 0; i < 3; i++) store.Unmount("b");
            Assert.False(File.Exists(Path.Combine(Root, "mounts", "b")));
            store.Remove("b");
        }
    }

    [Fact]
    public void AStoreRemembersItsDriver()
    {
        Open().Dispose();
        var ex = Assert.Throws<StrataException>(() => LayerStore.Open(new StoreOptions { Root = Root, Driver = "overlay" }));
        Assert.Contains("was created with driver 'vfs', not 'overlay'", ex.Message);
        ex = Assert.Throws<StrataException>(() => LayerStore.Open(new StoreOptions { Root = Root, Driver = "zfs" }));
        Assert.Contains("unknown driver 'zfs' (available: overlay, vfs, thin, btrfs)", ex.Message);
        using var again = LayerStore.Open(new StoreOptions { Root = Root });
        Assert.Equal("vfs", again.Driver.Name);
    }

    [Fact]
    public void RecordsAndMountsSurviveReopen()
    {
        using (var store = Open())
        {
            store.Create("base", null, labels: new Dictionary<string, string> { ["org.example"] = "yes" });
            store.Create("rw", "base", LayerKind.ReadWrite);
            store.Mount("rw");
        }
        using var reopened = Open();
        var rw = reopened.Inspect("rw");
        Assert.Equal(("base", LayerKind.ReadWrite, 1), (rw.Parent, rw.Kind, rw.Mounts));
        Assert.Equal("yes", reopened.Inspect("base").Labels["org.example"]);
        Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => reopened.Remove("rw")).Kind);
    }

    [Fact]
    public void AFailedApplyOntoAnExistingLayerRemovesIt()
    {
        using var store = Open();
        store.Create("target", null);
        var ex = Assert.Throws<StrataException>(() => store.ApplyDiff("target", new MemoryStream(TruncatedTar())));
        Assert.Contains("was removed", ex.Message);
        Assert.False(store.Exists("target"));
        Assert.Empty(store.Driver.List());
    }

    [Fact]
    public void InputThatIsNotATarChangesNothing()
    {
        using var store = Open();
        store.Create("base", null);
        Store(store, "base", "keep", "me");
        byte[] gzipOfNothing = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        foreach (var bad in new[] { "not a tar at all"u8.ToArray(), gzipOfNothing, [] })
        {
            var ex = Assert.Throws<StrataException>(() => store.ApplyDiff("base", new MemoryStream(bad)));
            Assert.Equal(ErrorKind.Corrupt, ex.Kind);
            Assert.DoesNotContain("removed", ex.Message);
            Assert.True(store.Exists("base"));
            Assert.Throws<StrataException>(() => store.Create("new", "base", diff: new MemoryStream(bad)));
            Assert.False(store.Exists("new"));
        }
        Assert.Equal("me", File.ReadAllText(Path.Combine(store.Mount("base"), "keep")));
    }

    [Fact]
    public void GzippedLayersAreAccepted()
    {
        using var store = Open();
        var tar = new MemoryStream();
        using (var w = new TarWriter(tar))
        {
            var data = "zipped"u8.ToArray();
            w.WriteHeader(new TarEntry { Name = "z", Type = TarEntryType.Regular, Mode = 0x1A4, Size = data.Length });
            w.WriteData(data);
            w.Pad(data.Length);
            w.Finish();
        }
        var gz = new MemoryStream();
        using (var z = new System.IO.Compression.GZipStream(gz, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
            z.Write(tar.ToArray());
        gz.Position = 0;
        Assert.Equal(6, store.Create("zipped", null, diff: gz).Size);
        Assert.Equal("zipped", File.ReadAllText(Path.Combine(store.Mount("zipped"), "z")));
    }

    [Fact]
    public void AnApplyThatCannotEvenMarkTheLayerLeavesItAlone()
    {
        string small = _temp.Dir("small");
        Shell.Run("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small).Check("mount tmpfs");
        try
        {
            using (var store = LayerStore.Open(new StoreOptions { Root = Path.Combine(small, "store"), Driver = "vfs" }))
            {
                store.Create("base", null);
                Shell.Run("dd", "if=/dev/zero", $"of={Path.Combine(small, "filler")}", "bs=64k");
                var tar = new MemoryStream();
                using (var w = new TarWriter(tar))
                {
                    w.WriteHeader(new TarEntry { Name = "d/", Type = TarEntryType.Directory, Mode = 0x1ED });
                    w.Finish();
                }
                tar.Position = 0;
                var ex = Assert.Throws<ErrnoException>(() => store.ApplyDiff("base", tar));
                Assert.Equal(ErrorKind.NoSpace, ex.Kind);
                Assert.True(store.Exists("base"));
                Assert.Equal(0, store.Inspect("base").Mounts);
            }
            using var reopened = LayerStore.Open(new StoreOptions { Root = Path.Combine(small, "store") });
            Assert.True(reopened.Exists("base"));
        }
        finally
        {
            Shell.Run("umount", small);
        }
    }

    [Fact]
    public void ApplyingOntoAMountedLayerIsRefused()
    {
        using var store = Open();
        store.Create("busy", null);
        store.Mount("busy");
        var ex = Assert.Throws<StrataException>(() => store.ApplyDiff("busy", new MemoryStream(TruncatedTar())));
        Assert.Equal(ErrorKind.InUse, ex.Kind);
        Assert.True(store.Exists("busy"));
    }

    [Fact]
    public void StoreDirectoriesArePrivate()
    {
        using var store = Open();
        Assert.Equal(0x1C9u, Posix.Lstat(Root).Permissions);
        foreach (var d in new[] { "layers", "tmp", "vfs" })
            Assert.Equal(0x1C0u, Posix.Lstat(Path.Combine(Root, d)).Permissions);
    }

    [Fact]
    public void TheSweepNeverDescendsIntoAMountAndStillOpens()
    {
        Open().Dispose();
        string leftover = Path.Combine(Root, "tmp", "vfs-x.1", "mnt");
        Directory.CreateDirectory(leftover);
        Shell.Run("mount", "-t", "tmpfs", "tmpfs", leftover).Check("mount tmpfs");
        try
        {
            File.WriteAllText(Path.Combine(leftover, "host-data"), "precious");
            using (var store = Open())
            {
                output.WriteLine(string.Join("\n", store.Swept));
                Assert.Contains(store.Swept, s => s.Contains("not removed") && s.Contains("mount point"));
            }
            Assert.Equal("precious", File.ReadAllText(Path.Combine(leftover, "host-data")));
        }
        finally
        {
            Shell.Run("umount", leftover);
        }
        using var again = Open();
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Root, "tmp")));
    }

    static void Store(LayerStore store, string id, string name, string content)
    {
        File.WriteAllText(Path.Combine(store.Mount(id), name), content);
        store.Unmount(id);
    }

    [Fact]
    public void StartupSweepRemovesLeftoversOfACrash()
    {
        using (var store = Open())
        {
            store.Create("keep", null);
            store.Create("half", null);
        }
        // what a crash can leave: staging in tmp/, a temp record, driver data without a record,
        // and a record still marked incomplete from an apply in place
        Directory.CreateDirectory(Path.Combine(Root, "tmp", "vfs-x.123", "deep"));
        File.WriteAllText(Path.Combine(Root, "layers", "keep.json.tmp-1-abc"), "{");
        Directory.CreateDirectory(Path.Combine(Root, "vfs", "orphan"));
        string half = Path.Combine(Root, "layers", "half.json");
        File.WriteAllText(half, File.ReadAllText(half).Replace("\"Incomplete\": false", "\"Incomplete\": true"));
        using var reopened = Open();
        output.WriteLine(string.Join("\n", reopened.Swept));
        Assert.Equal(["keep"], reopened.List().Select(l => l.Id));
        Assert.Equal(["keep"], reopened.Driver.List());
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Root, "tmp")));
        Assert.Equal(["keep.json"], Directory.GetFiles(Path.Combine(Root, "layers")).Select(Path.GetFileName));
        Assert.Equal(4, reopened.Swept.Count);
    }

    [Fact]
    public void AnUnreadableRecordIsReportedNotDeleted()
    {
        Open().Dispose();
        File.WriteAllText(Path.Combine(Root, "layers", "bad.json"), "{not json");
        var ex = Assert.Throws<StrataException>(() => Open());
        Assert.Equal(ErrorKind.Corrupt, ex.Kind);
        Assert.Contains("bad.json", ex.Message);
        Assert.True(File.Exists(Path.Combine(Root, "layers", "bad.json")));
    }

    /// <summary>8 threads × 500 random operations on one store; every outcome must be success or an
    /// expected refusal, and afterwards records, driver data and mount counts must agree.</summary>
    [Fact]
    public void ConcurrentRandomOperationsLeaveAConsistentStore()
    {
        const int threads = 8, opsPerThread = 500, ids = 40;
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var mounts = new ConcurrentDictionary<string, int>();
        var unexpected = new ConcurrentQueue<string>();
        int succeeded = 0;
        using (var store = Open())
        {
            var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
            {
                var rng = new Random(seed + t);
                for (int i = 0; i < opsPerThread; i++)
                {
                    string id = $"l{rng.Next(ids)}";
                    string? parent = rng.Next(3) == 0 ? null : $"l{rng.Next(ids)}";
                    try
                    {
                        switch (rng.Next(6))
                        {
                            case 0 or 1:
                                store.Create(id, parent == id ? null : parent);
                                string dir = store.Mount(id);
                                File.WriteAllText(Path.Combine(dir, $"f{t}-{i}"), id);
                                store.Unmount(id);
                                break;
                            case 2:
                                store.Remove(id);
                                break;
                            case 3:
                                store.Mount(id);
                                mounts.AddOrUpdate(id, 1, (_, n) => n + 1);
                                break;
                            case 4:
                                // decrement our own count first so a concurrent remove never sees a stale one
                                if (mounts.TryGetValue(id, out int n) && n > 0 && mounts.TryUpdate(id, n - 1, n))
                                    store.Unmount(id);
                                else continue;
                                break;
                            default:
                                store.Changes(id);
                                break;
                        }
                        Interlocked.Increment(ref succeeded);
                    }
                    catch (StrataException ex) when (ex.Kind is ErrorKind.NotFound or ErrorKind.AlreadyExists or ErrorKind.InUse)
                    {
                    }
                    catch (Exception ex)
                    {
                        unexpected.Enqueue($"{id}: {ex.GetType().Name}: {ex.Message}");
                    }
                }
            })).ToList();
            workers.ForEach(w => w.Start());
            workers.ForEach(w => w.Join());
            Assert.True(unexpected.IsEmpty, string.Join("\n", unexpected.Take(20)));
            Assert.True(succeeded > threads * opsPerThread / 4, $"only {succeeded} operations succeeded");
            AssertConsistent(store, mounts);
        }
        using var reopened = Open();
        Assert.Empty(reopened.Swept);
        AssertConsistent(reopened, mounts);
    }

    void AssertConsistent(LayerStore store, ConcurrentDictionary<string, int> mounts)
    {
        var layers = store.List().ToDictionary(l => l.Id);
        Assert.Equal(layers.Keys.Order(), store.Driver.List().Order());
        foreach (var l in layers.Values)
        {
            if (l.Parent is not null) Assert.True(layers.ContainsKey(l.Parent), $"{l.Id}'s parent {l.Parent} is missing");
            Assert.Equal(mounts.GetValueOrDefault(l.Id), l.Mounts);
            Assert.True(File.Exists(Path.Combine(Root, "layers", l.Id + ".json")));
        }
        Assert.Equal(layers.Count, Directory.GetFiles(Path.Combine(Root, "layers")).Length);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Root, "tmp")));
    }

    static byte[] TruncatedTar()
    {
        var ms = new MemoryStream();
        using (var w = new TarWriter(ms))
        {
            w.WriteHeader(new TarEntry { Name = "etc/", Type = TarEntryType.Directory, Mode = 0x1ED });
            w.WriteHeader(new TarEntry { Name = "etc/big", Type = TarEntryType.Regular, Mode = 0x1A4, Size = 1 << 20 });
            w.WriteData(new byte[4096]);
            w.Finish();
        }
        return ms.ToArray()[..(512 * 2 + 4096)];
    }
}
