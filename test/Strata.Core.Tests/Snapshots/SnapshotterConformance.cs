using Strata.Core.Snapshots;
using Strata.Native;
using Strata.Testing;

namespace Strata.Core.Tests.Snapshots;

/// <summary>
/// The snapshotter contract (after containerd's snapshots/testsuite), run over every driver the snapshotter serves:
/// a driver's class only names it. Every test gets a fresh store; mounts made by a test are undone in finally, and
/// the temp root unmounts whatever is left.
/// </summary>
public abstract class SnapshotterConformance : IDisposable
{
    protected readonly TempRoot Temp = new();
    protected LayerStore Store { get; private set; }
    protected Snapshotter Snapshots { get; private set; }
    readonly string _root;

    protected abstract string DriverName { get; }

    /// <summary>Where to put the store: a directory on the filesystem under test.</summary>
    protected virtual string StoreParent(TempRoot temp) => temp.Path;

    protected virtual IReadOnlyDictionary<string, string> DriverOptions => new Dictionary<string, string>();

    protected SnapshotterConformance()
    {
        _root = Path.Combine(StoreParent(Temp), "store-" + Guid.NewGuid().ToString("N")[..8]);
        Store = LayerStore.Open(new StoreOptions { Root = _root, Driver = DriverName, DriverOptions = DriverOptions });
        Snapshots = Snapshotter.Open(Store);
    }

    public void Dispose()
    {
        Snapshots.Dispose();
        Store.Dispose();
        foreach (var mount in Strata.Testing.Mounts.Under(_root).OrderByDescending(m => m.Length)) Shell.Run("umount", "-l", mount);
        Shell.Run("rm", "-rf", "--one-file-system", _root);
        Temp.Dispose();
    }

    /// <summary>Closes the store and opens it and its snapshots again, as a restarted daemon would.</summary>
    protected void Reopen()
    {
        Snapshots.Dispose();
        Store.Dispose();
        Store = LayerStore.Open(new StoreOptions { Root = _root, Driver = DriverName, DriverOptions = DriverOptions });
        Snapshots = Snapshotter.Open(Store);
    }

    protected static Dictionary<string, string> Labels(params (string Key, string Value)[] pairs) => pairs.ToDictionary(p => p.Key, p => p.Value);

    /// <summary>Where an active snapshot's writes go, without mounting: a bind's source or the overlay's upper dir.</summary>
    protected static string WritableDir(IReadOnlyList<MountSpec> mounts)
    {
        var m = Assert.Single(mounts);
        return m.Type == "bind" ? m.Source : m.Options.Single(o => o.StartsWith("upperdir=", StringComparison.Ordinal))["upperdir=".Length..];
    }

    /// <summary>Performs the mount as containerd would (with mount(8)), runs <paramref name="use"/> on it, unmounts.</summary>
    protected void WithMounted(IReadOnlyList<MountSpec> mounts, Action<string> use)
    {
        var m = Assert.Single(mounts);
        string target = Temp.Dir("mnt-" + Guid.NewGuid().ToString("N")[..8]);
        Shell.Run("mount", "-t", m.Type, "-o", string.Join(',', m.Options), m.Source, target).Check($"mount {m.Type} {string.Join(',', m.Options)}");
        try
        {
            use(target);
        }
        finally
        {
            Shell.Run("umount", target).Check("umount");
        }
    }

    /// <summary>A mount as one comparable line (MountSpec's options are a list, compared by reference).</summary>
    protected static string Describe(MountSpec m) => $"{m.Type} {m.Source} {string.Join(',', m.Options)}";

    protected static string[] Describe(IReadOnlyList<MountSpec> mounts) => mounts.Select(Describe).ToArray();

    /// <summary>What of a described mount a restart keeps (all of it, unless the driver says otherwise).</summary>
    protected virtual string AcrossRestart(string mount) => mount;

    protected static void AssertKind(ErrorKind kind, Action call) => Assert.Equal(kind, Assert.Throws<StrataException>(call).Kind);

