using Strata.Thin.Metadata;

namespace Strata.Thin.Tests;

/// <summary>The copy-on-write B+tree on its own, where whole levels are cheap to build: removals that empty
/// nodes and collapse roots never change a node another tree shares.</summary>
public sealed class MappingTreeTests
{
    /// <summary>Found in review: collapsing a root whose only child is an internal node with one child set that
    /// shared child's count to 0 and lost the other tree's subtree.</summary>
    [Fact]
    public void CollapsingARootLeavesASharedChildAlone()
    {
        const int perLeaf = Node.Capacity;
        int keys = perLeaf * perLeaf + 2 * perLeaf; // three levels: root -> [Y1 (full), Y2 (a few leaves)]
        var meta = new MetadataSpace(new MemoryBlockStore(64L << 20), 16384);
        var data = new DataSpace(meta, (ulong)keys + 10);
        var tree = new MappingTree(meta, data);
        ulong root = 0;
        for (ulong k = 0; k < (ulong)keys; k++)
        {
            Assert.True(data.TryAllocate(out ulong d));
            root = tree.Insert(root, k, d, out _);
        }
        var top = meta.Load(root);
        Assert.False(top.Leaf);
        Assert.Equal(2, top.Count);
        var y2 = meta.Load(top.Values[1]);
        Assert.False(y2.Leaf);
        ulong y2First = top.Keys[1];
        // leave Y2 with one leaf: remove the keys of all its leaves but the first
        var y2Keys = tree.Range(root, y2First).Select(p => p.Key).ToList();
        var firstLeaf = meta.Load(y2.Values[0]);
        var keep = new HashSet<ulong>(firstLeaf.Keys.Take(firstLeaf.Count));
        foreach (var k in y2Keys.Where(k => !keep.Contains(k)))
        {
            root = tree.Remove(root, k, out var removed);
            data.Unref(removed!.Value);
        }
        Assert.Equal(1, meta.Load(meta.Load(root).Values[1]).Count);
        // a snapshot now shares everything; then the first tree drops all of Y1: its root collapses twice
        ulong snapshot = root;
        tree.Share(snapshot);
        var before = tree.Range(snapshot).ToList();
        foreach (var k in tree.Range(root, 0, y2First).Select(p => p.Key).ToList())
        {
            root = tree.Remove(root, k, out var removed);
            data.Unref(removed!.Value);
        }
        Assert.True(meta.Load(root).Leaf, "the first tree should be one leaf now");
        Assert.Equal(keep.Order(), tree.Range(root).Select(p => p.Key));
        Assert.Equal(before, tree.Range(snapshot).ToList()); // the snapshot is whole
        // and every count still matches: dropping both trees frees every block
        tree.Drop(root);
        tree.Drop(snapshot);
        Assert.Equal(2UL, meta.Used);
        Assert.Equal(0UL, data.Used);
    }
}
