using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;

namespace Strata.Thin.Space;

/// <summary>
/// Rebuild: a background thread gives every slab column that lies on a disk out of use (failed, missing) or being
/// emptied (`disk remove`, `disk replace`) a new place on a disk in use that the slab does not use yet, copies into it
/// what the column should hold (from a good copy, or rebuilt from the stripe), and swaps it into the slab table; the next
/// commit records it, so a crash or a restart resumes at the slab it was copying. While a column is copied, writes to
/// its slab also go to the new place, so nothing written meanwhile is missed. Only blocks the pool has allocated are
/// copied (<see cref="Allocated"/>): the rest is rewritten whole before it is ever read.
///
/// Lock order: block locks, then the table lock, then the rebuild lock.
///
/// Throttling: after each block the thread waits as long as the copy took whenever foreground IO ran meanwhile, so the
/// rebuild takes at most about half of the disks' time while the pool is busy, and all of it while it is idle.
/// </summary>
public sealed partial class ResilientStore
{
    readonly ConcurrentDictionary<int, (int Column, Column Target)> _pending = new();
    readonly object _rebuildLock = new();
    Thread? _rebuilder;
    volatile bool _stopping;
    long _foreground;            // IO calls so far (the throttle's view of a busy pool)
    long _rebuildDone, _rebuildTotal, _rebuildBytes, _rebuildSkipped;
    string? _rebuildStuck;
    readonly HashSet<int> _draining = [];

    /// <summary>Whether a pool block is allocated (the pool's view; racy reads are fine: a block allocated after the look
    /// is written through to the new place).</summary>
    internal Func<long, bool>? Allocated { get; set; }

    /// <summary>Rebuild progress: columns copied and to copy in this run, bytes copied, and why it stopped short (null:
    /// it did not).</summary>
    public (long Done, long Total, long Bytes, bool Running, string? Stuck) RebuildProgress
    {
        get
        {
            lock (_rebuildLock) return (_rebuildDone, _rebuildTotal, Interlocked.Read(ref _rebuildBytes), _rebuilder is not null, _rebuildStuck);
        }
    }

    /// <summary>Columns that must move: on a disk out of use, or on a disk being emptied.</summary>
    List<(int Slab, int Column)> ColumnsToMove()
    {
        var moves = new List<(int, int)>();
        var slabs = _slabs;
        for (int s = 0; s < slabs.Length; s++)
            for (int c = 0; c < (slabs[s]?.Length ?? 0); c++)
            {
                int disk = slabs[s]![c].Disk;
                bool draining;
                lock (_rebuildLock) draining = _draining.Contains(disk);
                if (!_disks[disk].InUse || draining) moves.Add((s, c));
            }
        return moves;
    }

    /// <summary>Starts the rebuild thread if a column must move and it is not running.</summary>
    public void StartRebuild()
    {
        lock (_rebuildLock)
        {
            if (_rebuilder is not null || _stopping || _slabs.Length == 0) return;
            var moves = ColumnsToMove();
            if (moves.Count == 0) return;
            (_rebuildDone, _rebuildTotal, _rebuildStuck) = (0, moves.Count, null);
            _rebuilder = new Thread(RebuildLoop) { IsBackground = true, Name = "strata rebuild" };
            _rebuilder.Start();
        }
    }

    /// <summary>Waits for a running rebuild to end (tests, `disk replace --wait`).</summary>
    public void WaitForRebuild()
    {
        Thread? t;
        lock (_rebuildLock) t = _rebuilder;
        t?.Join();
    }

    /// <summary>Stops a running rebuild at the next block (what it copied of its slab is dropped); a later
    /// <see cref="StartRebuild"/> starts again.</summary>
    void StopRebuild()
    {
        _stopping = true;
        WaitForRebuild();
        _stopping = false;
    }