    [Fact]
    public void PrepareCommitView()
    {
        var mounts = Snapshots.Prepare("default/1/base", null, Labels(("a", "1")));
        var active = Snapshots.Stat("default/1/base");
        Assert.Equal(SnapshotKind.Active, active.Kind);
        Assert.Null(active.Parent);
        Assert.Equal("1", active.Labels["a"]);
        Assert.Equal(Describe(mounts), Describe(Snapshots.Mounts("default/1/base")));
        Assert.Contains("rw", Assert.Single(mounts).Options);
        WithMounted(mounts, dir =>
        {
            Assert.Equal(0x1EDu /* 0755, containerd's RootPermission */, Posix.Lstat(dir).Permissions);
            File.WriteAllText(Path.Combine(dir, "hello"), "world");
        });

        Snapshots.Commit("default/2/sha256:base", "default/1/base", Labels(("containerd.io/snapshot/x", "y")));
        AssertKind(ErrorKind.NotFound, () => Snapshots.Stat("default/1/base"));
        var committed = Snapshots.Stat("default/2/sha256:base");
        Assert.Equal(SnapshotKind.Committed, committed.Kind);
        Assert.Equal(Labels(("containerd.io/snapshot/x", "y")), committed.Labels);
        AssertKind(ErrorKind.InUse, () => Snapshots.Mounts("default/2/sha256:base"));

        var view = Snapshots.View("default/3/view", "default/2/sha256:base");
        Assert.Contains("ro", Assert.Single(view).Options);
        Assert.Equal(SnapshotKind.View, Snapshots.Stat("default/3/view").Kind);
        Assert.Equal("default/2/sha256:base", Snapshots.Stat("default/3/view").Parent);
        var child = Snapshots.Prepare("default/4/ctr", "default/2/sha256:base");
        Assert.DoesNotContain("ro", Assert.Single(child).Options);
    }

    [Fact]
    public void WritesInAnActiveSnapshotAreSeenByAViewOfItsCommittedChild()
    {
        WithMounted(Snapshots.Prepare("base", null), dir => File.WriteAllText(Path.Combine(dir, "one"), "1"));
        Snapshots.Commit("base-c", "base");
        WithMounted(Snapshots.Prepare("top", "base-c"), dir =>
        {
            Assert.Equal("1", File.ReadAllText(Path.Combine(dir, "one")));
            File.WriteAllText(Path.Combine(dir, "two"), "2");
            File.Delete(Path.Combine(dir, "one"));
        });
        Snapshots.Commit("top-c", "top");
        WithMounted(Snapshots.View("v-base", "base-c"), dir =>
        {
            Assert.Equal("1", File.ReadAllText(Path.Combine(dir, "one")));
            Assert.False(File.Exists(Path.Combine(dir, "two")));
        });
        WithMounted(Snapshots.View("v-top", "top-c"), dir =>
        {
            Assert.Equal("2", File.ReadAllText(Path.Combine(dir, "two")));
            Assert.False(File.Exists(Path.Combine(dir, "one")));
            Assert.ThrowsAny<IOException>(() => File.WriteAllText(Path.Combine(dir, "three"), "3"));
        });
    }

    [Fact]
    public void RemoveRefusesSnapshotsWithChildren()
    {
        Snapshots.Prepare("a", null);
        Snapshots.Commit("a-c", "a");
        Snapshots.View("v", "a-c");
        Snapshots.Prepare("b", "a-c");
        AssertKind(ErrorKind.InUse, () => Snapshots.Remove("a-c"));
        Snapshots.Remove("v");
        AssertKind(ErrorKind.InUse, () => Snapshots.Remove("a-c"));
        Snapshots.Remove("b");
        int layers = Store.List().Count;
        Snapshots.Remove("a-c");
        Assert.Equal(layers - 1, Store.List().Count);
        Assert.Empty(Snapshots.Walk());
        Assert.Empty(Store.List());
        AssertKind(ErrorKind.NotFound, () => Snapshots.Remove("a-c"));
    }

