using System.Buffers;
using System.Numerics;
using Strata.Native;
using Strata.Thin.Metadata;
using Strata.Block;

namespace Strata.Thin;

/// <summary>
/// The IO path of open devices (called by <see cref="ThinDevice"/>): read, write, unmap, and which ranges are
/// allocated. Invariants: IO holds the gate for reading (so commits and device changes never see it half-done)
/// and takes the metadata lock only for lookups and mapping changes, never around reads and writes of the data
/// store; a write takes the lock of its virtual block's stripe first (stripes in ascending order for a run), so
/// two writes to one block do not interleave their read-modify-write. Copy-on-write: a block another device or
/// the last commit can see is never written in place; the write goes to a fresh block, which is mapped only
/// once its data is written (a failed write gives the block back). Out of data space, a write commits once if
/// blocks freed since the last commit wait for one, then waits up to <see cref="PoolOptions.NoSpaceTimeout"/>,
/// without the gate, for room, and then fails with NoSpace.
/// </summary>
public sealed partial class ThinPool
{
    readonly object[] _stripes = Enumerable.Range(0, 1024).Select(_ => new object()).ToArray();
    readonly object _spaceSignal = new();

    /// <summary>An open device's record (under the lock: a failed transaction reloads them all).</summary>
    DeviceRecord Dev(uint id) => _byId.TryGetValue(id, out var d) ? d : throw StrataException.NotFound($"thin device {id} no longer exists");

    internal long SizeOf(uint id)
    {
        lock (_lock) return (long)Dev(id).Size;
    }

    void CheckRange(uint id, long offset, long length)
    {
        lock (_lock) CheckRange(Dev(id), offset, length);
    }

