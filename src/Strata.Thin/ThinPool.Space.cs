using Strata.Native;
using Strata.Thin.Metadata;
using Strata.Block;

namespace Strata.Thin;

/// <summary>
/// The pool's space policy (its knobs are <see cref="PoolOptions"/>' AutoextendThreshold, AutoextendPercent,
/// MaxDataSize, MaxMetadataSize and LowWaterBlocks): autoextend grows the data and metadata stores, under the
/// metadata lock, when their use crosses the threshold, never past their maximum, the room on the disk under a
/// sparse file or what the pool can address, and never a block device; the new sizes are metadata the next
/// commit records. <see cref="LowWater"/> is raised once per crossing below the mark.
/// </summary>
public sealed partial class ThinPool
{
    bool _belowLowWater;

    /// <summary>Raised (on the thread pool) when the free data blocks drop below the low-water mark; again only
    /// after they have been above it.</summary>
    public event Action<PoolStatus>? LowWater;

    /// <summary>A data block for a write (under the lock), growing the data store first when autoextend says
    /// so; raises the low-water event on the way down.</summary>
    bool TryAllocateData(out ulong block)
    {
        Autoextend();
        bool ok = _space.TryAllocate(out block);
        ulong mark = _options.LowWaterBlocks ?? _space.Blocks * (ulong)(100 - Math.Clamp(_options.AutoextendThreshold, 0, 100)) / 100;
        if (_space.Free < mark && !_belowLowWater)
        {
            _belowLowWater = true;
            var status = StatusLocked();
            if (LowWater is { } handler) ThreadPool.QueueUserWorkItem(_ => handler(status));
        }
        else if (_space.Free >= mark) _belowLowWater = false;
        return ok;
    }

    /// <summary>Grows the data and metadata stores by the configured percent once their use crosses the
    /// threshold, up to their maximum and to the room on the disk; the next commit records the new sizes.</summary>
    void Autoextend()
    {
        int threshold = _options.AutoextendThreshold;
        if (threshold is <= 0 or >= 100) return;
        long bs = BlockSize;
        if (_space.Used * 100 >= _space.Blocks * (ulong)threshold)
        {
            long grown = Grown(_data, (long)_space.Blocks * bs, _options.MaxDataSize);
            if (grown / bs > (long)_space.Blocks)
            {
                _data.Grow(grown);
                _space.Grow((ulong)(grown / bs));
                _dirty = true;
            }
        }
        if (_meta.Used * 100 >= _meta.Blocks * (ulong)threshold)
        {
            long grown = Grown(_metaStore, (long)_meta.Blocks * MetadataBlock.Size, _options.MaxMetadataSize);
            if (grown / MetadataBlock.Size > (long)_meta.Blocks)
            {
                _metaStore.Grow(grown);
                _meta.Grow((ulong)(grown / MetadataBlock.Size));
                _dirty = true;
            }
        }
    }

    /// <summary>The metadata store is full: grows it now if autoextend may (whatever the threshold said).</summary>
    bool GrowMetadata()
    {
        if (_options.AutoextendThreshold is <= 0 or >= 100) return false;
        long grown = Grown(_metaStore, (long)_meta.Blocks * MetadataBlock.Size, _options.MaxMetadataSize);
        if (grown / MetadataBlock.Size <= (long)_meta.Blocks) return false;
        _metaStore.Grow(grown);
        _meta.Grow((ulong)(grown / MetadataBlock.Size));
        _dirty = true;
        return true;
    }

    long Grown(IBlockStore store, long size, long max)
    {
        long target = size + size * Math.Max(_options.AutoextendPercent, 1) / 100;
        if (max > 0) target = Math.Min(target, max);
        if (store is FileBlockStore { IsDevice: true } or IPoolData or Space.MetadataMirror) return size; // their size is their disks'
        long room = RoomOnDisk(store);
        if (room < long.MaxValue - size) target = Math.Min(target, size + room);
        long limit = store == _data ? (long)Math.Min(int.MaxValue, DataSpace.MaxBlocks) * BlockSize : (long)int.MaxValue * MetadataBlock.Size;
        target = Math.Min(target, limit);
        return Math.Max(target, size);
    }

    /// <summary>How many more bytes the filesystem under a sparse store file can take (unbounded for others).</summary>
    static long RoomOnDisk(IBlockStore store) =>
        store is FileBlockStore { IsDevice: false } file && Path.GetDirectoryName(file.Name) is { } dir ? Math.Max(0, Posix.AvailableBytes(dir)) : long.MaxValue;
}
