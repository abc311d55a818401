namespace Strata.Thin.Space;

/// <summary>A resilient pool's space as `pool info` and `pool disk ls` show it: how it keeps data, its capacity (raw: the
/// disks' slab space; usable: what the pool's devices can fill), its health, and each disk.</summary>
public sealed record SpaceInfo(string Resiliency, int DataColumns, int ParityColumns, int Copies, bool Checksums, long SlabSize, int Slabs,
    long RawBytes, long UsableBytes, string Health, IReadOnlyList<string> AtRisk, long Unrecoverable, IReadOnlyList<DiskInfo> Disks,
    SpaceActivity Rebuild, SpaceActivity Scrub);

/// <summary>A rebuild's or a scrub's progress: whether it runs, how far it got (rebuild: slab columns; scrub: bytes), and
/// why a rebuild stopped short (null: it did not).</summary>
public sealed record SpaceActivity(bool Running, long Done, long Total, string? Stuck);

/// <summary>One disk of a resilient pool: its state (healthy, failing, failed, missing, retired) and why, its size and
/// slabs, and the errors it has had since the pool was opened.</summary>
public sealed record DiskInfo(int Slot, string Path, string State, string? Reason, long Bytes, long Slabs, long SlabsUsed,
    long ReadErrors, long WriteErrors, long ChecksumErrors, long Repaired);

public sealed partial class ResilientStore
{
    public SpaceInfo Info()
    {
        var slabs = _slabs; // before the disks: a slab names only disks added before it moved there
        var all = _disks;
        var used = new long[all.Length];
        int degraded = 0, lost = 0;
        foreach (var slab in slabs)
        {
            if (slab is null) continue;
            int outOfUse = 0;
            foreach (var c in slab)
            {
                used[c.Disk]++;
                if (!all[c.Disk].InUse) outOfUse++;
            }
            if (outOfUse > _shape.Tolerates) lost++;
            else if (outOfUse > 0) degraded++;
        }
        var atRisk = new List<string>();
        if (lost > 0) atRisk.Add($"{lost} of {_slabs.Length} slabs are lost (more of their disks are out of use than {ResiliencyNames.Name(_shape.Resiliency)} survives)");
        if (degraded > 0) atRisk.Add($"{degraded} of {_slabs.Length} slabs run with fewer copies than they should: another failure of their disks may lose data");
        // a failing disk (errors found and repaired) is the disk's state, not the pool's: its copies are current
        string health = lost > 0 ? "lost" : degraded > 0 ? (RebuildProgress.Running ? "rebuilding" : "degraded") : "healthy";
        var disks = _disks.Select(d => new DiskInfo(d.Slot, d.Path, d.State.ToString().ToLowerInvariant(), d.Reason,
            d.Store?.Length ?? d.DataStart + d.Slabs * _slabSize, d.Slabs, used[d.Slot], d.ReadErrors, d.WriteErrors, d.ChecksumErrors, d.Repaired)).ToList();
        var rebuild = RebuildProgress;
        var scrub = ScrubProgress;
        if (rebuild.Stuck is { } stuck) atRisk.Add(stuck);
        return new SpaceInfo(ResiliencyNames.Name(_shape.Resiliency), _shape.DataColumns, _shape.ParityColumns, _shape.Copies, _checksums, _slabSize, _slabs.Length,
            _disks.Where(d => d.State != DiskState.Retired).Sum(d => d.Slabs) * _slabSize, Length, health, atRisk, Unrecoverable, disks,
            new SpaceActivity(rebuild.Running, rebuild.Done, rebuild.Total, rebuild.Stuck), new SpaceActivity(scrub.Running, scrub.Done, scrub.Total, null));
    }
}
