using System.Diagnostics;
using System.Text.Json;
using Strata.Core.Drivers.Overlay;
using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Core.Tests;

/// <summary>What is particular to the overlay driver (the shared contract is in Conformance/): its layout,
/// deep chains, how the store performs and reconciles its mounts, and its start-up probe.</summary>
public sealed class OverlayTests(ITestOutputHelper output) : IDisposable
{
    readonly TempRoot _temp = new();
    string Root => _temp.Combine("store");

    public void Dispose() => _temp.Dispose();

    LayerStore Open(bool legacy = false) => LayerStore.Open(new StoreOptions { Root = Root, Driver = "overlay", LegacyMounts = legacy });

    [Fact]
    public void LayoutIsOverlay2Like()
    {
        using var store = Open();
        store.Create("base", null);
        store.Create("child", "base", LayerKind.ReadWrite);
        string home = Path.Combine(Root, "overlay"), shortBase = OverlayDriver.ShortName("base");
        Assert.True(Directory.Exists(Path.Combine(home, "base", "diff")));
        Assert.False(File.Exists(Path.Combine(home, "base", "lower")));
        Assert.False(Directory.Exists(Path.Combine(home, "base", "merged"))); // a layer without parent is a plain directory
        foreach (var d in new[] { "diff", "work", "merged" }) Assert.True(Directory.Exists(Path.Combine(home, "child", d)), d);
        Assert.Equal("l/" + shortBase, File.ReadAllText(Path.Combine(home, "child", "lower")));
        Assert.Matches("^[A-Z2-7]{26}$", shortBase);
        Assert.Equal("../base/diff", Posix.ReadLink(Path.Combine(home, "l", shortBase)));
        Assert.Equal("../child/diff", Posix.ReadLink(Path.Combine(home, "l", OverlayDriver.ShortName("child"))));

        Assert.Equal(Path.Combine(home, "base", "diff"), store.Mount("base")); // nothing to mount
        Assert.False(MountTable.IsMountPoint(Path.Combine(home, "base", "diff")));
        store.Unmount("base");

        var spec = store.Driver.Mount("child");
        Assert.Equal("overlay", spec.Type);
        Assert.Contains($"lowerdir={home}/l/{shortBase}", spec.Options);
        Assert.Contains("redirect_dir=off", spec.Options);
        Assert.Contains("index=off", spec.Options);
        Assert.Contains("metacopy=off", spec.Options);
        var meta = store.Metadata("child");
        Assert.Equal(Path.Combine(home, "base", "diff"), meta["LowerDir"]);
        Assert.Equal(Path.Combine(home, "child", "diff"), meta["UpperDir"]);
        Assert.Equal(Path.Combine(home, "child", "merged"), meta["MergedDir"]);

        store.Remove("child");
        Assert.False(File.Exists(Path.Combine(home, "l", OverlayDriver.ShortName("child"))));
        Assert.False(Directory.Exists(Path.Combine(home, "child")));
    }

