using Strata.Block;
using Strata.Native;
using Strata.Thin.Metadata;

namespace Strata.Thin.Space;

/// <summary>
/// A resilient pool's data store: the pool's data address space cut into slabs, each slab's columns on distinct disks
/// (<see cref="SlabPlacement"/>), kept as copies (simple, mirror, mirror3: ResilientStore.Mirror.cs) or as stripes of data
/// and parity chunks (parity, parity2: ResilientStore.Parity.cs), with a crc32c of every 4 KiB sector
/// (<see cref="ChecksumTable"/>) verified on every read. A sector that fails its checksum, or a disk that fails a read,
/// is served from another copy or rebuilt from parity and rewritten in place; a disk that fails a write or a flush goes
/// out of use (its copies are stale), and IO goes on from the others while the pool still has every block.
///
/// Transactions: the thin pool never writes a block its last commit maps in place on such a store
/// (<see cref="IPoolData.CopiesCommittedBlocks"/>), so the copies, the stripes and the checksums of committed blocks
/// never change between commits; a crash leaves every committed block whole and its checksums right (no write hole,
/// no resync), and the checksums and slab table commit with the mappings (<see cref="IPoolData.Persist"/>).
///
/// Concurrency: IO on one pool block holds that block's lock (striped), so a read never checks a sector that a write is
/// halfway through, and a repair never rewrites one.
/// </summary>
public sealed partial class ResilientStore : IBlockStore, IPoolData
{
    public const int SectorSize = 4096;

    Disk[] _disks;       // by slot; replaced whole (under every block lock) when a disk is added
    uint _blockSize;     // the pool's block size: one parity stripe
    readonly object[] _locks = Enumerable.Range(0, 1024).Select(_ => new object()).ToArray();
    readonly object _tableLock = new();
    SlabShape _shape;
    long _slabSize;      // bytes of one column on its disk
    long _slabBytes;     // pool data bytes of one slab
    bool _checksums;
    Column[]?[] _slabs = []; // by virtual slab; null: not placed yet (nothing was ever written there)
    ChecksumTable? _sums;
    SlabPlacement _placement = null!;
    bool _tableDirty;
    List<ulong> _tableBlocks = [];
    long _unrecoverable;

    ResilientStore(Disk[] disks, uint blockSize)
    {
        _disks = disks;
        _blockSize = blockSize == 0 ? ThinPool.MinBlockSize : blockSize;
        foreach (var d in disks) Watch(d);
    }

    void Watch(Disk d) => d.OnFailed = _ =>
    {
        MarkTableDirty();
        StartRebuild(); // into free space of the other disks, at once
    };

    /// <summary>A store over <paramref name="disks"/> (by slot) whose layout the pool's metadata holds (see
    /// <see cref="IPoolData.Load"/>).</summary>
    public static ResilientStore Open(IReadOnlyList<Disk> disks) => new([.. disks], 0);

    /// <summary>A new layout over <paramref name="disks"/>: as many slabs as fit with each slab's columns on distinct
    /// disks. The first commit of the pool records it.</summary>
    public static ResilientStore Create(IReadOnlyList<Disk> disks, uint blockSize, Resiliency resiliency, long slabSize, bool checksums)
    {
        if (slabSize <= 0 || slabSize % blockSize != 0 || slabSize % (1 << 20) != 0)
            throw StrataException.Invalid($"slab size {slabSize} must be a multiple of 1 MiB and of the block size ({blockSize})");
        var shape = SlabShape.For(resiliency, disks.Count, blockSize);
        var store = new ResilientStore([.. disks], blockSize);
        // slabs are placed on first write: what is not placed yet is the room a rebuild has
        var placement = new SlabPlacement(disks.Select(d => d.Slabs));
        long count = SlabPlacement.Capacity([.. disks.Select(d => d.Slabs)], shape.Columns);
        if (count == 0)
            throw StrataException.Invalid($"the disks hold no {ResiliencyNames.Name(resiliency)} slab of {slabSize} bytes: they need {shape.Columns} disks with at least one slab each");
        store.Apply(new SpaceRecord(shape, slabSize, checksums, [], new Column[]?[count]), placement);
        store._tableDirty = true;
        return store;
    }

    void Apply(SpaceRecord record, SlabPlacement placement)
    {
        _shape = record.Shape;
        _slabSize = record.SlabSize;
        _slabBytes = _shape.DataBytes(_slabSize);
        _checksums = record.Checksums;
        _slabs = [.. record.Slabs];
        _placement = placement;
        _sums = _checksums ? new ChecksumTable((ulong)(Length / SectorSize)) : null;
    }

    public string Name => $"the pool's data ({ResiliencyNames.Name(_shape.Resiliency)} over {_disks.Length} disks)";

    public long Length => _slabs.LongLength * _slabBytes;