    void RebuildLoop()
    {
        try
        {
            while (!_stopping)
            {
                var moves = ColumnsToMove();
                lock (_rebuildLock) _rebuildTotal = _rebuildDone + moves.Count;
                if (moves.Count == 0) break;
                var (slab, column) = moves[0];
                if (!TryMove(slab, column, out string? stuck))
                {
                    lock (_rebuildLock) _rebuildStuck = stuck;
                    break;
                }
                lock (_rebuildLock) _rebuildDone++;
            }
        }
        catch (Exception ex)
        {
            lock (_rebuildLock) _rebuildStuck = $"the rebuild failed: {ex.Message}";
        }
        finally
        {
            bool retired = false;
            lock (_rebuildLock)
            {
                _rebuilder = null;
                foreach (int d in _draining.ToList())
                    if (!_slabs.Any(s => s?.Any(c => c.Disk == d) == true))
                    {
                        _draining.Remove(d);
                        _disks[d].SetState(DiskState.Retired);
                        retired = true;
                    }
            }
            if (retired) MarkTableDirty(); // outside the rebuild lock: the table lock comes first where both are taken
            bool grow;
            lock (_rebuildLock) grow = _growAfterRebuild && _rebuildStuck is null;
            if (grow && !_stopping) Grow();
        }
    }

