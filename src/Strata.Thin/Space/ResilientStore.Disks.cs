namespace Strata.Thin.Space;

/// <summary>
/// Changes of a resilient pool's disks, each recorded by the next commit: a disk added (its slabs become free space, and
/// the pool grows by the slabs it lets place), failed on purpose (a drill: its columns are rebuilt elsewhere), removed
/// (its columns move to the other disks while it still serves, then it is retired), or replaced (the new disk joins, the
/// old one's columns move, onto the new one first, as it has the most free slabs).
/// </summary>
public sealed partial class ResilientStore
{
    bool _growAfterRebuild;

    Disk DiskAt(string path) => _disks.FirstOrDefault(d => d.Path == path && d.State != DiskState.Retired)
        ?? throw StrataException.NotFound($"{path} is not a disk of the pool (`strata pool disk ls` lists them)");

    /// <summary>Takes a disk out of use, as if it had failed (`pool disk fail`, for drills).</summary>
    public void FailDisk(string path)
    {
        var disk = DiskAt(path);
        if (!disk.InUse) throw StrataException.Invalid($"disk {path} is {disk.State.ToString().ToLowerInvariant()} already");
        disk.Fail("failed by `strata pool disk fail`", writeError: false);
    }

    /// <summary>Adds <paramref name="disk"/> (labelled, its metadata copy written) as the next slot; with
    /// <paramref name="grow"/>, the pool then grows by the slabs the new space lets place (after any rebuild, which the
    /// space is for first).</summary>
    public void AddDisk(Disk disk, bool grow)
    {
        if (disk.Slot != _disks.Length) throw new ArgumentException($"disk slot {disk.Slot}, expected {_disks.Length}");
        var all = LockAll();
        try
        {
            lock (_tableLock)
            {
                _disks = [.. _disks, disk];
                _placement.AddDisk(disk.Slabs);
                _tableDirty = true;
            }
        }
        finally
        {
            Unlock(all);
        }
        Watch(disk);
        if (grow)
        {
            lock (_rebuildLock) _growAfterRebuild = true;
            if (ColumnsToMove().Count == 0) Grow();
        }
        StartRebuild();
    }

    /// <summary>Places as many new slabs as the disks in use have room for; the pool takes them at its next commit.</summary>
    void Grow()
    {
        lock (_rebuildLock) _growAfterRebuild = false;
        var all = LockAll();
        try
        {
            lock (_tableLock)
            {
                // room for as many more slabs as the free space of the disks in use places
                var free = _disks.Select((d, i) => d.InUse && !Draining(i) ? _placement.Free(i) : 0).ToList();
                long unplaced = _slabs.Count(s => s is null);
                long more = SlabPlacement.Capacity(free, _shape.Columns) - unplaced;
                if (more <= 0) return;
                var slabs = _slabs;
                Array.Resize(ref slabs, checked((int)(_slabs.Length + more)));
                _slabs = slabs;
                _sums?.Grow((ulong)(Length / SectorSize));
                _tableDirty = true;
            }
        }
        finally
        {
            Unlock(all);
        }
    }

    bool Draining(int disk)
    {
        lock (_rebuildLock) return _draining.Contains(disk);
    }

    /// <summary>Empties a disk: its columns move to the others (while it still serves reads), then it is retired.</summary>
    public void RemoveDisk(string path)
    {
        var disk = DiskAt(path);
        int others = _disks.Count(d => d != disk && d.InUse && !Draining(d.Slot));
        if (others < _shape.Columns)
            throw StrataException.Invalid($"cannot remove {path}: {ResiliencyNames.Name(_shape.Resiliency)} needs {_shape.Columns} disks in use, {others} would be left (add or replace a disk instead)");
        Empty(disk);
    }

    /// <summary>Moves a disk's columns away (the rebuild does), then retires it; at once when it holds none.</summary>
    void Empty(Disk disk)
    {
        lock (_rebuildLock) _draining.Add(disk.Slot);
        if (!_slabs.Any(s => s?.Any(c => c.Disk == disk.Slot) == true))
        {
            lock (_rebuildLock) _draining.Remove(disk.Slot);
            disk.SetState(DiskState.Retired);
            MarkTableDirty();
            return;
        }
        StartRebuild();
    }

    /// <summary>Adds <paramref name="replacement"/> and moves <paramref name="path"/>'s columns away (onto it first).</summary>
    public void ReplaceDisk(string path, Disk replacement)
    {
        var old = DiskAt(path);
        AddDisk(replacement, grow: false);
        Empty(old);
    }
}
