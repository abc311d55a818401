using System.Text.Json.Nodes;
using Strata.Core.Containers;
using Strata.Core.Images;
using Strata.Testing;

namespace Strata.Core.Tests;

/// <summary>
/// zstd-compressed layers (OCI tar+zstd) on import and export: they import to the very trees their gzip twins
/// give, alone or mixed with gzip in one image, from a layout, an oci-archive or a rootfs tar; a corrupt one,
/// or one that is not its diff id, is refused with one line and leaves nothing; export gives the blobs back
/// as they came; and layers made by the zstd tool import, as Strata's are read by it.
/// </summary>
public sealed class ZstdImportTests : ImageImportFixture
{
    static byte[] Zstd(byte[] tar) => LayerCodecTests.Compress(tar, LayerCompression.Zstd);

    /// <summary>A layer whose blob is its tar in zstd, optionally changed after compression.</summary>
    static LayerSpec ZstdLayer(byte[] tar, Func<byte[], byte[]>? change = null) =>
        new(tar) { Gzip = false, MediaType = MediaTypes.OciLayerZstd, Blob = b => change is null ? Zstd(b) : change(Zstd(b)) };

    static ImageSpec ZstdTwoLayers(Func<byte[], byte[]>? changeTop = null) => new(ZstdLayer(BaseTar), ZstdLayer(TopTar, changeTop));

    [Fact]
    public void AZstdImageImportsToTheTreeOfItsGzipTwin()
    {
        var oci = new OciBuilder();
        var built = oci.Add(ZstdTwoLayers());
        oci.Top(built.Descriptor);
        var image = Assert.Single(Import(Layout(oci), "z:1"));
        AssertImported(image, built);
        Assert.All(built.LayerDigests, d => Assert.Equal(oci.Read(d), Images.Blobs.Read(Digest.Parse(d))));
        AssertClean();

        // the gzip twin, in a store of its own (in this one its layers, by chain id, would be the zstd ones)
        var gzip = new OciBuilder();
        var twin = gzip.Add(TwoLayers());
        gzip.Top(twin.Descriptor);
        Assert.Equal(built.ChainIds, twin.ChainIds);
        using var other = LayerStore.Open(new StoreOptions { Root = Temp.Combine("twin"), Driver = "vfs" });
        var twinImage = Assert.Single(new ImageImporter(ContainerStore.For(other).Images).Import(Layout(gzip), new ImageImporter.Options()));
        for (int i = 0; i < image.Layers.Count; i++)
        {
            string twinTree = other.Mount(twinImage.Layers[i]);
            try
            {
                // a directory a layer changes without naming it (etc/, tmp/ of the top layer) gets the time the layer was
                // applied, in either store
                InTree(image.Layers[i], tree => TreeSnapshot.AssertSame(twinTree, tree, i == 0 ? MtimePrecision.Seconds : MtimePrecision.Ignore));
            }
            finally
            {
                other.Unmount(twinImage.Layers[i]);
            }
        }
        InTree(image.TopLayer, AssertTwoLayerTree);
    }

