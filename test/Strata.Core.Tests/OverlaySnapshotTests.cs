using Strata.Archive;
using Strata.Native;
using Strata.Testing;
using static Strata.Core.Tests.Conformance.TreeWriter;

namespace Strata.Core.Tests;

/// <summary>Overlay's snapshots in the chain (<see cref="LayerStore.FreezeLayer"/>, <see cref="LayerStore.ResetLayer"/>,
/// <see cref="LayerStore.MergeLayer"/>) where they are particular to overlay: a merge keeps what deletions and opaque
/// directories meant (a directory the container copied up from an opaque one, one made where a snapshot deleted it),
/// by renames and by copies; and each change, failing half-way on a real error (an immutable file: EPERM), is finished
/// by the next open, every tree as it would have been. The shared contract is in Conformance/.</summary>
public sealed class OverlaySnapshotTests : IDisposable
{
    readonly TempRoot _temp = new();
    LayerStore _store;

    public OverlaySnapshotTests() => _store = Open();

    public void Dispose()
    {
        _store.Dispose();
        _temp.Dispose();
    }

    LayerStore Open() => LayerStore.Open(new StoreOptions { Root = _temp.Combine("store"), Driver = "overlay" });

    void Reopen()
    {
        _store.Dispose();
        _store = Open();
    }

    void Edit(string id, Action<string> edit)
    {
        string dir = _store.Mount(id);
        try
        {
            edit(dir);
        }
        finally
        {
            _store.Unmount(id);
        }
    }

    List<NodeInfo> Tree(string id)
    {
        string dir = _store.Mount(id);
        try
        {
            return TreeSnapshot.Capture(dir);
        }
        finally
        {
            _store.Unmount(id);
        }
    }

    string Upper(string id) => _store.Metadata(id)["UpperDir"];

    /// <summary>base: x/ with two files, a file, d/ with one; c over it, which replaces x/ by a new one (opaque in its
    /// upper dir), deletes the file and d/ (whiteouts), then is frozen into s.</summary>
    void ContainerWithDeletionsFrozen()
    {
        _store.Create("base", null);
        Edit("base", d =>
        {
            File(d, "x/x1", "1");
            File(d, "x/x2", "2");
            File(d, "f", "file");
            File(d, "d/d1", "d1");
        });
        _store.Create("c", "base", LayerKind.ReadWrite);
        Edit("c", d =>
        {
            Directory.Delete(Path.Combine(d, "x"), recursive: true);
            File(d, "x/new", "new");
            System.IO.File.Delete(Path.Combine(d, "f"));
            Directory.Delete(Path.Combine(d, "d"), recursive: true);
        });
        Assert.Contains(Posix.LgetXattrs(Path.Combine(Upper("c"), "x")), x => x.Key == Whiteouts.OverlayOpaqueXattr);
        _store.FreezeLayer("c", "s");
    }

    /// <summary>Over the frozen deletions: a file added in x/ (overlayfs copies x/ up without its opacity) and d/ made again
    /// (a directory over a whiteout in a lower layer, not opaque), so only the merge's rules keep base's x1, x2 and d1 out.</summary>
    static void WriteOverTheDeletions(string d)
    {
        File(d, "x/added", "over the opaque one");
        File(d, "d/again", "over the whiteout");
        File(d, "f", "a file again");
    }

    [Fact]
    public void AMergeByRenamesKeepsDeletionsAndOpaqueDirectoriesMeaningWhatTheyMeant()
    {
        ContainerWithDeletionsFrozen();
        Edit("c", WriteOverTheDeletions);
        var before = Tree("c");
        Assert.DoesNotContain(before, n => n.Path is "x/x1" or "d/d1");
        _store.MergeLayer("s");
        Assert.Equal("base", _store.Inspect("c").Parent);
        Assert.False(_store.Exists("s"));
        TreeSnapshot.AssertSame(before, Tree("c"), MtimePrecision.Ignore);
        foreach (var dir in new[] { "x", "d" }) // the container's copies stop base's now
            Assert.Contains(Posix.LgetXattrs(Path.Combine(Upper("c"), dir)), x => x.Key == Whiteouts.OverlayOpaqueXattr && x.Value is [(byte)'y']);
        Assert.Equal(["base", "c"], _store.Driver.List().Order(StringComparer.Ordinal));
    }

