using System.Buffers.Binary;
using System.Collections;
using Strata.Native;

namespace Strata.Thin.Metadata;

/// <summary>
/// Reference counts of the data blocks (how many mapping-tree leaves point at each), kept whole in memory and
/// stored as a copy-on-write radix of metadata blocks:
/// <code>
/// superblock.RefIndex -> top (RefIndex block: up to 508 u64 index block numbers)
///                     -> index (RefIndex block: up to 508 u64 count block numbers)
///                     -> counts (RefCounts block: 1016 u32 counts, data blocks chunk*1016 ...)
/// </code>
/// A 0 pointer means all counts below it are 0. A commit writes only the count blocks that changed, and the
/// index blocks above them, to new metadata blocks. A data block whose count drops to 0 is free only after
/// the next commit (the last one may still map it); then its space is given back (a hole in a sparse file).
/// </summary>
sealed class DataSpace
{
    public const int CountsPerBlock = MetadataBlock.PayloadSize / 4; // 1016
    public const int PointersPerBlock = MetadataBlock.PayloadSize / 8; // 508

    readonly MetadataSpace _meta;
    uint[] _refs;
    BitArray _quarantine;
    readonly HashSet<int> _dirtyChunks = [];
    ulong[] _chunkBlocks;   // per chunk: its count block (0: none)
    ulong[] _indexBlocks;   // per index block: its metadata block (0: none)
    ulong _top;
    ulong _cursor;
    readonly List<ulong> _quarantined = [];
    readonly HashSet<ulong> _dropped = []; // counts that went down in this transaction and are not 0
    readonly HashSet<ulong> _fresh = [];   // blocks allocated in this transaction (no commit maps them)

    /// <summary>The most data blocks the count radix can address.</summary>
    public const ulong MaxBlocks = (ulong)PointersPerBlock * PointersPerBlock * CountsPerBlock;

    public DataSpace(MetadataSpace meta, ulong blocks)
    {
        _meta = meta;
        Blocks = blocks;
        _refs = new uint[blocks];
        _quarantine = new BitArray(checked((int)blocks));
        _chunkBlocks = new ulong[Chunks(blocks)];
        _indexBlocks = new ulong[IndexCount(_chunkBlocks.Length)];
        Free = blocks;
    }

    static int Chunks(ulong blocks) => (int)((blocks + CountsPerBlock - 1) / CountsPerBlock);
    static int IndexCount(int chunks) => (chunks + PointersPerBlock - 1) / PointersPerBlock;

    public ulong Blocks { get; private set; }

    /// <summary>Blocks no device maps and no commit still needs: what allocation can hand out.</summary>
    public ulong Free { get; private set; }

    /// <summary>Blocks with a count (mapped by some device, or being written).</summary>
    public ulong Used => Blocks - Free - Quarantined;

    /// <summary>Blocks freed in this transaction, and blocks the last commits freed whose space is still being given
    /// back (<see cref="Release(bool)"/>): neither can be allocated yet.</summary>
    public ulong Quarantined => _waiting + _discarding;

    ulong _waiting;     // freed in this transaction
    ulong _discarding;  // released by a commit, held until their space is given back

    /// <summary>Each transaction allocates from the lowest free block on (a resilient pool: blocks stay in the slabs that
    /// are placed, and the rest stays free for rebuilds), instead of going on where the last one stopped.</summary>
    public bool LowFirst { get; set; }

    public ulong Top => _top;

    public uint Refs(ulong block) => _refs[block];

    /// <summary>Whether the block is in use, read without the pool's lock (a rebuild's or a scrub's look): a volatile
    /// read, so an allocation made before the look is seen.</summary>
    public bool InUseUnlocked(ulong block) => block < (ulong)_refs.Length && Volatile.Read(ref _refs[block]) > 0;

    /// <summary>Whether the block's count went down in this transaction: the last commit may map it from a tree
    /// that no longer does, so writing it in place could change what that commit holds.</summary>
    public bool DroppedSinceCommit(ulong block) => _dropped.Contains(block);

    /// <summary>Whether the block was allocated in this transaction: no commit maps it, so a crash cannot bring back a
    /// tree that sees what is written into it now.</summary>
    public bool IsFresh(ulong block) => _fresh.Contains(block);

    public void Ref(ulong block)
    {
        CheckBlock(block);
        if (_refs[block] == uint.MaxValue) throw StrataException.Corrupt($"data block {block} is shared more than {uint.MaxValue} times");
        _refs[block]++;
        _dirtyChunks.Add((int)(block / CountsPerBlock));
    }

    public void Unref(ulong block)
    {
        CheckBlock(block);
        if (_refs[block] == 0) throw StrataException.Corrupt($"data block {block} is released more often than it is mapped; run `strata pool check`");
        if (_refs[block] > 1) _dropped.Add(block);
        if (--_refs[block] == 0 && !_quarantine[(int)block])
        {
            _quarantine[(int)block] = true;
            _quarantined.Add(block);
            _waiting++;
        }
        _dirtyChunks.Add((int)(block / CountsPerBlock));
    }

