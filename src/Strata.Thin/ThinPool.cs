using System.Buffers;
using System.Text;
using Strata.Native;
using Strata.Thin.Metadata;
using Strata.Block;

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

/// <summary>A thin device as <see cref="ThinPool.Devices"/> lists it (counts in pool blocks); <see cref="Owner"/>: who
/// holds it (null: nobody; see <see cref="ThinPool.DeleteDevice"/>).</summary>
public sealed record ThinDeviceInfo(string Name, uint Id, long Size, ulong Mapped, ulong Exclusive, ulong Shared, uint Origin, DateTimeOffset Created,
    string? Owner = null);

/// <summary>What <see cref="ThinPool.Status"/> reports: the fields Docker's devicemapper printed.</summary>
public sealed record PoolStatus(
    uint BlockSize, ulong DataBlocks, ulong DataBlocksUsed, ulong DataBlocksFree, long DataBytesAvailable,
    ulong MetadataBlocks, ulong MetadataBlocksUsed, int Devices, ulong Transaction, bool NeedsCheck, string? ReadOnlyReason,
    ulong LostTransaction = 0, IReadOnlyList<string>? SuperblockProblems = null)
{
    public long DataBytes => (long)DataBlocks * BlockSize;
    public long DataBytesUsed => (long)DataBlocksUsed * BlockSize;
    public long MetadataBytes => (long)MetadataBlocks * MetadataBlock.Size;
    public long MetadataBytesUsed => (long)MetadataBlocksUsed * MetadataBlock.Size;
}

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
/// </summary>
public sealed partial class ThinPool : IDisposable
{
    public const uint MinBlockSize = 64 * 1024;
    public const uint MaxBlockSize = 1024 * 1024 * 1024;
    public const uint DefaultBlockSize = MinBlockSize;
    const uint MaxDeviceId = (1 << 24) - 1;

    readonly IBlockStore _data;
    readonly IBlockStore _metaStore;
    readonly PoolOptions _options;
    readonly IoGate _gate = new();
    readonly object _lock = new();
    readonly object[] _stripes = Enumerable.Range(0, 64).Select(_ => new object()).ToArray();
    readonly Dictionary<uint, int> _openDevices = [];
    readonly HashSet<uint> _deferredDeletes = []; // open devices to delete when their last user closes them (not persisted)
    readonly Timer? _timer;
    MetadataSpace _meta = null!;
    DataSpace _space = null!;
    MappingTree _tree = null!;
    Dictionary<string, DeviceRecord> _devices = null!;
    Dictionary<uint, DeviceRecord> _byId = null!;
    List<ulong> _tableBlocks = null!;
    Superblock _committed = null!;
    bool _dirty;             // metadata changed since the last commit
    // data flushes: writes in place (which change no metadata) are numbered as they complete; a flush of the data
    // store covers every write numbered before it started. Flushes run one at a time (_flushLock), so a flush never
    // returns on the strength of another that is still running, or that failed.
    readonly object _flushLock = new();
    long _writesInPlace;     // writes in place completed so far
    long _flushedInPlace;    // of them, how many the last successful flush of the data store covers
    string? _readOnly;
    bool _disposed;
    bool _belowLowWater;
    bool _lostTransaction; // Fail() threw away writes that were not committed: a flush must say so
    volatile Exception? _flushFailed; // a data flush ahead of a commit failed: the next commit fails with it
    string? _slotDamage; // what is wrong with the superblock slot the pool did not open at, until a commit rewrites it
    readonly object _spaceSignal = new();

    /// <summary>Raised (on the thread pool) when the free data blocks drop below the low-water mark; again only
    /// after they have been above it.</summary>
    public event Action<PoolStatus>? LowWater;