    [Fact]
    public void UpdateFollowsFieldPaths()
    {
        Snapshots.Prepare("k", null, Labels(("a", "1"), ("b", "2")));
        var stat = Snapshots.Stat("k");
        var info = stat with { Labels = Labels(("a", "10"), ("c", "3")) };
        Assert.Equal(Labels(("a", "10"), ("b", "2")), Snapshots.Update(info, ["labels.a"]).Labels);
        Assert.Equal(Labels(("a", "10")), Snapshots.Update(info, ["labels.b"]).Labels);
        Assert.Equal(Labels(("a", "10"), ("c", "3")), Snapshots.Update(info, ["labels"]).Labels);
        Assert.Equal(Labels(("x", "y")), Snapshots.Update(info with { Labels = Labels(("x", "y")) }).Labels);
        AssertKind(ErrorKind.InvalidArgument, () => Snapshots.Update(info, ["parent"]));
        AssertKind(ErrorKind.InvalidArgument, () => Snapshots.Update(info, ["labels."]));
        AssertKind(ErrorKind.InvalidArgument, () => Snapshots.Update(info with { Labels = Labels(("big", new string('v', 4096))) }, ["labels.big"]));
        AssertKind(ErrorKind.NotFound, () => Snapshots.Update(info with { Name = "nope" }, ["labels"]));
        var after = Snapshots.Stat("k");
        Assert.Equal(Labels(("x", "y")), after.Labels);
        Assert.True(after.Updated >= stat.Updated);
        Assert.Equal(stat.Created, after.Created);
    }

    [Fact]
    public void WalkListsEverySnapshot()
    {
        Snapshots.Prepare("a", null, Labels(("gc", "keep")));
        Snapshots.Commit("a-c", "a", Labels(("gc", "keep")));
        Snapshots.Prepare("b", "a-c");
        Snapshots.View("v", "a-c");
        Assert.Equal(["a-c", "b", "v"], Snapshots.Walk().Select(i => i.Name));
        Assert.Equal(["a-c"], Snapshots.Walk(i => i.Labels.ContainsKey("gc")).Select(i => i.Name));
        Assert.Equal([SnapshotKind.Committed, SnapshotKind.Active, SnapshotKind.View], Snapshots.Walk().Select(i => i.Kind));
    }

    [Fact]
    public virtual void UsageCountsTheSnapshotsOwnLayer()
    {
        var mounts = Snapshots.Prepare("a", null);
        var empty = Snapshots.Usage("a");
        Assert.Equal(1, empty.Inodes);
        string dir = WritableDir(mounts);
        File.WriteAllBytes(Path.Combine(dir, "big"), new byte[1 << 20].Select((_, i) => (byte)(i | 1)).ToArray());
        Directory.CreateDirectory(Path.Combine(dir, "sub"));
        var used = Snapshots.Usage("a");
        Assert.Equal(3, used.Inodes);
        Assert.True(used.Bytes >= 1 << 20, $"{used.Bytes} bytes");
        Snapshots.Commit("a-c", "a");
        var child = Snapshots.Prepare("b", "a-c");
        File.WriteAllText(Path.Combine(WritableDir(child), "small"), "x");
        Assert.True(Snapshots.Usage("b").Inodes >= 2);
        Assert.Equal(used, Snapshots.Usage("a-c"));
    }

