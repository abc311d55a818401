using Strata.Native;
using Strata.Testing;
using static Strata.Core.Tests.Conformance.TreeWriter;

namespace Strata.Core.Tests.Conformance;

/// <summary>Snapshots of a container's layer (<see cref="LayerStore.CopyLayer"/>, <see cref="LayerStore.RestoreLayer"/>,
/// the driver's <see cref="ILayerSnapshots"/>): a rollback returns every mode, owner, xattr, hardlink and byte; removing
/// snapshots in any order leaves the container and the other snapshots as they were.</summary>
public abstract partial class DriverConformance
{
    /// <summary>Whether the driver snapshots layers; one that does not (overlay, until its snapshots freeze the upper
    /// directory into the chain) must refuse in one line, leaving nothing behind.</summary>
    bool Snapshots()
    {
        if (Store.Driver is ILayerSnapshots) return true;
        Store.Create("x", null, LayerKind.ReadWrite);
        var ex = Assert.Throws<StrataException>(() => Store.CopyLayer("x", "x.s1"));
        Assert.Equal((ErrorKind.Unsupported, $"the {DriverName} driver cannot snapshot layers (thin, btrfs and vfs can)"), (ex.Kind, ex.Message));
        Assert.Equal(ErrorKind.Unsupported, Assert.Throws<StrataException>(() => Store.RestoreLayer("x", "x")).Kind);
        Assert.Equal(["x"], Store.List().Select(l => l.Id));
        return false;
    }

    List<NodeInfo> Tree(string id) => View(id, dir => TreeSnapshot.Capture(dir));

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
        Directory.Move(Path.Combine(dir, "d"), Path.Combine(dir, "moved"));
        Directory.Delete(Path.Combine(dir, "a subdir"), recursive: true);
    }

    [SkippableFact]
    public void ARollbackReturnsTheContainerExactlyToItsSnapshot()
    {
        if (!Snapshots()) return;
        Container();
        var taken = Tree("c");
        var changes = Store.Changes("c").Select(c => c.ToString()).ToList();
        var snapshot = Store.CopyLayer("c", "c.s1");
        Assert.Equal(("base", LayerKind.ReadOnly), (snapshot.Parent, snapshot.Kind));
        Edit("c", ChangeEverything);
        Assert.NotEqual(taken.Select(n => n.Describe(MtimePrecision.Ignore)), Tree("c").Select(n => n.Describe(MtimePrecision.Ignore)));
        TreeSnapshot.AssertSame(taken, Tree("c.s1"), MtimePrecision.Ignore); // the snapshot kept the moment

        string dir = Store.Mount("c");
        Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => Store.RestoreLayer("c", "c.s1")).Kind); // mounted
        Store.Unmount("c");
        Store.RestoreLayer("c", "c.s1");
        TreeSnapshot.AssertSame(taken, Tree("c"), MtimePrecision.Ignore);
        Assert.Equal(changes, Store.Changes("c").Select(c => c.ToString()));
        // the container writes on after it, and the snapshot does not see it
        Edit("c", d => File(d, "later", "x"));
        TreeSnapshot.AssertSame(taken, Tree("c.s1"), MtimePrecision.Ignore);
        Reopen(); // records and data agree after a restart
        Assert.True(View("c", d => Exists(d, "later")));
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => Store.RestoreLayer("c", "base")).Kind); // not a sibling
    }

    [SkippableFact]
    public void ASnapshotOfAMountedContainerHoldsWhatItHadWritten()
    {
        if (!Snapshots()) return;
        Container();
        string dir = Store.Mount("c");
        try
        {
            System.IO.File.WriteAllText(Path.Combine(dir, "unsynced"), "in the page cache only");
            Store.CopyLayer("c", "c.live");
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
        if (!Snapshots()) return;
        Container();
        var trees = new Dictionary<string, List<NodeInfo>>();
        for (int i = 0; i < 10; i++)
        {
            Edit("c", d =>
            {
                File(d, $"f{i}", new string((char)('a' + i), 1000 * (i + 1)));
                if (i > 0) System.IO.File.Delete(Path.Combine(d, $"f{i - 1}"));
            });
            Store.CopyLayer("c", $"c.s{i}");
            trees[$"c.s{i}"] = Tree($"c.s{i}");
        }
        Edit("c", d => File(d, "final", "z"));
        var final = Tree("c");
        var random = new Random(24); // a fixed seed: the order is the same in every run
        var order = trees.Keys.OrderBy(_ => random.Next()).ToList();
        foreach (var id in order)
        {
            Store.Remove(id);
            trees.Remove(id);
            TreeSnapshot.AssertSame(final, Tree("c"), MtimePrecision.Ignore);
            foreach (var (left, tree) in trees) TreeSnapshot.AssertSame(tree, Tree(left), MtimePrecision.Ignore);
        }
        Assert.Equal(["base", "c"], Store.List().Select(l => l.Id).Order(StringComparer.Ordinal));
        Store.Remove("c");
        Store.Remove("base");
        Assert.Empty(Store.Driver.List()); // every snapshot's data went with it
    }
}