    [Fact]
    public void AnImageMixingGzipAndZstdLayersImports()
    {
        var third = new LayerTar().File("etc/os-release", "ID=third\n").File("app/more", "more").Bytes();
        var oci = new OciBuilder();
        var built = oci.Add(new ImageSpec(new LayerSpec(BaseTar), ZstdLayer(TopTar), new LayerSpec(third)));
        oci.Top(built.Descriptor);
        var image = Assert.Single(Import(Layout(oci), "mixed:1"));
        AssertImported(image, built);
        var manifest = OciJson.Decode(Images.Blobs.Read(Digest.Parse(image.Manifest)), OciJson.Default.ImageManifest, "manifest");
        Assert.Equal([MediaTypes.OciLayerGzip, MediaTypes.OciLayerZstd, MediaTypes.OciLayerGzip], manifest.Layers.Select(l => l.MediaType));
        InTree(image.Layers[1], AssertTwoLayerTree);
        InTree(image.TopLayer, tree =>
        {
            Assert.Equal("ID=third\n", File.ReadAllText(Path.Combine(tree, "etc/os-release")));
            Assert.Equal("more", File.ReadAllText(Path.Combine(tree, "app/more")));
            Assert.Equal("run", File.ReadAllText(Path.Combine(tree, "app/run")));
            Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(tree, "tmp")));
        });
        AssertClean();
    }

    [Fact]
    public void AZstdOciArchiveImports()
    {
        var oci = new OciBuilder();
        var built = oci.Add(ZstdTwoLayers());
        oci.Top(OciBuilder.Named(built.Descriptor, "1.0"));
        // the archive itself zstd-compressed too, as `skopeo copy` output run through `zstd` is
        var image = Assert.Single(Import(Input("image.tar.zst", Zstd(oci.Archive())), "x:1"));
        AssertImported(image, built);
        InTree(image.TopLayer, AssertTwoLayerTree);
        AssertClean();
    }

    [Fact]
    public void AZstdRootfsTarImportsAsOneZstdLayer()
    {
        var image = Assert.Single(Import(Input("rootfs.tar.zst", Zstd(BaseTar)), "rootfs:1"));
        Assert.Equal([Blob.DigestOf(BaseTar)[7..]], image.Layers);
        var manifest = OciJson.Decode(Images.Blobs.Read(Digest.Parse(image.Manifest)), OciJson.Default.ImageManifest, "manifest");
        var layer = Assert.Single(manifest.Layers);
        Assert.Equal(MediaTypes.OciLayerZstd, layer.MediaType);
        Assert.Equal(Blob.DigestOf(Zstd(BaseTar)), layer.Digest);
        InTree(image.TopLayer, tree => Assert.Equal("ID=base\n", File.ReadAllText(Path.Combine(tree, "etc/os-release"))));
        AssertClean();
    }

    // ---- refusals ----

    static byte[] WithBadChecksum(byte[] zstd)
    {
        var bad = zstd.ToArray();
        bad[^1] ^= 0xff; // the frame's content checksum
        return bad;
    }

    [Fact]
    public void AZstdLayerWithABadChecksumIsRefusedAndLeavesNothing()
    {
        var oci = new OciBuilder();
        var built = oci.Add(ZstdTwoLayers(WithBadChecksum));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, $"layer {built.LayerDigests[1]}: zstd: ");
    }

    [Fact]
    public void ATruncatedZstdLayerIsRefusedAndLeavesNothing()
    {
        var oci = new OciBuilder();
        var built = oci.Add(ZstdTwoLayers(b => b[..(b.Length / 2)]));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, $"layer {built.LayerDigests[1]}: zstd: the data ends inside a frame");
    }

    [Fact]
    public void AZstdLayerThatUnpacksToAnotherDiffIdIsRefused()
    {
        string wrong = Blob.DigestOf("not the layer"u8.ToArray());
        var oci = new OciBuilder();
        var built = oci.Add(ZstdTwoLayers() with { EditConfig = c => c["rootfs"]!["diff_ids"]![1] = wrong });
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, $"layer {built.LayerDigests[1]} unpacks to a tar with digest {built.DiffIds[1]}, not the diff id {wrong}");
    }

    [Fact]
    public void AGzipLayerDeclaredZstdIsRefused()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers(top: new LayerSpec(TopTar) { MediaType = MediaTypes.OciLayerZstd }));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, $"layer {built.LayerDigests[1]}: zstd: ");
    }

    [Fact]
    public void AZstdRootfsWithABadChecksumIsRefused()
    {
        string path = Input("rootfs.tar.zst", WithBadChecksum(Zstd(BaseTar)));
        Fails(path, ErrorKind.InvalidArgument, $"{path}: not an image or tar archive; zstd: ");
    }

    [Fact]
    public void AZstdImageOverTheLayersOfAStoredGzipOneReusesThemOnceItsBlobsAreShownToBeThem()
    {
        // another image (its config differs) whose layers are the gzip image's, in zstd
        Action<JsonObject> relabel = c => c["config"]!["Labels"] = new JsonObject { ["compression"] = "zstd" };
        var gzip = new OciBuilder();
        var built = gzip.Add(TwoLayers());
        gzip.Top(built.Descriptor);
        Import(Layout(gzip), "g:1");
        var layers = LayerIds();

        // the same layers in corrupt zstd: the layers exist, but a blob must unpack to its layer to be recorded with it
        var bad = new OciBuilder();
        var badBuilt = bad.Add(ZstdTwoLayers(WithBadChecksum) with { EditConfig = relabel });
        bad.Top(badBuilt.Descriptor);
        Fails(Layout(bad), ErrorKind.Corrupt, $"layer {badBuilt.LayerDigests[1]}: zstd: ");

        var oci = new OciBuilder();
        var zstd = oci.Add(ZstdTwoLayers() with { EditConfig = relabel });
        oci.Top(zstd.Descriptor);
        var image = Assert.Single(Import(Layout(oci), "z:1"));
        Assert.NotEqual(built.ConfigDigest, image.Id);
        Assert.Equal(layers, LayerIds());
        Assert.Equal(built.ChainIds, image.Layers);
        AssertClean();
    }

    // ---- export ----

    [Fact]
    public void AZstdImageExportsWithItsBlobsAsTheyCame()
    {
        var oci = new OciBuilder();
        var built = oci.Add(ZstdTwoLayers());
        oci.Top(built.Descriptor);
        Import(Layout(oci), "z:1");

        string output = Temp.Combine("out");
        new ImageExporter(Images).Export("z:1", output, ExportFormat.Oci);
        foreach (var d in built.LayerDigests.Append(built.ConfigDigest).Append(built.ManifestDigest))
            Assert.Equal(oci.Read(d), File.ReadAllBytes(Path.Combine(output, OciBuilder.PathOf(d))));
        var manifest = OciJson.Decode(File.ReadAllBytes(Path.Combine(output, OciBuilder.PathOf(built.ManifestDigest))), OciJson.Default.ImageManifest, "manifest");
        Assert.All(manifest.Layers, l => Assert.Equal(MediaTypes.OciLayerZstd, l.MediaType));

        // and what was exported imports again, to the same layers
        using var other = LayerStore.Open(new StoreOptions { Root = Temp.Combine("again"), Driver = "vfs" });
        var again = Assert.Single(new ImageImporter(ContainerStore.For(other).Images).Import(output, new ImageImporter.Options()));
        Assert.Equal(built.ChainIds, again.Layers);
    }

    // ---- the zstd tool ----

    [SkippableFact]
    public void LayersMadeByTheZstdToolImportAndOursAreReadByIt()
    {
        Skip.If(!Shell.Has("zstd"), "the zstd tool is not installed (Debian package zstd)");
        string tar = Input("top.tar", TopTar);
        // as `tar --zstd` and most scripts run it: default level, all cores, a content checksum
        Shell.Run("zstd", "-q", "-T0", tar, "-o", tar + ".zst").Check("zstd");
        var theirs = File.ReadAllBytes(tar + ".zst");
        var oci = new OciBuilder();
        var built = oci.Add(new ImageSpec(ZstdLayer(BaseTar), new LayerSpec(TopTar) { Gzip = false, MediaType = MediaTypes.OciLayerZstd, Blob = _ => theirs }));
        oci.Top(built.Descriptor);
        var image = Assert.Single(Import(Layout(oci), "z:1"));
        AssertImported(image, built);
        InTree(image.TopLayer, AssertTwoLayerTree);

        string ours = Input("base.tar.zst", Zstd(BaseTar));
        Shell.Run("zstd", "-q", "-t", ours).Check("zstd -t");
        Shell.Run("zstd", "-q", "-d", ours, "-o", Temp.Combine("in", "base.tar")).Check("zstd -d");
        Assert.Equal(BaseTar, File.ReadAllBytes(Temp.Combine("in", "base.tar")));
    }
}
