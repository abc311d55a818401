// Named memory devices as an IBlockExports: what tests of the NBD server and the FUSE export serve when they need
// devices, not a pool.
using Strata.Block;

namespace Strata.Testing;

/// <summary>Memory devices by name, listed in the order added; each <see cref="Open"/> is a new handle on the device's
/// bytes. Devices can be added and removed while served (a device made or removed shows at once).</summary>
public sealed class MemoryExports : IBlockExports
{
    readonly object _lock = new();
    readonly List<(string Name, MemoryBlockDevice Device, bool ReadOnly)> _devices = [];

    /// <summary>Adds a device of <paramref name="size"/> bytes and returns it (a handle the caller may keep; the exports
    /// do not dispose it).</summary>
    public MemoryBlockDevice Add(string name, long size, int blockSize = 64 * 1024, bool readOnly = false)
    {
        var device = new MemoryBlockDevice(size, blockSize);
        lock (_lock)
        {
            if (_devices.Any(d => d.Name == name)) throw new ArgumentException($"{name} is exported already", nameof(name));
            _devices.Add((name, device, readOnly));
        }
        return device;
    }

    public bool Remove(string name)
    {
        lock (_lock) return _devices.RemoveAll(d => d.Name == name) > 0;
    }

    public IReadOnlyList<string> Names()
    {
        lock (_lock) return _devices.Select(d => d.Name).ToList();
    }

    public IBlockDevice? Open(string name)
    {
        lock (_lock) return _devices.Find(d => d.Name == name).Device?.Open();
    }

    public bool ReadOnly(string name)
    {
        lock (_lock) return _devices.Find(d => d.Name == name).ReadOnly;
    }
}
