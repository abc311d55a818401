using Strata.Native;
using Strata.Testing;
using static Strata.Core.Tests.Conformance.TreeWriter;

namespace Strata.Core.Tests.Conformance;

/// <summary>Snapshots of a container's layer, as each driver makes them: copies beside it (<see cref="LayerStore.CopyLayer"/>,
/// <see cref="LayerStore.RestoreLayer"/>, the driver's <see cref="ILayerSnapshots"/>: thin, btrfs, vfs) or its changes
/// frozen into its chain (<see cref="LayerStore.FreezeLayer"/>, <see cref="LayerStore.ResetLayer"/>,
/// <see cref="LayerStore.MergeLayer"/>, the driver's <see cref="ILayerChains"/>: overlay). A rollback returns every
/// mode, owner, xattr, hardlink and byte; removing snapshots in any order leaves the container and the other snapshots
/// as they were.</summary>
public abstract partial class DriverConformance
{
    bool InChain => Store.SnapshotsInChain;

    /// <summary>A snapshot of layer <paramref name="c"/> as the driver makes them.</summary>
    Layer Snap(string c, string snapshot)
    {
        Assert.True(Store.Driver is ILayerSnapshots or ILayerChains, $"the {DriverName} driver snapshots layers in neither way");
        if (Store.Driver is ILayerChains { WhyNoChains: { } why })
        {
            // refused in one line, before anything changes; the test is reported skipped with the reason
            Assert.Equal((ErrorKind.Unsupported, why), Assert.Throws<StrataException>(() => Store.FreezeLayer(c, snapshot)) is var ex ? (ex.Kind, ex.Message) : default);
            Assert.False(Store.Exists(snapshot));
            Skip.If(true, why);
        }
        return InChain ? Store.FreezeLayer(c, snapshot) : Store.CopyLayer(c, snapshot);
    }

    void Rollback(string c, string snapshot)
    {
        if (InChain) Store.ResetLayer(c, snapshot);
        else Store.RestoreLayer(c, snapshot);
    }

    void Drop(string snapshot)
    {
        if (InChain) Store.MergeLayer(snapshot);
        else Store.Remove(snapshot);
    }

    List<NodeInfo> Tree(string id) => View(id, dir => TreeSnapshot.Capture(dir));

    /// <summary>In a chain, the tree with hardlink groups of one name (a file linked only to names the tree does not show)
    /// as plain files: a copy keeps only the links it can see. Copies beside the container keep them all.</summary>
    List<NodeInfo> LinksShown(List<NodeInfo> tree)
    {
        if (!InChain) return tree;
        var groups = tree.Where(n => n.LinkGroup.Length > 0).GroupBy(n => n.LinkGroup).ToDictionary(g => g.Key, g => g.Count());
        return [.. tree.Select(n => n.LinkGroup.Length > 0 && groups[n.LinkGroup] == 1 ? n with { LinkGroup = "" } : n)];
    }

    /// <summary>An image layer and a container over it with a tree of every kind of thing a rollback must bring back.</summary>
    void Container()
    {
        CreateBase("base");
        Store.Create("c", "base", LayerKind.ReadWrite);
        Edit("c", dir =>
        {
            File(dir, "a", "before", 0x1A4, 7, 8);
            Dir(dir, "d/e", 0x1C0, 3, 4);
            File(dir, "d/e/f", "deep");
            Xattr(dir, "a", "user.k", "v1");
            Xattr(dir, "d", "trusted.t", "x");
            System.IO.File.CreateSymbolicLink(Path.Combine(dir, "sym"), "a");
            Posix.LinkAt(FileDescriptor.Cwd, Path.Combine(dir, "a"), FileDescriptor.Cwd, Path.Combine(dir, "hard"));
            System.IO.File.Delete(Path.Combine(dir, "a file")); // a whiteout of the base's
        });
    }

    static void ChangeEverything(string dir)
    {
        File(dir, "added", "new");
        System.IO.File.WriteAllText(Path.Combine(dir, "a"), "after, and longer"); // hardlinked: both names change
        System.IO.File.Delete(Path.Combine(dir, "d/e/f"));
        Posix.ChmodAt(FileDescriptor.Cwd, Path.Combine(dir, "d"), 0x1FF);
        Xattr(dir, "a", "user.k", "v2");
        Posix.LremoveXattr(Path.Combine(dir, "d"), "trusted.t");
        // mv: in a chain d is in a lower layer, which overlayfs without redirect_dir renames by copying (EXDEV)
        Shell.Run("mv", Path.Combine(dir, "d"), Path.Combine(dir, "moved")).Check("mv");
        Directory.Delete(Path.Combine(dir, "a subdir"), recursive: true);
    }

