using System.Text.Json;
using System.Text.Json.Serialization;
using Strata.Native;
using Strata.Block;

namespace Strata.Thin;

/// <summary>Where a pool's stores are, as its directory records them in <c>pool.json</c>: a data and a metadata store,
/// or (a resilient pool) its disks, each with the id its label carries.</summary>
public sealed record PoolLayout
{
    /// <summary>The data store ("" for a resilient pool).</summary>
    public string Data { get; init; } = "";
    /// <summary>The metadata store ("" for a resilient pool).</summary>
    public string Metadata { get; init; } = "";
    /// <summary>A resilient pool's disks, by slot (null: a pool on one data store).</summary>
    public List<PoolDisk>? Disks { get; init; }
    /// <summary>The id the labels of a resilient pool's disks carry.</summary>
    public Guid SpaceId { get; init; }
    public int AutoextendThreshold { get; init; } = 80;
    public int AutoextendPercent { get; init; } = 20;
    public long MaxDataSize { get; init; }
    public long MaxMetadataSize { get; init; }
    public long NoSpaceTimeoutMs { get; init; }
    /// <summary>Whether freed blocks are discarded from the data store (absent in older pool.json files: true).</summary>
    public bool DiscardFreed { get; init; } = true;

    /// <summary>The pool's options as recorded (the commit interval is the caller's).</summary>
    public PoolOptions Options(TimeSpan commitInterval) => new()
    {
        CommitInterval = commitInterval,
        AutoextendThreshold = AutoextendThreshold,
        AutoextendPercent = AutoextendPercent,
        MaxDataSize = MaxDataSize,
        MaxMetadataSize = MaxMetadataSize,
        NoSpaceTimeout = TimeSpan.FromMilliseconds(NoSpaceTimeoutMs),
        DiscardFreed = DiscardFreed,
    };
}

/// <summary>What `strata pool disk add|remove|replace|fail` asks.</summary>
public enum DiskAction { Add, Remove, Replace, Fail }

/// <summary>A change of a resilient pool's disks: the disk (for replace, the old one), the new disk and its size (add,
/// replace).</summary>
public sealed record DiskChange(DiskAction Action, string Path, string? NewPath = null, long? Size = null);

/// <summary>A disk of a resilient pool as pool.json records it.</summary>
public sealed record PoolDisk(string Path, Guid Id);

/// <summary>What a resilient pool is made of, as `strata pool create --disk ...` asks for it.</summary>
public sealed record DiskSpec(string Path, long? Size);

/// <summary>How a resilient pool keeps its data (fixed at creation); a null size takes the default for the disks'
/// sizes (<see cref="Space.DiskSet.DefaultSlabSize"/>, <see cref="Space.DiskSet.DefaultMetadataSize"/>).</summary>
public sealed record SpaceSpec(IReadOnlyList<DiskSpec> Disks, Space.Resiliency Resiliency, long? SlabSize, long? MetadataSize, bool Checksums);

[JsonSourceGenerationOptions(WriteIndented = true)]
[JsonSerializable(typeof(PoolLayout))]
sealed partial class PoolJson : JsonSerializerContext;

/// <summary>
/// A pool in a directory: <c>pool.json</c> (where the data and metadata stores are: by default the sparse files
/// <c>data</c> and <c>metadata</c> beside it, or files or block devices given at creation) and <c>pool.lock</c>,
/// which the one process that has the pool open holds (flock).
/// </summary>
public sealed class PoolDirectory : IDisposable
{
    readonly FileDescriptor _lock;

    PoolDirectory(string dir, FileDescriptor lockFd, PoolLayout layout, ThinPool pool, IBlockStore data, IBlockStore metadata)
    {
        Path = dir;
        _lock = lockFd;
        Layout = layout;
        Pool = pool;
        Data = data;
        Metadata = metadata;
    }

