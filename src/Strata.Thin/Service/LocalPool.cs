using System.Buffers;

namespace Strata.Thin.Service;

/// <summary>
/// <see cref="IPoolService"/> on a pool open in this process: the server's own (<see cref="LocalPool(PoolDirectory)"/>,
/// left open when disposed), or one opened under the pool's lock for a caller while no server owns it
/// (<see cref="Open"/>, closed, committing, when disposed). Opened without loading, the pool's metadata is read at the
/// first call that needs it, so <see cref="Check"/>, <see cref="Dump"/> and <see cref="SuperblockProblems"/> work
/// on a pool too damaged to load. Attaching to the kernel's nbd module is a server's (Unsupported here). Calls may run
/// in parallel once the pool is loaded (the pool's own locks order them).
/// </summary>
public sealed class LocalPool : IPoolService
{
    readonly PoolDirectory _dir;
    readonly bool _owned;
    readonly TimeSpan _commitInterval;
    ThinPool? _pool;
    bool _loadedHere;

    /// <summary>Over a pool its caller opened and keeps open.</summary>
    public LocalPool(PoolDirectory dir) : this(dir, dir.Pool, owned: false, TimeSpan.Zero)
    {
    }

    LocalPool(PoolDirectory dir, ThinPool? pool, bool owned, TimeSpan commitInterval)
    {
        _dir = dir;
        _pool = pool;
        _owned = owned;
        _commitInterval = commitInterval;
    }

    /// <summary>Opens the pool in <paramref name="dir"/> under its lock (InUse while another process holds it);
    /// <paramref name="load"/>: false reads its metadata at the first call that needs it.</summary>
    public static LocalPool Open(string dir, TimeSpan? commitInterval = null, bool load = true)
    {
        var interval = commitInterval ?? new PoolOptions().CommitInterval;
        if (!load) return new LocalPool(PoolDirectory.Open(dir, (_, _, _) => null!), null, owned: true, interval); // the stores, not the pool
        var opened = PoolDirectory.Open(dir, interval);
        return new LocalPool(opened, opened.Pool, owned: true, interval);
    }

    ThinPool Pool
    {
        get
        {
            if (_pool is { } pool) return pool;
            _pool = ThinPool.Open(_dir.Data, _dir.Metadata, _dir.Layout.Options(_commitInterval));
            _loadedHere = true;
            return _pool;
        }
    }

    public ThinDeviceInfo Create(string name, long size, string? owner = null) => Pool.CreateDevice(name, size, owner);

    public ThinDeviceInfo Snapshot(string source, string name, string? owner = null) => Pool.Snapshot(source, name, owner);

    public bool Delete(string name, bool defer = false, string? owner = null, bool force = false) => Pool.DeleteDevice(name, defer, owner, force);

    public ThinDeviceInfo Resize(string name, long size) => Pool.ResizeDevice(name, size);

    public ThinDeviceInfo Rollback(string name, string snapshot, string? owner = null, bool force = false) => Pool.RollbackDevice(name, snapshot, owner, force);

    public ThinDeviceInfo Device(string name) => Pool.DeviceInfo(name);

    public IReadOnlyList<string> DeviceNames() => Pool.DeviceNames();

    public IReadOnlyList<ThinDeviceInfo> Devices() => Pool.Devices();

    public PoolInfo Status() => new(_dir.Path, _dir.Layout, Pool.Status(), Pool.DeferredDeletes, OpenFiles: 0, (_dir.Data as Space.ResilientStore)?.Info());

    public IReadOnlyList<string> SuperblockProblems() => _pool is { } pool ? pool.SuperblockProblems() : ThinPool.ReadSuperblockProblems(_dir.Metadata);

    public string Attach(string name) => throw NoKernelAttach();

    public void Detach(string name) => throw NoKernelAttach();

    public string? Attached(string name) => throw NoKernelAttach();

    StrataException NoKernelAttach() =>
        StrataException.Unsupported($"devices of pool {_dir.Path} reach the kernel's nbd module through `strata pool serve`, which does not own the pool");

    public void Read(string name, long offset, long length, Stream to)
    {
        using var dev = Pool.OpenDevice(name);
        DeviceRange.Require(dev.Name, dev.Size, offset, length);
        var buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(1 << 20, length - done);
                dev.Read(offset + done, buffer.AsSpan(0, n));
                to.Write(buffer, 0, n);
                done += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public long Write(string name, long offset, Stream from)
    {
        using var dev = Pool.OpenDevice(name);
        if (offset < 0) throw StrataException.Invalid($"offset {offset} is outside device {dev.Name} ({dev.Size} bytes)");
        var buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
        long total = 0;
        try
        {
            int n;
            while ((n = from.ReadAtLeast(buffer.AsSpan(0, 1 << 20), 1 << 20, throwOnEndOfStream: false)) > 0)
            {
                if (n > dev.Size - offset - total) throw StrataException.Invalid($"the input runs past the end of device {dev.Name} ({dev.Size} bytes)");
                dev.Write(offset + total, buffer.AsSpan(0, n));
                total += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        dev.Flush();
        return total;
    }

    public PoolCheck Check() =>
        PoolCheck.From(_pool is { } pool ? pool.ReadCommitted(metadata => PoolChecker.Check(_dir.Data, metadata)) : PoolChecker.Check(_dir.Data, _dir.Metadata));

    public void Dump(Stream to)
    {
        if (_pool is not { } pool)
        {
            ThinPool.DumpXml(_dir.Metadata, to);
            return;
        }
        // into memory while the pool is paused, out after: IO waits for the reading, not for a slow reader
        var xml = pool.ReadCommitted(metadata =>
        {
            var ms = new MemoryStream();
            ThinPool.DumpXml(metadata, ms);
            return ms;
        });
        to.Write(xml.GetBuffer(), 0, (int)xml.Length);
    }

    public Space.SpaceInfo ChangeDisks(DiskChange change)
    {
        _ = Pool; // loaded: the change commits
        var info = _dir.ChangeDisks(change);
        if (!_owned || _dir.Data is not Space.ResilientStore data) return info;
        // opened for this call: nothing would go on with the rebuild once it returns
        data.WaitForRebuild();
        Pool.Commit();
        return data.Info();
    }

    public Space.ScrubReport Scrub(bool repair)
    {
        _ = Pool; // loaded: the scrub reads only allocated blocks
        var data = _dir.Data as Space.ResilientStore ?? throw StrataException.Invalid($"pool {_dir.Path} is on one data store: there is nothing to scrub against (no copies, no checksums)");
        return data.Scrub(repair);
    }

    public PoolStats Stats(IReadOnlyList<string>? names = null) => Pool.Stats(names);

    public void Dispose()
    {
        if (!_owned) return;
        try
        {
            if (_loadedHere) _pool?.Dispose();
        }
        finally
        {
            _dir.Dispose();
        }
    }
}
