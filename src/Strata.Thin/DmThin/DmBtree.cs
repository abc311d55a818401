using System.Buffers.Binary;

namespace Strata.Thin.DmThin;

/// <summary>
/// Reads persistent-data's btrees (dm-thin's mapping and device trees) in key order. A node fills a metadata block:
/// <code>
///  0 u32 csum   4 u32 flags (1: internal, 2: leaf)   8 u64 blocknr   16 u32 nr_entries   20 u32 max_entries
/// 24 u32 value_size   28 u32 padding   32 u64 keys[max_entries]   then values[max_entries] of value_size bytes
/// </code>
/// An internal node's values are u64 block numbers of its children; the child at i holds the keys from keys[i] up to
/// keys[i+1]. Every node is checked before it is used: its checksum and block number, a header that fits the
/// block, the value size the tree must have, keys strictly ascending and inside the range its parent gives it. A node
/// that fails is reported with the key range it would have covered, and the walk goes on with its siblings.
/// </summary>
public static class DmBtree
{
    const int HeaderSize = 32, MaxDepth = 16;
    const uint InternalFlag = 1, LeafFlag = 2;

    public delegate void LeafEntry(ulong key, ReadOnlySpan<byte> value);

    /// <summary>A subtree that could not be read: the keys in [<paramref name="from"/>, <paramref name="to"/>) are
    /// unknown (<paramref name="to"/> = ulong.MaxValue: to the end).</summary>
    public delegate void Damage(ulong from, ulong to, string why);

    /// <summary>Walks the tree at <paramref name="root"/> whose leaves hold values of <paramref name="valueSize"/>
    /// bytes, calling <paramref name="visit"/> for each entry in key order.</summary>
    public static void Walk(DmMetadata metadata, ulong root, int valueSize, LeafEntry visit, Damage damaged)
    {
        var buffers = new byte[MaxDepth][];
        Walk(metadata, root, valueSize, 0, ulong.MaxValue, 0, buffers, visit, damaged);
    }

    static void Walk(DmMetadata metadata, ulong block, int valueSize, ulong from, ulong to, int depth, byte[][] buffers,
        LeafEntry visit, Damage damaged)
    {
        if (depth == MaxDepth)
        {
            damaged(from, to, $"metadata block {block} is {MaxDepth} levels deep in its tree (a loop?)");
            return;
        }
        var node = buffers[depth] ??= new byte[DmMetadata.BlockSize];
        string? problem = metadata.TryRead(block, node, DmMetadata.NodeSalt) ?? CheckHeader(node, block, valueSize, from, to);
        if (problem is not null)
        {
            damaged(from, to, problem);
            return;
        }
        var s = node.AsSpan();
        bool leaf = BinaryPrimitives.ReadUInt32LittleEndian(s[4..]) == LeafFlag;
        int count = (int)BinaryPrimitives.ReadUInt32LittleEndian(s[16..]);
        int max = (int)BinaryPrimitives.ReadUInt32LittleEndian(s[20..]);
        int size = (int)BinaryPrimitives.ReadUInt32LittleEndian(s[24..]);
        int values = HeaderSize + 8 * max;
        for (int i = 0; i < count; i++)
        {
            ulong key = Key(s, i);
            if (leaf)
                visit(key, s.Slice(values + i * size, size));
            else
            {
                ulong end = i + 1 < count ? Key(s, i + 1) : to;
                ulong child = BinaryPrimitives.ReadUInt64LittleEndian(s[(values + i * 8)..]);
                Walk(metadata, child, valueSize, key, end, depth + 1, buffers, visit, damaged); // a buffer per level: ours stays
            }
        }
    }

    static ulong Key(ReadOnlySpan<byte> node, int i) => BinaryPrimitives.ReadUInt64LittleEndian(node[(HeaderSize + 8 * i)..]);

    /// <summary>What is wrong with a node's header and keys (null: nothing).</summary>
    static string? CheckHeader(ReadOnlySpan<byte> node, ulong block, int valueSize, ulong from, ulong to)
    {
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(node[4..]);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(node[16..]);
        uint max = BinaryPrimitives.ReadUInt32LittleEndian(node[20..]);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(node[24..]);
        if (flags is not (InternalFlag or LeafFlag)) return $"metadata block {block} is not a btree node (flags {flags})";
        uint expected = flags == LeafFlag ? (uint)valueSize : 8;
        if (size != expected) return $"metadata block {block} holds values of {size} bytes where its tree has {expected}";
        if (max == 0 || HeaderSize + (ulong)max * (8 + size) > DmMetadata.BlockSize || count > max)
            return $"metadata block {block} has a header that does not fit a block ({count} of {max} entries of {size} bytes)";
        if (count == 0 && flags == InternalFlag) return $"metadata block {block} is an internal node without children";
        ulong previous = 0;
        for (int i = 0; i < count; i++)
        {
            ulong key = Key(node, i);
            if (i > 0 && key <= previous) return $"metadata block {block} has keys out of order ({previous} before {key})";
            if (key < from || key >= to) return $"metadata block {block} has key {key} outside the range {from}..{to} its parent gives it";
            previous = key;
        }
        return null;
    }
}