    public SlabShape Shape => _shape;
    public long SlabSize => _slabSize;
    public bool Checksums => _checksums;
    public IReadOnlyList<Disk> Disks => _disks;
    public int SlabCount => _slabs.Length;

    bool TryPlaceDegraded(out Column[] columns)
    {
        columns = [];
        int inUse = _disks.Count(d => d.InUse && !Draining(d.Slot) && _placement.Free(d.Slot) > 0);
        int need = _shape.Columns - _shape.Tolerates;
        if (inUse < need) return false;
        if (!_placement.TryPlace(inUse, d => _disks[d].InUse && !Draining(d), [], out var live)) return false;
        var rest = live.Select(c => c.Disk).ToList();
        if (!_placement.TryPlace(_shape.Columns - live.Length, d => !_disks[d].InUse && _disks[d].State != DiskState.Retired, rest, out var dead))
        {
            foreach (var c in live) _placement.Release(c);
            return false;
        }
        columns = [.. live, .. dead];
        StartRebuild();
        return true;
    }

    /// <summary>The columns of a slab, placing it first if nothing was written to it yet; fails with NoSpace when the
    /// disks have no room left for it (a rebuild took the free space, or disks are out of use).</summary>
    Column[] Placed(int slab)
    {
        if (_slabs[slab] is { } placed) return placed;
        lock (_tableLock)
        {
            if (_slabs[slab] is { } raced) return raced;
            // with too few disks in use, a slab is born degraded (its other columns on disks out of use, for the rebuild to
            // move), as long as enough of it can be kept
            if (!_placement.TryPlace(_shape.Columns, d => _disks[d].InUse && !Draining(d), [], out var columns)
                && !TryPlaceDegraded(out columns))
                throw new StrataException(ErrorKind.NoSpace, $"the pool's disks have no room left for slab {slab} ({_shape.Columns} disks in use with a free slab of {_slabSize} bytes): add a disk (`strata pool disk add`)");
            _slabs[slab] = columns;
            _tableDirty = true;
            return columns;
        }
    }

    /// <summary>Sectors that failed on every copy (the reader got an IO error).</summary>
    public long Unrecoverable => Interlocked.Read(ref _unrecoverable);

    bool IPoolData.CopiesCommittedBlocks => true;

    bool IPoolData.Dirty
    {
        get
        {
            lock (_tableLock) return _tableDirty;
        }
    }

    void IPoolData.Close() => StopRebuild();

    void IPoolData.Opened(Func<long, bool> allocated)
    {
        Allocated = allocated;
        StartRebuild(); // what an earlier run left to rebuild, or a disk missing now
    }

    object LockFor(long block) => _locks[(int)(block % _locks.Length)];

    /// <summary>Takes the locks of the pool blocks of [offset, offset+length), in one order for every caller.</summary>
    List<object> LockRange(long offset, long length)
    {
        long first = offset / _blockSize, last = (offset + Math.Max(length, 1) - 1) / _blockSize;
        if (first == last)
        {
            // one block (most IO): no set to sort
            var only = _locks[(int)(first % _locks.Length)];
            Monitor.Enter(only);
            return [only];
        }
        var indexes = new SortedSet<int>();
        for (long b = first; b <= last && indexes.Count < _locks.Length; b++) indexes.Add((int)(b % _locks.Length));
        var taken = new List<object>(indexes.Count);
        foreach (int i in indexes)
        {
            Monitor.Enter(_locks[i]);
            taken.Add(_locks[i]);
        }
        return taken;
    }

    static void Unlock(List<object> taken)
    {
        foreach (var o in taken) Monitor.Exit(o);
    }

    /// <summary>Calls <paramref name="piece"/> for each part of [offset, offset+length) that lies in one slab: slab, offset
    /// in the slab, offset from the start, length.</summary>
    void ForEachSlab(long offset, long length, Action<int, long, long, long> piece)
    {
        CheckRange(offset, length);
        for (long done = 0; done < length;)
        {
            long pos = offset + done, inSlab = pos % _slabBytes, n = Math.Min(_slabBytes - inSlab, length - done);
            piece((int)(pos / _slabBytes), inSlab, done, n);
            done += n;
        }
    }

