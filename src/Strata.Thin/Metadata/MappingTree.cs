namespace Strata.Thin.Metadata;

/// <summary>
/// Copy-on-write B+tree operations on roots in a <see cref="MetadataSpace"/>. A tree is named by its root block
/// (0: empty). Changing a tree never writes a node the last commit or another tree may still see: the path to the
/// change is shadowed (copied to blocks of this transaction) unless it already belongs to this transaction alone,
/// and every operation returns the tree's new root. Sharing is by reference count: a snapshot adds a reference
/// to a root; shadowing a shared node gives its children one more reference each (data blocks, through
/// <see cref="DataSpace"/>, for a leaf). Keys are virtual block numbers, values data block numbers.
/// </summary>
sealed class MappingTree(MetadataSpace meta, DataSpace data)
{
    public bool TryLookup(ulong root, ulong key, out ulong value)
    {
        value = 0;
        if (root == 0) return false;
        var node = meta.Load(root);
        while (!node.Leaf) node = meta.Load(node.Values[node.ChildFor(key)]);
        int i = node.LowerBound(key);
        if (i < node.Count && node.Keys[i] == key)
        {
            value = node.Values[i];
            return true;
        }
        return false;
    }

    /// <summary>Pairs with keys in [<paramref name="from"/>, <paramref name="to"/>), in key order.</summary>
    public IEnumerable<(ulong Key, ulong Value)> Range(ulong root, ulong from = 0, ulong to = ulong.MaxValue)
    {
        if (root == 0) yield break;
        var stack = new Stack<(Node Node, int Index)>();
        var node = meta.Load(root);
        int start = node.Leaf ? node.LowerBound(from) : node.ChildFor(from);
        stack.Push((node, start));
        while (stack.Count > 0)
        {
            var (n, i) = stack.Pop();
            if (i >= n.Count) continue;
            if (n.Leaf)
            {
                for (; i < n.Count; i++)
                {
                    if (n.Keys[i] >= to) yield break;
                    if (n.Keys[i] >= from) yield return (n.Keys[i], n.Values[i]);
                }
                continue;
            }
            if (n.Keys[i] >= to) yield break;
            stack.Push((n, i + 1));
            var child = meta.Load(n.Values[i]);
            stack.Push((child, child.Leaf ? child.LowerBound(from) : child.ChildFor(from)));
        }
    }

    /// <summary>A copy of <paramref name="block"/> this transaction alone owns (the node itself when it already does).</summary>
    Node Shadow(ulong block)
    {
        var node = meta.Load(block);
        if (meta.IsFresh(block) && meta.Refs(block) == 1) return node;
        var copy = meta.NewNode(node.Leaf);
        copy.CopyFrom(node);
        if (meta.Refs(block) == 1) meta.Unref(block); // the only owner moves to the copy: the children keep their counts
        else
        {
            meta.Unref(block);
            for (int i = 0; i < node.Count; i++)
                if (node.Leaf) data.Ref(node.Values[i]);
                else meta.Ref(node.Values[i]);
        }
        return copy;
    }

    /// <summary>Sets <paramref name="key"/> to <paramref name="value"/>; returns the new root and the value it
    /// replaced (whose reference the caller now holds).</summary>
    public ulong Insert(ulong root, ulong key, ulong value, out ulong? replaced)
    {
        replaced = null;
        if (root == 0)
        {
            var leaf = meta.NewNode(leaf: true);
            leaf.InsertAt(0, key, value);
            return leaf.Block;
        }
        var top = Shadow(root);
        if (top.Full)
        {
            var grown = meta.NewNode(leaf: false);
            grown.InsertAt(0, top.Keys[0], top.Block);
            Split(grown, 0, top, key);
            top = grown;
        }
        var node = top;
        while (!node.Leaf)
        {
            int i = node.ChildFor(key);
            var child = Shadow(node.Values[i]);
            node.Values[i] = child.Block;
            if (child.Full)
            {
                Split(node, i, child, key);
                if (key >= node.Keys[i + 1])
                {
                    i++;
                    child = meta.Load(node.Values[i]);
                }
            }
            if (key < node.Keys[i]) node.Keys[i] = key;
            node = child;
        }
        int at = node.LowerBound(key);
        if (at < node.Count && node.Keys[at] == key)
        {
            replaced = node.Values[at];
            node.Values[at] = value;
        }
        else node.InsertAt(at, key, value);
        return top.Block;
    }

    /// <summary>Splits the full child <paramref name="index"/> of <paramref name="parent"/> (both this transaction's).
    /// A key going past the child's end (sequential writes) leaves the child full, so that filled trees stay dense.</summary>
    void Split(Node parent, int index, Node child, ulong key)
    {
        int keep = key > child.Keys[child.Count - 1] ? child.Count - 1 : child.Count / 2;
        var sibling = meta.NewNode(child.Leaf);
        Array.Copy(child.Keys, keep, sibling.Keys, 0, child.Count - keep);
        Array.Copy(child.Values, keep, sibling.Values, 0, child.Count - keep);
        sibling.Count = child.Count - keep;
        child.Count = keep;
        parent.InsertAt(index + 1, sibling.Keys[0], sibling.Block);
    }

    /// <summary>Removes <paramref name="key"/>; returns the new root and the value it had (whose reference the
    /// caller now holds), or the same root and null when it was not there.</summary>
    public ulong Remove(ulong root, ulong key, out ulong? removed)
    {
        removed = null;
        if (!TryLookup(root, key, out _)) return root;
        var path = new List<(Node Node, int Index)>();
        var top = Shadow(root);
        var node = top;
        while (!node.Leaf)
        {
            int i = node.ChildFor(key);
            var child = Shadow(node.Values[i]);
            node.Values[i] = child.Block;
            path.Add((node, i));
            node = child;
        }
        int at = node.LowerBound(key);
        removed = node.Values[at];
        node.RemoveAt(at);
        // drop nodes left empty, upwards
        for (int level = path.Count - 1; level >= 0 && node.Count == 0; level--)
        {
            meta.Unref(node.Block);
            var (parent, index) = path[level];
            parent.RemoveAt(index);
            node = parent;
        }
        if (node.Count == 0) // the root itself is empty
        {
            meta.Unref(node.Block);
            return 0;
        }
        // a root with one child gives way to it; below the first level that child may be shared with another
        // tree, so nothing is changed in place: the child gets the tree's reference, then the old root is dropped
        while (!top.Leaf && top.Count == 1)
        {
            ulong child = top.Values[0];
            meta.Ref(child);
            Drop(top.Block);
            top = meta.Load(child);
        }
        return top.Block;
    }

    /// <summary>One more reference to a whole tree (a snapshot): O(1).</summary>
    public void Share(ulong root)
    {
        if (root != 0) meta.Ref(root);
    }

    /// <summary>Drops a reference to a whole tree; what no other tree uses is freed, down to its data blocks.</summary>
    public void Drop(ulong root)
    {
        if (root == 0) return;
        var pending = new Stack<ulong>();
        pending.Push(root);
        while (pending.Count > 0)
        {
            ulong b = pending.Pop();
            if (meta.Refs(b) > 1)
            {
                meta.Unref(b);
                continue;
            }
            var node = meta.Load(b);
            for (int i = 0; i < node.Count; i++)
                if (node.Leaf) data.Unref(node.Values[i]);
                else pending.Push(node.Values[i]);
            meta.Unref(b);
        }
    }
}
