using Strata.Block;

namespace Strata.Thin.Space;

/// <summary>What a disk of a resilient pool is doing: in use (healthy, or failing: errors seen and repaired), out of
/// use (failed: a write or flush failed, or `pool disk fail`; missing: not found or gone), or retired (removed, holds
/// nothing).</summary>
public enum DiskState : byte
{
    Healthy = 0,
    Failing = 1,
    Failed = 2,
    Missing = 3,
    Retired = 4,
}

/// <summary>
/// One disk of a resilient pool: its store (null while missing), where its regions start (label, metadata copy, slabs),
/// its state and its error counts. A disk out of use is never read or written again until it is replaced: its copies
/// are stale from the moment it failed. Counts and state change from any thread.
/// </summary>
public sealed class Disk
{
    long _readErrors, _writeErrors, _checksumErrors, _repaired;
    volatile DiskState _state;

    public Disk(int slot, Guid id, string path, IBlockStore? store, long dataStart, long slabs, DiskState state)
    {
        Slot = slot;
        Id = id;
        Path = path;
        Store = store;
        DataStart = dataStart;
        Slabs = slabs;
        _state = store is null && state is DiskState.Healthy or DiskState.Failing ? DiskState.Missing : state;
    }

    public int Slot { get; }
    public Guid Id { get; }
    public string Path { get; }
    public IBlockStore? Store { get; }
    /// <summary>Byte offset of the first slab on the disk.</summary>
    public long DataStart { get; internal set; }
    /// <summary>How many slabs the disk holds.</summary>
    public long Slabs { get; internal set; }

    public DiskState State => _state;

    /// <summary>Whether IO goes to the disk (its copies are current).</summary>
    public bool InUse => _state is DiskState.Healthy or DiskState.Failing;

    public long ReadErrors => Interlocked.Read(ref _readErrors);
    public long WriteErrors => Interlocked.Read(ref _writeErrors);
    public long ChecksumErrors => Interlocked.Read(ref _checksumErrors);
    /// <summary>Sectors rewritten on this disk from a good copy.</summary>
    public long Repaired => Interlocked.Read(ref _repaired);

    /// <summary>Why it is out of use, for status (null: in use, or retired).</summary>
    public string? Reason { get; private set; }

    /// <summary>Raised once when the disk goes out of use.</summary>
    internal Action<Disk>? OnFailed { get; set; }

    internal void CountReadError() { Interlocked.Increment(ref _readErrors); Degrade(); }
    internal void CountChecksumError() { Interlocked.Increment(ref _checksumErrors); Degrade(); }
    internal void CountRepaired(long sectors) => Interlocked.Add(ref _repaired, sectors);

    void Degrade()
    {
        if (_state == DiskState.Healthy) _state = DiskState.Failing;
    }

    /// <summary>A write or flush failed: the disk's copies are stale from now on.</summary>
    internal void Fail(string reason, bool writeError = true)
    {
        if (writeError) Interlocked.Increment(ref _writeErrors);
        if (!InUse) return;
        lock (this)
        {
            if (!InUse) return;
            Reason = reason;
            _state = DiskState.Failed;
        }
        OnFailed?.Invoke(this);
    }

    internal void SetState(DiskState state, string? reason = null)
    {
        _state = state;
        Reason = reason;
    }

    internal IBlockStore Use() => Store ?? throw new IOException($"disk {Path} is missing");
}
