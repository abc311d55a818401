using Strata.Native;
using Strata.Thin.Metadata;
using Strata.Block;

namespace Strata.Thin;

/// <summary>
/// The pool's transactions: commit (on flush and FUA, on device changes, and every
/// <see cref="PoolOptions.CommitInterval"/> from the commit timer), flushes of the data store, a consistent read of
/// the committed metadata, and the read-only state a failure leaves. Invariants: data reaches stable storage
/// before the metadata that maps it, the metadata before the superblock, and the superblock goes to the slot the
/// last commit did not use; a commit holds the gate for writing (no IO in flight) and the metadata lock, after
/// a flush of the data ahead of it without them; data flushes run one at a time and a failed one is kept, so
/// every later flush and commit fails with it; a commit that fails (or metadata that runs out) leaves the pool
/// at its last commit, read-only, with needs_check set on disk. Lock order: gate, metadata lock, flush lock.
/// </summary>
public sealed partial class ThinPool
{
    readonly Timer? _timer;
    // data flushes: writes in place (which change no metadata) are numbered as they complete; a flush of the data
    // store covers every write numbered before it started. Flushes run one at a time (_flushLock), so a flush never
    // returns on the strength of another that is still running, or that failed.
    readonly object _flushLock = new();
    long _writesInPlace;     // writes in place completed so far
    long _flushedInPlace;    // of them, how many the last successful flush of the data store covers
    bool _lostTransaction; // Fail() threw away writes that were not committed: a flush must say so
    volatile Exception? _flushFailed; // a data flush ahead of a commit failed: the next commit fails with it

