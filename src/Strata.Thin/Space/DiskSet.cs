using Strata.Block;

namespace Strata.Thin.Space;

/// <summary>
/// Makes and finds the disks of a resilient pool: lays each disk out (label, metadata copy, slabs), writes the labels,
/// and opens a set of disks by their labels into the pool's two stores, the data (<see cref="ResilientStore"/>) and the
/// metadata (<see cref="MetadataMirror"/>). A disk pool.json names that is absent, unreadable or not the recorded one
/// opens as missing; the pool then runs degraded, if its resiliency allows.
/// </summary>
public static class DiskSet
{
    public const long MinMetadataSize = 1 << 20;

    /// <summary>The slab size for disks whose smallest has <paramref name="smallest"/> bytes: 1/32 of it, a power of two from
    /// 1 MiB to 256 MiB (and at least a block), so small disks lose little to rounding.</summary>
    public static long DefaultSlabSize(long smallest, uint blockSize) =>
        Math.Max(Math.Max(1L << 20, blockSize), (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)Math.Clamp(smallest / 32, 1, 256L << 20) + 1) / 2);

    /// <summary>The metadata copy's size on each disk: 1/64 of the smallest disk, in MiB, from 1 MiB to 256 MiB.</summary>
    public static long DefaultMetadataSize(long smallest) => Math.Clamp(smallest / 64 / (1 << 20) * (1 << 20), MinMetadataSize, 256L << 20);

    /// <summary>Where the slabs of a disk start: after the label and the metadata copy, on a MiB boundary.</summary>
    public static long DataStart(long metadataSize) => (DiskLabel.Size + metadataSize + (1 << 20) - 1) / (1 << 20) * (1 << 20);

    /// <summary>Writes labels on <paramref name="stores"/> (by slot) and returns the pool's stores over them.</summary>
    public static (ResilientStore Data, MetadataMirror Metadata, Guid Pool) Create(IReadOnlyList<(string Path, IBlockStore Store)> stores,
        uint blockSize, Resiliency resiliency, long slabSize, long metadataSize, bool checksums)
    {
        if (stores.Count == 0) throw StrataException.Invalid("a resilient pool needs at least one disk (--disk PATH)");
        if (metadataSize < MinMetadataSize || metadataSize % 4096 != 0) throw StrataException.Invalid($"the metadata size {metadataSize} must be a multiple of 4 KiB, at least 1 MiB");
        if (stores.Select(s => s.Path).Distinct().Count() != stores.Count) throw StrataException.Invalid("a disk is named twice");
        long dataStart = DataStart(metadataSize);
        var pool = Guid.NewGuid();
        var disks = new List<Disk>();
        for (int slot = 0; slot < stores.Count; slot++)
        {
            var (path, store) = stores[slot];
            long slabs = Math.Max(0, (store.Length - dataStart) / slabSize);
            if (slabs == 0) throw StrataException.Invalid($"disk {path} ({store.Length} bytes) has no room for a slab of {slabSize} bytes after its label and metadata ({dataStart} bytes)");
            disks.Add(new Disk(slot, Guid.NewGuid(), path, store, dataStart, slabs, DiskState.Healthy));
        }
        var data = ResilientStore.Create(disks, blockSize, resiliency, slabSize, checksums);
        foreach (var d in disks)
        {
            // the metadata copies start as zeros on every disk: what an earlier pool left there must not read as ours
            // (its blocks could carry higher transactions than this pool's)
            var store = d.Store!;
            ZeroRegion(store, DiskLabel.Size, metadataSize);
            new DiskLabel(d.Slot, pool, d.Id, DiskLabel.Size, metadataSize, dataStart, slabSize, d.Slabs).Write(store);
            store.Flush();
        }
        return (data, new MetadataMirror(() => data.Disks, DiskLabel.Size, metadataSize), pool);
    }

    static void ZeroRegion(IBlockStore store, long offset, long length)
    {
        if (store.Discard(offset, length)) return; // a hole in a file reads as zeros
        var zeros = new byte[1 << 20];
        for (long at = 0; at < length; at += zeros.Length) store.Write(offset + at, zeros.AsSpan(0, (int)Math.Min(zeros.Length, length - at)));
    }

    /// <summary>Makes <paramref name="store"/> the next disk of a pool (not yet added: <see cref="ResilientStore.AddDisk"/> or
    /// <see cref="ResilientStore.ReplaceDisk"/> does that): writes its label and a copy of the metadata as it is now (run it
    /// with no commit going on: under <see cref="ThinPool.ReadCommitted{T}"/>).</summary>
    public static Disk Join(ResilientStore data, MetadataMirror metadata, Guid pool, string path, IBlockStore store)
    {
        if (data.Disks.Any(d => d.Path == path && d.State != DiskState.Retired)) throw StrataException.Exists($"{path} is a disk of the pool already");
        long dataStart = DataStart(metadata.Length);
        long slabs = Math.Max(0, (store.Length - dataStart) / data.SlabSize);
        if (slabs == 0) throw StrataException.Invalid($"disk {path} ({store.Length} bytes) has no room for a slab of {data.SlabSize} bytes after its label and metadata ({dataStart} bytes)");
        var buffer = new byte[1 << 20];
        for (long at = 0; at < metadata.Length; at += buffer.Length)
        {
            int n = (int)Math.Min(buffer.Length, metadata.Length - at);
            metadata.Read(at, buffer.AsSpan(0, n));
            store.Write(metadata.RegionStart + at, buffer.AsSpan(0, n));
        }
        var disk = new Disk(data.Disks.Count, Guid.NewGuid(), path, store, dataStart, slabs, DiskState.Healthy);
        new DiskLabel(disk.Slot, pool, disk.Id, metadata.RegionStart, metadata.Length, dataStart, data.SlabSize, slabs).Write(store);
        store.Flush();
        return disk;
    }

    /// <summary>Opens the disks of pool <paramref name="pool"/>: <paramref name="stores"/> by slot, with the id each should
    /// carry (null store: absent).</summary>
    public static (ResilientStore Data, MetadataMirror Metadata) Open(IReadOnlyList<(string Path, Guid Id, IBlockStore? Store)> stores, Guid pool)
    {
        var disks = new List<Disk>();
        DiskLabel? any = null;
        for (int slot = 0; slot < stores.Count; slot++)
        {
            var (path, id, store) = stores[slot];
            DiskLabel? label = null;
            string? problem = null;
            if (store is not null)
                try
                {
                    label = DiskLabel.TryRead(store, out problem);
                    if (label is not null && (label.Pool != pool || label.Disk != id || label.Slot != slot))
                        (label, problem) = (null, "its label names another pool or disk");
                }
                catch (Exception ex) when (ex is IOException or StrataException)
                {
                    problem = $"its label does not read ({ex.Message})";
                }
            if (label is null)
            {
                store?.Dispose();
                var missing = new Disk(slot, id, path, null, 0, 0, DiskState.Missing);
                missing.SetState(DiskState.Missing, store is null ? "not found" : problem);
                disks.Add(missing);
                continue;
            }
            any ??= label;
            disks.Add(new Disk(slot, id, path, store, label.DataStart, label.Slabs, DiskState.Healthy));
        }
        if (any is null) throw StrataException.NotFound($"no disk of the pool is present ({string.Join(", ", disks.Select(d => $"{d.Path}: {d.Reason}"))})");
        var data = ResilientStore.Open(disks);
        return (data, new MetadataMirror(() => data.Disks, any.MetadataOffset, any.MetadataLength));
    }
}
