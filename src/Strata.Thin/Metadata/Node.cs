using System.Buffers.Binary;
using Strata.Native;

namespace Strata.Thin.Metadata;

/// <summary>
/// A B+tree node in one metadata block: up to <see cref="Capacity"/> sorted (key, value) pairs of u64 after the
/// header. In a leaf a pair maps a virtual block to a data block; in an internal node the key is a lower bound
/// of every key below child <c>value</c> (and every key there is below the next pair's key).
/// </summary>
sealed class Node(ulong block, bool leaf)
{
    public const int Capacity = MetadataBlock.PayloadSize / 16; // 254

    public ulong Block { get; } = block;
    public bool Leaf { get; } = leaf;
    public int Count;
    public readonly ulong[] Keys = new ulong[Capacity];
    public readonly ulong[] Values = new ulong[Capacity];

    public bool Full => Count == Capacity;

    /// <summary>Index of the first key not below <paramref name="key"/> (Count when none).</summary>
    public int LowerBound(ulong key)
    {
        int lo = 0, hi = Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (Keys[mid] < key) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /// <summary>In an internal node, the child whose range holds <paramref name="key"/> (the first for keys below all).</summary>
    public int ChildFor(ulong key)
    {
        int i = LowerBound(key);
        if (i < Count && Keys[i] == key) return i;
        return i == 0 ? 0 : i - 1;
    }

    public void InsertAt(int index, ulong key, ulong value)
    {
        Array.Copy(Keys, index, Keys, index + 1, Count - index);
        Array.Copy(Values, index, Values, index + 1, Count - index);
        Keys[index] = key;
        Values[index] = value;
        Count++;
    }

    public void RemoveAt(int index)
    {
        Array.Copy(Keys, index + 1, Keys, index, Count - index - 1);
        Array.Copy(Values, index + 1, Values, index, Count - index - 1);
        Count--;
    }

    public void CopyFrom(Node other)
    {
        Array.Copy(other.Keys, Keys, other.Count);
        Array.Copy(other.Values, Values, other.Count);
        Count = other.Count;
    }

    public void Encode(Span<byte> block, ulong transaction)
    {
        block.Clear();
        MetadataBlock.WriteHeader(block, Leaf ? BlockKind.TreeLeaf : BlockKind.TreeInternal, Count, Block, transaction);
        var entries = block[MetadataBlock.HeaderSize..];
        for (int i = 0; i < Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(entries[(i * 16)..], Keys[i]);
            BinaryPrimitives.WriteUInt64LittleEndian(entries[(i * 16 + 8)..], Values[i]);
        }
        MetadataBlock.Seal(block);
    }

    public static Node Decode(ReadOnlySpan<byte> data, ulong block)
    {
        var kind = MetadataBlock.Kind(data);
        if (kind is not (BlockKind.TreeLeaf or BlockKind.TreeInternal))
            throw StrataException.Corrupt($"metadata block {block} should be a mapping tree node but is of kind {(ushort)kind}; run `strata pool check`");
        MetadataBlock.Validate(data, block, kind);
        var node = new Node(block, kind == BlockKind.TreeLeaf) { Count = MetadataBlock.Count(data) };
        if (node.Count > Capacity || (node.Count == 0))
            throw StrataException.Corrupt($"mapping tree node {block} holds {node.Count} entries; run `strata pool check`");
        var entries = data[MetadataBlock.HeaderSize..];
        for (int i = 0; i < node.Count; i++)
        {
            node.Keys[i] = BinaryPrimitives.ReadUInt64LittleEndian(entries[(i * 16)..]);
            node.Values[i] = BinaryPrimitives.ReadUInt64LittleEndian(entries[(i * 16 + 8)..]);
            if (i > 0 && node.Keys[i] <= node.Keys[i - 1])
                throw StrataException.Corrupt($"mapping tree node {block} has keys out of order; run `strata pool check`");
        }
        return node;
    }
}