    static void CheckRange(DeviceRecord d, long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > (long)d.Size || length > (long)d.Size - offset)
            throw StrataException.Invalid($"{length} bytes at {offset} are outside thin device {d.Name} ({d.Size} bytes)");
    }

    void EnterIo()
    {
        _gate.EnterRead();
        if (_disposed)
        {
            _gate.ExitRead();
            throw new ObjectDisposedException(nameof(ThinPool));
        }
    }

    /// <summary>Calls <paramref name="piece"/> for each block-sized piece of [offset, offset+length): virtual
    /// block, offset in it, offset from the start, length.</summary>
    void ForEachPiece(uint id, long offset, long length, Action<ulong, int, long, int> piece)
    {
        CheckRange(id, offset, length);
        long bs = BlockSize;
        for (long done = 0; done < length;)
        {
            long pos = offset + done;
            int at = (int)(pos % bs), n = (int)Math.Min(bs - at, length - done);
            piece((ulong)(pos / bs), at, done, n);
            done += n;
        }
    }

    /// <summary>Reads into <paramref name="buffer"/>; the unmapped ranges read as zeros and, as far as
    /// <paramref name="holes"/> has room, are reported there (see <see cref="IBlockDevice.ReadSparse"/>).</summary>
    internal int Read(uint id, long offset, Span<byte> buffer, Span<(int Start, int Length)> holes)
    {
        int holeCount = 0;
        EnterIo();
        ulong[]? rented = null;
        try
        {
            long bs = BlockSize;
            if (buffer.Length == 0)
            {
                CheckRange(id, offset, 0);
                return 0;
            }
            // one trip under the lock: the range check and every piece's data block (+1; 0 is a hole)
            int count = (int)((offset + buffer.Length - 1) / bs - offset / bs + 1);
            Span<ulong> blocks = count <= 64 ? stackalloc ulong[64] : (rented = ArrayPool<ulong>.Shared.Rent(count));
            lock (_lock)
            {
                var d = Dev(id);
                CheckRange(d, offset, buffer.Length);
                ulong first = (ulong)(offset / bs);
                for (int i = 0; i < count; i++) blocks[i] = _tree.TryLookup(d.Root, first + (ulong)i, out ulong b) ? b + 1 : 0;
            }
            // pieces on consecutive data blocks are read with one call
            int pendingStart = 0, pendingLength = 0;
            long pendingData = 0;
            for (int done = 0, i = 0; done < buffer.Length; i++)
            {
                long pos = offset + done;
                int at = (int)(pos % bs), n = (int)Math.Min(bs - at, buffer.Length - done);
                bool mapped = blocks[i] != 0;
                long dataAt = (long)(blocks[i] - 1) * bs + at;
                if (mapped && pendingLength > 0 && pendingData + pendingLength == dataAt) pendingLength += n;
                else
                {
                    if (pendingLength > 0) _data.Read(pendingData, buffer.Slice(pendingStart, pendingLength));
                    pendingLength = 0;
                    if (mapped) (pendingStart, pendingData, pendingLength) = (done, dataAt, n);
                    else
                    {
                        buffer.Slice(done, n).Clear();
                        if (holeCount > 0 && holes[holeCount - 1].Start + holes[holeCount - 1].Length == done) holes[holeCount - 1].Length += n;
                        else if (holeCount < holes.Length) holes[holeCount++] = (done, n);
                    }
                }
                done += n;
            }
            if (pendingLength > 0) _data.Read(pendingData, buffer.Slice(pendingStart, pendingLength));
            return holeCount;
        }
        finally
        {
            if (rented is not null) ArrayPool<ulong>.Shared.Return(rented);
            _gate.ExitRead();
        }
    }

    internal void Write(uint id, long offset, ReadOnlySpan<byte> data, bool fua, DeviceCounters counters)
    {
        EnterIo();
        try
        {
            lock (_lock)
            {
                CheckWritable();
                CheckRange(id, offset, data.Length);
            }
            long bs = BlockSize;
            var deadline = DateTime.UtcNow + _options.NoSpaceTimeout;
            bool committedForSpace = false;
            for (int done = 0; done < data.Length;)
            {
                long pos = offset + done;
                int at = (int)(pos % bs), n = (int)Math.Min(bs - at, data.Length - done);
                if (at == 0 && data.Length - done >= 2 * bs)
                {
                    int run = WriteRun(id, (ulong)(pos / bs), data.Slice(done, (int)Math.Min(data.Length - done, MaxRun * bs) / (int)bs * (int)bs), counters);
                    if (run > 0)
                    {
                        done += run * (int)bs;
                        continue;
                    }
                }
                try
                {
                    WriteBlock(id, (ulong)(pos / bs), at, data.Slice(done, n), counters);
                }
                catch (DataFullException)
                {
                    if (!committedForSpace && _space.Quarantined > 0)
                    {
                        _spaceShort = true; // the blocks held for a discard are needed now
                        // blocks freed since the last commit become free with the next one: commit once, then retry
                        committedForSpace = true;
                        _gate.ExitRead();
                        try
                        {
                            Commit();
                        }
                        finally
                        {
                            _gate.EnterRead();
                        }
                        continue;
                    }
                    var left = deadline - DateTime.UtcNow;
                    if (left <= TimeSpan.Zero) throw DataFull();
                    // wait without the gate, so that deletes and commits that make room can run
                    _gate.ExitRead();
                    try
                    {
                        lock (_spaceSignal) Monitor.Wait(_spaceSignal, left < TimeSpan.FromMilliseconds(100) ? left : TimeSpan.FromMilliseconds(100));
                    }
                    finally
                    {
                        _gate.EnterRead();
                    }
                    if (_options.CommitInterval == TimeSpan.Zero || _dirty) ThreadPool.QueueUserWorkItem(_ => BackgroundCommit());
                    continue;
                }
                done += n;
            }
        }
        finally
        {
            _gate.ExitRead();
        }
        if (fua) Commit();
    }

    object Stripe(uint id, ulong vblock) => _stripes[StripeIndex(id, vblock)];

    int StripeIndex(uint id, ulong vblock) => (int)((vblock * 31 + id) % (ulong)_stripes.Length);

    const int MaxRun = 64;

    /// <summary>
    /// Writes whole blocks that need a fresh data block (unmapped ones, and mapped ones that cannot be written in
    /// place: shared, or held by the last commit on a store that copies committed blocks), from
    /// <paramref name="first"/> on, into consecutive fresh data blocks with one write to the data store (so the
    /// data lands as one extent, and the page cache keeps it in large pieces as it would a file written the same
    /// way), then maps them, releasing what they replace. Returns how many blocks it wrote (fewer than asked when
    /// the next data block is taken): 0 when fewer than two qualify or there is no space, and the caller writes
    /// block by block.
    /// </summary>
    int WriteRun(uint id, ulong first, ReadOnlySpan<byte> data, DeviceCounters counters)
    {
        long bs = BlockSize;
        int want = (int)(data.Length / bs);
        var stripes = new SortedSet<int>();
        for (int i = 0; i < want; i++) stripes.Add(StripeIndex(id, first + (ulong)i));
        var taken = new List<object>();
        try
        {
            foreach (int s in stripes)
            {
                Monitor.Enter(_stripes[s]);
                taken.Add(_stripes[s]);
            }
            var blocks = new List<ulong>(want);
            ulong replacing = 0; // bit i: block first+i is mapped (shared), so its fresh block is a copy on write
            lock (_lock)
            {
                CheckWritable();
                var d = Dev(id);
                int count = 0;
                while (count < want && NeedsFreshBlock(d.Root, first + (ulong)count, out bool wasMapped))
                {
                    if (wasMapped) replacing |= 1UL << count;
                    count++;
                }
                if (count < 2 || !TryAllocateData(out ulong start)) return 0;
                blocks.Add(start);
                while (blocks.Count < count && _space.TryAllocateExact(blocks[^1] + 1)) blocks.Add(blocks[^1] + 1);
            }
            try
            {
                _data.Write((long)blocks[0] * bs, data[..(int)(blocks.Count * bs)]);
            }
            catch
            {
                lock (_lock) foreach (ulong b in blocks) _space.Unref(b);
                throw;
            }
            lock (_lock)
            {
                if (_readOnly is not null || !_byId.ContainsKey(id)) throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
                var d = Dev(id);
                for (int i = 0; i < blocks.Count; i++) Map(d, first + (ulong)i, blocks[i]);
            }
            counters.Allocated(blocks.Count);
            counters.CopiedOnWrite(BitOperations.PopCount(blocks.Count == 64 ? replacing : replacing & ((1UL << blocks.Count) - 1)));
            return blocks.Count;
        }
        finally
        {
            foreach (var o in taken) Monitor.Exit(o);
        }
    }

    /// <summary>Writes <paramref name="piece"/> at <paramref name="at"/> in virtual block <paramref name="vblock"/>:
    /// in place when the device alone owns the block, else into a new block (zero-filled around the piece, or a
    /// copy of the shared block with the piece in it) that is mapped once written.</summary>
    void WriteBlock(uint id, ulong vblock, int at, ReadOnlySpan<byte> piece, DeviceCounters counters)
    {
        long bs = BlockSize;
        lock (Stripe(id, vblock))
        {
            bool mapped, shared;
            ulong old, fresh;
            lock (_lock)
            {
                CheckWritable();
                mapped = TryLookupOwned(Dev(id).Root, vblock, out old, out shared);
                // a store that keeps copies or checksums of committed blocks must never see one change in place
                if (mapped && _poolData is { CopiesCommittedBlocks: true } && !_space.IsFresh(old)) shared = true;
                if (mapped && !shared) fresh = 0;
                else if (!TryAllocateData(out fresh)) throw new DataFullException();
            }
            if (mapped && !shared)
            {
                _data.Write((long)old * bs + at, piece);
                Interlocked.Increment(ref _writesInPlace); // after the write: a flush that started before this missed it
                return;
            }
            try
            {
                if (piece.Length == bs) _data.Write((long)fresh * bs, piece);
                else if (!mapped && _data.IsHole((long)fresh * bs, bs)) _data.Write((long)fresh * bs + at, piece); // the rest reads as zeros already
                else
                {
                    var buffer = ArrayPool<byte>.Shared.Rent((int)bs);
                    try
                    {
                        var whole = buffer.AsSpan(0, (int)bs);
                        if (mapped) _data.Read((long)old * bs, whole);
                        else whole.Clear();
                        piece.CopyTo(whole[at..]);
                        _data.Write((long)fresh * bs, whole);
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                    }
                }
            }
            catch
            {
                lock (_lock) _space.Unref(fresh);
                throw;
            }
            lock (_lock)
            {
                if (_readOnly is not null || !_byId.ContainsKey(id)) throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
                Map(Dev(id), vblock, fresh);
            }
            counters.Allocated(1);
            if (mapped) counters.CopiedOnWrite(1);
        }
    }

    /// <summary>Whether a write of the whole of <paramref name="vblock"/> goes to a fresh data block: it is unmapped, or
    /// its block cannot be written in place (see <see cref="WriteBlock"/>). Under the lock.</summary>
    bool NeedsFreshBlock(ulong root, ulong vblock, out bool mapped)
    {
        mapped = TryLookupOwned(root, vblock, out ulong old, out bool shared);
        if (!mapped) return true;
        return shared || _poolData is { CopiesCommittedBlocks: true } && !_space.IsFresh(old);
    }

    sealed class DataFullException : Exception;

    StrataException DataFull() => new(ErrorKind.NoSpace, $"the pool's data space is full ({_space.Blocks} blocks of {BlockSize} bytes): delete devices or grow the pool");

    /// <summary>Maps <paramref name="vblock"/> of <paramref name="d"/> to <paramref name="block"/> (whose count the
    /// caller holds), releasing what it mapped before.</summary>
    void Map(DeviceRecord d, ulong vblock, ulong block)
    {
        ulong? replaced;
        try
        {
            d.Root = _tree.Insert(d.Root, vblock, block, out replaced);
        }
        catch (MetadataFullException ex)
        {
            Fail(ex.Message);
            throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
        }
        if (replaced is { } old) _space.Unref(old);
        else d.Mapped++;
        _dirty = true;
    }

    /// <summary>Looks <paramref name="key"/> up, saying whether any other device (or the block's count) shares it.</summary>
    bool TryLookupOwned(ulong root, ulong key, out ulong value, out bool shared)
    {
        value = 0;
        shared = false;
        if (root == 0) return false;
        // shared now, or shared by the last commit with a tree that has let go of it since (a crash would bring
        // that tree back, so it must not see this write)
        var node = _meta.Load(root);
        shared = _meta.Refs(root) > 1 || _meta.DroppedSinceCommit(root);
        while (!node.Leaf)
        {
            ulong child = node.Values[node.ChildFor(key)];
            shared |= _meta.Refs(child) > 1 || _meta.DroppedSinceCommit(child);
            node = _meta.Load(child);
        }
        int i = node.LowerBound(key);
        if (i >= node.Count || node.Keys[i] != key) return false;
        value = node.Values[i];
        shared |= _space.Refs(value) > 1 || _space.DroppedSinceCommit(value);
        return true;
    }

    /// <summary>Discard and write-zeroes: whole blocks are unmapped (freed when no one else maps them), parts of
    /// blocks that are mapped are overwritten with zeros.</summary>
    internal void Unmap(uint id, long offset, long length, DeviceCounters counters)
    {
        EnterIo();
        try
        {
            lock (_lock) CheckWritable();
            long bs = BlockSize;
            byte[]? zeros = null;
            ForEachPiece(id, offset, length, (vblock, at, _, n) =>
            {
                lock (Stripe(id, vblock))
                {
                    if (n == bs)
                    {
                        lock (_lock)
                        {
                            CheckWritable();
                            var d = Dev(id);
                            if (!_tree.TryLookup(d.Root, vblock, out ulong _)) return;
                            try
                            {
                                d.Root = _tree.Remove(d.Root, vblock, out var removed);
                                _space.Unref(removed!.Value);
                            }
                            catch (MetadataFullException ex)
                            {
                                Fail(ex.Message);
                                throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
                            }
                            d.Mapped--;
                            _dirty = true;
                        }
                        return;
                    }
                    bool mapped;
                    lock (_lock) mapped = _tree.TryLookup(Dev(id).Root, vblock, out ulong _);
                    if (!mapped) return;
                    zeros ??= new byte[bs];
                    try
                    {
                        WriteBlock(id, vblock, at, zeros.AsSpan(0, n), counters);
                    }
                    catch (DataFullException)
                    {
                        throw DataFull();
                    }
                }
            });
        }
        finally
        {
            _gate.ExitRead();
        }
    }

    internal IReadOnlyList<(long Offset, long Length)> Allocated(uint id, long offset, long length)
    {
        EnterIo();
        try
        {
            long bs = BlockSize;
            CheckRange(id, offset, length);
            var ranges = new List<(long Offset, long Length)>();
            if (length == 0) return ranges;
            lock (_lock)
                foreach (var (vblock, _) in _tree.Range(Dev(id).Root, (ulong)(offset / bs), (ulong)((offset + length - 1) / bs) + 1))
                {
                    long start = Math.Max(offset, (long)vblock * bs), end = Math.Min(offset + length, ((long)vblock + 1) * bs);
                    if (ranges.Count > 0 && ranges[^1].Offset + ranges[^1].Length == start)
                        ranges[^1] = (ranges[^1].Offset, ranges[^1].Length + end - start);
                    else ranges.Add((start, end - start));
                }
            return ranges;
        }
        finally
        {
            _gate.ExitRead();
        }
    }
}