    [Fact]
    public void BadKeysLabelsAndParentsAreRefused()
    {
        AssertKind(ErrorKind.InvalidArgument, () => Snapshots.Prepare("", null));
        AssertKind(ErrorKind.InvalidArgument, () => Snapshots.Prepare("a\0b", null));
        AssertKind(ErrorKind.InvalidArgument, () => Snapshots.Prepare(new string('k', 10 * 1024), null));
        AssertKind(ErrorKind.InvalidArgument, () => Snapshots.Prepare("bad\ud800", null));
        AssertKind(ErrorKind.InvalidArgument, () => Snapshots.Prepare("k", null, Labels(("l", new string('v', 4096)))));
        AssertKind(ErrorKind.NotFound, () => Snapshots.Prepare("k", "missing"));
        Snapshots.Prepare("../../etc/passwd", null); // any string is a key; none is a path
        Snapshots.Prepare("active", null);
        AssertKind(ErrorKind.InvalidArgument, () => Snapshots.Prepare("k", "active"));
        AssertKind(ErrorKind.AlreadyExists, () => Snapshots.Prepare("active", null));
        AssertKind(ErrorKind.AlreadyExists, () => Snapshots.View("active", null));
        Snapshots.View("view", null);
        AssertKind(ErrorKind.InUse, () => Snapshots.Commit("view-c", "view"));
        AssertKind(ErrorKind.NotFound, () => Snapshots.Commit("x", "missing"));
        AssertKind(ErrorKind.AlreadyExists, () => Snapshots.Commit("view", "active"));
        AssertKind(ErrorKind.AlreadyExists, () => Snapshots.Commit("active", "view")); // the name first, as containerd's CommitActive
        AssertKind(ErrorKind.NotFound, () => Snapshots.Stat("missing"));
        AssertKind(ErrorKind.NotFound, () => Snapshots.Mounts("missing"));
        Assert.Equal(["../../etc/passwd", "active", "view"], Snapshots.Walk().Select(i => i.Name));
        Assert.Equal(3, Store.List().Count); // refused calls left no layer behind
        Assert.All(Directory.GetFiles(Path.Combine(Store.Root, "snapshots")), f => Assert.True(LayerId.IsValid(Path.GetFileNameWithoutExtension(f))));
    }

    [Fact]
    public void SnapshotsSurviveARestart()
    {
        Snapshots.Prepare("a", null, Labels(("l", "v")));
        Snapshots.Commit("a-c", "a", Labels(("c", "d")));
        var active = Snapshots.Prepare("b", "a-c");
        Snapshots.View("v", "a-c");
        var before = Snapshots.Walk();
        Reopen();
        Assert.Equal(before, Snapshots.Walk(), new InfoComparer());
        Assert.Equal(Describe(active).Select(AcrossRestart), Describe(Snapshots.Mounts("b")).Select(AcrossRestart));
        Assert.Empty(Snapshots.Swept);
        AssertKind(ErrorKind.InUse, () => Snapshots.Remove("a-c"));
        Snapshots.Commit("b-c", "b");
        Reopen();
        Assert.Equal(SnapshotKind.Committed, Snapshots.Stat("b-c").Kind);
    }

    [Fact]
    public void LayersACrashLeftUnreferencedAreSwept()
    {
        Snapshots.Prepare("keep", null);
        Store.Create("snap-leftover", null, LayerKind.ReadWrite);
        Store.Create("snap-leftover-child", "snap-leftover", LayerKind.ReadWrite);
        Store.Create("not-ours", null);
        string tmp = Path.Combine(Store.Root, "snapshots", "x.json.tmp-1-2");
        File.WriteAllText(tmp, "{");
        Reopen();
        Assert.False(File.Exists(tmp));
        Assert.False(Store.Exists("snap-leftover"));
        Assert.False(Store.Exists("snap-leftover-child"));
        Assert.True(Store.Exists("not-ours"));
        Assert.Equal(["keep"], Snapshots.Walk().Select(i => i.Name));
        Assert.Equal(3, Snapshots.Swept.Count);
    }

    [Fact]
    public void AnUnreadableRecordKeepsTheSnapshotsFromOpening()
    {
        Snapshots.Prepare("a", null);
        string dir = Path.Combine(Store.Root, "snapshots");
        string record = Assert.Single(Directory.GetFiles(dir));
        string saved = File.ReadAllText(record);
        File.WriteAllText(record, "{\"Id\":");
        Assert.Equal(ErrorKind.Corrupt, Assert.Throws<StrataException>(Reopen).Kind);
        File.WriteAllText(record, saved.Replace("\"Key\": \"a\"", "\"Key\": \"\""));
        Assert.Equal(ErrorKind.Corrupt, Assert.Throws<StrataException>(() => Snapshotter.Open(Store)).Kind);
        File.Move(record, Path.Combine(dir, "snap-other.json"));
        Assert.Equal(ErrorKind.Corrupt, Assert.Throws<StrataException>(() => Snapshotter.Open(Store)).Kind);
        File.Move(Path.Combine(dir, "snap-other.json"), record);
        File.WriteAllText(record, saved);
        Snapshots = Snapshotter.Open(Store);
        Assert.Equal(SnapshotKind.Active, Snapshots.Stat("a").Kind);
    }

