namespace Strata.Thin.DmThin;

/// <summary>A run of virtual blocks mapped to consecutive data blocks, written at one time (dm-thin's 24-bit time
/// of the transaction that wrote them).</summary>
public readonly record struct DmExtent(long Virtual, long Data, long Length, uint Time)
{
    public long VirtualEnd => Virtual + Length;
}

/// <summary>Virtual blocks [<see cref="First"/>, <see cref="First"/> + <see cref="Count"/>) of a device whose mapping
/// could not be read, and why; they read as errors, never as zeros. A range to the end has <see cref="End"/> = long.MaxValue.</summary>
public sealed record DmUnreadable(long First, long Count, string Why)
{
    public long End => First + Count;

    /// <summary>"blocks F to L are unreadable: why", for messages.</summary>
    public override string ToString() =>
        $"{(Count == 1 ? $"block {First} is" : $"blocks {First} to {(End == long.MaxValue ? "the end" : (End - 1).ToString(System.Globalization.CultureInfo.InvariantCulture))} are")} unreadable: {Why}";
}

/// <summary>
/// One thin device of a dm-thin pool as the metadata describes it: its details (dm-thin's device details record) and
/// its whole mapping, read once, as extents sorted by virtual block and never overlapping; the block ranges whose
/// mapping is unreadable; the size it is served with (dm-thin keeps a device's size in the device-mapper table, not in
/// the metadata: here it is what its mappings and the filesystem at its start need, unless a caller knows it).
/// </summary>
public sealed record DmThinDevice
{
    public required uint Id { get; init; }
    /// <summary>Mapped blocks the device details record counts (the tree's own count is <see cref="MappedBlocks"/>).</summary>
    public required ulong RecordedMappedBlocks { get; init; }
    public required ulong TransactionId { get; init; }
    public required uint CreationTime { get; init; }
    public required uint SnapshotTime { get; init; }
    public required System.Collections.Immutable.ImmutableArray<DmExtent> Extents { get; init; }
    public required IReadOnlyList<DmUnreadable> Unreadable { get; init; }
    /// <summary>Blocks also mapped by another device (or twice by this one), as thin_ls counts them.</summary>
    public long SharedBlocks { get; init; }
    /// <summary>Bytes served.</summary>
    public long Size { get; init; }

    public long MappedBlocks { get; init; }

    public long ExclusiveBlocks => MappedBlocks - SharedBlocks;

    /// <summary>The index of the last extent starting at or before <paramref name="block"/> (-1: none).</summary>
    public int ExtentAtOrBefore(long block)
    {
        int lo = 0, hi = Extents.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (Extents[mid].Virtual <= block)
            {
                found = mid;
                lo = mid + 1;
            }
            else hi = mid - 1;
        }
        return found;
    }

    /// <summary>The first unreadable range that overlaps [<paramref name="first"/>, <paramref name="end"/>), or null.</summary>
    public DmUnreadable? UnreadableIn(long first, long end)
    {
        foreach (var u in Unreadable)
            if (u.First < end && first < u.End) return u;
        return null;
    }
}
