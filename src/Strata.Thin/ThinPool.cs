using Strata.Native;
using Strata.Thin.Metadata;
using Strata.Block;

namespace Strata.Thin;

/// <summary>
/// A thin pool: one data store cut into fixed-size blocks (64 KiB to 1 GiB, a power of two) and one metadata
/// store, giving out thin devices whose blocks are allocated on first write and shared copy-on-write with
/// their snapshots. The metadata (see <see cref="Superblock"/>, <see cref="MappingTree"/>,
/// <see cref="DataSpace"/>, <see cref="DeviceTable"/>) changes in transactions: nothing a commit wrote is
/// overwritten before the next commit, new data reaches the data store's stable storage before the metadata
/// mapping it commits, and the superblock is written last. A crash therefore leaves the pool at its last
/// commit, whole; writes acknowledged but not flushed may be lost, as on a disk with a write cache.
///
/// Concurrency: IO on devices runs in parallel (a shared gate, one short lock for metadata, and a lock per
/// virtual block so that two writes to one block do not interleave their read-modify-write); commits,
/// snapshots, deletes and resizes take the gate alone, so they never see IO half-done.
///
/// This file: the state all parts of the pool share, creating and opening a pool (building the in-memory view of
/// a commit), its status and its close. The other parts, one job each: the device table (ThinPool.Devices.cs),
/// the IO path (ThinPool.Io.cs), transactions and the read-only state a failed one leaves
/// (ThinPool.Transaction.cs), the space policy (ThinPool.Space.cs), thin_dump's XML (ThinPool.Xml.cs); repair
/// is <see cref="PoolRepair"/>, beside <see cref="PoolChecker"/>.
/// </summary>
public sealed partial class ThinPool : IDisposable
{
    public const uint MinBlockSize = 64 * 1024;
    public const uint MaxBlockSize = 1024 * 1024 * 1024;
    public const uint DefaultBlockSize = MinBlockSize;

    readonly IBlockStore _data;
    readonly IPoolData? _poolData; // the data store's own transactional state (a resilient pool), or null
    readonly IBlockStore _metaStore;
    readonly PoolOptions _options;
    readonly IoGate _gate = new();
    readonly object _lock = new();
    MetadataSpace _meta = null!;
    DataSpace _space = null!;
    MappingTree _tree = null!;
    Dictionary<string, DeviceRecord> _devices = null!;
    Dictionary<uint, DeviceRecord> _byId = null!;
    List<ulong> _tableBlocks = null!;
    Superblock _committed = null!;
    bool _dirty;             // metadata changed since the last commit
    string? _readOnly;
    bool _disposed;
    string? _slotDamage; // what is wrong with the superblock slot the pool did not open at, until a commit rewrites it
    readonly DateTimeOffset _openedAt = DateTimeOffset.UtcNow; // where the IO statistics start
    long _commits, _commitNs; // transactions committed since the open, and their time (under the lock)

    ThinPool(IBlockStore data, IBlockStore metadata, PoolOptions options, Superblock committed, bool rebuildCounts = false, string? slotDamage = null)
    {
        _data = data;
        _poolData = data as IPoolData;
        _metaStore = metadata;
        _options = options;
        _slotDamage = slotDamage;
        Load(committed, rebuildCounts);
        if (options.CommitInterval > TimeSpan.Zero) _timer = new Timer(_ => BackgroundCommit(), null, options.CommitInterval, options.CommitInterval);
    }

    public uint BlockSize => _committed.DataBlockSize;