    [SkippableFact]
    public void ARollbackReturnsTheContainerExactlyToItsSnapshot()
    {
        Container();
        var taken = Tree("c");
        var changes = Store.Changes("c", "base").Select(c => c.ToString()).ToList();
        var snapshot = Snap("c", "c.s1");
        Assert.Equal(("base", LayerKind.ReadOnly), (snapshot.Parent, snapshot.Kind));
        Edit("c", ChangeEverything);
        Assert.NotEqual(taken.Select(n => n.Describe(MtimePrecision.Ignore)), Tree("c").Select(n => n.Describe(MtimePrecision.Ignore)));
        TreeSnapshot.AssertSame(taken, Tree("c.s1"), MtimePrecision.Ignore); // the snapshot kept the moment

        string dir = Store.Mount("c");
        Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => Rollback("c", "c.s1")).Kind); // mounted
        Store.Unmount("c");
        Rollback("c", "c.s1");
        TreeSnapshot.AssertSame(taken, Tree("c"), MtimePrecision.Ignore);
        Assert.Equal(changes, Store.Changes("c", "base").Select(c => c.ToString()));
        // the container writes on after it, and the snapshot does not see it
        Edit("c", d => File(d, "later", "x"));
        TreeSnapshot.AssertSame(taken, Tree("c.s1"), MtimePrecision.Ignore);
        Reopen(); // records and data agree after a restart
        Assert.True(View("c", d => Exists(d, "later")));
        if (InChain) Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => Store.ResetLayer("c", "c")).Kind);
        else Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => Store.RestoreLayer("c", "base")).Kind); // not a sibling
    }

    [SkippableFact]
    public void ASnapshotOfAMountedContainerHoldsWhatItHadWritten()
    {
        Container();
        string dir = Store.Mount("c");
        try
        {
            System.IO.File.WriteAllText(Path.Combine(dir, "unsynced"), "in the page cache only");
            if (InChain)
            {
                // the directories the mount is made of cannot move under it: refused, nothing changed
                Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => Snap("c", "c.live")).Kind);
                Assert.Equal(["base", "c"], Store.List().Select(l => l.Id).Order(StringComparer.Ordinal));
                Assert.Equal("base", Store.Inspect("c").Parent);
                return;
            }
            Snap("c", "c.live");
        }
        finally
        {
            Store.Unmount("c");
        }
        Assert.Equal("in the page cache only", View("c.live", d => Read(d, "unsynced")));
    }

    [SkippableFact]
    public void TenNestedSnapshotsRemovedInRandomOrderLeaveTheContainerAndTheRestAsTheyWere()
    {
        Container();
        var trees = new Dictionary<string, List<NodeInfo>>();
        for (int i = 0; i < 10; i++)
        {
            Edit("c", d =>
            {
                File(d, $"f{i}", new string((char)('a' + i), 1000 * (i + 1)));
                if (i > 0) System.IO.File.Delete(Path.Combine(d, $"f{i - 1}"));
            });
            Snap("c", $"c.s{i}");
            trees[$"c.s{i}"] = Tree($"c.s{i}");
        }
        Edit("c", d => File(d, "final", "z"));
        var final = Tree("c");
        var random = new Random(24); // a fixed seed: the order is the same in every run
        var order = trees.Keys.OrderBy(_ => random.Next()).ToList();
        foreach (var id in order)
        {
            Drop(id);
            trees.Remove(id);
            TreeSnapshot.AssertSame(final, Tree("c"), MtimePrecision.Ignore);
            foreach (var (left, tree) in trees) TreeSnapshot.AssertSame(tree, Tree(left), MtimePrecision.Ignore);
        }
        Assert.Equal(["base", "c"], Store.List().Select(l => l.Id).Order(StringComparer.Ordinal));
        Store.Remove("c");
        Store.Remove("base");
        Assert.Empty(Store.Driver.List()); // every snapshot's data went with it
    }

    [SkippableFact]
    public void RemovingASnapshotRolledBackToUnderALaterOneKeepsTheContainerAndTheLaterOne()
    {
        Container();
        var first = Tree("c");
        Snap("c", "c.s1");
        Edit("c", ChangeEverything);
        Snap("c", "c.s2");
        var second = Tree("c.s2");
        Rollback("c", "c.s1"); // in a chain: c.s1 now has two layers over it, c.s2 and the container
        TreeSnapshot.AssertSame(first, Tree("c"), MtimePrecision.Ignore);
        Edit("c", d =>
        {
            File(d, "after rollback", "x");
            System.IO.File.Delete(Path.Combine(d, "sym"));
        });
        var current = Tree("c");
        Drop("c.s1"); // overlay: copied into c.s2, renamed into the container
        TreeSnapshot.AssertSame(current, Tree("c"), MtimePrecision.Ignore);
        // a copy keeps a file's links with the names that layer shows: "hard", whose other name c.s2 hides, is a file of
        // its own there now (before, overlayfs showed the link count of c.s1's inode)
        TreeSnapshot.AssertSame(LinksShown(second), LinksShown(Tree("c.s2")), MtimePrecision.Ignore);
        Reopen();
        TreeSnapshot.AssertSame(current, Tree("c"), MtimePrecision.Ignore);
        TreeSnapshot.AssertSame(LinksShown(second), LinksShown(Tree("c.s2")), MtimePrecision.Ignore);
        Assert.Equal(["base", "c", "c.s2"], Store.List().Select(l => l.Id).Order(StringComparer.Ordinal));
        Rollback("c", "c.s2");
        TreeSnapshot.AssertSame(LinksShown(second), LinksShown(Tree("c")), MtimePrecision.Ignore);
        Drop("c.s2");
        TreeSnapshot.AssertSame(LinksShown(second), LinksShown(Tree("c")), MtimePrecision.Ignore);
        Store.Remove("c");
        Store.Remove("base");
        Assert.Empty(Store.Driver.List());
    }
}