    public string Path { get; }
    public PoolLayout Layout { get; private set; }
    public ThinPool Pool { get; }
    public IBlockStore Data { get; }
    public IBlockStore Metadata { get; }

    static string LayoutFile(string dir) => System.IO.Path.Combine(dir, "pool.json");

    public static bool Exists(string dir) => File.Exists(LayoutFile(dir));

    static FileDescriptor Lock(string dir)
    {
        string file = System.IO.Path.Combine(dir, "pool.lock");
        var fd = Posix.Open(file, Posix.O_RDWR | Posix.O_CREAT, 0x180);
        if (!Posix.TryLockExclusive(fd, file))
        {
            fd.Dispose();
            throw StrataException.InUse($"the pool in {dir} is in use by another process");
        }
        return fd;
    }

    /// <summary>Makes a new pool in <paramref name="dir"/> (which must not hold one) and opens it.</summary>
    public static PoolDirectory Create(string dir, long dataSize, long metadataSize, uint blockSize, string? dataPath = null, string? metadataPath = null, PoolOptions? options = null)
    {
        dir = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(dir));
        Directory.CreateDirectory(dir);
        var lockFd = Lock(dir);
        var created = new List<string>();
        try
        {
            if (Exists(dir)) throw StrataException.Exists($"{dir} already holds a pool");
            options ??= new PoolOptions();
            if (options.AutoextendThreshold is < 1 or > 100) throw StrataException.Invalid($"autoextend threshold {options.AutoextendThreshold} must be a percent from 1 to 100 (100: off)");
            if (options.AutoextendPercent is < 1 or > 1000) throw StrataException.Invalid($"autoextend percent {options.AutoextendPercent} must be from 1 to 1000");
            if (options.NoSpaceTimeout < TimeSpan.Zero || options.NoSpaceTimeout > TimeSpan.FromHours(1)) throw StrataException.Invalid("the no-space timeout must be from 0 to 1 hour");
            if (options.MaxDataSize is > 0 and var maxData && maxData < dataSize) throw StrataException.Invalid($"the maximum data size is below the data size");
            if (options.MaxMetadataSize is > 0 and var maxMeta && maxMeta < metadataSize) throw StrataException.Invalid($"the maximum metadata size is below the metadata size");
            var layout = new PoolLayout
            {
                Data = System.IO.Path.GetFullPath(dataPath ?? System.IO.Path.Combine(dir, "data")),
                Metadata = System.IO.Path.GetFullPath(metadataPath ?? System.IO.Path.Combine(dir, "metadata")),
                AutoextendThreshold = options.AutoextendThreshold,
                AutoextendPercent = options.AutoextendPercent,
                MaxDataSize = options.MaxDataSize,
                MaxMetadataSize = options.MaxMetadataSize,
                NoSpaceTimeoutMs = (long)options.NoSpaceTimeout.TotalMilliseconds,
                DiscardFreed = options.DiscardFreed,
            };
            if (layout.Data == layout.Metadata) throw StrataException.Invalid("the data and the metadata need stores of their own");
            var data = FileBlockStore.Create(layout.Data, dataSize);
            created.Add(layout.Data);
            var metadata = FileBlockStore.Create(layout.Metadata, metadataSize);
            created.Add(layout.Metadata);
            try
            {
                var pool = ThinPool.Create(data, metadata, blockSize, options);
                AtomicWrite(LayoutFile(dir), JsonSerializer.SerializeToUtf8Bytes(layout, PoolJson.Default.PoolLayout));
                return new PoolDirectory(dir, lockFd, layout, pool, data, metadata);
            }
            catch
            {
                data.Dispose();
                metadata.Dispose();
                throw;
            }
        }
        catch
        {
            foreach (var f in created) if (File.Exists(f)) File.Delete(f); // block devices are never deleted: Create took them as they were
            lockFd.Dispose();
            throw;
        }
    }

    /// <summary>Makes a new resilient pool in <paramref name="dir"/> (which must not hold one) over the disks
    /// <paramref name="spec"/> names, and opens it. A disk that does not exist is made as a sparse file of its size; one
    /// that exists (a file or a block device) is taken whole, or its first size bytes, unless it carries a Strata disk
    /// label already. Autoextend is off: the pool's size is its disks'.</summary>
    public static PoolDirectory Create(string dir, SpaceSpec spec, uint blockSize, PoolOptions? options = null)
    {
        dir = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(dir));
        Directory.CreateDirectory(dir);
        var lockFd = Lock(dir);
        var created = new List<string>();
        var stores = new List<(string Path, IBlockStore Store)>();
        try
        {
            if (Exists(dir)) throw StrataException.Exists($"{dir} already holds a pool");
            options = (options ?? new PoolOptions()) with { AutoextendThreshold = 100 };
            if (options.NoSpaceTimeout < TimeSpan.Zero || options.NoSpaceTimeout > TimeSpan.FromHours(1)) throw StrataException.Invalid("the no-space timeout must be from 0 to 1 hour");
            foreach (var d in spec.Disks)
            {
                string path = System.IO.Path.GetFullPath(d.Path);
                if (stores.Any(s => s.Path == path)) throw StrataException.Invalid($"disk {path} is named twice");
                stores.Add((path, OpenNewDisk(d, created)));
            }
            long smallest = stores.Count == 0 ? 0 : stores.Min(s => s.Store.Length);
            var (data, metadata, spaceId) = Space.DiskSet.Create(stores, blockSize, spec.Resiliency,
                spec.SlabSize ?? Space.DiskSet.DefaultSlabSize(smallest, blockSize), spec.MetadataSize ?? Space.DiskSet.DefaultMetadataSize(smallest), spec.Checksums);
            var layout = new PoolLayout
            {
                Disks = [.. data.Disks.Select(d => new PoolDisk(d.Path, d.Id))],
                SpaceId = spaceId,
                AutoextendThreshold = 100,
                NoSpaceTimeoutMs = (long)options.NoSpaceTimeout.TotalMilliseconds,
                DiscardFreed = options.DiscardFreed,
            };
            var pool = ThinPool.Create(data, metadata, blockSize, options);
            AtomicWrite(LayoutFile(dir), JsonSerializer.SerializeToUtf8Bytes(layout, PoolJson.Default.PoolLayout));
            return new PoolDirectory(dir, lockFd, layout, pool, data, metadata);
        }
        catch
        {
            foreach (var (_, store) in stores) store.Dispose();
            foreach (var f in created) if (File.Exists(f)) File.Delete(f);
            lockFd.Dispose();
            throw;
        }
    }

    /// <summary>A disk for a pool: an existing file or block device without a Strata label (its first <c>Size</c> bytes
    /// when given), or a new sparse file of <c>Size</c> bytes (added to <paramref name="created"/>).</summary>
    static IBlockStore OpenNewDisk(DiskSpec d, List<string> created)
    {
        string path = System.IO.Path.GetFullPath(d.Path);
        if (Posix.TryLstat(path, out var st))
        {
            if (!st.IsRegular && st.Kind != FileKind.BlockDevice) throw StrataException.Invalid($"disk {path} is neither a regular file nor a block device");
            var file = FileBlockStore.Open(path);
            try
            {
                if (Space.DiskLabel.TryRead(file, out _) is { } label)
                    throw StrataException.Exists($"disk {path} is already a disk of a Strata pool ({label.Pool}); wipe its first 4 KiB to reuse it");
                if (d.Size is not { } size) return file;
                if (size > file.Length) throw StrataException.Invalid($"disk {path} is {file.Length} bytes, smaller than the size asked ({size})");
                return new Window(file, size);
            }
            catch
            {
                file.Dispose();
                throw;
            }
        }
        if (d.Size is not { } bytes) throw StrataException.Invalid($"disk {path} does not exist: give its size to make it (--disk {d.Path},size=10G)");
        if (bytes <= 0) throw StrataException.Invalid($"disk {path}: the size must be positive");
        var made = FileBlockStore.Create(path, bytes);
        created.Add(path);
        return made;
    }

    /// <summary>Changes a resilient pool's disks (see <see cref="DiskChange"/>); a rebuild it starts runs in the
    /// background. A new disk is labelled and given a copy of the metadata with no commit going on, pool.json names it
    /// before the commit that records it (an open after a crash in between completes the add), and the commit follows.</summary>
    public Space.SpaceInfo ChangeDisks(DiskChange change)
    {
        var data = Data as Space.ResilientStore ?? throw StrataException.Invalid($"pool {Path} is on one data store, not over disks");
        string path = System.IO.Path.GetFullPath(change.Path);
        switch (change.Action)
        {
            case DiskAction.Fail:
                data.FailDisk(path);
                break;
            case DiskAction.Remove:
                data.RemoveDisk(path);
                break;
            case DiskAction.Add or DiskAction.Replace:
            {
                string added = System.IO.Path.GetFullPath(change.Action == DiskAction.Add ? change.Path : change.NewPath ?? throw StrataException.Invalid("replace needs the new disk"));
                if (change.Action == DiskAction.Replace && data.Disks.All(d => d.Path != path || d.State == Space.DiskState.Retired))
                    throw StrataException.NotFound($"{path} is not a disk of the pool (`strata pool disk ls` lists them)");
                if (data.Disks.Any(d => d.Path == added && d.State != Space.DiskState.Retired)) throw StrataException.Exists($"{added} is a disk of the pool already");
                var created = new List<string>();
                var store = OpenNewDisk(new DiskSpec(added, change.Size), created);
                try
                {
                    Pool.ReadCommitted(_ =>
                    {
                        var disk = Space.DiskSet.Join(data, (Space.MetadataMirror)Metadata, Layout.SpaceId, added, store);
                        // pool.json names the disk before any commit can record it (an open finding it there and not in
                        // the metadata completes the add)
                        Layout = Layout with { Disks = [.. data.Disks.Select(d => new PoolDisk(d.Path, d.Id)), new PoolDisk(added, disk.Id)] };
                        AtomicWrite(LayoutFile(Path), JsonSerializer.SerializeToUtf8Bytes(Layout, PoolJson.Default.PoolLayout));
                        if (change.Action == DiskAction.Add) data.AddDisk(disk, grow: true);
                        else data.ReplaceDisk(path, disk);
                        return 0;
                    });
                }
                catch
                {
                    if (!data.Disks.Any(d => d.Store == store))
                    {
                        store.Dispose();
                        foreach (var f in created) File.Delete(f);
                    }
                    throw;
                }
                break;
            }
            default:
                throw StrataException.Invalid($"unknown disk change {change.Action}");
        }
        Pool.Commit();
        return data.Info();
    }

    /// <summary>The first bytes of a store (a disk given a size smaller than its file or device).</summary>
    sealed class Window(IBlockStore inner, long length) : IBlockStore
    {
        public string Name => inner.Name;
        public long Length => length;
        public void Read(long offset, Span<byte> buffer) { Check(offset, buffer.Length); inner.Read(offset, buffer); }
        public void Write(long offset, ReadOnlySpan<byte> data) { Check(offset, data.Length); inner.Write(offset, data); }
        public void Flush() => inner.Flush();
        public bool Discard(long offset, long count) { Check(offset, count); return inner.Discard(offset, count); }
        public bool IsHole(long offset, long count) { Check(offset, count); return inner.IsHole(offset, count); }
        public void DropCache(long offset, long count) { Check(offset, count); inner.DropCache(offset, count); }
        public void Prefetch(long offset, long count) { Check(offset, count); inner.Prefetch(offset, count); }
        public void Grow(long to) => throw StrataException.Unsupported($"{Name}: a disk of a resilient pool does not grow");
        void Check(long offset, long count)
        {
            if (offset < 0 || count < 0 || offset + count > length) throw new ArgumentOutOfRangeException(nameof(offset), $"{Name}: {count} bytes at {offset} are outside its {length} bytes");
        }
        public void Dispose() => inner.Dispose();
    }

    /// <summary>Opens the pool in <paramref name="dir"/> with the options it was created with.</summary>
    public static PoolDirectory Open(string dir, TimeSpan? commitInterval = null) =>
        Open(dir, (d, m, layout) => ThinPool.Open(d, m, layout.Options(commitInterval ?? new PoolOptions().CommitInterval)));

    /// <summary>Opens the stores of the pool in <paramref name="dir"/>, under its lock, and hands them to
    /// <paramref name="open"/> (a pool open, or a check or repair that must not run beside one).</summary>
    public static PoolDirectory Open(string dir, Func<IBlockStore, IBlockStore, PoolLayout, ThinPool> open)
    {
        dir = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(dir));
        if (!Exists(dir)) throw StrataException.NotFound($"there is no pool in {dir} (strata pool create)");
        var lockFd = Lock(dir);
        IBlockStore? data = null, metadata = null;
        try
        {
            var layout = ReadLayout(dir);
            (data, metadata) = OpenStores(layout);
            return new PoolDirectory(dir, lockFd, layout, open(data, metadata, layout), data, metadata);
        }
        catch
        {
            data?.Dispose();
            metadata?.Dispose();
            lockFd.Dispose();
            throw;
        }
    }

    static (IBlockStore Data, IBlockStore Metadata) OpenStores(PoolLayout layout)
    {
        if (layout.Disks is not { } disks) return (FileBlockStore.Open(layout.Data), FileBlockStore.Open(layout.Metadata));
        var stores = new List<(string Path, Guid Id, IBlockStore? Store)>();
        foreach (var d in disks)
        {
            IBlockStore? store = null;
            try
            {
                store = FileBlockStore.Open(d.Path);
            }
            catch (StrataException)
            {
                // absent or unreadable: the disk is missing, and the pool runs degraded if it can
            }
            stores.Add((d.Path, d.Id, store));
        }
        try
        {
            return Space.DiskSet.Open(stores, layout.SpaceId);
        }
        catch
        {
            foreach (var s in stores) s.Store?.Dispose();
            throw;
        }
    }

    /// <summary>Where the pool in <paramref name="dir"/> keeps its stores, and its options (pool.json; no lock needed).</summary>
    public static PoolLayout ReadLayout(string dir)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllBytes(LayoutFile(dir)), PoolJson.Default.PoolLayout) ?? throw new JsonException("empty");
        }
        catch (JsonException ex)
        {
            throw StrataException.Corrupt($"{LayoutFile(dir)} is unreadable ({ex.Message})");
        }
    }

    /// <summary>Runs <paramref name="use"/> on the stores of the pool in <paramref name="dir"/> without opening
    /// it (check), under its lock.</summary>
    public static T WithStores<T>(string dir, Func<IBlockStore, IBlockStore, T> use)
    {
        T result = default!;
        using var _ = Open(dir, (d, m, _) =>
        {
            result = use(d, m);
            return null!;
        });
        return result;
    }

    static void AtomicWrite(string path, byte[] bytes)
    {
        string tmp = path + ".tmp";
        using (var fd = Posix.Open(tmp, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_TRUNC, 0x180))
        {
            Posix.WriteAll(fd, bytes, tmp);
            Posix.Fsync(fd, tmp);
        }
        File.Move(tmp, path, overwrite: true);
        Posix.FsyncDirectory(System.IO.Path.GetDirectoryName(path)!);
    }

    public void Dispose()
    {
        try
        {
            Pool?.Dispose();
        }
        finally
        {
            Data.Dispose();
            Metadata.Dispose();
            _lock.Dispose();
        }
    }
}