    /// <summary>Makes a new, empty pool on <paramref name="data"/> and <paramref name="metadata"/> (their whole
    /// lengths) and opens it.</summary>
    public static ThinPool Create(IBlockStore data, IBlockStore metadata, uint blockSize = DefaultBlockSize, PoolOptions? options = null)
    {
        if (blockSize < MinBlockSize || blockSize > MaxBlockSize || !uint.IsPow2(blockSize))
            throw StrataException.Invalid($"block size {blockSize} must be a power of two from 64 KiB to 1 GiB");
        ulong dataBlocks = (ulong)data.Length / blockSize, metaBlocks = (ulong)metadata.Length / MetadataBlock.Size;
        if (dataBlocks == 0) throw StrataException.Invalid($"the data store ({data.Length} bytes) is smaller than one {blockSize}-byte block");
        if (metaBlocks < 16) throw StrataException.Invalid($"the metadata store ({metadata.Length} bytes) needs at least 64 KiB");
        if (dataBlocks > Math.Min(int.MaxValue, DataSpace.MaxBlocks)) throw StrataException.Unsupported($"a pool of {dataBlocks} data blocks (at most {Math.Min(int.MaxValue, DataSpace.MaxBlocks)}; use a larger block size)");
        if (metaBlocks > int.MaxValue) metaBlocks = int.MaxValue;
        var sb = new Superblock
        {
            Transaction = 1,
            DataBlockSize = blockSize,
            DataBlocks = dataBlocks,
            MetadataBlocks = metaBlocks,
            NextDeviceId = 1,
            Uuid = Guid.NewGuid(),
        };
        var buffer = new byte[MetadataBlock.Size];
        metadata.Write(0, buffer); // slot 0 holds nothing valid: a pool that was here before is gone
        sb.Write(buffer);
        metadata.Write((long)sb.Slot * MetadataBlock.Size, buffer);
        metadata.Flush();
        var pool = new ThinPool(data, metadata, options ?? new PoolOptions(), sb);
        if (pool._poolData is not null)
        {
            // the data store's layout is part of the pool from its first commit on
            pool._dirty = true;
            pool.Commit();
        }
        return pool;
    }

    /// <summary>Opens a pool at its last commit. A transaction lost to a damaged superblock (see
    /// <see cref="SuperblockSlots"/>) is recorded, and the next commit carries the record on, until a repair;
    /// <see cref="SuperblockProblems"/> says what open found.</summary>
    public static ThinPool Open(IBlockStore data, IBlockStore metadata, PoolOptions? options = null)
    {
        var slots = SuperblockSlots.Read(metadata);
        var sb = slots.Lost != 0 && slots.Current.LostTransaction == 0 ? slots.Current with { LostTransaction = slots.Lost } : slots.Current;
        return new(data, metadata, options ?? new PoolOptions(), sb, slotDamage: slots.Damage);
    }

    /// <summary>Opens the committed transaction <paramref name="sb"/> with its data reference counts rebuilt from the
    /// mapping trees (see <see cref="PoolRepair"/>).</summary>
    internal static ThinPool OpenRebuildingCounts(IBlockStore data, IBlockStore metadata, PoolOptions options, Superblock sb) =>
        new(data, metadata, options, sb, rebuildCounts: true);

    internal static Superblock ReadSuperblock(IBlockStore metadata) => SuperblockSlots.Read(metadata).Current;

    /// <summary>What is wrong with the superblocks on <paramref name="metadata"/>, one line each, read without opening the
    /// pool (as dump does): a damaged slot, a lost transaction.</summary>
    public static IReadOnlyList<string> ReadSuperblockProblems(IBlockStore metadata) => SuperblockSlots.Read(metadata).Problems();

    /// <summary>What is wrong with the superblocks, one line each (none: nothing): a damaged slot (until the next commit
    /// rewrites it) and a transaction lost to one (until a repair acknowledges it).</summary>
    public IReadOnlyList<string> SuperblockProblems()
    {
        lock (_lock) return SuperblockProblemsLocked();
    }

    List<string> SuperblockProblemsLocked()
    {
        var problems = new List<string>();
        if (_slotDamage is { } damage) problems.Add(damage);
        if (_committed.LostTransaction != 0) problems.Add(SuperblockSlots.LostMessage(_committed.LostTransaction));
        return problems;
    }

    /// <summary>Why the stores cannot hold the pool <paramref name="sb"/> describes, one line each (none: they can):
    /// what open refuses and check reports. A null <paramref name="data"/> leaves the data store out.</summary>
    internal static IEnumerable<string> StoreProblems(Superblock sb, IBlockStore? data, IBlockStore metadata)
    {
        if (data is not null && (ulong)data.Length / sb.DataBlockSize < sb.DataBlocks)
            yield return $"{data.Name} is {data.Length} bytes, smaller than the pool's {sb.DataBlocks} blocks of {sb.DataBlockSize} bytes";
        if ((ulong)metadata.Length / MetadataBlock.Size < sb.MetadataBlocks)
            yield return $"{metadata.Name} is {metadata.Length} bytes, smaller than the pool's {sb.MetadataBlocks} metadata blocks of {MetadataBlock.Size} bytes";
    }

