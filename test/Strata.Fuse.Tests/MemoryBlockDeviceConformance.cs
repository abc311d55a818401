// The in-memory twin of a disk held to the IBlockDevice contract, so the tests that use it stand on a device that
// behaves like the real ones.
using Strata.Block;
using Strata.Testing;

namespace Strata.Fuse.Tests;

public sealed class MemoryBlockDeviceConformance : BlockDeviceConformance
{
    protected override IBlockDevice Create(long size) => new MemoryBlockDevice(size);
}
