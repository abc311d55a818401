using Strata.Block;
using Strata.Native;

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

    readonly IBlockExports _exports;
    readonly Action<string>? _log;
    readonly Dictionary<string, Entry> _byName = new(StringComparer.Ordinal);
    readonly Timer _retry;
    bool _disposed;

    public KernelAttachments(IBlockExports exports, Action<string>? log)
    {
        _exports = exports;
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

    /// <summary>Gives device <paramref name="name"/> to the kernel (or takes one more hold on the kernel device it
    /// already has) and returns the kernel block device's path (/dev/nbdN).</summary>
    public string Attach(string name)
    {
        lock (_byName)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_byName.TryGetValue(name, out var had))
            {
                if (had.Nbd.Alive)
                {
                    had.Holders++;
                    return had.Nbd.Path;
                }
                _byName.Remove(name);
                had.Nbd.Dispose();
            }
            if (!KernelNbd.Available) throw StrataException.Unsupported("this kernel has no nbd devices (modprobe nbd)");
            var device = _exports.Open(name) ?? throw StrataException.NotFound($"device {name} does not exist");
            var attached = KernelNbd.Attach(device, _exports.ReadOnly(name), m => _log?.Invoke("nbd: " + m));
            _byName[name] = new Entry(attached);
            return attached.Path;
        }
    }

    /// <summary>The kernel device a name is attached to (null: none), without taking a hold.</summary>
    public string? Attached(string name)
    {
        lock (_byName)
            return _byName.TryGetValue(name, out var e) && e.Nbd.Alive ? e.Nbd.Path : null;
    }

    /// <summary>Lets one hold go; the device is disconnected once it has no holder and nothing has it open.</summary>
    public void Detach(string name)
    {
        lock (_byName)
        {
            if (!_byName.TryGetValue(name, out var e)) return;
            if (e.Holders > 0) e.Holders--;
            if (e.Holders == 0 && (!e.Nbd.Alive || !e.Nbd.InUse()))
            {
                _byName.Remove(name);
                e.Nbd.Dispose();
            }
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