    /// <summary>A free data block, counted once; false when there is none.</summary>
    public bool TryAllocate(out ulong block)
    {
        for (ulong n = 0; n < Blocks; n++)
        {
            ulong b = _cursor;
            _cursor = _cursor + 1 == Blocks ? 0 : _cursor + 1;
            if (_refs[b] == 0 && !_quarantine[(int)b])
            {
                _refs[b] = 1;
                _dirtyChunks.Add((int)(b / CountsPerBlock));
                _fresh.Add(b);
                Free--;
                block = b;
                return true;
            }
        }
        block = 0;
        return false;
    }

    /// <summary>One more reference to a block that may have had none (a restore mapping it): counted used.</summary>
    public void Claim(ulong block)
    {
        CheckBlock(block);
        if (_refs[block] == 0) Free--;
        _refs[block]++;
        _dirtyChunks.Add((int)(block / CountsPerBlock));
    }

    /// <summary>Takes exactly <paramref name="block"/> if it is free (to keep a run of writes on consecutive blocks).</summary>
    public bool TryAllocateExact(ulong block)
    {
        if (block >= Blocks || _refs[block] != 0 || _quarantine[(int)block]) return false;
        _refs[block] = 1;
        _dirtyChunks.Add((int)(block / CountsPerBlock));
        _fresh.Add(block);
        Free--;
        _cursor = block + 1 == Blocks ? 0 : block + 1;
        return true;
    }

    void CheckBlock(ulong block)
    {
        if (block >= Blocks) throw StrataException.Corrupt($"data block {block} is outside the pool's {Blocks} data blocks; run `strata pool check`");
    }

    public void Grow(ulong blocks)
    {
        if (blocks <= Blocks) return;
        if (blocks > MaxBlocks) throw StrataException.Unsupported($"a pool of more than {MaxBlocks} data blocks");
        Array.Resize(ref _refs, checked((int)blocks));
        _quarantine.Length = (int)blocks;
        Array.Resize(ref _chunkBlocks, Chunks(blocks));
        Array.Resize(ref _indexBlocks, IndexCount(_chunkBlocks.Length));
        Free += blocks - Blocks;
        Blocks = blocks;
    }

    /// <summary>Replaces every count by <paramref name="counts"/> (a repair), to be written whole at the next commit.</summary>
    public void Rebuild(Dictionary<ulong, uint> counts)
    {
        Array.Clear(_refs);
        _quarantine.SetAll(false); // what waited for a commit or a discard is counted again from scratch
        _quarantined.Clear();
        _waiting = _discarding = 0;
        foreach (var (block, refs) in counts)
        {
            CheckBlock(block);
            _refs[block] = refs;
        }
        Free = Blocks - (ulong)counts.Count;
        for (int chunk = 0; chunk < _chunkBlocks.Length; chunk++) _dirtyChunks.Add(chunk);
    }

    // ---- persistence ----

    /// <summary>Reads the counts the committed radix at <paramref name="top"/> holds, counting its blocks as used.</summary>
    public void Load(ulong top)
    {
        if (top == 0) return;
        var buffer = new byte[MetadataBlock.Size];
        _meta.CountAtOpen(top);
        _top = top; // a pointer is kept only once it is known to be inside the metadata
        _meta.Read(top, buffer, BlockKind.RefIndex);
        var topPointers = ReadPointers(buffer);
        if (topPointers.Length > _indexBlocks.Length) throw StrataException.Corrupt($"data reference index {top} has more entries than the pool has data blocks");
        Free = Blocks;
        for (int i = 0; i < topPointers.Length; i++)
        {
            if (topPointers[i] == 0) continue;
            _meta.CountAtOpen(topPointers[i]);
            _indexBlocks[i] = topPointers[i];
            _meta.Read(topPointers[i], buffer, BlockKind.RefIndex);
            var chunkPointers = ReadPointers(buffer);
            for (int j = 0; j < chunkPointers.Length; j++)
            {
                int chunk = i * PointersPerBlock + j;
                if (chunkPointers[j] == 0) continue;
                if (chunk >= _chunkBlocks.Length) throw StrataException.Corrupt($"data reference index {topPointers[i]} points past the pool's data blocks");
                _meta.CountAtOpen(chunkPointers[j]);
                _chunkBlocks[chunk] = chunkPointers[j];
                _meta.Read(chunkPointers[j], buffer, BlockKind.RefCounts);
                int count = MetadataBlock.Count(buffer);
                var counts = buffer.AsSpan(MetadataBlock.HeaderSize);
                for (int k = 0; k < count; k++)
                {
                    ulong block = (ulong)chunk * CountsPerBlock + (ulong)k;
                    uint refs = BinaryPrimitives.ReadUInt32LittleEndian(counts[(k * 4)..]);
                    if (refs == 0) continue;
                    if (block >= Blocks) throw StrataException.Corrupt($"reference counts {chunkPointers[j]} count data block {block}, past the pool's end");
                    _refs[block] = refs;
                    Free--;
                }
            }
        }
    }

