using Strata.Core.Containers;
using Strata.Core.Images;
using Strata.Testing;

namespace Strata.Core.Tests;

/// <summary>
/// Containers on a store: names are unique (and free again once the container is gone), bad names are refused,
/// the containers of an image share one init layer that goes with the last of them, and the layers a crash
/// left between a container's layers and its record go at the next open while every recorded container keeps
/// its layers.
/// </summary>
public sealed class ContainerStoreTests : IDisposable
{
    readonly TempRoot _temp = new();
    LayerStore _layers;
    ContainerStore _containers;

    public ContainerStoreTests()
    {
        (_layers, _containers) = Open();
        string tar = _temp.Combine("rootfs.tar");
        File.WriteAllBytes(tar, new LayerTar().Dir("etc/").File("etc/motd", "hello").Bytes());
        new ImageImporter(_containers.Images).Import(tar, new ImageImporter.Options { Name = "img:1" });
    }

    (LayerStore, ContainerStore) Open()
    {
        var layers = LayerStore.Open(new StoreOptions { Root = _temp.Combine("store"), Driver = "vfs" });
        return (layers, ContainerStore.For(layers));
    }

    void Reopen()
    {
        _layers.Dispose();
        (_layers, _containers) = Open();
    }

    public void Dispose()
    {
        _layers.Dispose();
        _temp.Dispose();
    }

    List<string> LayerIds() => _layers.List().Select(l => l.Id).Order(StringComparer.Ordinal).ToList();

    [Fact]
    public void ANameIsUsedOnceAndFreeAgainAfterRemoval()
    {
        var first = _containers.Create("img:1", "web");
        var taken = Assert.Throws<StrataException>(() => _containers.Create("img:1", "web"));
        Assert.Equal(ErrorKind.AlreadyExists, taken.Kind);
        Assert.Equal("container name web is in use", taken.Message);
        Assert.Equal(["web"], _containers.List().Select(c => c.Name));

        // still taken after the store is opened again: the names come back with the layers
        Reopen();
        Assert.Equal(ErrorKind.AlreadyExists, Assert.Throws<StrataException>(() => _containers.Create("img:1", "web")).Kind);

        _containers.Remove("web");
        var second = _containers.Create("img:1", "web");
        Assert.NotEqual(first.Id, second.Id);
        Assert.Equal("web", _containers.Get("web").Name);
    }