    [Fact]
    public void ImportedChainIsAlreadyThere()
    {
        // a two-layer image imported as `strata image import` does: image layers named by chain id
        var oci = new OciBuilder();
        var built = oci.Add(ImageImportFixture.TwoLayers());
        oci.Top(OciBuilder.Named(built.Descriptor, "1"));
        var images = Strata.Core.Containers.ContainerStore.For(Store).Images;
        new Strata.Core.Images.ImageImporter(images).Import(oci.WriteDir(Temp.Combine("layout")), new Strata.Core.Images.ImageImporter.Options { Name = "img:1" });
        string chain = built.ChainIds[0], chain2 = built.ChainIds[1];
        int layers = Store.List().Count;
        string target = "default/2/sha256:" + chain;
        AssertKind(ErrorKind.AlreadyExists, () => Snapshots.Prepare("default/1/extract-1", null, Labels((Snapshotter.SnapshotRefLabel, target))));
        AssertKind(ErrorKind.NotFound, () => Snapshots.Stat("default/1/extract-1"));
        var info = Snapshots.Stat(target);
        Assert.Equal(SnapshotKind.Committed, info.Kind);
        AssertKind(ErrorKind.AlreadyExists, () => Snapshots.Prepare("default/3/extract-2", target, Labels((Snapshotter.SnapshotRefLabel, "sha256:" + chain2))));
        Assert.Equal(target, Snapshots.Stat("sha256:" + chain2).Parent);
        Assert.Equal(layers, Store.List().Count); // nothing copied
        // asked again: still there; a chain the store does not hold is unpacked as usual
        AssertKind(ErrorKind.AlreadyExists, () => Snapshots.Prepare("default/4/extract-3", null, Labels((Snapshotter.SnapshotRefLabel, target))));
        Snapshots.Prepare("default/5/extract-4", null, Labels((Snapshotter.SnapshotRefLabel, "sha256:" + new string('c', 64))));
        Snapshots.Prepare("ctr", "sha256:" + chain2);
        Reopen();
        Snapshots.Remove("ctr");
        Snapshots.Remove("sha256:" + chain2);
        Snapshots.Remove(target);
        Assert.True(Store.Exists(chain) && Store.Exists(chain2)); // the image's layers stay: the image has them
    }

    [Fact]
    public void ALayerAnImportIsStillMakingIsNotLent()
    {
        // an image layer no image has yet (an import in progress may still fail and take it away)
        string chain = new('a', 64);
        Store.Create(chain, null, labels: new Dictionary<string, string> { [Strata.Core.Images.ImageStore.LayerLabel] = "" });
        var mounts = Snapshots.Prepare("default/1/extract", null, Labels((Snapshotter.SnapshotRefLabel, "sha256:" + chain)));
        Assert.Single(mounts);
        Assert.Equal(SnapshotKind.Active, Snapshots.Stat("default/1/extract").Kind); // unpacked as usual
    }

