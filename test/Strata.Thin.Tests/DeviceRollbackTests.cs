using Strata.Native;

namespace Strata.Thin.Tests;

/// <summary><see cref="ThinPool.RollbackDevice"/>: a device takes a snapshot's blocks in one commit, refused while open
/// or under another's hold; what only the device held is freed; the metadata checks clean after a reopen.</summary>
public sealed class DeviceRollbackTests
{
    const int Bs = (int)ThinPool.MinBlockSize;

    [Fact]
    public void ADeviceRolledBackReadsAsItsSnapshotAndWhatOnlyItHeldIsFreed()
    {
        var data = new MemoryBlockStore(256L * Bs, "data");
        var metadata = new MemoryBlockStore(8 << 20, "metadata");
        var options = new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 };
        var before = new byte[4 * Bs];
        new Random(1).NextBytes(before);
        using (var pool = ThinPool.Create(data, metadata, options: options))
        {
            pool.CreateDevice("c", 64L * Bs, owner: "layer c");
            using (var dev = pool.OpenDevice("c")) dev.Write(0, before);
            pool.Snapshot("c", "s");
            ulong shared = pool.Status().DataBlocksUsed;
            using (var dev = pool.OpenDevice("c"))
            {
                dev.Write(0, new byte[8 * Bs].Select((_, i) => (byte)i).ToArray()); // 4 copies on write and 4 new blocks
                Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => pool.RollbackDevice("c", "s", "layer c")).Kind); // open
            }
            Assert.Equal(shared + 8, pool.Status().DataBlocksUsed);
            Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => pool.RollbackDevice("c", "s")).Kind); // another's hold
            Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => pool.RollbackDevice("c", "nosuch", "layer c")).Kind);
            Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => pool.RollbackDevice("c", "c", "layer c")).Kind);
            var info = pool.RollbackDevice("c", "s", "layer c");
            Assert.Equal((4UL, 0UL), (info.Mapped, info.Exclusive));
            Assert.Equal(shared, pool.Status().DataBlocksUsed); // the 8 blocks only c held are free again
        }
        using (var pool = ThinPool.Open(data, metadata, options))
        {
            using var dev = pool.OpenDevice("c");
            var back = new byte[8 * Bs];
            dev.Read(0, back);
            Assert.Equal(before, back[..(4 * Bs)]);
            Assert.True(back.AsSpan(4 * Bs).IndexOfAnyExcept((byte)0) < 0);
        }
        var report = PoolChecker.Check(metadata);
        Assert.True(report.Clean, string.Join("; ", report.Errors.Concat(report.Leaks)));
    }
}
