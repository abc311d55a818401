using Strata.Thin;

namespace Strata.Nbd;

/// <summary>Devices this server gave to the kernel's nbd module, by name, with a count of holders (each attach is
/// one; each detach lets one go). A device is disconnected when it has no holder and nothing has it open (a mounted
/// filesystem claims it); one still open (its filesystem alive in another mount namespace) is checked again every
/// second. A device the kernel stopped serving (its connection failed) is replaced at the next attach.</summary>
public sealed class KernelAttachments : IDisposable
{
    sealed class Entry(KernelNbd nbd)
    {
        public KernelNbd Nbd { get; } = nbd;
        public int Holders { get; set; } = 1;
    }

    readonly ThinPool _pool;
    readonly Action<string>? _log;
    readonly Dictionary<string, Entry> _byName = new(StringComparer.Ordinal);
    readonly Timer _retry;
    bool _disposed;

    public KernelAttachments(ThinPool pool, Action<string>? log)
    {
        _pool = pool;
        _log = log;
        _retry = new Timer(_ => Retry(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    public int Count
    {
        get
        {
            lock (_byName) return _byName.Count;
        }
    }

    public PoolReply Attach(string? name)
    {
        try
        {
            if (name is null) throw StrataException.Invalid("attach needs a device name");
            lock (_byName)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_byName.TryGetValue(name, out var had))
                {
                    if (had.Nbd.Alive)
                    {
                        had.Holders++;
                        return new PoolReply { Path = had.Nbd.Path };
                    }
                    _byName.Remove(name);
                    had.Nbd.Dispose();
                }
                if (!KernelNbd.Available) throw StrataException.Unsupported("this kernel has no nbd devices (modprobe nbd)");
                var attached = KernelNbd.Attach(_pool.OpenDevice(name), _pool.ReadOnlyReason is not null, m => _log?.Invoke("nbd: " + m));
                _byName[name] = new Entry(attached);
                return new PoolReply { Path = attached.Path };
            }
        }
        catch (StrataException ex)
        {
            return new PoolReply { Error = ex.Message, Kind = ex.Kind };
        }
    }

    /// <summary>The device a name is attached to (null: none), without taking a hold.</summary>
    public PoolReply Attached(string? name)
    {
        lock (_byName)
            return name is not null && _byName.TryGetValue(name, out var e) && e.Nbd.Alive ? new PoolReply { Path = e.Nbd.Path } : new PoolReply();
    }

    public PoolReply Detach(string? name)
    {
        if (name is null) return new PoolReply { Error = "detach needs a device name", Kind = ErrorKind.InvalidArgument };
        lock (_byName)
        {
            if (!_byName.TryGetValue(name, out var e)) return new PoolReply();
            if (e.Holders > 0) e.Holders--;
            if (e.Holders == 0 && (!e.Nbd.Alive || !e.Nbd.InUse()))
            {
                _byName.Remove(name);
                e.Nbd.Dispose();
            }
            return new PoolReply();
        }
    }

    void Retry()
    {
        lock (_byName)
            foreach (var (name, e) in _byName.ToList())
                if (e.Holders == 0 && (!e.Nbd.Alive || !e.Nbd.InUse()))
                {
                    _byName.Remove(name);
                    e.Nbd.Dispose();
                }
    }

    public void Dispose()
    {
        _retry.Dispose();
        lock (_byName)
        {
            _disposed = true;
            foreach (var e in _byName.Values) e.Nbd.Dispose();
            _byName.Clear();
        }
    }
}