    [Fact]
    public void ProbeReportsWhatItFound()
    {
        using var store = Open();
        var status = store.Status().ToDictionary(p => p.Key, p => p.Value);
        output.WriteLine(string.Join("\n", status.Select(p => $"{p.Key}: {p.Value}")));
        Assert.Equal(FileSystems.Name(Root), status["Backing Filesystem"]);
        Assert.Equal("true", status["Supports d_type"]);
        Assert.Equal("true", status["Native Overlay Diff"]);
        Assert.Equal($"kernel overlayfs (up to {Mounter.MaxOverlayLayers} layers)", status["Mount"]);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Root, "tmp"))); // the probe cleans up after itself
    }

    /// <summary>A chain of layers, each adding one file: layer-0 (no parent) .. layer-<paramref name="top"/>.</summary>
    static void MakeChain(LayerStore store, int top, string prefix = "layer")
    {
        for (int i = 0; i <= top; i++)
        {
            string id = $"{prefix}-{i}";
            store.Create(id, i == 0 ? null : $"{prefix}-{i - 1}");
            File.WriteAllText(Path.Combine(Path.Combine(store.Root, "overlay", id, "diff"), $"file-{i}"), id);
        }
    }

    [Fact]
    public void ChainsOf500LayersMountAndDeeperOnesAreRefusedClearly()
    {
        using var store = Open();
        MakeChain(store, Mounter.MaxOverlayLayers); // the top sits on 500 layers: overlayfs's maximum
        string top = $"layer-{Mounter.MaxOverlayLayers}";
        string dir = store.Mount(top);
        try
        {
            Assert.Equal("layer-0", File.ReadAllText(Path.Combine(dir, "file-0")));
            Assert.Equal(top, File.ReadAllText(Path.Combine(dir, $"file-{Mounter.MaxOverlayLayers}")));
            Assert.Equal(Mounter.MaxOverlayLayers + 1, Directory.GetFiles(dir).Length);
        }
        finally
        {
            store.Unmount(top);
        }
        var ex = Assert.Throws<StrataException>(() => store.Create("too-deep", top));
        Assert.Equal(ErrorKind.Unsupported, ex.Kind);
        Assert.Equal($"layer too-deep would sit on 501 layers; overlayfs mounts at most 500 (commit the container to a new image with fewer layers)", ex.Message);
        Assert.False(store.Exists("too-deep"));
    }

    [Fact]
    public void WithoutTheNewMountApi128LayersStillMountAndDeeperChainsSaySo()
    {
        // kernels before 6.8 take all lower dirs in one page: absolute paths give out first, relative ones reach 128
        using var store = Open(legacy: true);
        MakeChain(store, 128);
        string dir = store.Mount("layer-128");
        try
        {
            Assert.Equal("layer-0", File.ReadAllText(Path.Combine(dir, "file-0")));
            Assert.Equal(129, Directory.GetFiles(dir).Length);
        }
        finally
        {
            store.Unmount("layer-128");
        }
        store.Create("layer-129", "layer-128");
        MakeChainOn(store, "layer-129", 200);
        var ex = Assert.Throws<StrataException>(() => store.Mount("layer-200"));
        Assert.Equal(ErrorKind.Unsupported, ex.Kind);
        Assert.StartsWith("a chain of 200 layers does not fit in one overlay mount on this kernel", ex.Message);
        Assert.Equal(0, store.Inspect("layer-200").Mounts);
        Assert.False(MountTable.IsMountPoint(Path.Combine(Root, "overlay", "layer-200", "merged")));
    }

    static void MakeChainOn(LayerStore store, string from, int top)
    {
        int start = int.Parse(from.Split('-')[1]);
        for (int i = start + 1; i <= top; i++) store.Create($"layer-{i}", $"layer-{i - 1}");
    }

    [Fact]
    public void AMountLeftByACrashedProcessIsDetachedAtOpen()
    {
        string merged;
        using (var store = Open())
        {
            store.Create("base", null);
            store.Create("c", "base", LayerKind.ReadWrite);
            merged = store.Mount("c");
        }
        // a process that died between mounting and counting the mount leaves exactly this
        File.Delete(Path.Combine(Root, "mounts", "c"));
        Assert.True(MountTable.IsMountPoint(merged));
        using (var store = Open())
        {
            Assert.Contains($"stale mount {merged}", store.Swept);
            Assert.False(MountTable.IsMountPoint(merged));
            store.Remove("c");
        }
    }

    [Fact]
    public void ACountWhoseMountIsGoneIsResetAtOpen()
    {
        string merged;
        using (var store = Open())
        {
            store.Create("base", null);
            store.Create("c", "base", LayerKind.ReadWrite);
            store.Mount("c");
            merged = store.Mount("c");
        }
        Shell.Run("umount", merged).Check("umount"); // what a reboot does
        using var again = Open();
        Assert.Contains($"mount count of c reset from 2 (its mount at {merged} was gone)", again.Swept);
        Assert.Equal(0, again.Inspect("c").Mounts);
        Assert.False(File.Exists(Path.Combine(Root, "mounts", "c")));
        again.Remove("c");
    }

    [Fact]
    public void MountsSurviveTheProcessAndAreSharedByUsers()
    {
        string merged;
        using (var store = Open())
        {
            store.Create("base", null);
            File.WriteAllText(Path.Combine(store.Mount("base"), "hello"), "world");
            store.Unmount("base");
            store.Create("c", "base", LayerKind.ReadWrite);
            merged = store.Mount("c");
            Assert.Equal(merged, store.Mount("c"));
            store.Unmount("c");
            Assert.True(MountTable.IsMountPoint(merged)); // one user left
        }
        Assert.True(MountTable.IsMountPoint(merged)); // like `strata layer mount`: the mount outlives the command
        using (var store = Open())
        {
            Assert.Empty(store.Swept);
            Assert.Equal("world", File.ReadAllText(Path.Combine(merged, "hello")));
            store.Unmount("c");
            Assert.False(MountTable.IsMountPoint(merged));
        }
    }

    [Fact]
    public void RemovingOrUnmountingALayerInUseNamesWhoHoldsIt()
    {
        using var store = Open();
        store.Create("base", null);
        store.Create("c", "base", LayerKind.ReadWrite);
        string merged = store.Mount("c");
        using var sleeper = Process.Start(new ProcessStartInfo("sleep", "60") { WorkingDirectory = merged, UseShellExecute = false })!;
        try
        {
            var rm = Assert.Throws<StrataException>(() => store.Remove("c"));
            Assert.Equal(ErrorKind.InUse, rm.Kind);
            Assert.Equal($"layer c is mounted at {merged} by 1 user(s), in use by pid {sleeper.Id} (sleep); unmount it before you remove it", rm.Message);
            var um = Assert.Throws<StrataException>(() => store.Unmount("c"));
            Assert.Equal(ErrorKind.InUse, um.Kind);
            Assert.Equal($"{merged} is busy: in use by pid {sleeper.Id} (sleep); stop those processes first", um.Message);
            Assert.Equal(1, store.Inspect("c").Mounts); // a refused unmount changes nothing
            Assert.True(MountTable.IsMountPoint(merged));
        }
        finally
        {
            sleeper.Kill();
            sleeper.WaitForExit();
        }
        store.Unmount("c");
        store.Remove("c");
    }

    [Fact]
    public void CleanupKeepsCountedMountsForTheNextOwner()
    {
        // a daemon restart must not pull a running container's root away, nor leave its count to a second mount
        var store = Open();
        try
        {
            store.Create("base", null);
            store.Create("a", "base", LayerKind.ReadWrite);
            string ma = store.Mount("a");
            store.Mount("a");
            store.Cleanup();
            Assert.True(MountTable.IsMountPoint(ma));
            store.Dispose();
            store = Open();
            Assert.True(MountTable.IsMountPoint(ma));
            Assert.Equal(2, store.Inspect("a").Mounts);
            Assert.Equal(ma, store.Mount("a"));
            Assert.Single(MountTable.Read(), m => m.MountPoint == ma);
            for (int i = 0; i < 3; i++) store.Unmount("a");
            Assert.False(MountTable.IsMountPoint(ma));
            store.Remove("a");
            store.Remove("base");
        }
        finally
        {
            store.Dispose();
        }
    }

    [Fact]
    public void BusyUnmountFailsOrDetachesWhenAskedTo()
    {
        using var store = Open();
        store.Create("base", null);
        store.Create("a", "base", LayerKind.ReadWrite);
        string ma = store.Mount("a");
        using (var held = File.Create(Path.Combine(ma, "open")))
        {
            var ex = Assert.Throws<StrataException>(() => store.Unmount("a"));
            Assert.Equal(ErrorKind.InUse, ex.Kind);
            Assert.Contains($"pid {Environment.ProcessId}", ex.Message);
            Assert.Equal(1, store.Inspect("a").Mounts);
            Assert.True(MountTable.IsMountPoint(ma));
            string? busy = store.Unmount("a", detachBusy: true);
            Assert.Contains($"pid {Environment.ProcessId}", busy);
            Assert.Equal(0, store.Inspect("a").Mounts);
            Assert.False(MountTable.IsMountPoint(ma));
            held.Write("still writable after the detach"u8);
        }
        store.Remove("a");
        store.Remove("base");
    }

    [Fact]
    public void DiffsAgainstOtherLayersUseTheGenericPathAndUnmountAfter()
    {
        using var store = Open();
        store.Create("base", null);
        File.WriteAllText(Path.Combine(store.Mount("base"), "a"), "1");
        store.Unmount("base");
        store.Create("mid", "base");
        File.WriteAllText(Path.Combine(store.Mount("mid"), "b"), "2");
        store.Unmount("mid");
        store.Create("top", "mid");
        File.WriteAllText(Path.Combine(store.Mount("top"), "c"), "3");
        store.Unmount("top");
        Assert.Equal(["A /c"], store.Changes("top").Select(c => c.ToString()));              // native, against the parent
        Assert.Equal(["A /b", "A /c"], store.Changes("top", "base").Select(c => c.ToString())); // generic: mounts both
        Assert.Equal(["A /a", "A /b", "A /c"], store.Changes("top", null).Select(c => c.ToString()));
        Assert.DoesNotContain(MountTable.Read(), m => m.MountPoint.StartsWith(Root + "/", StringComparison.Ordinal));
    }

    [Fact]
    public void ManyThreadsMountDiffAndRemoveContainersAtOnce()
    {
        using var store = Open();
        store.Create("base", null);
        File.WriteAllText(Path.Combine(store.Mount("base"), "shared"), "image");
        store.Unmount("base");
        var errors = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, t =>
        {
            for (int i = 0; i < 40; i++)
            {
                string id = $"c{t}-{i}";
                try
                {
                    store.Create(id, "base", LayerKind.ReadWrite);
                    string dir = store.Mount(id);
                    File.WriteAllText(Path.Combine(dir, "mine"), id);
                    if (File.ReadAllText(Path.Combine(dir, "shared")) != "image") errors.Add($"{id}: lower not visible");
                    string again = store.Mount(id); // a second user
                    store.Unmount(id);
                    if (File.ReadAllText(Path.Combine(again, "mine")) != id) errors.Add($"{id}: lost its own file");
                    store.Unmount(id);
                    var changes = string.Join(",", store.Changes(id));
                    if (changes != "A /mine") errors.Add($"{id}: changes {changes}");
                    if (i % 2 == 0) store.Remove(id);
                }
                catch (Exception ex)
                {
                    errors.Add($"{id}: {ex.Message}");
                }
            }
        });
        Assert.Empty(errors);
        Assert.Equal(1 + 8 * 20, store.List().Count);
        Assert.DoesNotContain(MountTable.Read(), m => m.MountPoint.StartsWith(Root + "/", StringComparison.Ordinal));
    }

    static MemoryStream Tar(Action<Strata.Archive.Tar.TarWriter> write)
    {
        var ms = new MemoryStream();
        using (var w = new Strata.Archive.Tar.TarWriter(ms))
        {
            write(w);
            w.Finish();
        }
        ms.Position = 0;
        return ms;
    }

    static void Member(Strata.Archive.Tar.TarWriter w, string name, Strata.Archive.Tar.TarEntryType type = Strata.Archive.Tar.TarEntryType.Regular, uint major = 0, uint minor = 0) =>
        w.WriteHeader(new() { Name = name, Type = type, Mode = type == Strata.Archive.Tar.TarEntryType.Directory ? 0x1EDu : 0x1A4u, DevMajor = major, DevMinor = minor });

    /// <summary>Every name a directory listing shows can be looked up (overlayfs lists stray whiteouts but cannot stat them).</summary>
    static void AssertListingsClean(string dir)
    {
        foreach (var e in Posix.ReadDir(dir))
        {
            string path = Path.Combine(dir, e.Name);
            Assert.True(Posix.TryLstat(path, out var st), $"{path} is listed but cannot be looked up");
            if (st.IsDirectory) AssertListingsClean(path);
        }
    }

    static IEnumerable<string> Whiteouts(string root) =>
        Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories)
            .Where(p => Posix.Lstat(p) is { Kind: FileKind.CharDevice, RdevMajor: 0, RdevMinor: 0 })
            .Select(p => Path.GetRelativePath(root, p));

    [Fact]
    public void AppliedWhiteoutsAreWrittenOnlyWhereSomethingIsHidden()
    {
        using var store = Open();
        store.Create("base", null, diff: Tar(w =>
        {
            Member(w, "etc/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "etc/passwd");
            Member(w, "etc/group");
            Member(w, "var/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "var/cache/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "var/cache/a");
            Member(w, ".wh.nothing-below-a-base-layer");
        }));
        store.Create("top", "base", diff: Tar(w =>
        {
            Member(w, "etc/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "etc/.wh.passwd");            // hides a lower file: a whiteout
            Member(w, "etc/.wh.never-existed");     // hides nothing: no whiteout
            Member(w, "dev/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "dev/.wh.x");                 // in a directory new in this layer: nothing to hide
            Member(w, "var/cache/.wh.a");           // before the opaque marker of its directory...
            Member(w, "var/cache/.wh..wh..opq");    // ...which hides everything below anyway
            Member(w, "var/cache/b");
            Member(w, "var/cache/.wh.c");           // after it: nothing visible to hide
        }));
        string upper = Path.Combine(Root, "overlay", "top", "diff");
        Assert.Equal(["etc/passwd"], Whiteouts(upper));
        Assert.Empty(Whiteouts(Path.Combine(Root, "overlay", "base", "diff")));
        Assert.Contains(Posix.LgetXattrs(Path.Combine(upper, "var/cache")), x => x.Key == "trusted.overlay.opaque");
        string dir = store.Mount("top");
        try
        {
            AssertListingsClean(dir);
            Assert.Equal(["group"], Posix.ReadDir(Path.Combine(dir, "etc")).Select(e => e.Name));
            Assert.Equal(["b"], Posix.ReadDir(Path.Combine(dir, "var/cache")).Select(e => e.Name));
            Assert.Empty(Posix.ReadDir(Path.Combine(dir, "dev")));
        }
        finally
        {
            store.Unmount("top");
        }
        var generic = new NaiveDiffer(store);
        Assert.Equal(generic.Changes("top", "base"), store.Changes("top"));
        Assert.Equal(["A /dev", "C /etc", "D /etc/passwd", "C /var", "C /var/cache", "D /var/cache/a", "A /var/cache/b"], store.Changes("top").Select(c => c.ToString()));
    }

    [Fact]
    public void AZeroZeroCharacterDeviceCannotBeStoredInAnOverlayLayer()
    {
        using var store = Open();
        store.Create("base", null);
        foreach (var (id, parent) in new[] { ("child", "base"), ("another-base", (string?)null) })
        {
            var ex = Assert.Throws<StrataException>(() => store.Create(id, parent, diff: Tar(w =>
            {
                Member(w, "dev/", Strata.Archive.Tar.TarEntryType.Directory);
                Member(w, "dev/null0", Strata.Archive.Tar.TarEntryType.CharDevice, 0, 0);
            })));
            Assert.Equal("tar: member 'dev/null0' is a 0:0 character device, which overlayfs reads as a deletion: an overlay layer cannot hold one", ex.Message);
            Assert.False(store.Exists(id));
        }
        Assert.Equal(["base"], store.Driver.List());
        // other devices are content like any other
        store.Create("devices", "base", diff: Tar(w => Member(w, "null", Strata.Archive.Tar.TarEntryType.CharDevice, 1, 3)));
        Assert.Equal(["A /null"], store.Changes("devices").Select(c => c.ToString()));
    }

    [Fact]
    public void AppliedTarsKeepWhatIsBelowAsVfsWould()
    {
        using var store = Open();
        store.Create("base", null, diff: Tar(w =>
        {
            Member(w, "usr/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "usr/lib/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "usr/lib/keep");
            w.WriteHeader(new() { Name = "lib", Type = Strata.Archive.Tar.TarEntryType.Symlink, LinkName = "usr/lib", Mode = 0x1FF });
            w.WriteHeader(new() { Name = "tmp/", Type = Strata.Archive.Tar.TarEntryType.Directory, Mode = 0x3FF /* 01777 */, Uid = 0, Gid = 0 });
            w.WriteHeader(new() { Name = "srv/", Type = Strata.Archive.Tar.TarEntryType.Directory, Mode = 0x1C0, Uid = 7, Gid = 8 });
            Member(w, "a/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "a/x");
        }));
        // a whiteout through a lower symlink must not turn /lib into an empty directory
        store.Create("t1", "base", diff: Tar(w => Member(w, "lib/.wh.nothing")));
        Assert.True(Posix.Lstat(Path.Combine(Root, "overlay", "base", "diff", "lib")).IsSymlink);
        Assert.False(Posix.TryLstat(Path.Combine(Root, "overlay", "t1", "diff", "lib"), out _));
        // directories a tar implies without naming them keep the attributes of the ones below (/tmp stays 1777)
        store.Create("t2", "base", diff: Tar(w =>
        {
            Member(w, "tmp/new");
            Member(w, "srv/data/file");
        }));
        string dir = store.Mount("t2");
        try
        {
            Assert.Equal(0x3FFu, Posix.Lstat(Path.Combine(dir, "tmp")).Permissions);
            var srv = Posix.Lstat(Path.Combine(dir, "srv"));
            Assert.Equal((0x1C0u, 7u, 8u), (srv.Permissions, srv.Uid, srv.Gid));
        }
        finally
        {
            store.Unmount("t2");
        }
        Assert.Equal(["C /srv", "A /srv/data", "A /srv/data/file", "C /tmp", "A /tmp/new"], store.Changes("t2").Select(c => c.ToString()));
        // a second apply onto the same layer: a directory over an earlier whiteout, and an opaque directory over earlier content
        store.Create("t3", "base", diff: Tar(w =>
        {
            Member(w, "a/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "a/.wh.x");
            Member(w, "srv/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "srv/old");
        }));
        store.ApplyDiff("t3", Tar(w =>
        {
            Member(w, ".wh.a");
            Member(w, "srv/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "srv/.wh..wh..opq");
            Member(w, "srv/new");
        }));
        store.ApplyDiff("t3", Tar(w =>
        {
            Member(w, "a/", Strata.Archive.Tar.TarEntryType.Directory);
            Member(w, "a/y");
        }));
        dir = store.Mount("t3");
        try
        {
            AssertListingsClean(dir);
            Assert.Equal(["y"], Posix.ReadDir(Path.Combine(dir, "a")).Select(e => e.Name));
            Assert.Equal(["new"], Posix.ReadDir(Path.Combine(dir, "srv")).Select(e => e.Name));
        }
        finally
        {
            store.Unmount("t3");
        }
        var ex = Assert.Throws<StrataException>(() => store.Create("t4", "base", diff: Tar(w =>
            w.WriteHeader(new() { Name = "link", Type = Strata.Archive.Tar.TarEntryType.HardLink, LinkName = "a/x" }))));
        Assert.Equal("tar: member 'link' is a hardlink to 'a/x', which is not in this layer (an overlay layer cannot link to a file of the layers below)", ex.Message);
    }

    [Fact]
    public void AStoreReachedThroughASymlinkKeepsItsMounts()
    {
        string real = _temp.Dir("real"), link = _temp.Combine("link");
        File.CreateSymbolicLink(link, real);
        string root = Path.Combine(link, "store");
        string merged;
        using (var store = LayerStore.Open(new StoreOptions { Root = root, Driver = "overlay" }))
        {
            Assert.Equal(Path.Combine(real, "store"), store.Root);
            store.Create("base", null);
            store.Create("c", "base", LayerKind.ReadWrite);
            merged = store.Mount("c");
        }
        using (var store = LayerStore.Open(new StoreOptions { Root = root }))
        {
            Assert.Empty(store.Swept);
            Assert.Equal(1, store.Inspect("c").Mounts);
            Assert.True(MountTable.IsMountPoint(merged));
            store.Unmount("c");
            store.Remove("c");
        }
    }

    [Fact]
    public void AMountInUseIsNeverDetachedBecauseALayerCannotBeRead()
    {
        string merged;
        using (var store = Open())
        {
            store.Create("base", null);
            store.Create("c", "base", LayerKind.ReadWrite);
            merged = store.Mount("c");
        }
        string lower = Path.Combine(Root, "overlay", "c", "lower");
        string saved = File.ReadAllText(lower);
        File.WriteAllText(lower, "garbage");
        using (var store = Open())
        {
            Assert.True(MountTable.IsMountPoint(merged));
            Assert.Equal(1, store.Inspect("c").Mounts);
        }
        File.WriteAllText(lower, saved);
        // a mount left in tmp/ (a layer being made or a probe, when the process died) is swept
        string leftover = Path.Combine(Root, "tmp", "overlay-probe.dead", "merged");
        Directory.CreateDirectory(leftover);
        Shell.Run("mount", "-t", "tmpfs", "tmpfs", leftover).Check("mount");
        using (var store = Open())
        {
            Assert.Contains($"stale mount {leftover}", store.Swept);
            Assert.False(MountTable.IsMountPoint(leftover));
            Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Root, "tmp")));
            store.Unmount("c");
        }
    }

    [Fact]
    public void LongStorePathsStillMount()
    {
        // fsconfig takes values of at most 255 bytes; upperdir under this root is longer
        string root = Path.Combine(_temp.Path, new string('d', 120), new string('e', 60), "store");
        using var store = LayerStore.Open(new StoreOptions { Root = root, Driver = "overlay" });
        string id = new('x', 64);
        store.Create("base", null);
        store.Create(id, "base", LayerKind.ReadWrite);
        Assert.True(System.Text.Encoding.UTF8.GetByteCount(Path.Combine(store.Root, "overlay", id, "diff")) >= 256);
        string dir = store.Mount(id);
        try
        {
            File.WriteAllText(Path.Combine(dir, "f"), "ok");
        }
        finally
        {
            store.Unmount(id);
        }
        Assert.Equal(["A /f"], store.Changes(id).Select(c => c.ToString()));
    }

    [Fact]
    public void ARootOverlayCannotNameGetsVfsAndAMissingMountProgramStillOpens()
    {
        using (var store = LayerStore.Open(new StoreOptions { Root = _temp.Combine("a,b") }))
            Assert.Equal("vfs", store.Driver.Name);
        var gone = new Dictionary<string, string> { ["overlay.mount_program"] = "/nonexistent/fuse-overlayfs" };
        using (var store = LayerStore.Open(new StoreOptions { Root = Root, Driver = "overlay", DriverOptions = gone }))
        {
            store.Create("base", null);
            Assert.Contains(store.Status(), p => p.Key == "Overlay" && p.Value.StartsWith("unavailable: mounting through /nonexistent/fuse-overlayfs failed", StringComparison.Ordinal));
            Assert.Equal(["base"], store.List().Select(l => l.Id));
        }
    }

    [Fact]
    public void AFreshStoreProbesOverlayAndRecordsIt()
    {
        using (var store = LayerStore.Open(new StoreOptions { Root = Root }))
            Assert.Equal("overlay", store.Driver.Name);
        Assert.Equal("overlay\n", File.ReadAllText(Path.Combine(Root, "driver")));
    }

    [Fact]
    public void DriverOptionsAreRecordedWithTheStore()
    {
        var fuse = new Dictionary<string, string> { ["overlay.mount_program"] = "/usr/bin/fuse-overlayfs" };
        using (var store = LayerStore.Open(new StoreOptions { Root = Root, Driver = "overlay", DriverOptions = fuse }))
            Assert.Contains(store.Status(), p => p.Key == "Mount" && p.Value == "/usr/bin/fuse-overlayfs (FUSE)");
        Assert.Equal("overlay\noverlay.mount_program=/usr/bin/fuse-overlayfs\n", File.ReadAllText(Path.Combine(Root, "driver")));
        using (var store = Open()) // no options given: the recorded ones apply
            Assert.Contains(store.Status(), p => p.Key == "Mount" && p.Value == "/usr/bin/fuse-overlayfs (FUSE)");
        using (LayerStore.Open(new StoreOptions { Root = Root, DriverOptions = fuse })) { } // repeating them is fine
        var ex = Assert.Throws<StrataException>(() => LayerStore.Open(new StoreOptions
        {
            Root = Root,
            DriverOptions = new Dictionary<string, string> { ["overlay.mount_program"] = "/bin/true" },
        }));
        Assert.Equal($"store {Root} was created with overlay.mount_program=/usr/bin/fuse-overlayfs; driver options are fixed when a store is created", ex.Message);
    }

    [Fact]
    public void BadOptionsAreRefusedWithoutTouchingAnything()
    {
        var ex = Assert.Throws<StrataException>(() => LayerStore.Open(new StoreOptions
        {
            Root = Root,
            Driver = "overlay",
            DriverOptions = new Dictionary<string, string> { ["overlay.mount_program"] = "fuse-overlayfs" },
        }));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => ByteSize.Parse("99999999999999999999999999P", "size")).Kind);
        using var store = Open();
        store.Create("base", null);
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() =>
            store.Create("x", "base", LayerKind.ReadWrite, storageOptions: new Dictionary<string, string> { ["color"] = "red" })).Kind);
        Assert.Equal("size= applies to read-write (container) layers only", Assert.Throws<StrataException>(() =>
            store.Create("x", "base", LayerKind.ReadOnly, storageOptions: new Dictionary<string, string> { ["size"] = "1G" })).Message);
        Assert.False(store.Exists("x"));
        Assert.Equal(["base"], store.Driver.List());
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Root, "tmp")));
    }
}

