using System.Collections;
using System.Text.Json;
using Strata.Core.Containers;
using Strata.Core.Images;

namespace Strata.Core.Tests;

/// <summary>
/// The collection of image layers no image uses (what an interrupted import leaves, or an image's removal): it takes
/// them children first, keeps what is used, mounted or under a layer it keeps, and its work grows with the number
/// of layers, not its square — a store that a killed import left thousands of layers in opens in one pass.
/// </summary>
public sealed class ImageLayerCollectionTests : ImageImportFixture
{
    static Layer ImageLayer(string id, string? parent) => new()
    {
        Id = id,
        Parent = parent,
        Kind = LayerKind.ReadOnly,
        Driver = "vfs",
        Labels = new() { [ImageStore.LayerLabel] = "sha256:" + Blob.Hex(System.Text.Encoding.ASCII.GetBytes(id)) },
    };

    /// <summary>A store's layers in memory that count how often they are listed, how many listed layers are read,
    /// and what is removed, in order. A collection that lists or reads far more than the layers there are fails at once
    /// instead of running for hours.</summary>
    sealed class CountingLayers(IEnumerable<Layer> layers, Func<string, bool> removable)
    {
        readonly Dictionary<string, Layer> _layers = layers.ToDictionary(l => l.Id);
        readonly int _budget = 10 * layers.Count();

        public int Listings { get; private set; }
        public int Reads { get; private set; }
        public List<string> Removed { get; } = [];
        public int RemoveCalls { get; private set; }
        public IReadOnlyCollection<string> Left => _layers.Keys;

        public IReadOnlyList<Layer> List()
        {
            if (++Listings > 10) Assert.Fail($"the store was listed {Listings} times to collect {_layers.Count} layers");
            return new Listing(this, [.. _layers.Values]);
        }

        public bool Remove(string id)
        {
            RemoveCalls++;
            if (!removable(id)) return false;
            Assert.True(_layers.Remove(id), $"{id} was removed twice");
            Removed.Add(id);
            return true;
        }

        void Read()
        {
            if (++Reads > _budget) Assert.Fail($"{Reads} reads of listed layers to collect {_layers.Count} layers");
        }

        sealed class Listing(CountingLayers owner, List<Layer> snapshot) : IReadOnlyList<Layer>
        {
            public int Count => snapshot.Count;

            public Layer this[int index]
            {
                get
                {
                    owner.Read();
                    return snapshot[index];
                }
            }

            public IEnumerator<Layer> GetEnumerator()
            {
                foreach (var l in snapshot)
                {
                    owner.Read();
                    yield return l;
                }
            }

            IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
        }
    }

    [Fact]
    public void LeftoverLayersAreCollectedChildrenFirstFromOneListing()
    {
        const int Chain = 3000;
        var layers = new List<Layer>();
        string? parent = null;
        for (int i = 0; i < Chain; i++)
        {
            string id = $"left{i:D5}";
            layers.Add(ImageLayer(id, parent));
            parent = id;
        }
        layers.AddRange(
        [
            // an image's layers, and a leftover on top of them
            ImageLayer("used0", null), ImageLayer("used1", "used0"), ImageLayer("on-used", "used1"),
            // leftovers under a container's layer (a child that is not an image layer)
            ImageLayer("kept0", null), ImageLayer("kept1", "kept0"),
            new Layer { Id = "container", Parent = "kept1", Kind = LayerKind.ReadWrite, Driver = "vfs", Labels = new() { [ContainerStore.LayerLabel] = "c1" } },
            // a mounted leftover, and its parent
            ImageLayer("mounted0", null), ImageLayer("mounted1", "mounted0") with { Mounts = 1 },
            // a leftover that cannot be removed right now, and its parent
            ImageLayer("busy0", null), ImageLayer("busy1", "busy0"),
        ]);
        var store = new CountingLayers(layers, id => id != "busy1");

        int removed = ImageStore.RemoveUnused(store.List, new HashSet<string>(["used0", "used1"]), store.Remove);

        Assert.Equal(Chain + 1, removed);
        Assert.Equal(layers.Select(l => l.Id).Where(id => id.StartsWith("left", StringComparison.Ordinal)).Append("on-used").Order(StringComparer.Ordinal), store.Removed.Order(StringComparer.Ordinal));
        Assert.Equal(["busy0", "busy1", "container", "kept0", "kept1", "mounted0", "mounted1", "used0", "used1"], store.Left.Order(StringComparer.Ordinal));
        var order = store.Removed.Select((id, i) => (id, i)).ToDictionary(x => x.id, x => x.i);
        foreach (var l in layers.Where(l => order.ContainsKey(l.Id) && l.Parent is not null && order.ContainsKey(l.Parent)))
            Assert.True(order[l.Id] < order[l.Parent!], $"{l.Parent} was removed before its child {l.Id}");
        // linear: one listing, a few reads per listed layer, one removal call per layer removed (and one for busy1)
        Assert.Equal(1, store.Listings);
        Assert.True(store.Reads <= 3 * layers.Count, $"{store.Reads} reads of {layers.Count} listed layers");
        Assert.Equal(Chain + 2, store.RemoveCalls);
    }

    [Fact]
    public void ThousandsOfLayersAKilledImportLeftGoWhenTheStoreIsNextOpened()
    {
        const int Count = 3000;
        string root = Temp.Combine("killed");
        LayerStore.Open(new StoreOptions { Root = root, Driver = "vfs" }).Dispose();
        // what a SIGKILL after 3,000 layers of an import leaves: complete image layers, no image record
        string? parent = null;
        var created = DateTimeOffset.UtcNow;
        for (int i = 0; i < Count; i++)
        {
            string id = Blob.Hex(BitConverter.GetBytes(i));
            var layer = ImageLayer(id, parent) with { Created = created.AddMilliseconds(i) };
            File.WriteAllBytes(Path.Combine(root, "layers", id + ".json"), JsonSerializer.SerializeToUtf8Bytes(layer, StoreJson.Default.Layer));
            Directory.CreateDirectory(Path.Combine(root, "vfs", id));
            parent = id;
        }

        using var layers = LayerStore.Open(new StoreOptions { Root = root, Driver = "vfs" });
        Assert.Equal(Count, layers.List().Count);
        var images = ContainerStore.For(layers).Images; // the first use of a store's images collects what is left
        Assert.Empty(images.List());
        Assert.Empty(layers.List());
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(root, "layers")));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(root, "vfs")));
    }
}
