// The thin pool's device held to the IBlockDevice contract: a pool in memory, one fresh device per test.
using Strata.Block;
using Strata.Testing;

namespace Strata.Thin.Tests;

public sealed class ThinDeviceConformance : BlockDeviceConformance
{
    readonly ThinPool _pool = ThinPool.Create(new MemoryBlockStore(64L << 20), new MemoryBlockStore(16 << 20),
        options: new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 });

    protected override IBlockDevice Create(long size)
    {
        string name = $"dev{_pool.DeviceNames().Count}";
        _pool.CreateDevice(name, size);
        return _pool.OpenDevice(name);
    }

    protected override void Cleanup() => _pool.Dispose();
}
