using Strata.Block;

namespace Strata.Thin.Tests;

/// <summary>The two superblock slots: falling back to the older slot when the newer one is damaged is right, but it
/// loses the newer transaction, and that is reported (check, status) until a repair acknowledges it; damage to the
/// older slot loses nothing and is reported until the next commit rewrites it.</summary>
public sealed class SuperblockTests
{
    const int Bs = (int)ThinPool.MinBlockSize;
    static readonly PoolOptions NoTimer = new() { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 };

    /// <summary>A pool at transaction 3: device a made in transaction 2 (slot 0), its snapshot in 3 (slot 1).</summary>
    static (MemoryBlockStore Data, MemoryBlockStore Metadata) PoolAtTransaction3(out byte[] slot1AtTransaction1)
    {
        var data = new MemoryBlockStore(64L * Bs, "data");
        var metadata = new MemoryBlockStore(1 << 20, "metadata");
        using var pool = ThinPool.Create(data, metadata, options: NoTimer);
        slot1AtTransaction1 = Slot(metadata, 1);
        pool.CreateDevice("a", 8L * Bs);
        using (var dev = pool.OpenDevice("a")) dev.Write(0, new byte[] { 1, 2, 3 });
        pool.Snapshot("a", "snap");
        Assert.Equal(3UL, pool.Status().Transaction);
        return (data, metadata);
    }

    static byte[] Slot(IBlockStore metadata, int slot)
    {
        var block = new byte[4096];
        metadata.Read(slot * 4096L, block);
        return block;
    }

    static void Damage(IBlockStore metadata, int slot, string how, byte[] older)
    {
        var block = Slot(metadata, slot);
        switch (how)
        {
            case "flip": block[300] ^= 0x10; break;                      // one byte past the fields, as bit rot would
            case "flip transaction": block[17] ^= 0x10; break;           // the header's own transaction number
            case "torn": older.AsSpan(64).CopyTo(block.AsSpan(64)); break; // a write torn inside its first sector
        }
        metadata.Write(slot * 4096L, block);
    }

    static string Errors(CheckReport report) => string.Join("; ", report.Errors.Concat(report.Leaks));

    [Theory]
    [InlineData("flip")]
    [InlineData("flip transaction")]
    [InlineData("torn")]
    public void ADamagedNewestSuperblockIsALostTransactionReportedUntilRepair(string how)
    {
        var (data, metadata) = PoolAtTransaction3(out var older);
        Damage(metadata, 1, how, older);

        var report = PoolChecker.Check(metadata);
        Assert.False(report.Clean, "check called a pool that fell back from transaction 3 to 2 clean");
        Assert.Equal(2UL, report.Transaction);
        Assert.Contains(report.Errors, e => e.Contains("transaction 3") && e.Contains("lost"));
        using (var pool = ThinPool.Open(data, metadata, NoTimer))
        {
            Assert.Equal(["a"], pool.DeviceNames()); // falling back is right: transaction 2 is whole
            pool.CreateDevice("b", Bs); // a commit rewrites the damaged slot...
        }
        // ...but the loss stays reported until a repair acknowledges it
        Assert.Contains(PoolChecker.Check(metadata).Errors, e => e.Contains("transaction 3") && e.Contains("lost"));
        var repaired = ThinPool.Repair(data, metadata);
        Assert.True(repaired.Clean, Errors(repaired));
        Assert.True(PoolChecker.Check(metadata).Clean);

        // the repair rewrote both slots: losing the newest one now reports that loss alone, not the old one again
        ulong now = PoolChecker.Check(metadata).Transaction;
        Damage(metadata, (int)(now % 2), "flip", older);
        var again = PoolChecker.Check(metadata);
        Assert.Contains(again.Errors, e => e.Contains($"transaction {now}") && e.Contains("lost"));
        Assert.DoesNotContain(again.Errors, e => e.Contains("transaction 3 "));
    }

    [Fact]
    public void ADamagedOlderSuperblockLosesNothingAndTheNextCommitRewritesIt()
    {
        var (data, metadata) = PoolAtTransaction3(out var older);
        Damage(metadata, 0, "flip", older); // transaction 2's slot

        var report = PoolChecker.Check(metadata);
        Assert.False(report.Clean, "check called a damaged superblock slot clean");
        Assert.Equal(3UL, report.Transaction);
        Assert.Contains(report.Errors, e => e.Contains("superblock slot 0") && e.Contains("nothing is lost"));
        Assert.DoesNotContain(report.Errors, e => e.Contains("was lost"));
        using (var pool = ThinPool.Open(data, metadata, NoTimer))
        {
            Assert.Equal(["a", "snap"], pool.DeviceNames());
            pool.CreateDevice("b", Bs); // transaction 4, into slot 0
        }
        Assert.True(PoolChecker.Check(metadata).Clean, Errors(PoolChecker.Check(metadata)));
    }

    [Fact]
    public void ASlotInANewerFormatIsRefusedNotFallenBackFrom()
    {
        // a newer Strata's commit in slot 1 (transaction 3): falling back to slot 0 would lose it and later overwrite it
        var (data, metadata) = PoolAtTransaction3(out _);
        var block = Slot(metadata, 1);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(40), Strata.Thin.Metadata.Superblock.Version + 1);
        Strata.Thin.Metadata.MetadataBlock.Seal(block);
        metadata.Write(4096, block);
        var refused = Assert.Throws<StrataException>(() => ThinPool.Open(data, metadata, NoTimer));
        Assert.Equal(ErrorKind.Unsupported, refused.Kind);
        Assert.Contains("newer Strata", refused.Message);
        Assert.Equal(block, Slot(metadata, 1)); // untouched
    }
}