    /// <summary>Builds the in-memory view of the committed transaction <paramref name="sb"/>.</summary>
    void Load(Superblock sb, bool rebuildCounts = false)
    {
        if (StoreProblems(sb, null, _metaStore).ToList() is { Count: > 0 } metaProblems)
            throw StrataException.Corrupt(string.Join("; ", metaProblems) + "; run `strata pool check`");
        var meta = new MetadataSpace(_metaStore, sb.MetadataBlocks) { Transaction = sb.Transaction };
        if (_poolData is not null) _poolData.Load(meta, sb.SpaceTable, sb.Sums, sb.DataBlockSize); // the data store's layout, before its length counts
        else if (sb.SpaceTable != 0) throw StrataException.Corrupt("the pool's metadata describes a resilient pool's disks, but it was opened on one data store");
        if (StoreProblems(sb, _data, _metaStore).ToList() is { Count: > 0 } problems)
            throw StrataException.Corrupt(string.Join("; ", problems) + "; run `strata pool check`");
        var space = new DataSpace(meta, sb.DataBlocks) { LowFirst = _poolData is not null };
        var (records, tableBlocks) = DeviceTable.Load(meta, sb.DeviceTable, sb.Format);
        foreach (var d in records) CountTree(meta, d.Root);
        if (!rebuildCounts) space.Load(sb.RefIndex);
        else
        {
            try
            {
                space.Load(sb.RefIndex); // its blocks stay the committed transaction's until the repair commits
            }
            catch (StrataException)
            {
                // unreadable counts: rebuilt below all the same
            }
            space.Rebuild(CountData(meta, records));
        }
        meta.CommittedAtOpen();
        meta.TryGrow = GrowMetadata;
        _meta = meta;
        _space = space;
        _tree = new MappingTree(meta, space);
        _devices = records.ToDictionary(d => d.Name, StringComparer.Ordinal);
        _byId = records.ToDictionary(d => d.Id);
        _tableBlocks = tableBlocks;
        _committed = sb;
        _dirty = false;
        _readOnly = sb.NeedsCheck ? "its metadata needs a check (needs_check is set): run `strata pool check`, then `strata pool repair`" : null;
        _poolData?.Opened(b => b >= 0 && _space.InUseUnlocked((ulong)b));
    }

    /// <summary>How many distinct leaf entries map each data block (what the stored counts must say).</summary>
    static Dictionary<ulong, uint> CountData(MetadataSpace meta, List<DeviceRecord> devices)
    {
        var counts = new Dictionary<ulong, uint>();
        var seen = new HashSet<ulong>();
        foreach (var d in devices)
        {
            if (d.Root == 0) continue;
            var pending = new Stack<ulong>();
            pending.Push(d.Root);
            while (pending.Count > 0)
            {
                ulong b = pending.Pop();
                if (!seen.Add(b)) continue;
                var node = meta.Load(b);
                for (int i = 0; i < node.Count; i++)
                    if (node.Leaf) counts[node.Values[i]] = counts.GetValueOrDefault(node.Values[i]) + 1;
                    else pending.Push(node.Values[i]);
            }
        }
        return counts;
    }

    /// <inheritdoc cref="PoolRepair.Repair"/>
    public static CheckReport Repair(IBlockStore data, IBlockStore metadata) => PoolRepair.Repair(data, metadata);

    /// <summary>Counts the references of a tree's nodes at open; a node seen before (shared) is not walked again.</summary>
    static void CountTree(MetadataSpace meta, ulong root)
    {
        if (root == 0) return;
        var pending = new Stack<ulong>();
        pending.Push(root);
        while (pending.Count > 0)
        {
            ulong b = pending.Pop();
            if (!meta.CountAtOpen(b)) continue;
            var node = meta.Load(b);
            if (!node.Leaf)
                for (int i = 0; i < node.Count; i++) pending.Push(node.Values[i]);
        }
    }

    public PoolStatus Status()
    {
        lock (_lock) return StatusLocked();
    }

    PoolStatus StatusLocked()
    {
        long available = Math.Min((long)_space.Free * BlockSize, RoomOnDisk(_data)); // free blocks of a sparse file still need disk
        return new PoolStatus(BlockSize, _space.Blocks, _space.Used, _space.Free, available, _meta.Blocks, _meta.Used, _devices.Count, _meta.Transaction,
                _committed.NeedsCheck, _readOnly, _committed.LostTransaction, SuperblockProblemsLocked());
    }

    public void Dispose()
    {
        if (_disposed) return;
        _timer?.Dispose();
        _poolData?.Close();
        try
        {
            Commit(); // read-only: flushes what was written in place
        }
        catch (StrataException)
        {
            // the last commit failed (the pool is now read-only, needs_check set): what was not flushed is lost,
            // as on a disk pulled without a flush
        }
        finally
        {
            _gate.EnterWrite();
            _disposed = true;
            _gate.ExitWrite();
        }
    }
}