    [Fact]
    public void ALayerAnotherNamespaceUnpackedIsReused()
    {
        // namespace a unpacks two layers as containerd does: Prepare with the ref label, write, Commit as NS/N/CHAIN
        string c1 = "sha256:" + new string('1', 64), c2 = "sha256:" + new string('2', 64);
        // (containerd's unpacker commits with the same label, once it has checked the layer's diff id)
        WithMounted(Snapshots.Prepare("a/1/extract-1", null, Labels((Snapshotter.SnapshotRefLabel, c1))),
            dir => File.WriteAllText(Path.Combine(dir, "one"), "1"));
        Snapshots.Commit("a/2/" + c1, "a/1/extract-1", Labels((Snapshotter.SnapshotRefLabel, c1)));
        Snapshots.Prepare("a/3/extract-2", "a/2/" + c1, Labels((Snapshotter.SnapshotRefLabel, c2)));
        Snapshots.Commit("a/4/" + c2, "a/3/extract-2", Labels((Snapshotter.SnapshotRefLabel, c2)));
        int layers = Store.List().Count;
        // namespace b pulls the same image: each layer is there already
        AssertKind(ErrorKind.AlreadyExists, () => Snapshots.Prepare("b/1/extract-1", null, Labels((Snapshotter.SnapshotRefLabel, c1))));
        var first = Snapshots.Stat(c1);
        Assert.Equal((SnapshotKind.Committed, (string?)null, c1), (first.Kind, first.Parent, first.Labels[Snapshotter.SnapshotRefLabel]));
        AssertKind(ErrorKind.AlreadyExists, () => Snapshots.Prepare("b/2/extract-2", c1, Labels((Snapshotter.SnapshotRefLabel, c2))));
        Assert.Equal(c1, Snapshots.Stat(c2).Parent);
        // a third namespace finds what b made, as containerd looks for it: by label and parent
        AssertKind(ErrorKind.AlreadyExists, () => Snapshots.Prepare("c/1/extract-1", null, Labels((Snapshotter.SnapshotRefLabel, c1))));
        Assert.Equal(layers, Store.List().Count); // nothing unpacked twice
        WithMounted(Snapshots.View("b/3/view", c2), dir => Assert.Equal("1", File.ReadAllText(Path.Combine(dir, "one"))));
        Snapshots.Remove("b/3/view");
        // a's snapshots go first: the layers stay for b's; then b's, and the layers go with the last
        Snapshots.Remove("a/4/" + c2);
        Snapshots.Remove("a/2/" + c1);
        Assert.Equal(layers, Store.List().Count);
        Reopen();
        WithMounted(Snapshots.View("b/4/view", c2), dir => Assert.Equal("1", File.ReadAllText(Path.Combine(dir, "one"))));
        Snapshots.Remove("b/4/view");
        Snapshots.Remove(c2);
        Snapshots.Remove(c1);
        Assert.Empty(Snapshots.Walk());
        Assert.Empty(Store.List());
    }

    [Fact]
    public void ANameAloneDoesNotMakeALayerShared()
    {
        // a snapshot any client committed under a chain's name, without the unpacker's label, is not that chain
        string c1 = "sha256:" + new string('1', 64);
        Snapshots.Prepare("a/1/k", null);
        Snapshots.Commit("a/2/" + c1, "a/1/k");
        Snapshots.Prepare("b/1/extract", null, Labels((Snapshotter.SnapshotRefLabel, c1)));
        Assert.Equal(SnapshotKind.Active, Snapshots.Stat("b/1/extract").Kind);
    }

    [Fact]
    public void AChainOnAnotherParentIsNotBorrowed()
    {
        string c1 = "sha256:" + new string('1', 64);
        Snapshots.Prepare("a/1/extract", null, Labels((Snapshotter.SnapshotRefLabel, c1)));
        Snapshots.Commit("a/2/" + c1, "a/1/extract", Labels((Snapshotter.SnapshotRefLabel, c1)));
        Snapshots.Prepare("base", null);
        Snapshots.Commit("base-c", "base");
        // the same chain id over another parent cannot be that layer: unpacked as usual
        var mounts = Snapshots.Prepare("b/1/extract", "base-c", Labels((Snapshotter.SnapshotRefLabel, c1)));
        Assert.Single(mounts);
        Assert.Equal(SnapshotKind.Active, Snapshots.Stat("b/1/extract").Kind);
    }