    static ulong[] ReadPointers(ReadOnlySpan<byte> block)
    {
        int count = MetadataBlock.Count(block);
        if (count > PointersPerBlock) throw StrataException.Corrupt("a data reference index block holds too many entries");
        var result = new ulong[count];
        for (int i = 0; i < count; i++) result[i] = BinaryPrimitives.ReadUInt64LittleEndian(block[(MetadataBlock.HeaderSize + i * 8)..]);
        return result;
    }

    /// <summary>Writes the changed count blocks and the index above them to new metadata blocks; returns the new top.</summary>
    public ulong Persist(ulong transaction)
    {
        if (_dirtyChunks.Count == 0) return _top;
        var buffer = new byte[MetadataBlock.Size];
        var dirtyIndexes = new HashSet<int>();
        foreach (int chunk in _dirtyChunks)
        {
            if (_chunkBlocks[chunk] != 0) _meta.Unref(_chunkBlocks[chunk]);
            _chunkBlocks[chunk] = 0;
            ulong first = (ulong)chunk * CountsPerBlock;
            int count = (int)Math.Min(CountsPerBlock, Blocks - first);
            bool any = false;
            for (int k = 0; k < count && !any; k++) any = _refs[first + (ulong)k] != 0;
            dirtyIndexes.Add(chunk / PointersPerBlock);
            if (!any) continue;
            ulong b = _meta.Allocate();
            buffer.AsSpan().Clear();
            MetadataBlock.WriteHeader(buffer, BlockKind.RefCounts, count, b, transaction);
            for (int k = 0; k < count; k++) BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(MetadataBlock.HeaderSize + k * 4), _refs[first + (ulong)k]);
            MetadataBlock.Seal(buffer);
            _meta.Write(b, buffer);
            _chunkBlocks[chunk] = b;
        }
        _dirtyChunks.Clear();
        foreach (int index in dirtyIndexes)
        {
            if (_indexBlocks[index] != 0) _meta.Unref(_indexBlocks[index]);
            int first = index * PointersPerBlock, count = Math.Min(PointersPerBlock, _chunkBlocks.Length - first);
            _indexBlocks[index] = _chunkBlocks.AsSpan(first, count).IndexOfAnyExcept(0UL) < 0 ? 0 : WritePointers(_chunkBlocks.AsSpan(first, count), transaction, buffer);
        }
        if (_top != 0) _meta.Unref(_top);
        _top = _indexBlocks.AsSpan().IndexOfAnyExcept(0UL) < 0 ? 0 : WritePointers(_indexBlocks, transaction, buffer);
        return _top;
    }

    ulong WritePointers(ReadOnlySpan<ulong> pointers, ulong transaction, byte[] buffer)
    {
        ulong b = _meta.Allocate();
        buffer.AsSpan().Clear();
        MetadataBlock.WriteHeader(buffer, BlockKind.RefIndex, pointers.Length, b, transaction);
        for (int i = 0; i < pointers.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(buffer.AsSpan(MetadataBlock.HeaderSize + i * 8), pointers[i]);
        MetadataBlock.Seal(buffer);
        _meta.Write(b, buffer);
        return b;
    }

    /// <summary>After a commit: returns the blocks freed in the transaction. They are free now, or, with
    /// <paramref name="hold"/>, stay out of allocation until <see cref="Discarded"/> says their space was given back
    /// (so that giving it back, outside the pool's locks, never races a write into them).</summary>
    public List<ulong> Release(bool hold = false)
    {
        var released = new List<ulong>();
        foreach (ulong b in _quarantined)
        {
            if (_refs[b] == 0) released.Add(b);
            if (!hold || _refs[b] != 0) _quarantine[(int)b] = false;
        }
        _quarantined.Clear();
        _dropped.Clear();
        _fresh.Clear();
        if (LowFirst) _cursor = 0;
        if (hold) _discarding += (ulong)released.Count;
        else Free += (ulong)released.Count;
        _waiting = 0;
        return released;
    }

    /// <summary>Blocks a held <see cref="Release(bool)"/> returned, their space given back: free now.</summary>
    public void Discarded(IEnumerable<ulong> blocks)
    {
        foreach (ulong b in blocks)
        {
            if (b >= Blocks || !_quarantine[(int)b] || _refs[b] != 0 || _discarding == 0) continue;
            _quarantine[(int)b] = false;
            _discarding--;
            Free++;
        }
    }
}