    [Fact]
    public void AMergeByCopiesIntoALaterSnapshotKeepsItsTreeToo()
    {
        ContainerWithDeletionsFrozen();
        Edit("c", WriteOverTheDeletions);
        _store.FreezeLayer("c", "s2");
        var second = Tree("s2");
        _store.ResetLayer("c", "s"); // s has two layers over it: s2 (copied into) and c (renamed into)
        Edit("c", d => File(d, "x/only-in-c", "c"));
        var current = Tree("c");
        _store.MergeLayer("s");
        TreeSnapshot.AssertSame(second, Tree("s2"), MtimePrecision.Ignore);
        TreeSnapshot.AssertSame(current, Tree("c"), MtimePrecision.Ignore);
        Assert.Equal("base", _store.Inspect("s2").Parent);
        Assert.Equal("base", _store.Inspect("c").Parent);
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(Upper("s2"), "*", SearchOption.AllDirectories), p => Path.GetFileName(p).StartsWith(".strata-fold", StringComparison.Ordinal));
    }

    /// <summary>Makes <paramref name="path"/> immutable (chattr +i): renaming or deleting it fails with EPERM, a real error
    /// half-way through a change; skipped where the filesystem has no such flag.</summary>
    static IDisposable Immutable(string path)
    {
        var r = Shell.Run("chattr", "+i", path);
        Skip.If(r.ExitCode != 0, $"chattr +i is not supported here: {r.Stderr.Trim()}");
        return new Undo(() => Shell.Run("chattr", "-i", path).Check("chattr -i"));
    }

    sealed class Undo(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    [SkippableFact]
    public void AMergeThatFailsHalfWayIsFinishedByTheNextOpen()
    {
        ContainerWithDeletionsFrozen();
        Edit("c", d =>
        {
            WriteOverTheDeletions(d);
            for (int i = 0; i < 50; i++) File(d, $"many/{i:D2}", $"{i}");
        });
        _store.FreezeLayer("c", "s2");
        Edit("c", d => File(d, "many/00", "changed"));
        var before = Tree("c");
        var ex = Record.Exception(() =>
        {
            using (Immutable(Path.Combine(Upper("s2"), "many", "25")))
                _store.MergeLayer("s2"); // half of many/ renamed into c, then EPERM
        });
        Assert.NotNull(ex);
        Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => _store.Mount("c")).Kind); // busy until finished
        Assert.True(_store.Exists("s2"));
        Reopen();
        Assert.Contains(_store.Swept, s => s.Contains("merge of layer s2", StringComparison.Ordinal) && s.EndsWith("finished", StringComparison.Ordinal));
        Assert.False(_store.Exists("s2"));
        Assert.Equal("s", _store.Inspect("c").Parent);
        TreeSnapshot.AssertSame(before, Tree("c"), MtimePrecision.Ignore);
    }

    [SkippableFact]
    public void AFreezeAndARollbackThatFailHalfWayAreFinishedByTheNextOpen()
    {
        ContainerWithDeletionsFrozen();
        Edit("c", WriteOverTheDeletions);
        var frozen = Tree("c");
        string layerDir = Path.GetDirectoryName(Upper("c"))!;
        using (Immutable(_temp.Combine("store", "overlay", "l"))) // c's diff/ moves into s2, then s2's link cannot be made
        {
            Assert.NotNull(Record.Exception(() => _store.FreezeLayer("c", "s2")));
            Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => _store.Mount("c")).Kind);
            Reopen(); // the cause still there: not finished, and both layers stay out of reach
            Assert.Contains(_store.Swept, s => s.StartsWith("layer s2: the change 'freeze:c' a crash cut short was not finished", StringComparison.Ordinal));
            Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => _store.Mount("c")).Kind);
            Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => _store.Remove("c")).Kind);
        }
        Reopen();
        Assert.Equal("s2", _store.Inspect("c").Parent);
        TreeSnapshot.AssertSame(frozen, Tree("s2"), MtimePrecision.Ignore);
        TreeSnapshot.AssertSame(frozen, Tree("c"), MtimePrecision.Ignore);

        Edit("c", d => File(d, "later", "x"));
        using (Immutable(layerDir)) // its diff/ cannot move out
            Assert.NotNull(Record.Exception(() => _store.ResetLayer("c", "s2")));
        Reopen();
        Assert.Contains(_store.Swept, s => s.StartsWith("rollback of layer c to s2", StringComparison.Ordinal));
        TreeSnapshot.AssertSame(frozen, Tree("c"), MtimePrecision.Ignore);
    }

    [SkippableFact]
    public void AFreezeThatFailsBeforeItBeganIsGivenUp()
    {
        ContainerWithDeletionsFrozen();
        var tree = Tree("c");
        using (Immutable(_temp.Combine("store", "overlay"))) // the new layer's directory cannot appear
            Assert.NotNull(Record.Exception(() => _store.FreezeLayer("c", "s2")));
        Assert.False(_store.Exists("s2"));
        Assert.False(System.IO.File.Exists(_temp.Combine("store", "layers", "s2.json")));
        TreeSnapshot.AssertSame(tree, Tree("c"), MtimePrecision.Ignore); // and c is free again
        _store.FreezeLayer("c", "s2");
        Assert.Equal("s2", _store.Inspect("c").Parent);
    }

    [Fact]
    public void AChainIsNotMadeLongerThanOverlayfsMounts()
    {
        ContainerWithDeletionsFrozen();
        var ex = Assert.Throws<StrataException>(() => ((ILayerChains)_store.Driver).CheckChainLength(501));
        Assert.Equal((ErrorKind.Unsupported, "a layer over 501 layers is more than overlayfs mounts (500); remove a snapshot first"), (ex.Kind, ex.Message));
        ((ILayerChains)_store.Driver).CheckChainLength(500);
        _store.Create("lone", null, LayerKind.ReadWrite);
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => _store.FreezeLayer("lone", "l2")).Kind); // no parent
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => _store.MergeLayer("c")).Kind); // not read-only
        Assert.Equal(["base", "c", "lone", "s"], _store.List().Select(l => l.Id).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void ChangesToAChainAreRefusedWhileAnyLayerOfItIsMounted()
    {
        ContainerWithDeletionsFrozen();
        string dir = _store.Mount("c");
        try
        {
            Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => _store.MergeLayer("s")).Kind);
            Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => _store.ResetLayer("c", "s")).Kind);
            Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => _store.FreezeLayer("c", "s2")).Kind);
        }
        finally
        {
            _store.Unmount("c");
        }
        Assert.Equal(["base", "c", "s"], _store.List().Select(l => l.Id).Order(StringComparer.Ordinal));
        Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => _store.FreezeLayer("s", "s3")).Kind); // has a layer over it
        Assert.Equal(ErrorKind.AlreadyExists, Assert.Throws<StrataException>(() => _store.FreezeLayer("c", "s")).Kind);
    }
}
