using System.Buffers.Binary;
using Strata.Native;

namespace Strata.Thin.Metadata;

/// <summary>
/// Where an array of u32 values lives in the metadata: a copy-on-write radix of metadata blocks, leaves of
/// <see cref="PerLeaf"/> values under <c>levels</c> levels of index blocks of <see cref="PerIndex"/> pointers (the top
/// is one block). A 0 pointer means every value below it is 0. A commit writes the leaves that changed, and the index
/// blocks above them, to new blocks; the blocks they replace go back to the metadata space. The values themselves are
/// the owner's (it hands them over at load and fills leaves at persist).
/// </summary>
sealed class RadixArray(MetadataSpace meta, BlockKind leafKind, BlockKind indexKind, int levels)
{
    public const int PerLeaf = MetadataBlock.PayloadSize / 4; // 1016
    public const int PerIndex = MetadataBlock.PayloadSize / 8; // 508

    // _blocks[0][leaf] is a leaf's block, _blocks[l][i] an index block of level l (1..levels-1); the top is apart
    readonly ulong[][] _blocks = Enumerable.Range(0, levels).Select(_ => Array.Empty<ulong>()).ToArray();
    ulong _top;

    public ulong Top => _top;

    /// <summary>Every metadata block the radix takes (for check).</summary>
    public IEnumerable<ulong> Blocks() => _blocks.SelectMany(level => level).Append(_top).Where(b => b != 0);

    /// <summary>The most values <paramref name="levels"/> levels can address.</summary>
    public static ulong Capacity(int levels) => (ulong)Math.Pow(PerIndex, levels) * PerLeaf;

    public static int Leaves(ulong values) => (int)((values + PerLeaf - 1) / PerLeaf);

    /// <summary>Makes room for <paramref name="values"/> values.</summary>
    public void Resize(ulong values)
    {
        if (values > Capacity(levels)) throw StrataException.Unsupported($"more than {Capacity(levels)} entries in a metadata radix");
        int count = Leaves(values);
        for (int l = 0; l < levels; l++)
        {
            if (_blocks[l].Length < count) Array.Resize(ref _blocks[l], count);
            count = (count + PerIndex - 1) / PerIndex;
        }
    }

    /// <summary>Reads the committed radix at <paramref name="top"/>, counting its blocks as used, and hands each leaf's
    /// values (little-endian u32s, <c>count</c> of them) to <paramref name="leaf"/>.</summary>
    public void Load(ulong top, Action<int, ReadOnlySpan<byte>, int> leaf)
    {
        if (top == 0) return;
        var buffer = new byte[MetadataBlock.Size];
        meta.CountAtOpen(top);
        _top = top;
        LoadIndex(top, levels, 0, buffer, leaf);
    }

    void LoadIndex(ulong block, int level, int index, byte[] buffer, Action<int, ReadOnlySpan<byte>, int> leaf)
    {
        meta.Read(block, buffer, indexKind);
        int count = MetadataBlock.Count(buffer);
        var children = _blocks[level - 1];
        if (count > PerIndex || (long)index * PerIndex + count > children.Length)
            throw StrataException.Corrupt($"metadata block {block} ({indexKind}) has more entries than its radix can hold");
        var pointers = new ulong[count];
        for (int i = 0; i < count; i++) pointers[i] = BinaryPrimitives.ReadUInt64LittleEndian(buffer.AsSpan(MetadataBlock.HeaderSize + i * 8));
        for (int i = 0; i < count; i++)
        {
            if (pointers[i] == 0) continue;
            int child = index * PerIndex + i;
            meta.CountAtOpen(pointers[i]);
            children[child] = pointers[i];
            if (level > 1) LoadIndex(pointers[i], level - 1, child, buffer, leaf);
            else
            {
                meta.Read(pointers[i], buffer, leafKind);
                int values = MetadataBlock.Count(buffer);
                if (values > PerLeaf) throw StrataException.Corrupt($"metadata block {pointers[i]} ({leafKind}) holds too many entries");
                leaf(child, buffer.AsSpan(MetadataBlock.HeaderSize, values * 4), values);
            }
        }
    }

    /// <summary>Writes the leaves in <paramref name="dirty"/> (<paramref name="fill"/> writes a leaf's values into the span
    /// and returns how many, 0 when they are all 0) and the index blocks above them; returns the new top.</summary>
    public ulong Persist(ulong transaction, IEnumerable<int> dirty, Func<int, Span<byte>, int> fill)
    {
        var buffer = new byte[MetadataBlock.Size];
        var changed = new HashSet<int>();
        foreach (int leaf in dirty)
        {
            ref ulong slot = ref _blocks[0][leaf];
            if (slot != 0) meta.Unref(slot);
            slot = 0;
            changed.Add(leaf / PerIndex);
            buffer.AsSpan().Clear();
            int count = fill(leaf, buffer.AsSpan(MetadataBlock.HeaderSize, PerLeaf * 4));
            if (count == 0) continue;
            slot = meta.Allocate();
            MetadataBlock.WriteHeader(buffer, leafKind, count, slot, transaction);
            MetadataBlock.Seal(buffer);
            meta.Write(slot, buffer);
        }
        for (int level = 1; level < levels; level++)
        {
            var above = new HashSet<int>();
            foreach (int index in changed)
            {
                ref ulong slot = ref _blocks[level][index];
                if (slot != 0) meta.Unref(slot);
                slot = WritePointers(_blocks[level - 1], index, transaction, buffer);
                above.Add(index / PerIndex);
            }
            changed = above;
        }
        if (changed.Count == 0) return _top;
        if (_top != 0) meta.Unref(_top);
        _top = WritePointers(_blocks[levels - 1], 0, transaction, buffer);
        return _top;
    }

    /// <summary>Writes the pointers of group <paramref name="index"/> of <paramref name="children"/> to a new index block
    /// (0 when they are all 0).</summary>
    ulong WritePointers(ulong[] children, int index, ulong transaction, byte[] buffer)
    {
        int first = index * PerIndex, count = Math.Max(0, Math.Min(PerIndex, children.Length - first));
        var group = children.AsSpan(first, count);
        if (group.IndexOfAnyExcept(0UL) < 0) return 0;
        ulong b = meta.Allocate();
        buffer.AsSpan().Clear();
        MetadataBlock.WriteHeader(buffer, indexKind, count, b, transaction);
        for (int i = 0; i < count; i++) BinaryPrimitives.WriteUInt64LittleEndian(buffer.AsSpan(MetadataBlock.HeaderSize + i * 8), group[i]);
        MetadataBlock.Seal(buffer);
        meta.Write(b, buffer);
        return b;
    }
}