    void CheckWritable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_readOnly is not null) throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
    }

    /// <summary>Makes everything written so far durable: data first, then the metadata that maps it, then the superblock.</summary>
    public void Commit() => Commit(waitForDiscards: true);

    void Commit(bool waitForDiscards)
    {
        bool inPlaceOnly;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_lostTransaction) throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only and lost the writes since its last commit: {_readOnly}");
            // no metadata changed (or none can be committed any more: the pool is read-only): every write completed
            // so far went in place, into blocks the last commit maps, and needs a flush of the data, not a commit,
            // so IO goes on meanwhile (a periodic commit never flushes such writes; only a user's flush or FUA does)
            inPlaceOnly = _readOnly is not null || !_dirty && _flushFailed is null && _poolData is not { Dirty: true };
        }
        if (inPlaceOnly)
        {
            FlushData();
            DiscardReleased(waitForDiscards);
            return;
        }
        FlushAhead();
        _gate.EnterWrite();
        try
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_lostTransaction) throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only and lost the writes since its last commit: {_readOnly}");
                if (_readOnly is not null) return; // nothing can have changed since the last commit
                CommitLocked();
            }
        }
        finally
        {
            _gate.ExitWrite();
        }
        DiscardReleased(waitForDiscards);
    }

    /// <summary>Commits everything written so far, then runs <paramref name="read"/> on the metadata store with no IO
    /// or commit until it returns: a check or a dump of a pool in use sees one consistent transaction.</summary>
    public T ReadCommitted<T>(Func<IBlockStore, T> read)
    {
        FlushAhead();
        _gate.EnterWrite();
        try
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_readOnly is null) CommitLocked();
                return read(_metaStore);
            }
        }
        finally
        {
            _gate.ExitWrite();
            DiscardReleased();
        }
    }

    /// <summary>Blocks commits released and held (<see cref="DataSpace.Release(bool)"/>) until their space is given back,
    /// with the space they belong to (a failure reloads the space: the held blocks are then the reloaded space's
    /// business no more).</summary>
    sealed record PendingDiscards(DataSpace Space)
    {
        public List<ulong> Blocks { get; } = [];
    }

    PendingDiscards? _toDiscard; // under _lock

    const int DiscardBatch = 32; // a commit waits for one batch: small, so that IO stops for milliseconds at most

    readonly object _discardLock = new(); // one thread gives space back at a time: discards contend with writes

    // a write found no free block: the held blocks are freed without their space given back (punching each is slower
    // than a stream of copy-on-write frees them: a mirror's 1 MiB writes over mapped blocks fell to the punch rate);
    // cleared once the backlog is gone
    volatile bool _spaceShort;

    /// <summary>Gives back the space of the blocks the commits so far released (best effort: a failed discard leaves
    /// bytes that nothing reads), then frees them. Runs after a commit without the gate and the lock, a batch at a time
    /// under the gate for reading, as IO does: writes go on meanwhile, and a commit waits for one batch at most.
    /// Consecutive blocks go in one discard. One thread at a time: with <paramref name="wait"/> (a user's commit, which
    /// returns with the space given back) this waits for the one at work; else (the commit timer) it leaves the blocks to
    /// it.</summary>
    void DiscardReleased(bool wait = true)
    {
        while (true)
        {
            if (wait) Monitor.Enter(_discardLock);
            else if (!Monitor.TryEnter(_discardLock)) return;
            try
            {
                while (TakePendingDiscards() is { } pending)
                    if (!Discard(pending)) return;
                _spaceShort = false;
            }
            finally
            {
                Monitor.Exit(_discardLock);
            }
            // blocks a commit released while this thread was finishing, that commit's thread leaving them to it
            lock (_lock) if (_toDiscard is null) return;
        }
    }

    PendingDiscards? TakePendingDiscards()
    {
        lock (_lock)
        {
            var pending = _toDiscard;
            _toDiscard = null;
            return pending;
        }
    }

    /// <summary>Discards and frees <paramref name="pending"/> (frees without discarding while space is short); false when
    /// the pool closed or reloaded its space meanwhile.</summary>
    bool Discard(PendingDiscards pending)
    {
        pending.Blocks.Sort();
        long bs = BlockSize;
        for (int start = 0; start < pending.Blocks.Count; start += DiscardBatch)
        {
            var batch = pending.Blocks.GetRange(start, Math.Min(DiscardBatch, pending.Blocks.Count - start));
            try
            {
                EnterIo();
            }
            catch (ObjectDisposedException)
            {
                return false;
            }
            try
            {
                lock (_lock)
                    if (!ReferenceEquals(pending.Space, _space)) return false;
                for (int i = 0; i < batch.Count && !_spaceShort;)
                {
                    int run = 1;
                    while (i + run < batch.Count && batch[i + run] == batch[i] + (ulong)run) run++;
                    try
                    {
                        _data.Discard((long)batch[i] * bs, run * bs);
                    }
                    catch (Exception ex) when (ex is IOException or StrataException)
                    {
                        // the blocks are free all the same: nothing reads them until a write rewrites them
                    }
                    i += run;
                }
            }
            finally
            {
                _gate.ExitRead();
            }
            lock (_lock)
            {
                if (!ReferenceEquals(pending.Space, _space)) return false;
                _space.Discarded(batch);
            }
            lock (_spaceSignal) Monitor.PulseAll(_spaceSignal);
        }
        return true;
    }

    void BackgroundCommit()
    {
        try
        {
            if (!_disposed && (_dirty || _poolData is { Dirty: true })) Commit(waitForDiscards: false);
        }
        catch (Exception)
        {
            // the next flush reports it to a user
        }
    }

    /// <summary>Flushes the data written so far while IO goes on, before a commit stops IO: the commit's own
    /// flush then has only what was written in between to wait for (a commit of a pool with a second of random
    /// writes behind it held all IO for ~200 ms of every second). A failure is kept for the next commit to fail
    /// with, never dropped: the kernel reports a lost write-back once, and a later flush would succeed.</summary>
    void FlushAhead()
    {
        if (!_dirty || _disposed || _readOnly is not null) return;
        try
        {
            SyncData();
        }
        catch (Exception ex) when (ex is IOException or StrataException or ObjectDisposedException)
        {
            // recorded by SyncData: the commit fails with it (or, disposed, fails on its own)
        }
    }

    /// <summary>Makes every write in place completed before the call durable (a flush with no metadata to commit).</summary>
    void FlushData()
    {
        long target = Interlocked.Read(ref _writesInPlace);
        if (Volatile.Read(ref _flushedInPlace) >= target && _flushFailed is null) return;
        try
        {
            lock (_flushLock)
                if (_flushedInPlace < target || _flushFailed is not null) SyncData();
        }
        catch (Exception ex) when (ex is IOException or StrataException)
        {
            throw new StrataException(ErrorKind.Io, $"the pool could not flush its data: {ex.Message}", ex);
        }
    }

    /// <summary>Flushes the data store, one flush at a time. A failure is kept: every later flush and commit fails
    /// with it (the kernel reports a lost write-back once, and a later flush would succeed).</summary>
    void SyncData()
    {
        lock (_flushLock)
        {
            if (_flushFailed is { } failed) throw failed;
            long covered = Interlocked.Read(ref _writesInPlace);
            try
            {
                _data.Flush();
            }
            catch (Exception ex) when (ex is IOException or StrataException)
            {
                _flushFailed ??= ex;
                throw;
            }
            if (covered > _flushedInPlace) Volatile.Write(ref _flushedInPlace, covered);
        }
    }

    void CommitLocked()
    {
        if (_poolData is { Dirty: true }) _dirty = true; // a disk's state, a rebuilt slab
        if (_poolData is not null && (ulong)(_data.Length / BlockSize) > _space.Blocks)
        {
            _space.Grow((ulong)(_data.Length / BlockSize)); // a disk added room
            _dirty = true;
        }
        if (!_dirty && _flushFailed is null) return;
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        ulong next = _meta.Transaction + 1;
        bool upgrading = _committed.Format < _committed.NeededFormat;
        try
        {
            SyncData(); // the new data first (writes in place too); fails with an earlier failed flush
            foreach (ulong b in _tableBlocks) _meta.Unref(b);
            _tableBlocks = DeviceTable.Write(_meta, _devices.Values, next);
            ulong table = _tableBlocks.Count == 0 ? 0 : _tableBlocks[0];
            ulong refIndex = _space.Persist(next);
            var (spaceTable, sums) = _poolData?.Persist(_meta, next) ?? (0, 0);
            var buffer = new byte[MetadataBlock.Size];
            foreach (var node in _meta.FreshNodes())
            {
                node.Encode(buffer, next);
                _meta.Write(node.Block, buffer);
            }
            _metaStore.Flush();
            var sb = _committed with { Transaction = next, DeviceTable = table, RefIndex = refIndex, DataBlocks = _space.Blocks, MetadataBlocks = _meta.Blocks, SpaceTable = spaceTable, Sums = sums };
            sb = sb with { Format = sb.NeededFormat };
            sb.Write(buffer);
            _metaStore.Write((long)sb.Slot * MetadataBlock.Size, buffer);
            _metaStore.Flush();
            _committed = sb;
            _slotDamage = null; // the slot the pool did not open at is the one just written
        }
        catch (MetadataFullException ex)
        {
            Fail(ex.Message);
            throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
        }
        catch (Exception ex) when (ex is IOException or StrataException)
        {
            // a failed flush may have dropped what it was to write, and a retry could reuse blocks a superblock
            // already on disk points at: stop here, at the last commit, read-only
            try
            {
                Fail($"a commit failed ({ex.Message})");
            }
            catch (Exception)
            {
                _readOnly ??= $"a commit failed ({ex.Message})";
                _lostTransaction = true;
            }
            throw new StrataException(ErrorKind.Io, $"the pool could not commit and is read-only now: {ex.Message}", ex);
        }
        _meta.Transaction = next;
        _meta.Committed();
        _dirty = false;
        _commits++;
        _commitNs += (long)System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalNanoseconds;
        // the freed blocks' space goes back to the host after the commit, outside the gate (DiscardReleased), so IO
        // goes on meanwhile; until then they stay out of allocation
        var released = _space.Release(hold: _options.DiscardFreed);
        if (_options.DiscardFreed && released.Count > 0)
        {
            if (_toDiscard is not { } pending || !ReferenceEquals(pending.Space, _space)) _toDiscard = pending = new(_space);
            pending.Blocks.AddRange(released);
        }
        else if (released.Count > 0) lock (_spaceSignal) Monitor.PulseAll(_spaceSignal);
        _meta.TrimCache(65536);
        if (upgrading)
        {
            // the first commit in a newer format commits again, so that the other slot leaves the older format too:
            // an older Strata then finds no superblock it reads and refuses the pool, instead of opening it at the
            // older slot and rolling back (and overwriting) what this commit did
            _dirty = true;
            CommitLocked();
        }
    }

    /// <summary>Commits the pool as it is now into both superblock slots (for <see cref="PoolRepair"/>).</summary>
    internal void CommitToBothSlots()
    {
        // twice, so that both slots hold the repaired pool: a later fallback to the older one finds nothing the
        // repair acknowledged (a lost transaction) or cleared (needs_check) coming back
        lock (_lock)
            for (int slot = 0; slot < 2; slot++)
            {
                _dirty = true;
                CommitLocked();
            }
        DiscardReleased();
    }

    /// <summary>The metadata cannot take this transaction: the pool goes back to its last commit, read-only,
    /// with needs_check set on disk.</summary>
    void Fail(string why)
    {
        var flagged = _committed with { Transaction = _committed.Transaction + 1, Flags = _committed.Flags | Superblock.NeedsCheckFlag };
        var buffer = new byte[MetadataBlock.Size];
        flagged.Write(buffer);
        _metaStore.Write((long)flagged.Slot * MetadataBlock.Size, buffer);
        _metaStore.Flush();
        _slotDamage = null;
        _lostTransaction |= _dirty;
        Load(flagged);
        _readOnly = $"{why}; it is back at its last commit with needs_check set (grow the metadata, then `strata pool repair`)";
    }

    /// <summary>Why the pool is read-only (null: it is not); <see cref="Status"/> without its space figures.</summary>
    public string? ReadOnlyReason
    {
        get
        {
            lock (_lock) return _readOnly;
        }
    }
}
