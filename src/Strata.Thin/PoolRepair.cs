using Strata.Native;
using Strata.Thin.Metadata;
using Strata.Block;

namespace Strata.Thin;

/// <summary>
/// Repairs a pool from what <see cref="PoolChecker"/> finds (<see cref="ThinPool.Repair"/> forwards here): it
/// rebuilds only what follows from the mapping trees, and refuses while the check finds damage it does not
/// rebuild (<see cref="CheckReport.Unrepairable"/>).
/// </summary>
static class PoolRepair
{
    /// <summary>
    /// Repairs what can be rebuilt from the mapping trees: the data reference counts (reclaiming leaked blocks),
    /// the needs_check flag, and the superblocks (both slots rewritten; a lost transaction acknowledged). Damaged
    /// trees, a damaged device table or a store cut short are not guessed at: that is refused, with the check's
    /// findings.
    /// </summary>
    internal static CheckReport Repair(IBlockStore data, IBlockStore metadata)
    {
        var before = PoolChecker.Check(data, metadata);
        var structural = before.Unrepairable;
        if (structural.Count > 0)
            throw StrataException.Corrupt($"the pool has damage that repair does not rebuild (it rebuilds reference counts and superblocks, not trees, the device table or stores cut short): {structural.Count} problem(s), first: {structural[0]}");
        var sb = ThinPool.ReadSuperblock(metadata);
        var repaired = sb with { Flags = sb.Flags & ~Superblock.NeedsCheckFlag, LostTransaction = 0 };
        using (var pool = ThinPool.OpenRebuildingCounts(data, metadata, new PoolOptions { CommitInterval = TimeSpan.Zero }, repaired))
            pool.CommitToBothSlots();
        return PoolChecker.Check(data, metadata);
    }
}
