using Strata.Core.Containers;
using Strata.Core.Images;
using Strata.Core.Snapshots;
using Strata.Native;
using Strata.Testing;

namespace Strata.Core.Tests.Snapshots;

/// <summary>Image layers lent to containerd's snapshots (the remote-snapshot answer to a pull of an image the store
/// imported): removing the image keeps them while a snapshot uses them, with or without the daemon (a CLI's image
/// removal reads the snapshot records), and the last snapshot's removal collects them.</summary>
public sealed class SnapshotImageLoanTests : IDisposable
{
    readonly TempRoot _temp = new();
    LayerStore _layers;
    Snapshotter _snapshots;
    readonly string _chain;

    public SnapshotImageLoanTests()
    {
        _layers = LayerStore.Open(new StoreOptions { Root = _temp.Combine("store"), Driver = "vfs" });
        string tar = _temp.Combine("rootfs.tar");
        File.WriteAllBytes(tar, new LayerTar().Dir("etc/").File("etc/motd", "hello").Bytes());
        new ImageImporter(ContainerStore.For(_layers).Images).Import(tar, new ImageImporter.Options { Name = "img:1" });
        _chain = Assert.Single(ContainerStore.For(_layers).Images.List()).TopLayer;
        _snapshots = Snapshotter.Open(_layers);
    }

    public void Dispose()
    {
        _snapshots.Dispose();
        _layers.Dispose();
        _temp.Dispose();
    }

    ImageStore Images => ContainerStore.For(_layers).Images;

    string Borrow()
    {
        string target = "sha256:" + _chain;
        var e = Assert.Throws<StrataException>(() => _snapshots.Prepare("default/1/extract", null,
            new Dictionary<string, string> { [Snapshotter.SnapshotRefLabel] = target }));
        Assert.Equal(ErrorKind.AlreadyExists, e.Kind);
        return target;
    }

    [Fact]
    public void RemovingTheImageKeepsALentLayerUntilItsSnapshotGoes()
    {
        string target = Borrow();
        _snapshots.Prepare("ctr", target);
        Images.Remove("img:1", _ => []);
        Assert.True(_layers.Exists(_chain));
        _snapshots.Remove("ctr");
        Assert.True(_layers.Exists(_chain)); // still lent to the committed snapshot
        Images.Collect();
        Assert.True(_layers.Exists(_chain));
        _snapshots.Remove(target);
        Assert.False(_layers.Exists(_chain));
        Assert.Empty(_layers.List());
    }

    [Fact]
    public void AnImageRemovedWithoutTheDaemonKeepsALentLayer()
    {
        string target = Borrow();
        _snapshots.Dispose();
        _layers.Dispose();
        // as `strata image rm` without a daemon: a new process, no snapshotter open
        _layers = LayerStore.Open(new StoreOptions { Root = _temp.Combine("store"), Driver = "vfs" });
        Images.Remove("img:1", _ => []);
        Assert.True(_layers.Exists(_chain));
        _snapshots = Snapshotter.Open(_layers);
        Assert.Equal(SnapshotKind.Committed, _snapshots.Stat(target).Kind);
        _snapshots.Remove(target);
        Assert.False(_layers.Exists(_chain));
    }

    [Fact]
    public void AnUnreadableRecordKeepsEveryLayerFromCollection()
    {
        Borrow();
        File.WriteAllText(Path.Combine(_layers.Root, "snapshots", "snap-broken.json"), "{");
        Images.Remove("img:1", _ => []);
        Assert.True(_layers.Exists(_chain));
    }
}