    [Fact]
    public void ConcurrentPreparesOfOneKeyMakeOneSnapshot()
    {
        Snapshots.Prepare("base", null);
        Snapshots.Commit("base-c", "base");
        var outcomes = new ErrorKind?[8];
        Parallel.For(0, outcomes.Length, i =>
        {
            try
            {
                Snapshots.Prepare("same", "base-c");
            }
            catch (StrataException ex)
            {
                outcomes[i] = ex.Kind;
            }
        });
        Assert.Single(outcomes, o => o is null);
        Assert.All(outcomes.Where(o => o is not null), o => Assert.Equal(ErrorKind.AlreadyExists, o));
        Assert.Equal(2, Store.List().Count);
        Assert.Equal(["base-c", "same"], Snapshots.Walk().Select(i => i.Name));
    }

    [Fact]
    public void RemovingAParentWhileChildrenArePreparedLeavesAConsistentStore()
    {
        for (int round = 0; round < 10; round++)
        {
            Snapshots.Prepare($"p{round}", null);
            Snapshots.Commit($"p{round}-c", $"p{round}");
            int prepared = 0;
            bool removed = false;
            Parallel.For(0, 5, i =>
            {
                try
                {
                    if (i == 0)
                    {
                        Snapshots.Remove($"p{round}-c");
                        removed = true;
                    }
                    else
                    {
                        Snapshots.Prepare($"c{round}-{i}", $"p{round}-c");
                        Interlocked.Increment(ref prepared);
                    }
                }
                catch (StrataException ex) when (ex.Kind is ErrorKind.InUse or ErrorKind.NotFound)
                {
                }
            });
            Assert.True(removed != (prepared > 0), $"round {round}: removed={removed}, children={prepared}");
            var infos = Snapshots.Walk();
            Assert.All(infos, i => Assert.True(i.Parent is null || infos.Any(p => p.Name == i.Parent)));
            Assert.Equal(infos.Count, Store.List().Count);
        }
    }

    sealed class InfoComparer : IEqualityComparer<SnapshotInfo>
    {
        public bool Equals(SnapshotInfo? a, SnapshotInfo? b) =>
            a!.Name == b!.Name && a.Parent == b.Parent && a.Kind == b.Kind && a.Created == b.Created && a.Updated == b.Updated
            && a.Labels.Count == b.Labels.Count && a.Labels.All(p => b.Labels.TryGetValue(p.Key, out var v) && v == p.Value);

        public int GetHashCode(SnapshotInfo i) => i.Name.GetHashCode(StringComparison.Ordinal);
    }
}

public sealed class VfsSnapshotterConformance : SnapshotterConformance
{
    protected override string DriverName => "vfs";
}

/// <summary>btrfs: a snapshot's layer is a subvolume, handed to containerd as a bind.</summary>
public sealed class BtrfsSnapshotterConformance(Strata.Core.Tests.Conformance.BtrfsFixture fixture)
    : SnapshotterConformance, IClassFixture<Strata.Core.Tests.Conformance.BtrfsFixture>
{
    protected override string DriverName => "btrfs";

    protected override string StoreParent(TempRoot temp) => fixture.Fs.MountPoint;
}

public sealed class OverlaySnapshotterConformance : SnapshotterConformance
{
    protected override string DriverName => "overlay";

    [Fact]
    public void MountsAreWhatContainerdsOverlaySnapshotterReturns()
    {
        var bare = Assert.Single(Snapshots.Prepare("a", null));
        Assert.Equal($"bind {bare.Source} rbind,rw", Describe(bare));
        Snapshots.Commit("a-c", "a");
        var active = Assert.Single(Snapshots.Prepare("b", "a-c"));
        Assert.Equal(("overlay", "overlay"), (active.Type, active.Source));
        Assert.Contains(active.Options, o => o.StartsWith("lowerdir=", StringComparison.Ordinal) && !o.Contains(':'));
        Assert.Contains(active.Options, o => o.StartsWith("upperdir=/", StringComparison.Ordinal));
        Assert.Contains(active.Options, o => o.StartsWith("workdir=/", StringComparison.Ordinal));
        Assert.Null(active.Target);
        var single = Assert.Single(Snapshots.View("v1", "a-c"));
        Assert.Equal($"bind {bare.Source} rbind,ro", Describe(single with { Source = Posix.RealPath(single.Source) }));
        Snapshots.Commit("b-c", "b");
        var view = Assert.Single(Snapshots.View("v2", "b-c"));
        Assert.Equal("overlay", view.Type);
        Assert.Contains("ro", view.Options);
        Assert.Equal(2, view.Options.Single(o => o.StartsWith("lowerdir=", StringComparison.Ordinal)).Split(':').Length);
        Assert.DoesNotContain(view.Options, o => o.StartsWith("upperdir=", StringComparison.Ordinal) || o.StartsWith("workdir=", StringComparison.Ordinal));
    }
}

