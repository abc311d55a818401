using System.Collections;
using Strata.Native;
using Strata.Block;

namespace Strata.Thin.Metadata;

/// <summary>
/// The metadata store as the current transaction sees it: which 4 KiB blocks are in use and how often each is
/// referenced (tree nodes are shared between snapshots), which were allocated by this transaction (and may be
/// changed in place), and the tree nodes read so far. Reference counts of metadata blocks are not stored: open
/// recounts them by walking from the superblock, which reads only the trees' internal nodes. A block the last
/// commit uses is never handed out before the next commit, so that commit stays intact whatever happens
/// until then.
/// </summary>
sealed class MetadataSpace(IBlockStore store, ulong blocks)
{
    int[] _refs = new int[blocks];
    BitArray _committed = new((int)blocks);
    readonly HashSet<ulong> _fresh = [];
    readonly List<ulong> _released = []; // committed blocks whose last reference this transaction dropped
    readonly HashSet<ulong> _dropped = []; // blocks that lost a reference in this transaction and still have some
    readonly Dictionary<ulong, Node> _nodes = [];
    ulong _cursor = 2;

    public IBlockStore Store => store;
    public ulong Blocks { get; private set; } = blocks;
    public ulong Transaction { get; set; }
    public IReadOnlyCollection<ulong> Fresh => _fresh;

    public ulong Used { get; private set; } = 2; // the two superblock slots

    public int Refs(ulong block) => _refs[block];

    public bool IsFresh(ulong block) => _fresh.Contains(block);

    /// <summary>Whether the block lost a reference in this transaction: the last commit may still share it
    /// with a tree that no longer does, so it must not be written through as if it were one tree's alone.</summary>
    public bool DroppedSinceCommit(ulong block) => _dropped.Contains(block);

    /// <summary>Asked when no block is left: grows the store (true) or not.</summary>
    public Func<bool>? TryGrow { get; set; }

    /// <summary>Counts one more reference to a block the walk at open found (first sight: true).</summary>
    public bool CountAtOpen(ulong block)
    {
        CheckBlock(block);
        if (_refs[block]++ > 0) return false;
        Used++;
        return true;
    }

    public void Ref(ulong block) => _refs[block]++;

    /// <summary>A new block for this transaction, or false when none is left (the metadata is full).</summary>
    public bool TryAllocate(out ulong block)
    {
        for (ulong n = 0; n < Blocks - 2; n++)
        {
            ulong b = _cursor;
            _cursor = _cursor + 1 >= Blocks ? 2 : _cursor + 1;
            if (_refs[b] == 0 && !_committed[(int)b])
            {
                _refs[b] = 1;
                _fresh.Add(b);
                Used++;
                block = b;
                return true;
            }
        }
        block = 0;
        return false;
    }

    public ulong Allocate() => TryAllocate(out var b) || (TryGrow?.Invoke() == true && TryAllocate(out b)) ? b
        : throw new MetadataFullException($"the pool's metadata ({Blocks} blocks of 4 KiB) is full");

    /// <summary>Drops one reference; true when it was the last (the block is free from the next commit on, or at
    /// once if this transaction made it).</summary>
    public bool Unref(ulong block)
    {
        if (_refs[block] <= 0) throw StrataException.Corrupt($"metadata block {block} is released more often than it is used");
        if (--_refs[block] > 0)
        {
            _dropped.Add(block);
            return false;
        }
        if (_committed[(int)block]) _released.Add(block);
        _fresh.Remove(block);
        _nodes.Remove(block);
        Used--;
        return true;
    }

    /// <summary>After a commit: what is in use now is what the committed transaction uses.</summary>
    public void Committed()
    {
        foreach (ulong b in _fresh) _committed[(int)b] = true;
        foreach (ulong b in _released) _committed[(int)b] = _refs[b] > 0;
        _fresh.Clear();
        _released.Clear();
        _dropped.Clear();
    }

    /// <summary>At open, once every block the committed transaction uses has been counted.</summary>
    public void CommittedAtOpen()
    {
        for (int i = 0; i < (int)Blocks; i++) _committed[i] = _refs[i] > 0;
        _fresh.Clear();
        _released.Clear();
    }

    public void Grow(ulong blocks)
    {
        if (blocks <= Blocks) return;
        Array.Resize(ref _refs, (int)blocks);
        _committed.Length = (int)blocks;
        Blocks = blocks;
    }

    public void Read(ulong block, Span<byte> buffer, BlockKind kind)
    {
        CheckBlock(block);
        CheckStored(block);
        store.Read((long)block * MetadataBlock.Size, buffer[..MetadataBlock.Size]);
        MetadataBlock.Validate(buffer, block, kind);
    }

    public void Write(ulong block, ReadOnlySpan<byte> sealedBlock)
    {
        CheckBlock(block);
        store.Write((long)block * MetadataBlock.Size, sealedBlock[..MetadataBlock.Size]);
    }

    void CheckBlock(ulong block)
    {
        if (block < 2 || block >= Blocks) throw StrataException.Corrupt($"metadata block {block} is outside the metadata (blocks 2..{Blocks - 1})");
    }

    /// <summary>A block of the metadata that its store, cut short, no longer holds (open refuses such a store; check
    /// reads one anyway, and must not read past its end).</summary>
    void CheckStored(ulong block)
    {
        if ((long)(block + 1) * MetadataBlock.Size > store.Length)
            throw StrataException.Corrupt($"metadata block {block} is past the end of {store.Name} ({store.Length} bytes)");
    }

    // ---- tree nodes ----

    public Node Load(ulong block)
    {
        if (_nodes.TryGetValue(block, out var node)) return node;
        var buffer = new byte[MetadataBlock.Size];
        CheckBlock(block);
        CheckStored(block);
        store.Read((long)block * MetadataBlock.Size, buffer);
        node = Node.Decode(buffer, block);
        _nodes[block] = node;
        return node;
    }

    public Node NewNode(bool leaf)
    {
        var node = new Node(Allocate(), leaf);
        _nodes[node.Block] = node;
        return node;
    }

    /// <summary>Nodes made by this transaction, to be written at commit.</summary>
    public IEnumerable<Node> FreshNodes() => _fresh.Where(_nodes.ContainsKey).Select(b => _nodes[b]);

    /// <summary>Forgets cached nodes (all of them are also on disk after a commit).</summary>
    public void TrimCache(int keep)
    {
        if (_nodes.Count <= keep) return;
        foreach (var b in _nodes.Keys.Where(b => !_fresh.Contains(b)).Take(_nodes.Count - keep).ToList()) _nodes.Remove(b);
    }
}

/// <summary>The metadata store has no free block left: the transaction cannot go on.</summary>
sealed class MetadataFullException(string message) : Exception(message);