    bool TryMove(int slab, int column, out string? stuck)
    {
        stuck = null;
        var columns = _slabs[slab]!;
        var avoid = columns.Where((_, i) => i != column).Select(c => c.Disk).ToList();
        Column target;
        lock (_tableLock)
        {
            bool usable(int d)
            {
                lock (_rebuildLock) return _disks[d].InUse && !_draining.Contains(d);
            }
            // a disk being emptied is avoided too; a replacement disk is preferred (it is the emptiest)
            if (!_placement.TryPlace(1, usable, [.. avoid, columns[column].Disk], out var placed))
            {
                stuck = $"no disk in use has a free slab for slab {slab} (its other columns are on {string.Join(", ", avoid.Select(d => _disks[d].Path))}): add a disk (`strata pool disk add`)";
                return false;
            }
            target = placed[0];
        }
        _pending[slab] = (column, target);
        var targetDisk = _disks[target.Disk];
        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Max(_blockSize, ChunkBytes));
        try
        {
            PrefetchSources(slab, column);
            long blocks = _slabBytes / _blockSize, first = _slabBytes * slab / _blockSize;
            for (long b = 0; b < blocks && !_stopping; b++)
            {
                if (Allocated is { } allocated && !allocated(first + b)) continue;
                long seen = Interlocked.Read(ref _foreground);
                var clock = Stopwatch.StartNew();
                var taken = LockRange((first + b) * _blockSize, _blockSize);
                try
                {
                    if (!targetDisk.InUse) break;
                    CopyColumn(slab, b, column, target, buffer);
                }
                catch (StrataException ex) when (ex.Kind == ErrorKind.Io)
                {
                    // nothing good to copy: a block lost beyond repair, or one allocated and not written yet (whose
                    // write, under this lock after us, goes to the new place too); the target keeps what it holds,
                    // which the checksums or the stripe's other columns tell apart from good data
                    Interlocked.Increment(ref _rebuildSkipped);
                }
                finally
                {
                    Unlock(taken);
                }
                if (Interlocked.Read(ref _foreground) != seen) Thread.Sleep(clock.Elapsed); // the pool is busy: half the time each
            }
            if (targetDisk.InUse)
                try
                {
                    targetDisk.Use().Flush();
                }
                catch (Exception ex) when (ex is IOException or StrataException)
                {
                    targetDisk.Fail($"a flush failed during a rebuild ({ex.Message})");
                }
            if (_stopping || !targetDisk.InUse)
            {
                // stopped, or the target failed: the next round (or run) picks another place
                _pending.TryRemove(slab, out _);
                lock (_tableLock) _placement.Release(target);
                return !_stopping;
            }
            var all = LockAll();
            try
            {
                lock (_tableLock)
                {
                    var next = (Column[])_slabs[slab]!.Clone();
                    var old = next[column];
                    next[column] = target;
                    _slabs[slab] = next;
                    _pending.TryRemove(slab, out _);
                    if (_disks[old.Disk].InUse) _placement.Release(old); // an emptied disk's slab is free again; a failed one's stays out
                    _tableDirty = true;
                }
            }
            finally
            {
                Unlock(all);
            }
            return true;
        }
        catch (Exception ex) when (ex is IOException or StrataException)
        {
            _pending.TryRemove(slab, out _);
            lock (_tableLock) _placement.Release(target);
            if (!targetDisk.InUse) return true; // the loop picks another place
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>For parity, asks the disks of a slab's other columns to read them ahead, all at once: a lost chunk is rebuilt
    /// from the rest of its stripe, and the reads of several disks then overlap. (A mirror's copy reads one column, the
    /// disks' own readahead keeps up with it.)</summary>
    void PrefetchSources(int slab, int column)
    {
        if (!_shape.IsParity) return;
        var columns = _slabs[slab]!;
        for (int i = 0; i < columns.Length; i++)
        {
            var disk = _disks[columns[i].Disk];
            if (i == column || !disk.InUse) continue;
            try
            {
                disk.Use().Prefetch(DiskOffset(columns[i], 0), _slabSize);
            }
            catch (Exception ex) when (ex is IOException or StrataException)
            {
                // only advice: the reads find out
            }
        }
    }

    List<object> LockAll()
    {
        foreach (var o in _locks) Monitor.Enter(o);
        return [.. _locks];
    }

    /// <summary>Writes what column <paramref name="column"/> of a slab holds for block <paramref name="block"/> (of the slab)
    /// to <paramref name="target"/>.</summary>
    void CopyColumn(int slab, long block, int column, Column target, byte[] buffer)
    {
        if (!_shape.IsParity)
        {
            var data = buffer.AsSpan(0, (int)_blockSize);
            ReadCopies(slab, block * _blockSize, data); // verified, repaired: a good copy, or an IO error
            WriteTarget(target, block * _blockSize, data);
            return;
        }
        int role = (int)(((column - block) % ColumnsPerSlab + ColumnsPerSlab) % ColumnsPerSlab);
        var chunk = buffer.AsSpan(0, (int)ChunkBytes);
        if (role < K) ReadChunkRows(slab, block, role, 0, RowsPerChunk, chunk); // rebuilt from the others where it must be
        else
        {
            var stripe = ArrayPool<byte>.Shared.Rent((int)(_blockSize + 2 * ChunkBytes));
            try
            {
                var data = stripe.AsSpan(0, (int)_blockSize);
                for (int j = 0; j < K; j++) ReadChunkRows(slab, block, j, 0, RowsPerChunk, data.Slice((int)(j * ChunkBytes), (int)ChunkBytes));
                var p = stripe.AsSpan((int)_blockSize, (int)ChunkBytes);
                var q = _shape.ParityColumns > 1 ? stripe.AsSpan((int)(_blockSize + ChunkBytes), (int)ChunkBytes) : Span<byte>.Empty;
                ParityCode.Encode(data, K, p, q);
                (role == K ? p : q).CopyTo(chunk);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(stripe);
            }
        }
        WriteTarget(target, RowOffset(block, 0), chunk);
    }

    /// <summary>Writes to a rebuild's new place; a failure takes that disk out of use (the rebuild then picks another).</summary>
    void WriteTarget(Column target, long inColumn, ReadOnlySpan<byte> data)
    {
        var disk = _disks[target.Disk];
        try
        {
            disk.Use().Write(DiskOffset(target, inColumn), data);
            Interlocked.Add(ref _rebuildBytes, data.Length);
        }
        catch (Exception ex) when (ex is IOException or StrataException)
        {
            disk.Fail($"a write failed during a rebuild ({ex.Message})");
        }
    }

    /// <summary>A write to a slab whose column is being moved goes to the new place too.</summary>
    void WriteThrough(int slab, int column, long inColumn, ReadOnlySpan<byte> data)
    {
        if (!_pending.TryGetValue(slab, out var p) || p.Column != column) return;
        var disk = _disks[p.Target.Disk];
        if (!disk.InUse) return;
        try
        {
            disk.Use().Write(DiskOffset(p.Target, inColumn), data);
        }
        catch (Exception ex) when (ex is IOException or StrataException)
        {
            disk.Fail($"a write failed ({ex.Message})");
        }
    }
}
