using System.Text;
using Strata.Native;
using Strata.Thin.Metadata;

namespace Strata.Thin;

/// <summary>
/// The pool's API for its device table: create, snapshot, delete (now, or deferred to the last close), resize,
/// list, open and close devices. Invariants: every change of the table runs alone (the gate taken for writing:
/// no IO in flight) under the metadata lock and is committed before it returns (<see cref="Exclusive{T}"/>); a
/// device is deleted only when no one has it open, and one marked for deferred deletion cannot be opened again
/// (the mark is in memory only); names and owners are checked before anything changes; reads of the table take
/// the metadata lock.
/// </summary>
public sealed partial class ThinPool
{
    const uint MaxDeviceId = (1 << 24) - 1;

    readonly Dictionary<uint, int> _openDevices = [];
    readonly HashSet<uint> _deferredDeletes = []; // open devices to delete when their last user closes them (not persisted)
    readonly Dictionary<uint, DeviceCounters> _counters = []; // devices opened since the pool was, until deleted (not persisted)

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
            DiscardReleased();
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
        _counters.Remove(d.Id);
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

    /// <summary>Makes device <paramref name="name"/> hold what <paramref name="snapshot"/> holds, in O(1) and one commit (so a
    /// crash leaves it as it was or as the snapshot, whole): its mappings are let go (blocks nothing else maps are freed)
    /// and it shares every block of the snapshot, taking its size; the snapshot stays. Refused while
    /// <paramref name="name"/> is open (a client, the kernel, would see its blocks change under it) and, as a delete
    /// is, while someone other than <paramref name="owner"/> holds it unless <paramref name="force"/>. Any two devices
    /// will do (ploop's snapshot switch, lvconvert --merge's result without the merge): the snapshot need not be the
    /// device's own.</summary>
    public ThinDeviceInfo RollbackDevice(string name, string snapshot, string? owner = null, bool force = false) => Exclusive(() =>
    {
        var d = Find(name);
        var s = Find(snapshot);
        if (d.Id == s.Id) throw StrataException.Invalid($"thin device {name} cannot be rolled back to itself");
        if (d.Owner is not null && d.Owner != owner && !force)
            throw StrataException.InUse($"thin device {name} is held by {d.Owner}: roll it back through its owner (--force does it all the same, under {d.Owner})");
        if (_openDevices.GetValueOrDefault(d.Id) > 0 || _deferredDeletes.Contains(d.Id))
            throw StrataException.InUse($"thin device {name} is open: close it (detach, unmount, stop its clients) before rolling it back");
        _tree.Share(s.Root);
        _tree.Drop(d.Root);
        d.Root = s.Root;
        d.Mapped = s.Mapped;
        d.Size = s.Size;
        return Info(d);
    });

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
            if (!_counters.TryGetValue(d.Id, out var counters)) _counters[d.Id] = counters = new DeviceCounters();
            return new ThinDevice(this, d.Id, d.Name, counters);
        }
    }

    /// <summary>The IO statistics of the devices named (null: every device, by id; an unknown name is NotFound), with the
    /// pool's commits and space (see <see cref="DeviceCounters"/>: counted in memory from this pool's open on).</summary>
    public PoolStats Stats(IReadOnlyCollection<string>? names = null)
    {
        lock (_lock)
        {
            var devices = names is null ? _devices.Values.OrderBy(d => d.Id).ToList() : names.Select(Find).ToList();
            var stats = devices.Select(d => _counters.TryGetValue(d.Id, out var c) ? c.Read(d.Name, d.Id) : DeviceCounters.Zero(d.Name, d.Id)).ToList();
            // the space straight from the counts (not StatusLocked, which asks the host's filesystem for its free space:
            // the FUSE export reads these for every look at a stats file)
            return new PoolStats(_openedAt, DateTimeOffset.UtcNow, _commits, _commitNs, BlockSize, (long)_space.Blocks * BlockSize, (long)_space.Used * BlockSize,
                (long)_meta.Blocks * MetadataBlock.Size, (long)_meta.Used * MetadataBlock.Size, stats);
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
}