/// <summary>The probe's fallbacks, with the kernel's answer injected: root is never refused an overlay mount.</summary>
public sealed class OverlayProbeFallbackTests : IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void WhenTheKernelRefusesFuseOverlayfsMounts()
    {
        const string program = "/usr/bin/fuse-overlayfs";
        Assert.True(File.Exists(program), "test.sh installs fuse-overlayfs");
        var caps = OverlayProbe.Run(_temp.Path, null, (_, _) => Errno.EPERM, name => name == "fuse-overlayfs" ? program : null);
        Assert.True(caps.Supported, caps.WhyNot);
        Assert.Equal(program, caps.MountProgram);
        Assert.Empty(Directory.GetFileSystemEntries(_temp.Path)); // probed through a real FUSE mount, and cleaned up
    }

    [Fact]
    public void WhenTheKernelRefusesAndThereIsNoFuseOverlayfsOverlayIsUnsupported()
    {
        var caps = OverlayProbe.Run(_temp.Path, null, (_, _) => Errno.EPERM, _ => null);
        Assert.False(caps.Supported);
        Assert.Equal("the kernel refused an overlay mount (Operation not permitted) and fuse-overlayfs is not installed", caps.WhyNot);
        var none = OverlayProbe.Run(_temp.Path, null, (_, _) => Errno.ENODEV, _ => null);
        Assert.Equal("this kernel has no overlay filesystem (modprobe overlay)", none.WhyNot);
        Assert.Empty(Directory.GetFileSystemEntries(_temp.Path));
    }

    [Fact]
    public void KernelsThatDoNotKnowTheOptionsAreMountedWithout()
    {
        var seen = new List<string[]>();
        var caps = OverlayProbe.Run(_temp.Path, null, (options, target) =>
        {
            seen.Add(options);
            if (options.Contains("redirect_dir=off")) return Errno.EINVAL;
            Mounter.Mount(new MountSpec("overlay", "overlay", options) { Target = target });
            return 0;
        }, _ => null);
        Assert.True(caps.Supported);
        Assert.Empty(caps.FeatureOptions);
        Assert.Equal(2, seen.Count);
        Assert.True(caps.NativeDiff, caps.NativeDiffNote); // this kernel's defaults are diffable
    }

    [Fact]
    public void AnUnusableStoreDefaultsToVfs()
    {
        // a store on overlayfs itself cannot hold overlay upper dirs: the probe says so and a new store gets vfs
        string lower = _temp.Dir("lower"), upper = _temp.Dir("upper"), work = _temp.Dir("work"), merged = _temp.Dir("merged");
        Mounter.Mount(new MountSpec("overlay", "overlay", [$"lowerdir={lower}", $"upperdir={upper}", $"workdir={work}"]) { Target = merged });
        try
        {
            string root = Path.Combine(merged, "store");
            using (var store = LayerStore.Open(new StoreOptions { Root = root }))
            {
                Assert.Equal("vfs", store.Driver.Name);
            }
            using var forced = LayerStore.Open(new StoreOptions { Root = Path.Combine(merged, "forced"), Driver = "overlay" });
            Assert.Contains(forced.Status(), p => p.Key == "Overlay" && p.Value.StartsWith("unavailable: the store is itself on overlayfs", StringComparison.Ordinal));
            forced.Create("base", null);
            forced.Create("c", "base");
            var ex = Assert.Throws<StrataException>(() => forced.Mount("c"));
            Assert.StartsWith("overlay cannot mount here: the store is itself on overlayfs", ex.Message);
        }
        finally
        {
            Mounter.Unmount(merged, detach: true);
        }
    }
}
