namespace Strata.Thin.Space;

/// <summary>One column of a slab: which disk, and which slab of that disk.</summary>
public readonly record struct Column(int Disk, long Slab);

/// <summary>
/// Which slabs of which disks are taken, and where the next slab goes: its columns on distinct disks, each on the
/// disk with the most free slabs (Storage Spaces' rule: disks of any sizes fill evenly, so three disks of 1, 1 and 2
/// GiB hold a 2 GiB mirror). Not thread-safe: its owner holds a lock.
/// </summary>
sealed class SlabPlacement
{
    readonly List<SortedSet<long>> _free = [];

    /// <summary>Disks with <paramref name="slabs"/> slabs each (index = disk slot), all free.</summary>
    public SlabPlacement(IEnumerable<long> slabs)
    {
        foreach (long n in slabs) AddDisk(n);
    }

    public void AddDisk(long slabs)
    {
        var free = new SortedSet<long>();
        for (long s = 0; s < slabs; s++) free.Add(s);
        _free.Add(free);
    }

    public long Free(int disk) => _free[disk].Count;

    public void Take(Column c)
    {
        if (!_free[c.Disk].Remove(c.Slab)) throw StrataException.Corrupt($"slab {c.Slab} of disk {c.Disk} is placed twice");
    }

    public void Release(Column c) => _free[c.Disk].Add(c.Slab);

    /// <summary>Places <paramref name="columns"/> columns on distinct disks that <paramref name="usable"/> allows, none of
    /// them in <paramref name="avoid"/>; false (nothing taken) when there are not enough such disks with room.</summary>
    public bool TryPlace(int columns, Func<int, bool> usable, IReadOnlyCollection<int> avoid, out Column[] placed)
    {
        var disks = Enumerable.Range(0, _free.Count)
            .Where(d => usable(d) && !avoid.Contains(d) && _free[d].Count > 0)
            .OrderByDescending(d => _free[d].Count).ThenBy(d => d)
            .Take(columns).ToList();
        if (disks.Count < columns)
        {
            placed = [];
            return false;
        }
        placed = disks.Select(d => new Column(d, _free[d].Min)).ToArray();
        foreach (var c in placed) Take(c);
        return true;
    }

    /// <summary>How many slabs of <paramref name="columns"/> columns on distinct disks fit in disks with these free slab
    /// counts: the largest s with sum(min(free, s)) >= columns * s, which placing each slab on the disks with the most
    /// free slabs reaches.</summary>
    public static long Capacity(IReadOnlyList<long> free, int columns)
    {
        if (columns <= 0 || free.Count(f => f > 0) < columns) return 0;
        long low = 0, high = free.Sum() / columns;
        while (low < high)
        {
            long mid = low + (high - low + 1) / 2;
            if (free.Sum(f => Math.Min(f, mid)) >= columns * mid) low = mid;
            else high = mid - 1;
        }
        return low;
    }
}
