using System.IO.Compression;

namespace Strata.Thin.Tests;

/// <summary>Device owners: a device made for someone (the thin driver's layers) is deleted only by that owner or
/// by force; the owner persists (format 2 of the device table), and a pool written before owners existed (format 1)
/// opens, checks clean and moves to format 2 at its next commit.</summary>
public sealed class DeviceOwnerTests
{
    const int Bs = (int)ThinPool.MinBlockSize;
    static readonly PoolOptions NoTimer = new() { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 };

    static string Errors(CheckReport report) => string.Join("; ", report.Errors.Concat(report.Leaks));

    [Fact]
    public void AHeldDeviceIsDeletedOnlyByItsOwnerOrByForce()
    {
        var data = new MemoryBlockStore(64L * Bs, "data");
        var metadata = new MemoryBlockStore(1 << 20, "metadata");
        using (var pool = ThinPool.Create(data, metadata, options: NoTimer))
        {
            pool.CreateDevice("base", 8L * Bs, owner: "the driver");
            pool.Snapshot("base", "img", owner: "layer img");
            pool.Snapshot("img", "copy"); // a snapshot is its maker's, not its origin's owner's
            pool.Snapshot("img", "other", owner: "layer other");
        }
        using (var pool = ThinPool.Open(data, metadata, NoTimer))
        {
            Assert.Equal(["the driver", "layer img", null, "layer other"], pool.Devices().Select(d => d.Owner));
            Assert.Equal("layer img", pool.DeviceInfo("img").Owner);
            var refused = Assert.Throws<StrataException>(() => pool.DeleteDevice("img"));
            Assert.Equal(ErrorKind.InUse, refused.Kind);
            Assert.Contains("held by layer img", refused.Message);
            Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => pool.DeleteDevice("img", owner: "layer other")).Kind);
            Assert.Equal(4, pool.DeviceNames().Count);
            pool.DeleteDevice("copy");
            Assert.True(pool.DeleteDevice("img", owner: "layer img"));
            Assert.True(pool.DeleteDevice("other", force: true));
            Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => pool.CreateDevice("x", Bs, owner: "bad\nowner")).Kind);
            Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => pool.CreateDevice("x", Bs, owner: new string('o', 256))).Kind);
            // the thin driver's owner for a layer with the longest id (128 characters)
            pool.CreateDevice(new string('d', 128), Bs, owner: "layer " + new string('l', 128));
        }
        using (var pool = ThinPool.Open(data, metadata, NoTimer))
            Assert.Equal("layer " + new string('l', 128), pool.DeviceInfo(new string('d', 128)).Owner);
        Assert.True(PoolChecker.Check(data, metadata).Clean, Errors(PoolChecker.Check(data, metadata)));
    }

    [Fact]
    public void APoolWrittenBeforeOwnersOpensAndMovesToTheNewFormatAtItsNextCommit()
    {
        // metadata written by Strata 050a1ba (format 1): devices a (4 blocks), s (its snapshot, one block rewritten)
        // and empty; see Fixtures/format1-metadata.gz
        var image = new MemoryStream();
        using (var gz = new GZipStream(File.OpenRead(Path.Combine(AppContext.BaseDirectory, "Fixtures", "format1-metadata.gz")), CompressionMode.Decompress))
            gz.CopyTo(image);
        var metadata = new MemoryBlockStore(image.Length, "metadata");
        metadata.Write(0, image.ToArray());
        var data = new MemoryBlockStore(4L << 20, "data");
        Assert.Equal(1u, ThinPool.ReadSuperblock(metadata).Format);
        Assert.True(PoolChecker.Check(data, metadata).Clean, Errors(PoolChecker.Check(data, metadata)));
        using (var pool = ThinPool.Open(data, metadata, NoTimer))
        {
            Assert.Equal(["a", "s", "empty"], pool.DeviceNames());
            Assert.Equal([4UL, 4UL, 0UL], pool.Devices().Select(d => d.Mapped));
            Assert.All(pool.Devices(), d => Assert.Null(d.Owner));
            pool.CreateDevice("held", Bs, owner: "layer held");
        }
        Assert.Equal(Strata.Thin.Metadata.Superblock.PlainVersion, ThinPool.ReadSuperblock(metadata).Format);
        // both slots: an older Strata must find no format 1 slot to fall back to (it would roll the pool back silently)
        var slot = new byte[4096];
        for (int i = 0; i < 2; i++)
        {
            metadata.Read(i * 4096L, slot);
            Assert.Equal(Strata.Thin.Metadata.Superblock.PlainVersion, System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(slot.AsSpan(40)));
        }
        Assert.True(PoolChecker.Check(data, metadata).Clean, Errors(PoolChecker.Check(data, metadata)));
        using (var pool = ThinPool.Open(data, metadata, NoTimer))
        {
            Assert.Equal(["a", "s", "empty", "held"], pool.DeviceNames());
            Assert.Equal([null, null, null, "layer held"], pool.Devices().Select(d => d.Owner));
            Assert.Equal(ErrorKind.InUse, Assert.Throws<StrataException>(() => pool.DeleteDevice("held")).Kind);
        }
    }

    /// <summary>A restore replaces every device: over held ones (a thin store's layers) it would break them all, so it
    /// is refused as a delete of them would be, unless forced.</summary>
    [Fact]
    public void ARestoreOverHeldDevicesIsRefused()
    {
        var data = new MemoryBlockStore(64L * Bs, "data");
        var metadata = new MemoryBlockStore(1 << 20, "metadata");
        using (var pool = ThinPool.Create(data, metadata, options: NoTimer))
        {
            pool.CreateDevice("free", Bs);
            pool.CreateDevice("img", Bs, owner: "layer img");
        }
        var dump = new MemoryStream();
        ThinPool.DumpXml(metadata, dump);
        var ex = Assert.Throws<StrataException>(() => ThinPool.RestoreXml(data, metadata, new MemoryStream(dump.ToArray())));
        Assert.Equal(ErrorKind.InUse, ex.Kind);
        Assert.Contains("layer img", ex.Message);
        using (var pool = ThinPool.Open(data, metadata, NoTimer)) Assert.Equal(["free", "img"], pool.DeviceNames()); // untouched
        ThinPool.RestoreXml(data, metadata, new MemoryStream(dump.ToArray()), force: true);
        using (var pool = ThinPool.Open(data, metadata, NoTimer)) Assert.Equal(["1", "2"], pool.DeviceNames());
    }

    [Fact]
    public void ADeviceWhoseDeletionIsDeferredIsNoLongerListedByName()
    {
        // the thin driver lists its layers by device name: a layer removed while its loop device still closes is gone
        var data = new MemoryBlockStore(64L * Bs, "data");
        var metadata = new MemoryBlockStore(1 << 20, "metadata");
        using var pool = ThinPool.Create(data, metadata, options: NoTimer);
        pool.CreateDevice("a", Bs);
        pool.CreateDevice("b", Bs);
        using (pool.OpenDevice("a"))
        {
            Assert.False(pool.DeleteDevice("a", deferIfOpen: true));
            Assert.Equal(["b"], pool.DeviceNames());
            Assert.Equal(1, pool.DeferredDeletes);
        }
        Assert.Equal(["b"], pool.DeviceNames());
        Assert.Equal(0, pool.DeferredDeletes);
    }
}
