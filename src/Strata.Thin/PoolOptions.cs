namespace Strata.Thin;

/// <summary>How a pool behaves; fixed for as long as it is open.</summary>
public sealed record PoolOptions
{
    /// <summary>How often a pool with changes commits on its own (a flush or FUA write commits at once).
    /// Zero: only on flush (tests).</summary>
    public TimeSpan CommitInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long a write that finds no free data block waits for one (a delete, a discard, autoextend)
    /// before it fails with a no-space error. Zero (the default): it fails at once. Never unbounded.</summary>
    public TimeSpan NoSpaceTimeout { get; init; } = TimeSpan.Zero;

    /// <summary>Grow a store by <see cref="AutoextendPercent"/> of its size when this percent of it is in use
    /// (as LVM's thin_pool_autoextend_threshold); 100 turns autoextend off. Stores that cannot grow (block
    /// devices) never do.</summary>
    public int AutoextendThreshold { get; init; } = 80;

    public int AutoextendPercent { get; init; } = 20;

    /// <summary>The largest the data store may grow to (0: as far as the disk under it has room).</summary>
    public long MaxDataSize { get; init; }

    /// <summary>The largest the metadata store may grow to (0: as far as the disk under it has room).</summary>
    public long MaxMetadataSize { get; init; }

    /// <summary>Free data blocks below which <see cref="ThinPool.LowWater"/> is raised (once per crossing);
    /// null: the blocks above the autoextend threshold (20% of the pool by default).</summary>
    public ulong? LowWaterBlocks { get; init; }

    /// <summary>Whether blocks that a commit frees are discarded from the data store (holes punched in a sparse
    /// file: the space goes back to the host), or stay allocated there for reuse.</summary>
    public bool DiscardFreed { get; init; } = true;
}