    [Fact]
    public void UnnamedContainersGetDistinctNames()
    {
        var a = _containers.Create("img:1", null);
        var b = _containers.Create("img:1", null);
        Assert.Equal("c-" + a.Id[..12], a.Name);
        Assert.NotEqual(a.Name, b.Name);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-web")]
    [InlineData("we b")]
    [InlineData("../web")]
    public void ABadNameIsRefusedAndNothingIsMade(string name)
    {
        var before = LayerIds();
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => _containers.Create("img:1", name)).Kind);
        Assert.Equal(before, LayerIds());
        Assert.Empty(_containers.List());
    }

    [Fact]
    public void LayersWithoutARecordGoAtTheNextOpenAndRecordedContainersStay()
    {
        var kept = _containers.Create("img:1", "kept");
        var lost = _containers.Create("img:1", "lost");
        // a crash between the layers and the record: the layers are there, the record is not
        File.Delete(_temp.Combine("store", "containers", lost.Id + ".json"));
        Reopen();
        Assert.DoesNotContain(lost.Id, LayerIds());
        Assert.Contains(kept.Id, LayerIds());
        Assert.Contains(TopLayer + "-init", LayerIds()); // kept's (and lost's) init layer
        Assert.Equal(["kept"], _containers.List().Select(c => c.Name));
        // and its name is free
        Assert.Equal("lost", _containers.Create("img:1", "lost").Name);
    }

    string TopLayer => _containers.Images.Get("img:1").TopLayer!;

    [Fact]
    public void AContainerMadeWithADiffIsThereWholeOrNotAtAll()
    {
        // a migration's container: its changes applied before it is recorded
        byte[] diff = new LayerTar().File("answer", new string('4', 5000)).File("etc/.wh.motd", "").Bytes();
        _containers.Create("img:1", "whole", new MemoryStream(diff));
        Assert.Equal(["A /answer", "C /etc", "D /etc/motd"], _containers.Changes("whole").Select(c => c.ToString()));

        // a diff cut short in its second file: no container, no layer, the name free
        var before = LayerIds();
        var cut = Assert.Throws<StrataException>(() => _containers.Create("img:1", "cut", new MemoryStream(diff[..1200])));
        Assert.Equal(ErrorKind.Corrupt, cut.Kind);
        Assert.Equal(before, LayerIds());
        Assert.Equal(["whole"], _containers.List().Select(c => c.Name));
        Assert.Equal("cut", _containers.Create("img:1", "cut").Name);
    }

    [Fact]
    public void ContainersOfAnImageShareOneInitLayerThatGoesWithTheLast()
    {
        var a = _containers.Create("img:1", "a");
        var b = _containers.Create("img:1", "b");
        string init = TopLayer + "-init";
        Assert.Equal(init, _layers.Inspect(a.Id).Parent);
        Assert.Equal(init, _layers.Inspect(b.Id).Parent);
        Assert.Equal(TopLayer, _layers.Inspect(init).Parent);
        Assert.Equal(4, LayerIds().Count); // the image's layer, one init layer, a and b
        _containers.Remove("a");
        Assert.Contains(init, LayerIds());
        string tree = _containers.Mount("b");
        try
        {
            Assert.True(Directory.Exists(Path.Combine(tree, "proc")));
            Assert.Equal("hello", File.ReadAllText(Path.Combine(tree, "etc/motd")));
        }
        finally
        {
            _containers.Unmount("b");
        }
        _containers.Remove("b");
        Assert.Equal([TopLayer], LayerIds());
        _containers.Images.Remove("img:1", _containers.UsersOf);
        Assert.Empty(LayerIds());
    }

    [Fact]
    public void AnInitLayerWithoutContainersGoesAtTheNextOpen()
    {
        var c = _containers.Create("img:1", "c");
        // a crash after the container's record and layer went, before its init layer did
        File.Delete(_temp.Combine("store", "containers", c.Id + ".json"));
        _layers.Remove(c.Id);
        Assert.Contains(TopLayer + "-init", LayerIds());
        Reopen();
        Assert.Equal([TopLayer], LayerIds());
    }

    [Fact]
    public void ALayerInTheInitLayersPlaceIsNotTakenOver()
    {
        _layers.Create(TopLayer + "-init", TopLayer, LayerKind.ReadOnly);
        var before = LayerIds();
        var ex = Assert.Throws<StrataException>(() => _containers.Create("img:1", "c"));
        Assert.Equal(ErrorKind.AlreadyExists, ex.Kind);
        Assert.Contains("in the way of the containers' init layer", ex.Message);
        Assert.Equal(before, LayerIds());
        Assert.Empty(_containers.List());
    }

    [Fact]
    public void AContainerWithItsOwnInitLayerFromAnOlderStoreIsRemovedWithIt()
    {
        // the layout before init layers were shared: <id>-init and <id>, both labelled with the name
        string id = new string('a', 64);
        var labels = new Dictionary<string, string> { [ContainerStore.LayerLabel] = "old" };
        _layers.Create(id + "-init", TopLayer, LayerKind.ReadOnly, labels);
        _layers.Create(id, id + "-init", LayerKind.ReadWrite, labels);
        File.WriteAllText(_temp.Combine("store", "containers", id + ".json"),
            $$"""{"Id":"{{id}}","Name":"old","Image":"img:1","ImageId":"{{_containers.Images.Get("img:1").Id}}","Created":"2026-01-01T00:00:00+00:00"}""");
        Reopen(); // the sweep keeps both: the record names the container, and <id>-init is its own
        Assert.Contains(id + "-init", LayerIds());
        var fresh = _containers.Create("img:1", "new");
        _containers.Remove("old");
        Assert.DoesNotContain(id, LayerIds());
        Assert.DoesNotContain(id + "-init", LayerIds());
        Assert.Contains(fresh.Id, LayerIds());
    }

    [Fact]
    public void AnImageRemovalRacingAContainerCreateNeverLeavesAContainerWithoutItsImage()
    {
        // issue 17 item 4: through `strata serve` both ran at once, and the container outlived its image's config blob
        for (int round = 0; round < 40; round++)
        {
            string name = $"race:{round}", tar = _temp.Combine($"race{round}.tar");
            File.WriteAllBytes(tar, new LayerTar().Dir("etc/").File("etc/round", round.ToString()).Bytes()); // an image of its own
            new ImageImporter(_containers.Images).Import(tar, new ImageImporter.Options { Name = name });
            using var start = new Barrier(2);
            Exception? createError = null, removeError = null;
            var create = new Thread(() =>
            {
                start.SignalAndWait();
                try { _containers.Create(name, $"c{round}"); }
                catch (Exception ex) { createError = ex; }
            });
            var remove = new Thread(() =>
            {
                start.SignalAndWait();
                if (round % 2 == 0) Thread.SpinWait(2000 * (round % 7));
                try { _containers.Images.Remove(name, _containers.UsersOf); }
                catch (Exception ex) { removeError = ex; }
            });
            create.Start();
            remove.Start();
            create.Join();
            remove.Join();
            // exactly one wins, and the loser's error is a clear one
            Assert.True((createError is null) != (removeError is null), $"round {round}: create {createError?.Message ?? "ok"}, remove {removeError?.Message ?? "ok"}");
            if (createError is not null) Assert.Equal(ErrorKind.NotFound, Assert.IsType<StrataException>(createError).Kind);
            if (removeError is not null) Assert.Equal(ErrorKind.InUse, Assert.IsType<StrataException>(removeError).Kind);
            foreach (var c in _containers.List())
            {
                Assert.NotNull(_containers.Config(c)); // the config blob is still there
                Assert.True(_containers.Images.TryGet(c.ImageId, out _), $"round {round}: container {c.Name} outlived image {c.ImageId}");
            }
            if (createError is null)
            {
                _containers.Remove($"c{round}");
                _containers.Images.Remove(name, _containers.UsersOf);
            }
        }
    }
}
