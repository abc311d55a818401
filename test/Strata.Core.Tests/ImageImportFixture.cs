using System.Text.Json.Nodes;
using Strata.Core.Containers;
using Strata.Core.Images;
using Strata.Testing;

namespace Strata.Core.Tests;

/// <summary>
/// What the image import tests share: a fresh vfs store in a temp root (inputs are written beside it), images to
/// build, and the check every failed import must pass — one line of the right kind, and the store as it was
/// (the same images, layers and blobs, nothing in tmp/).
/// </summary>
public abstract class ImageImportFixture : IDisposable
{
    protected readonly TempRoot Temp = new();
    protected readonly LayerStore Layers;
    protected readonly ImageStore Images;

    protected ImageImportFixture()
    {
        Layers = LayerStore.Open(new StoreOptions { Root = Root, Driver = "vfs" });
        Images = ContainerStore.For(Layers).Images;
    }

    protected string Root => Temp.Combine("store");

    public virtual void Dispose()
    {
        Layers.Dispose();
        Temp.Dispose();
        GC.SuppressFinalize(this);
    }

    // ---- images to build ----

    protected static readonly byte[] BaseTar = new LayerTar()
        .Dir("bin/").File("bin/sh", "#!sh")
        .Dir("etc/").File("etc/os-release", "ID=base\n").File("etc/hostname", "base")
        .Dir("tmp/").File("tmp/gone", "deleted by the layer above")
        .Bytes();

    protected static readonly byte[] TopTar = new LayerTar()
        .Whiteout("tmp/gone")
        .File("etc/os-release", "ID=top\n")
        .Dir("app/").File("app/run", "run")
        .Bytes();

    internal static ImageSpec TwoLayers(Action<JsonObject>? editConfig = null, Action<JsonObject>? editManifest = null, LayerSpec? top = null) =>
        new(new LayerSpec(BaseTar), top ?? new LayerSpec(TopTar)) { EditConfig = editConfig, EditManifest = editManifest };

    protected static string OtherArchitecture => Platform.Host.Architecture == "s390x" ? "riscv64" : "s390x";

    protected string Input(string name, byte[] data)
    {
        string path = Temp.Combine("in", name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, data);
        return path;
    }

    internal string Layout(OciBuilder oci) => oci.WriteDir(Temp.Combine("in", "layout-" + Guid.NewGuid().ToString("N")));

    protected List<ImageRecord> Import(string path, string? name = null, Platform? platform = null) =>
        new ImageImporter(Images).Import(path, new ImageImporter.Options { Name = name, Platform = platform });

    // ---- what a store holds ----

    protected List<string> LayerIds() => Layers.List().Select(l => l.Id).Order(StringComparer.Ordinal).ToList();

    protected List<string> BlobNames() => Directory.GetFiles(Images.Blobs.Directory).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList()!;

    protected List<string> ImageIds() => Images.List().Select(i => i.Id).Order(StringComparer.Ordinal).ToList();

    /// <summary>Every blob an image refers to: configs, manifests, and the layers the manifests list.</summary>
    protected HashSet<string> ReferencedBlobs()
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var image in Images.List())
        {
            used.Add(image.Config.Hex);
            var manifest = Digest.Parse(image.Manifest);
            used.Add(manifest.Hex);
            var m = OciJson.Decode(Images.Blobs.Read(manifest), OciJson.Default.ImageManifest, "manifest");
            foreach (var l in m.Layers) used.Add(Digest.Parse(l.Digest).Hex);
        }
        return used;
    }

    protected void AssertClean()
    {
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Root, "tmp")));
        var referenced = ReferencedBlobs();
        Assert.All(BlobNames(), b => Assert.True(referenced.Contains(b), $"blob {b} is left that no image refers to"));
        // every image's blobs and layers are there
        foreach (var b in ReferencedBlobs()) Assert.True(File.Exists(Path.Combine(Images.Blobs.Directory, b)), $"blob {b} is missing");
        foreach (var i in Images.List()) Assert.All(i.Layers, l => Assert.True(Layers.Exists(l), $"layer {l} of {i.Id} is missing"));
    }

    /// <summary>The import fails with <paramref name="kind"/> and a one-line message containing <paramref name="fragment"/>,
    /// and the store is as it was: the same images, layers and blobs, and nothing in tmp/.</summary>
    protected StrataException Fails(string path, ErrorKind kind, string fragment, string? name = null, Platform? platform = null)
    {
        var layers = LayerIds();
        var blobs = BlobNames();
        var images = ImageIds();
        var ex = Assert.Throws<StrataException>(() => Import(path, name, platform));
        Assert.True(kind == ex.Kind, $"expected {kind}, got {ex.Kind}: {ex.Message}");
        Assert.Contains(fragment, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        Assert.Equal(images, ImageIds());
        Assert.Equal(layers, LayerIds());
        Assert.Equal(blobs, BlobNames());
        AssertClean();
        return ex;
    }

    /// <summary>Mounts a layer, hands its tree to <paramref name="check"/>, unmounts it.</summary>
    protected void InTree(string layer, Action<string> check)
    {
        string tree = Layers.Mount(layer);
        try
        {
            check(tree);
        }
        finally
        {
            Layers.Unmount(layer);
        }
    }

    protected static void AssertTwoLayerTree(string tree)
    {
        Assert.Equal("#!sh", File.ReadAllText(Path.Combine(tree, "bin/sh")));
        Assert.Equal("ID=top\n", File.ReadAllText(Path.Combine(tree, "etc/os-release")));
        Assert.Equal("base", File.ReadAllText(Path.Combine(tree, "etc/hostname")));
        Assert.Equal("run", File.ReadAllText(Path.Combine(tree, "app/run")));
        Assert.True(Directory.Exists(Path.Combine(tree, "tmp")));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(tree, "tmp")));
    }

    internal void AssertImported(ImageRecord image, BuiltImage built)
    {
        Assert.Equal(built.ConfigDigest, image.Id);
        Assert.Equal(built.ChainIds, image.Layers);
        Assert.Null(Layers.Inspect(image.Layers[0]).Parent);
        for (int i = 1; i < image.Layers.Count; i++) Assert.Equal(image.Layers[i - 1], Layers.Inspect(image.Layers[i]).Parent);
        Assert.All(image.Layers, l => Assert.Equal(LayerKind.ReadOnly, Layers.Inspect(l).Kind));
    }
}