    void CheckRange(long offset, long count)
    {
        if (offset < 0 || count < 0 || offset + count > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{Name}: {count} bytes at {offset} are outside its {Length} bytes");
    }

    public void Read(long offset, Span<byte> buffer)
    {
        Interlocked.Increment(ref _foreground);
        var taken = LockRange(offset, buffer.Length);
        try
        {
            // a span cannot be captured: walk the slabs by hand
            CheckRange(offset, buffer.Length);
            for (int done = 0; done < buffer.Length;)
            {
                long pos = offset + done, inSlab = pos % _slabBytes;
                int n = (int)Math.Min(_slabBytes - inSlab, buffer.Length - done);
                int slab = (int)(pos / _slabBytes);
                if (_slabs[slab] is null) buffer.Slice(done, n).Clear(); // never written
                else if (_shape.IsParity) ReadParity(slab, inSlab, buffer.Slice(done, n));
                else ReadMirror(slab, inSlab, buffer.Slice(done, n));
                done += n;
            }
        }
        finally
        {
            Unlock(taken);
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        Interlocked.Increment(ref _foreground);
        var taken = LockRange(offset, data.Length);
        try
        {
            CheckRange(offset, data.Length);
            for (int done = 0; done < data.Length;)
            {
                long pos = offset + done, inSlab = pos % _slabBytes;
                int n = (int)Math.Min(_slabBytes - inSlab, data.Length - done);
                int slab = (int)(pos / _slabBytes);
                Placed(slab);
                if (_shape.IsParity) WriteParity(slab, inSlab, data.Slice(done, n));
                else WriteMirror(slab, inSlab, data.Slice(done, n));
                done += n;
            }
        }
        finally
        {
            Unlock(taken);
        }
    }

    /// <summary>Flushes every disk in use; a disk whose flush fails goes out of use. Fails when the disks left in use no
    /// longer hold every slab.</summary>
    public void Flush()
    {
        foreach (var d in _disks)
        {
            if (!d.InUse) continue;
            try
            {
                d.Use().Flush();
            }
            catch (Exception ex) when (ex is IOException or StrataException)
            {
                d.Fail($"a flush failed ({ex.Message})");
            }
        }
        if (LostSlabs() is { } lost) throw new IOException(lost);
    }

    /// <summary>Why the disks in use no longer hold every slab (null: they do).</summary>
    public string? LostSlabs()
    {
        for (int s = 0; s < _slabs.Length; s++)
        {
            if (_slabs[s] is not { } columns) continue;
            int missing = columns.Count(c => !_disks[c.Disk].InUse);
            if (missing > _shape.Tolerates)
            {
                var gone = string.Join(", ", columns.Where(c => !_disks[c.Disk].InUse).Select(c => _disks[c.Disk].Path).Distinct());
                return $"slab {s} of the pool's data is lost: its columns on {gone} are out of use";
            }
        }
        return null;
    }

    public bool Discard(long offset, long length)
    {
        var taken = LockRange(offset, length);
        try
        {
            bool all = true;
            ForEachSlab(offset, length, (slab, inSlab, _, n) =>
            {
                foreach (var (disk, at, count) in ColumnRanges(slab, inSlab, n))
                    try
                    {
                        all &= disk.InUse && disk.Use().Discard(at, count);
                    }
                    catch (Exception ex) when (ex is IOException or StrataException)
                    {
                        all = false;
                    }
            });
            // the sums say zeros only when every column reads as zeros now; otherwise a copy that kept its bytes still
            // matches them (these blocks are free: nothing reads them until a write rewrites them whole)
            if (all && _sums is not null && offset % SectorSize == 0 && length % SectorSize == 0)
                _sums.SetZero((ulong)(offset / SectorSize), (ulong)(length / SectorSize));
            return all;
        }
        finally
        {
            Unlock(taken);
        }
    }

    public bool IsHole(long offset, long length)
    {
        if (length <= 0) return false;
        if (_sums is not null)
        {
            if (offset % SectorSize != 0 || length % SectorSize != 0) return false;
            for (long s = offset / SectorSize; s < (offset + length) / SectorSize; s++)
                if (_sums.Get((ulong)s) != ChecksumTable.ZeroSum) return false;
        }
        bool hole = true;
        ForEachSlab(offset, length, (slab, inSlab, _, n) =>
        {
            // a column being moved: its new place holds whatever it held, and only what is written reaches it
            if (_pending.ContainsKey(slab)) hole = false;
            // a slab placed now may land on disk slabs that hold what an earlier placement, lost to a crash, wrote
            try
            {
                Placed(slab);
            }
            catch (StrataException)
            {
                hole = false; // the write that follows fails the same way
            }
            if (_shape.IsParity && (inSlab % _blockSize != 0 || n % _blockSize != 0)) hole = false;
            if (!hole) return;
            foreach (var (disk, at, count) in ColumnRanges(slab, inSlab, n))
                try
                {
                    hole &= disk.InUse && disk.Use().IsHole(at, count);
                }
                catch (Exception ex) when (ex is IOException or StrataException)
                {
                    hole = false;
                }
        });
        return hole;
    }

    /// <summary>Where a piece of a slab lies on each of its columns' disks: the same range of every copy; for parity, whole
    /// blocks only, which take the same range of every column.</summary>
    IEnumerable<(Disk Disk, long At, long Count)> ColumnRanges(int slab, long inSlab, long n)
    {
        long at = inSlab, count = n;
        if (_shape.IsParity)
        {
            long chunk = _blockSize / _shape.DataColumns;
            long first = inSlab / _blockSize, end = (inSlab + n + _blockSize - 1) / _blockSize;
            (at, count) = (first * chunk, (end - first) * chunk);
        }
        if (_slabs[slab] is not { } columns) yield break; // never written: a hole already
        foreach (var c in columns)
            yield return (_disks[c.Disk], DiskOffset(c, at), count);
        if (_pending.TryGetValue(slab, out var moving)) yield return (_disks[moving.Target.Disk], DiskOffset(moving.Target, at), count);
    }

    long DiskOffset(Column c, long inColumn) => _disks[c.Disk].DataStart + c.Slab * _slabSize + inColumn;

    public void Grow(long length)
    {
        if (length > Length) throw StrataException.Unsupported("a resilient pool grows by its disks (`strata pool disk add`), not by its data store");
    }

    public void Dispose()
    {
        StopRebuild();
        foreach (var d in _disks) d.Store?.Dispose();
    }

    // ---- transactions ----

    void MarkTableDirty()
    {
        lock (_tableLock) _tableDirty = true;
    }

    void IPoolData.Load(MetadataSpace meta, ulong table, ulong sums, uint blockSize)
    {
        StopRebuild(); // a reload (a failed commit) replaces the table it works on; Opened starts it again
        if (table == 0)
        {
            if (_slabs.Length > 0 && _tableDirty)
            {
                _sums?.Load(meta, 0); // a pool being made: its first commit records the layout
                return;
            }
            throw StrataException.Corrupt("the pool's metadata has no space table for its disks; run `strata pool check`");
        }
        if (_slabs.Length > 0 && blockSize != _blockSize) throw StrataException.Corrupt($"the pool's block size changed from {_blockSize} to {blockSize}");
        // a reload (a failed transaction) may come while IO is inside the store: it waits for that IO
        var all = LockAll();
        try
        {
            LoadLocked(meta, table, sums, blockSize);
        }
        finally
        {
            Unlock(all);
        }
    }

    void LoadLocked(MetadataSpace meta, ulong table, ulong sums, uint blockSize)
    {
        _blockSize = blockSize;
        var (record, blocks) = SpaceTable.Load(meta, table, _blockSize);
        // the directory may name disks the metadata does not have yet: an add that did not reach its commit completes now
        if (record.Disks.Count > _disks.Length)
            throw StrataException.Corrupt($"the pool's metadata records {record.Disks.Count} disks, its directory (pool.json) {_disks.Length}");
        var placement = new SlabPlacement(_disks.Select((d, i) => i < record.Disks.Count ? record.Disks[i].Slabs : d.Slabs));
        foreach (var slab in record.Slabs)
            foreach (var c in slab ?? []) placement.Take(c);
        bool changed = record.Disks.Count < _disks.Length;
        for (int i = 0; i < record.Disks.Count; i++)
        {
            var recorded = record.Disks[i];
            // found out of use now (missing, unreadable): recorded at the next commit, so that a disk that comes back
            // later is not taken for current
            if (!_disks[i].InUse && recorded.State is DiskState.Healthy or DiskState.Failing) changed = true;
            if (recorded.Id != _disks[i].Id) throw StrataException.Corrupt($"disk {_disks[i].Path} is not the disk the metadata records in slot {i}");
            if (_disks[i].Store is null) (_disks[i].DataStart, _disks[i].Slabs) = (recorded.DataStart, recorded.Slabs); // missing: what it had
            // a disk out of use stays so: what it holds stopped being kept current when it went (failing is this run's
            // count of repaired errors, not a state to keep)
            if (recorded.State >= DiskState.Failed && recorded.State > _disks[i].State)
                _disks[i].SetState(recorded.State, recorded.State == DiskState.Retired ? null : "out of use since an earlier run");
        }
        Apply(record, placement);
        _sums?.Load(meta, sums);
        _tableBlocks = blocks;
        _tableDirty = changed;
    }

    (ulong Table, ulong Sums) IPoolData.Persist(MetadataSpace meta, ulong transaction)
    {
        ulong sums = _sums?.Persist(transaction) ?? 0;
        lock (_tableLock)
        {
            if (_tableDirty || _tableBlocks.Count == 0)
            {
                foreach (ulong b in _tableBlocks) meta.Unref(b);
                _tableBlocks = SpaceTable.Write(meta, Record(), transaction);
                _tableDirty = false;
            }
            return (_tableBlocks[0], sums);
        }
    }

    SpaceRecord Record() => new(_shape, _slabSize, _checksums,
        [.. _disks.Select(d => new DiskEntry(d.Id, d.Slabs, d.DataStart, d.State == DiskState.Failing ? DiskState.Healthy : d.State))],
        [.. _slabs]);
}