/// <summary>thin: a snapshot's layer is a thin device, handed to containerd as its filesystem's mount of the device
/// (a loop device over the pool server's FUSE export here), attached while the snapshot may be mounted.</summary>
public sealed class ThinSnapshotterConformance : SnapshotterConformance
{
    protected override string DriverName => "thin";

    protected override IReadOnlyDictionary<string, string> DriverOptions => new Dictionary<string, string> { ["thin.basesize"] = "512M" };

    /// <summary>A device nobody mounted is let go when the daemon stops, and may come back as another loop device.</summary>
    protected override string AcrossRestart(string mount) => System.Text.RegularExpressions.Regex.Replace(mount, @"/dev/loop[0-9]+", "/dev/loopN");

    [Fact]
    public void MountsAreWhatContainerdsDevmapperSnapshotterReturns()
    {
        var active = Assert.Single(Snapshots.Prepare("a", null));
        Assert.Equal("ext4", active.Type);
        Assert.StartsWith("/dev/loop", active.Source);
        Assert.Equal("rw", active.Options[^1]);
        Assert.Null(active.Target);
        Assert.Equal(Describe(active), Describe(Assert.Single(Snapshots.Mounts("a")))); // the same device again
        WithMounted([active], dir => File.WriteAllText(Path.Combine(dir, "f"), "x"));
        Snapshots.Commit("a-c", "a");
        var view = Assert.Single(Snapshots.View("v", "a-c"));
        Assert.Equal("ro", view.Options[^1]);
        Assert.StartsWith("/dev/loop", view.Source);
    }

    [Fact]
    public void AMountedSnapshotKeepsItsDeviceAcrossARestart()
    {
        var mounts = Snapshots.Prepare("a", null);
        string target = Temp.Dir("held");
        var m = Assert.Single(mounts);
        Shell.Run("mount", "-t", m.Type, "-o", string.Join(',', m.Options), m.Source, target).Check("mount");
        try
        {
            File.WriteAllText(Path.Combine(target, "before"), "1");
            Reopen(); // the daemon restarts while containerd keeps the snapshot mounted
            Assert.Equal(m.Source, Assert.Single(Snapshots.Mounts("a")).Source);
            File.WriteAllText(Path.Combine(target, "after"), "2");
        }
        finally
        {
            Shell.Run("umount", target).Check("umount");
        }
        Snapshots.Commit("a-c", "a");
        WithMounted(Snapshots.View("v", "a-c"), dir => Assert.Equal(["after", "before"], Directory.GetFiles(dir).Select(Path.GetFileName).Order()));
    }

    /// <summary>thin counts what the device maps, as containerd's devmapper; inodes are not counted.</summary>
    [Fact]
    public override void UsageCountsTheSnapshotsOwnLayer()
    {
        var mounts = Snapshots.Prepare("a", null);
        long empty = Snapshots.Usage("a").Bytes;
        WithMounted(mounts, dir =>
        {
            File.WriteAllBytes(Path.Combine(dir, "big"), new byte[4 << 20].Select((_, i) => (byte)(i | 1)).ToArray());
            Posix.SyncFileSystem(dir);
        });
        var used = Snapshots.Usage("a");
        Assert.True(used.Bytes >= empty + (4 << 20), $"{empty} -> {used.Bytes} bytes");
        Assert.Equal(0, used.Inodes);
    }
}