    ThinPool(IBlockStore data, IBlockStore metadata, PoolOptions options, Superblock committed, bool rebuildCounts = false, string? slotDamage = null)
    {
        _data = data;
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
        return new ThinPool(data, metadata, options ?? new PoolOptions(), sb);
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
        if (StoreProblems(sb, _data, _metaStore).ToList() is { Count: > 0 } problems)
            throw StrataException.Corrupt(string.Join("; ", problems) + "; run `strata pool check`");
        var meta = new MetadataSpace(_metaStore, sb.MetadataBlocks) { Transaction = sb.Transaction };
        var space = new DataSpace(meta, sb.DataBlocks);
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

    /// <summary>
    /// Repairs what can be rebuilt from the mapping trees: the data reference counts (reclaiming leaked blocks),
    /// the needs_check flag, and the superblocks (both slots rewritten; a lost transaction acknowledged). Damaged
    /// trees, a damaged device table or a store cut short are not guessed at: that is refused, with the check's
    /// findings.
    /// </summary>
    public static CheckReport Repair(IBlockStore data, IBlockStore metadata)
    {
        var before = PoolChecker.Check(data, metadata);
        var structural = before.Unrepairable;
        if (structural.Count > 0)
            throw StrataException.Corrupt($"the pool has damage that repair does not rebuild (it rebuilds reference counts and superblocks, not trees, the device table or stores cut short): {structural.Count} problem(s), first: {structural[0]}");
        var sb = ReadSuperblock(metadata);
        var repaired = sb with { Flags = sb.Flags & ~Superblock.NeedsCheckFlag, LostTransaction = 0 };
        using (var pool = new ThinPool(data, metadata, new PoolOptions { CommitInterval = TimeSpan.Zero }, repaired, rebuildCounts: true))
        {
            // twice, so that both slots hold the repaired pool: a later fallback to the older one finds nothing the
            // repair acknowledged (a lost transaction) or cleared (needs_check) coming back
            lock (pool._lock)
                for (int slot = 0; slot < 2; slot++)
                {
                    pool._dirty = true;
                    pool.CommitLocked();
                }
        }
        return PoolChecker.Check(data, metadata);
    }

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

    // ---- devices ----

    static string CheckName(string name)
    {
        int bytes = Encoding.UTF8.GetByteCount(name);
        if (bytes is 0 or > DeviceTable.MaxName || !char.IsAsciiLetterOrDigit(name[0]) || name.Any(c => !char.IsAsciiLetterOrDigit(c) && c is not ('_' or '.' or '-')))
            throw StrataException.Invalid($"invalid device name '{(name.Length > 64 ? name[..64] + "..." : name)}': use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most {DeviceTable.MaxName} characters");
        return name;
    }

    static string? CheckOwner(string? owner)
    {
        if (owner is null) return null;
        if (Encoding.UTF8.GetByteCount(owner) is 0 or > DeviceTable.MaxOwner || owner.Any(char.IsControl))
            throw StrataException.Invalid($"invalid device owner '{(owner.Length > 64 ? owner[..64] + "..." : owner)}': 1 to {DeviceTable.MaxOwner} bytes of text, no control characters");
        return owner;
    }

    DeviceRecord Find(string name) =>
        _devices.TryGetValue(name, out var d) ? d : throw StrataException.NotFound($"thin device {name} does not exist");

    void CheckWritable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_readOnly is not null) throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
    }

    /// <summary>Runs a change of the device table alone (no IO in flight), committing it at once: device
    /// changes are rare and should survive a crash.</summary>
    T Exclusive<T>(Func<T> change)
    {
        FlushAhead();
        _gate.EnterWrite();
        try
        {
            lock (_lock)
            {
                CheckWritable();
                T result;
                try
                {
                    result = change();
                }
                catch (MetadataFullException ex)
                {
                    Fail(ex.Message);
                    throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
                }
                _dirty = true;
                CommitLocked();
                return result;
            }
        }
        finally
        {
            _gate.ExitWrite();
        }
    }

    /// <summary>A new, empty device; <paramref name="owner"/> names who holds it (see <see cref="DeleteDevice"/>).</summary>
    public ThinDeviceInfo CreateDevice(string name, long size, string? owner = null)
    {
        CheckName(name);
        CheckOwner(owner);
        if (size <= 0) throw StrataException.Invalid($"a device's size must be positive, not {size}");
        return Exclusive(() =>
        {
            if (_devices.ContainsKey(name)) throw StrataException.Exists($"thin device {name} already exists");
            var d = new DeviceRecord { Id = NextId(), Name = name, Size = (ulong)size, CreatedTransaction = _meta.Transaction + 1, CreatedUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Owner = owner };
            _devices[name] = d;
            _byId[d.Id] = d;
            return Info(d);
        });
    }

    uint NextId()
    {
        uint id = _committed.NextDeviceId;
        while (_byId.ContainsKey(id)) id = id >= MaxDeviceId ? 1 : id + 1;
        if (id > MaxDeviceId) throw StrataException.Invalid("the pool has no device id left");
        _committed = _committed with { NextDeviceId = id >= MaxDeviceId ? 1 : id + 1 };
        return id;
    }

    /// <summary>A new device sharing every block of <paramref name="source"/> as it is now: O(1). It is held by
    /// <paramref name="owner"/>, not by the source's owner.</summary>
    public ThinDeviceInfo Snapshot(string source, string name, string? owner = null)
    {
        CheckName(name);
        CheckOwner(owner);
        return Exclusive(() =>
        {
            var origin = Find(source);
            if (_devices.ContainsKey(name)) throw StrataException.Exists($"thin device {name} already exists");
            _tree.Share(origin.Root);
            var d = new DeviceRecord
            {
                Id = NextId(), Name = name, Size = origin.Size, Root = origin.Root, Mapped = origin.Mapped, Origin = origin.Id,
                CreatedTransaction = _meta.Transaction + 1, CreatedUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Owner = owner,
            };
            _devices[name] = d;
            _byId[d.Id] = d;
            return new ThinDeviceInfo(d.Name, d.Id, (long)d.Size, d.Mapped, 0, d.Mapped, d.Origin, DateTimeOffset.FromUnixTimeMilliseconds(d.CreatedUnixMs), d.Owner);
        });
    }

    /// <summary>Deletes a device, or, when it is open and <paramref name="deferIfOpen"/>, marks it for deletion when its
    /// last user closes it (device-mapper's deferred removal): it cannot be opened again meanwhile, and
    /// <see cref="DeferredDeletes"/> counts it. The mark lives in memory only: a device a crash leaves marked is
    /// still there after the pool reopens, and its owner deletes it then. Returns whether it was deleted now.
    /// A device with an owner (the thin driver's layers: "layer ID") is deleted only by a caller naming that
    /// <paramref name="owner"/>, or with <paramref name="force"/>; anyone else is refused (InUse, naming the owner),
    /// as lvremove refuses a volume in use: deleting a layer's device under the store would break the layer.</summary>
    public bool DeleteDevice(string name, bool deferIfOpen = false, string? owner = null, bool force = false) => Exclusive(() =>
    {
        var d = Find(name);
        if (d.Owner is not null && d.Owner != owner && !force)
            throw StrataException.InUse($"thin device {name} is held by {d.Owner}: remove it through its owner (--force deletes the device all the same, breaking {d.Owner})");
        if (_openDevices.GetValueOrDefault(d.Id) > 0)
        {
            if (!deferIfOpen) throw StrataException.InUse($"thin device {name} is open");
            _deferredDeletes.Add(d.Id);
            return false;
        }
        Drop(d);
        return true;
    });

    void Drop(DeviceRecord d)
    {
        _tree.Drop(d.Root);
        _devices.Remove(d.Name);
        _byId.Remove(d.Id);
        _deferredDeletes.Remove(d.Id);
    }

    /// <summary>Devices marked for deletion that are still open.</summary>
    public int DeferredDeletes
    {
        get
        {
            lock (_lock) return _deferredDeletes.Count;
        }
    }

    void DeleteDeferred(uint id)
    {
        try
        {
            Exclusive(() =>
            {
                if (_deferredDeletes.Contains(id) && _openDevices.GetValueOrDefault(id) == 0 && _byId.TryGetValue(id, out var d)) Drop(d);
                return 0;
            });
        }
        catch (StrataException)
        {
            // the pool went read-only or closed: the device stays (its owner deletes it when it next looks)
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Grows a device (shrinking would drop data: refused).</summary>
    public ThinDeviceInfo ResizeDevice(string name, long size) => Exclusive(() =>
    {
        var d = Find(name);
        if (size < (long)d.Size) throw StrataException.Invalid($"thin device {name} is {d.Size} bytes; shrinking it to {size} is not supported");
        d.Size = (ulong)size;
        return Info(d);
    });

    public IReadOnlyList<ThinDeviceInfo> Devices()
    {
        _gate.EnterRead();
        try
        {
            lock (_lock) return _devices.Values.OrderBy(d => d.Id).Select(Info).ToList();
        }
        finally
        {
            _gate.ExitRead();
        }
    }

    /// <summary>One device's size, id and origin, without counting its blocks (Mapped is the pool's running count).</summary>
    public ThinDeviceInfo DeviceInfo(string name)
    {
        lock (_lock)
        {
            var d = Find(name);
            return new ThinDeviceInfo(d.Name, d.Id, (long)d.Size, d.Mapped, 0, 0, d.Origin, DateTimeOffset.FromUnixTimeMilliseconds(d.CreatedUnixMs), d.Owner);
        }
    }

    /// <summary>The devices' names, by id: no tree is walked (<see cref="Devices"/> counts blocks). A device marked for
    /// deferred deletion is left out: it cannot be opened again, and goes with its last close.</summary>
    public IReadOnlyList<string> DeviceNames()
    {
        lock (_lock) return _devices.Values.Where(d => !_deferredDeletes.Contains(d.Id)).OrderBy(d => d.Id).Select(d => d.Name).ToList();
    }

    /// <summary>A device's counts; exclusive blocks are those no other device can see (every node on the path
    /// and the block itself used once).</summary>
    ThinDeviceInfo Info(DeviceRecord d)
    {
        ulong exclusive = 0, total = 0;
        if (d.Root != 0)
        {
            var pending = new Stack<(ulong Block, bool Shared)>();
            pending.Push((d.Root, false));
            while (pending.Count > 0)
            {
                var (b, sharedAbove) = pending.Pop();
                bool shared = sharedAbove || _meta.Refs(b) > 1;
                var node = _meta.Load(b);
                for (int i = 0; i < node.Count; i++)
                    if (!node.Leaf) pending.Push((node.Values[i], shared));
                    else
                    {
                        total++;
                        if (!shared && _space.Refs(node.Values[i]) == 1) exclusive++;
                    }
            }
        }
        return new ThinDeviceInfo(d.Name, d.Id, (long)d.Size, total, exclusive, total - exclusive, d.Origin, DateTimeOffset.FromUnixTimeMilliseconds(d.CreatedUnixMs), d.Owner);
    }

    /// <summary>Opens a device for IO; it cannot be deleted while open.</summary>
    public ThinDevice OpenDevice(string name)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var d = Find(name);
            if (_deferredDeletes.Contains(d.Id)) throw StrataException.NotFound($"thin device {name} is being deleted (when its last user closes it)");
            _openDevices[d.Id] = _openDevices.GetValueOrDefault(d.Id) + 1;
            return new ThinDevice(this, d.Id, d.Name);
        }
    }

    internal void Closed(uint id)
    {
        bool deleteNow;
        lock (_lock)
        {
            if (_openDevices.TryGetValue(id, out int n) && (_openDevices[id] = n - 1) == 0) _openDevices.Remove(id);
            deleteNow = !_openDevices.ContainsKey(id) && _deferredDeletes.Contains(id) && !_disposed;
        }
        if (deleteNow) DeleteDeferred(id);
    }

    /// <summary>An open device's record (under the lock: a failed transaction reloads them all).</summary>
    DeviceRecord Dev(uint id) => _byId.TryGetValue(id, out var d) ? d : throw StrataException.NotFound($"thin device {id} no longer exists");

    // ---- IO (called by ThinDevice) ----

    internal long SizeOf(uint id)
    {
        lock (_lock) return (long)Dev(id).Size;
    }

    void CheckRange(uint id, long offset, long length)
    {
        lock (_lock) CheckRange(Dev(id), offset, length);
    }

    static void CheckRange(DeviceRecord d, long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > (long)d.Size || length > (long)d.Size - offset)
            throw StrataException.Invalid($"{length} bytes at {offset} are outside thin device {d.Name} ({d.Size} bytes)");
    }

    void EnterIo()
    {
        _gate.EnterRead();
        if (_disposed)
        {
            _gate.ExitRead();
            throw new ObjectDisposedException(nameof(ThinPool));
        }
    }

    /// <summary>Calls <paramref name="piece"/> for each block-sized piece of [offset, offset+length): virtual
    /// block, offset in it, offset from the start, length.</summary>
    void ForEachPiece(uint id, long offset, long length, Action<ulong, int, long, int> piece)
    {
        CheckRange(id, offset, length);
        long bs = BlockSize;
        for (long done = 0; done < length;)
        {
            long pos = offset + done;
            int at = (int)(pos % bs), n = (int)Math.Min(bs - at, length - done);
            piece((ulong)(pos / bs), at, done, n);
            done += n;
        }
    }

    /// <summary>Reads into <paramref name="buffer"/>; the unmapped ranges read as zeros and, as far as
    /// <paramref name="holes"/> has room, are reported there (see <see cref="IBlockDevice.ReadSparse"/>).</summary>
    internal int Read(uint id, long offset, Span<byte> buffer, Span<(int Start, int Length)> holes)
    {
        int holeCount = 0;
        EnterIo();
        ulong[]? rented = null;
        try
        {
            long bs = BlockSize;
            if (buffer.Length == 0)
            {
                CheckRange(id, offset, 0);
                return 0;
            }
            // one trip under the lock: the range check and every piece's data block (+1; 0 is a hole)
            int count = (int)((offset + buffer.Length - 1) / bs - offset / bs + 1);
            Span<ulong> blocks = count <= 64 ? stackalloc ulong[64] : (rented = ArrayPool<ulong>.Shared.Rent(count));
            lock (_lock)
            {
                var d = Dev(id);
                CheckRange(d, offset, buffer.Length);
                ulong first = (ulong)(offset / bs);
                for (int i = 0; i < count; i++) blocks[i] = _tree.TryLookup(d.Root, first + (ulong)i, out ulong b) ? b + 1 : 0;
            }
            // pieces on consecutive data blocks are read with one call
            int pendingStart = 0, pendingLength = 0;
            long pendingData = 0;
            for (int done = 0, i = 0; done < buffer.Length; i++)
            {
                long pos = offset + done;
                int at = (int)(pos % bs), n = (int)Math.Min(bs - at, buffer.Length - done);
                bool mapped = blocks[i] != 0;
                long dataAt = (long)(blocks[i] - 1) * bs + at;
                if (mapped && pendingLength > 0 && pendingData + pendingLength == dataAt) pendingLength += n;
                else
                {
                    if (pendingLength > 0) _data.Read(pendingData, buffer.Slice(pendingStart, pendingLength));
                    pendingLength = 0;
                    if (mapped) (pendingStart, pendingData, pendingLength) = (done, dataAt, n);
                    else
                    {
                        buffer.Slice(done, n).Clear();
                        if (holeCount > 0 && holes[holeCount - 1].Start + holes[holeCount - 1].Length == done) holes[holeCount - 1].Length += n;
                        else if (holeCount < holes.Length) holes[holeCount++] = (done, n);
                    }
                }
                done += n;
            }
            if (pendingLength > 0) _data.Read(pendingData, buffer.Slice(pendingStart, pendingLength));
            return holeCount;
        }
        finally
        {
            if (rented is not null) ArrayPool<ulong>.Shared.Return(rented);
            _gate.ExitRead();
        }
    }

    internal void Write(uint id, long offset, ReadOnlySpan<byte> data, bool fua)
    {
        EnterIo();
        try
        {
            lock (_lock)
            {
                CheckWritable();
                CheckRange(id, offset, data.Length);
            }
            long bs = BlockSize;
            var deadline = DateTime.UtcNow + _options.NoSpaceTimeout;
            bool committedForSpace = false;
            for (int done = 0; done < data.Length;)
            {
                long pos = offset + done;
                int at = (int)(pos % bs), n = (int)Math.Min(bs - at, data.Length - done);
                if (at == 0 && data.Length - done >= 2 * bs)
                {
                    int run = WriteRun(id, (ulong)(pos / bs), data.Slice(done, (int)Math.Min(data.Length - done, MaxRun * bs) / (int)bs * (int)bs));
                    if (run > 0)
                    {
                        done += run * (int)bs;
                        continue;
                    }
                }
                try
                {
                    WriteBlock(id, (ulong)(pos / bs), at, data.Slice(done, n));
                }
                catch (DataFullException)
                {
                    if (!committedForSpace && _space.Quarantined > 0)
                    {
                        // blocks freed since the last commit become free with the next one: commit once, then retry
                        committedForSpace = true;
                        _gate.ExitRead();
                        try
                        {
                            Commit();
                        }
                        finally
                        {
                            _gate.EnterRead();
                        }
                        continue;
                    }
                    var left = deadline - DateTime.UtcNow;
                    if (left <= TimeSpan.Zero) throw DataFull();
                    // wait without the gate, so that deletes and commits that make room can run
                    _gate.ExitRead();
                    try
                    {
                        lock (_spaceSignal) Monitor.Wait(_spaceSignal, left < TimeSpan.FromMilliseconds(100) ? left : TimeSpan.FromMilliseconds(100));
                    }
                    finally
                    {
                        _gate.EnterRead();
                    }
                    if (_options.CommitInterval == TimeSpan.Zero || _dirty) ThreadPool.QueueUserWorkItem(_ => BackgroundCommit());
                    continue;
                }
                done += n;
            }
        }
        finally
        {
            _gate.ExitRead();
        }
        if (fua) Commit();
    }

    object Stripe(uint id, ulong vblock) => _stripes[StripeIndex(id, vblock)];

    int StripeIndex(uint id, ulong vblock) => (int)((vblock * 31 + id) % (ulong)_stripes.Length);

    const int MaxRun = 64;

    /// <summary>
    /// Writes whole blocks that no one maps yet, from <paramref name="first"/> on, into consecutive fresh data
    /// blocks with one write to the data store (so the data lands as one extent, and the page cache keeps it in
    /// large pieces as it would a file written the same way), then maps them. Returns how many blocks it wrote
    /// (fewer than asked when the next data block is taken): 0 when fewer than two qualify or there is no
    /// space, and the caller writes block by block.
    /// </summary>
    int WriteRun(uint id, ulong first, ReadOnlySpan<byte> data)
    {
        long bs = BlockSize;
        int want = (int)(data.Length / bs);
        var stripes = new SortedSet<int>();
        for (int i = 0; i < want; i++) stripes.Add(StripeIndex(id, first + (ulong)i));
        var taken = new List<object>();
        try
        {
            foreach (int s in stripes)
            {
                Monitor.Enter(_stripes[s]);
                taken.Add(_stripes[s]);
            }
            var blocks = new List<ulong>(want);
            lock (_lock)
            {
                CheckWritable();
                var d = Dev(id);
                int count = 0;
                while (count < want && !_tree.TryLookup(d.Root, first + (ulong)count, out _)) count++;
                if (count < 2 || !TryAllocateData(out ulong start)) return 0;
                blocks.Add(start);
                while (blocks.Count < count && _space.TryAllocateExact(blocks[^1] + 1)) blocks.Add(blocks[^1] + 1);
            }
            try
            {
                _data.Write((long)blocks[0] * bs, data[..(int)(blocks.Count * bs)]);
            }
            catch
            {
                lock (_lock) foreach (ulong b in blocks) _space.Unref(b);
                throw;
            }
            lock (_lock)
            {
                if (_readOnly is not null || !_byId.ContainsKey(id)) throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
                var d = Dev(id);
                for (int i = 0; i < blocks.Count; i++) Map(d, first + (ulong)i, blocks[i]);
            }
            return blocks.Count;
        }
        finally
        {
            foreach (var o in taken) Monitor.Exit(o);
        }
    }

    /// <summary>Writes <paramref name="piece"/> at <paramref name="at"/> in virtual block <paramref name="vblock"/>:
    /// in place when the device alone owns the block, else into a new block (zero-filled around the piece, or a
    /// copy of the shared block with the piece in it) that is mapped once written.</summary>
    void WriteBlock(uint id, ulong vblock, int at, ReadOnlySpan<byte> piece)
    {
        long bs = BlockSize;
        lock (Stripe(id, vblock))
        {
            bool mapped, shared;
            ulong old, fresh;
            lock (_lock)
            {
                CheckWritable();
                mapped = TryLookupOwned(Dev(id).Root, vblock, out old, out shared);
                if (mapped && !shared) fresh = 0;
                else if (!TryAllocateData(out fresh)) throw new DataFullException();
            }
            if (mapped && !shared)
            {
                _data.Write((long)old * bs + at, piece);
                Interlocked.Increment(ref _writesInPlace); // after the write: a flush that started before this missed it
                return;
            }
            try
            {
                if (piece.Length == bs) _data.Write((long)fresh * bs, piece);
                else if (!mapped && _data.IsHole((long)fresh * bs, bs)) _data.Write((long)fresh * bs + at, piece); // the rest reads as zeros already
                else
                {
                    var buffer = ArrayPool<byte>.Shared.Rent((int)bs);
                    try
                    {
                        var whole = buffer.AsSpan(0, (int)bs);
                        if (mapped) _data.Read((long)old * bs, whole);
                        else whole.Clear();
                        piece.CopyTo(whole[at..]);
                        _data.Write((long)fresh * bs, whole);
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                    }
                }
            }
            catch
            {
                lock (_lock) _space.Unref(fresh);
                throw;
            }
            lock (_lock)
            {
                if (_readOnly is not null || !_byId.ContainsKey(id)) throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
                Map(Dev(id), vblock, fresh);
            }
        }
    }

    sealed class DataFullException : Exception;

    StrataException DataFull() => new(ErrorKind.NoSpace, $"the pool's data space is full ({_space.Blocks} blocks of {BlockSize} bytes): delete devices or grow the pool");

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
        if (store is FileBlockStore { IsDevice: true }) return size;
        long room = RoomOnDisk(store);
        if (room < long.MaxValue - size) target = Math.Min(target, size + room);
        long limit = store == _data ? (long)Math.Min(int.MaxValue, DataSpace.MaxBlocks) * BlockSize : (long)int.MaxValue * MetadataBlock.Size;
        target = Math.Min(target, limit);
        return Math.Max(target, size);
    }

    /// <summary>Maps <paramref name="vblock"/> of <paramref name="d"/> to <paramref name="block"/> (whose count the
    /// caller holds), releasing what it mapped before.</summary>
    void Map(DeviceRecord d, ulong vblock, ulong block)
    {
        ulong? replaced;
        try
        {
            d.Root = _tree.Insert(d.Root, vblock, block, out replaced);
        }
        catch (MetadataFullException ex)
        {
            Fail(ex.Message);
            throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
        }
        if (replaced is { } old) _space.Unref(old);
        else d.Mapped++;
        _dirty = true;
    }

    /// <summary>Looks <paramref name="key"/> up, saying whether any other device (or the block's count) shares it.</summary>
    bool TryLookupOwned(ulong root, ulong key, out ulong value, out bool shared)
    {
        value = 0;
        shared = false;
        if (root == 0) return false;
        // shared now, or shared by the last commit with a tree that has let go of it since (a crash would bring
        // that tree back, so it must not see this write)
        var node = _meta.Load(root);
        shared = _meta.Refs(root) > 1 || _meta.DroppedSinceCommit(root);
        while (!node.Leaf)
        {
            ulong child = node.Values[node.ChildFor(key)];
            shared |= _meta.Refs(child) > 1 || _meta.DroppedSinceCommit(child);
            node = _meta.Load(child);
        }
        int i = node.LowerBound(key);
        if (i >= node.Count || node.Keys[i] != key) return false;
        value = node.Values[i];
        shared |= _space.Refs(value) > 1 || _space.DroppedSinceCommit(value);
        return true;
    }

    /// <summary>Discard and write-zeroes: whole blocks are unmapped (freed when no one else maps them), parts of
    /// blocks that are mapped are overwritten with zeros.</summary>
    internal void Unmap(uint id, long offset, long length)
    {
        EnterIo();
        try
        {
            lock (_lock) CheckWritable();
            long bs = BlockSize;
            byte[]? zeros = null;
            ForEachPiece(id, offset, length, (vblock, at, _, n) =>
            {
                lock (Stripe(id, vblock))
                {
                    if (n == bs)
                    {
                        lock (_lock)
                        {
                            CheckWritable();
                            var d = Dev(id);
                            if (!_tree.TryLookup(d.Root, vblock, out ulong _)) return;
                            try
                            {
                                d.Root = _tree.Remove(d.Root, vblock, out var removed);
                                _space.Unref(removed!.Value);
                            }
                            catch (MetadataFullException ex)
                            {
                                Fail(ex.Message);
                                throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
                            }
                            d.Mapped--;
                            _dirty = true;
                        }
                        return;
                    }
                    bool mapped;
                    lock (_lock) mapped = _tree.TryLookup(Dev(id).Root, vblock, out ulong _);
                    if (!mapped) return;
                    zeros ??= new byte[bs];
                    try
                    {
                        WriteBlock(id, vblock, at, zeros.AsSpan(0, n));
                    }
                    catch (DataFullException)
                    {
                        throw DataFull();
                    }
                }
            });
        }
        finally
        {
            _gate.ExitRead();
        }
    }

    internal IReadOnlyList<(long Offset, long Length)> Allocated(uint id, long offset, long length)
    {
        EnterIo();
        try
        {
            long bs = BlockSize;
            CheckRange(id, offset, length);
            var ranges = new List<(long Offset, long Length)>();
            if (length == 0) return ranges;
            lock (_lock)
                foreach (var (vblock, _) in _tree.Range(Dev(id).Root, (ulong)(offset / bs), (ulong)((offset + length - 1) / bs) + 1))
                {
                    long start = Math.Max(offset, (long)vblock * bs), end = Math.Min(offset + length, ((long)vblock + 1) * bs);
                    if (ranges.Count > 0 && ranges[^1].Offset + ranges[^1].Length == start)
                        ranges[^1] = (ranges[^1].Offset, ranges[^1].Length + end - start);
                    else ranges.Add((start, end - start));
                }
            return ranges;
        }
        finally
        {
            _gate.ExitRead();
        }
    }

    // ---- transactions ----

    /// <summary>Makes everything written so far durable: data first, then the metadata that maps it, then the superblock.</summary>
    public void Commit()
    {
        bool inPlaceOnly;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_lostTransaction) throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only and lost the writes since its last commit: {_readOnly}");
            // no metadata changed (or none can be committed any more: the pool is read-only): every write completed
            // so far went in place, into blocks the last commit maps, and needs a flush of the data, not a commit,
            // so IO goes on meanwhile (a periodic commit never flushes such writes; only a user's flush or FUA does)
            inPlaceOnly = _readOnly is not null || !_dirty && _flushFailed is null;
        }
        if (inPlaceOnly)
        {
            FlushData();
            return;
        }
        FlushAhead();
        _gate.EnterWrite();
        try
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_lostTransaction) throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only and lost the writes since its last commit: {_readOnly}");
                if (_readOnly is not null) return; // nothing can have changed since the last commit
                CommitLocked();
            }
        }
        finally
        {
            _gate.ExitWrite();
        }
    }

    /// <summary>Commits everything written so far, then runs <paramref name="read"/> on the metadata store with no IO
    /// or commit until it returns: a check or a dump of a pool in use sees one consistent transaction.</summary>
    public T ReadCommitted<T>(Func<IBlockStore, T> read)
    {
        FlushAhead();
        _gate.EnterWrite();
        try
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_readOnly is null) CommitLocked();
                return read(_metaStore);
            }
        }
        finally
        {
            _gate.ExitWrite();
        }
    }

    void BackgroundCommit()
    {
        try
        {
            if (!_disposed && _dirty) Commit();
        }
        catch (Exception)
        {
            // the next flush reports it to a user
        }
    }

    /// <summary>Flushes the data written so far while IO goes on, before a commit stops IO: the commit's own
    /// flush then has only what was written in between to wait for (a commit of a pool with a second of random
    /// writes behind it held all IO for ~200 ms of every second). A failure is kept for the next commit to fail
    /// with, never dropped: the kernel reports a lost write-back once, and a later flush would succeed.</summary>
    void FlushAhead()
    {
        if (!_dirty || _disposed || _readOnly is not null) return;
        try
        {
            SyncData();
        }
        catch (Exception ex) when (ex is IOException or StrataException or ObjectDisposedException)
        {
            // recorded by SyncData: the commit fails with it (or, disposed, fails on its own)
        }
    }

    /// <summary>Makes every write in place completed before the call durable (a flush with no metadata to commit).</summary>
    void FlushData()
    {
        long target = Interlocked.Read(ref _writesInPlace);
        if (Volatile.Read(ref _flushedInPlace) >= target && _flushFailed is null) return;
        try
        {
            lock (_flushLock)
                if (_flushedInPlace < target || _flushFailed is not null) SyncData();
        }
        catch (Exception ex) when (ex is IOException or StrataException)
        {
            throw new StrataException(ErrorKind.Io, $"the pool could not flush its data: {ex.Message}", ex);
        }
    }

    /// <summary>Flushes the data store, one flush at a time. A failure is kept: every later flush and commit fails
    /// with it (the kernel reports a lost write-back once, and a later flush would succeed).</summary>
    void SyncData()
    {
        lock (_flushLock)
        {
            if (_flushFailed is { } failed) throw failed;
            long covered = Interlocked.Read(ref _writesInPlace);
            try
            {
                _data.Flush();
            }
            catch (Exception ex) when (ex is IOException or StrataException)
            {
                _flushFailed ??= ex;
                throw;
            }
            if (covered > _flushedInPlace) Volatile.Write(ref _flushedInPlace, covered);
        }
    }

    void CommitLocked()
    {
        if (!_dirty && _flushFailed is null) return;
        ulong next = _meta.Transaction + 1;
        bool upgrading = _committed.Format < Superblock.Version;
        try
        {
            SyncData(); // the new data first (writes in place too); fails with an earlier failed flush
            foreach (ulong b in _tableBlocks) _meta.Unref(b);
            _tableBlocks = DeviceTable.Write(_meta, _devices.Values, next);
            ulong table = _tableBlocks.Count == 0 ? 0 : _tableBlocks[0];
            ulong refIndex = _space.Persist(next);
            var buffer = new byte[MetadataBlock.Size];
            foreach (var node in _meta.FreshNodes())
            {
                node.Encode(buffer, next);
                _meta.Write(node.Block, buffer);
            }
            _metaStore.Flush();
            var sb = _committed with { Transaction = next, Format = Superblock.Version, DeviceTable = table, RefIndex = refIndex, DataBlocks = _space.Blocks, MetadataBlocks = _meta.Blocks };
            sb.Write(buffer);
            _metaStore.Write((long)sb.Slot * MetadataBlock.Size, buffer);
            _metaStore.Flush();
            _committed = sb;
            _slotDamage = null; // the slot the pool did not open at is the one just written
        }
        catch (MetadataFullException ex)
        {
            Fail(ex.Message);
            throw new StrataException(ErrorKind.ReadOnly, $"the pool is read-only: {_readOnly}");
        }
        catch (Exception ex) when (ex is IOException or StrataException)
        {
            // a failed flush may have dropped what it was to write, and a retry could reuse blocks a superblock
            // already on disk points at: stop here, at the last commit, read-only
            try
            {
                Fail($"a commit failed ({ex.Message})");
            }
            catch (Exception)
            {
                _readOnly ??= $"a commit failed ({ex.Message})";
                _lostTransaction = true;
            }
            throw new StrataException(ErrorKind.Io, $"the pool could not commit and is read-only now: {ex.Message}", ex);
        }
        _meta.Transaction = next;
        _meta.Committed();
        _dirty = false;
        long bs = BlockSize;
        var released = _space.Release();
        if (_options.DiscardFreed)
            foreach (ulong b in released) _data.Discard((long)b * bs, bs); // best effort: the space goes back to the host
        if (released.Count > 0) lock (_spaceSignal) Monitor.PulseAll(_spaceSignal);
        _meta.TrimCache(65536);
        if (upgrading)
        {
            // the first commit in a newer format commits again, so that the other slot leaves the older format too:
            // an older Strata then finds no superblock it reads and refuses the pool, instead of opening it at the
            // older slot and rolling back (and overwriting) what this commit did
            _dirty = true;
            CommitLocked();
        }
    }

    /// <summary>The metadata cannot take this transaction: the pool goes back to its last commit, read-only,
    /// with needs_check set on disk.</summary>
    void Fail(string why)
    {
        var flagged = _committed with { Transaction = _committed.Transaction + 1, Flags = _committed.Flags | Superblock.NeedsCheckFlag };
        var buffer = new byte[MetadataBlock.Size];
        flagged.Write(buffer);
        _metaStore.Write((long)flagged.Slot * MetadataBlock.Size, buffer);
        _metaStore.Flush();
        _slotDamage = null;
        _lostTransaction |= _dirty;
        Load(flagged);
        _readOnly = $"{why}; it is back at its last commit with needs_check set (grow the metadata, then `strata pool repair`)";
    }

    /// <summary>Why the pool is read-only (null: it is not); <see cref="Status"/> without its space figures.</summary>
    public string? ReadOnlyReason
    {
        get
        {
            lock (_lock) return _readOnly;
        }
    }

    public PoolStatus Status()
    {
        lock (_lock) return StatusLocked();
    }

    /// <summary>How many more bytes the filesystem under a sparse store file can take (unbounded for others).</summary>
    static long RoomOnDisk(IBlockStore store) =>
        store is FileBlockStore { IsDevice: false } file && Path.GetDirectoryName(file.Name) is { } dir ? Math.Max(0, Posix.AvailableBytes(dir)) : long.MaxValue;

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
