using System.Text.Json.Nodes;
using Strata.Core.Containers;
using Strata.Core.Images;

namespace Strata.Core.Tests;

/// <summary>
/// The one bound on layers per image, for every driver (<see cref="ImageStore.MaxLayers"/>): an image over it is
/// refused before anything of it is read into the store, an image at it imports, and a commit that would pass it
/// is refused.
/// </summary>
public sealed class ImageLayerLimitTests : ImageImportFixture
{
    static readonly byte[] Tiny = new LayerTar().File("f", "f").Bytes();

    /// <summary>An OCI layout of one image whose manifest lists the same tiny uncompressed layer <paramref name="count"/> times.</summary>
    OciBuilder Repeated(int count, out BuiltImage built)
    {
        var oci = new OciBuilder();
        built = oci.Add(new ImageSpec(Enumerable.Repeat(new LayerSpec(Tiny) { Gzip = false }, count).ToArray()));
        oci.Top(built.Descriptor);
        return oci;
    }

    static string TooMany(int count) => $"has {count} layers, more than the {ImageStore.MaxLayers} an image may have";

    [Theory]
    [InlineData(ImageStore.MaxLayers + 1)]
    [InlineData(100_000)]
    public void AManifestOverTheLimitIsRefused(int count)
    {
        var oci = Repeated(count, out var built);
        Fails(Layout(oci), ErrorKind.InvalidArgument, $"manifest {built.ManifestDigest} {TooMany(count)}");
        Fails(Input("image.tar", oci.Archive()), ErrorKind.InvalidArgument, TooMany(count));
    }

    [Fact]
    public void TheLimitIsCheckedBeforeAnyLayerIsRead()
    {
        // the layer blob is not there: reading any layer would fail on that instead
        var oci = Repeated(ImageStore.MaxLayers + 1, out var built);
        oci.Files.Remove(OciBuilder.PathOf(built.LayerDigests[0]));
        Fails(Layout(oci), ErrorKind.InvalidArgument, TooMany(ImageStore.MaxLayers + 1));

        // nor is a good image of the same archive stored first
        var docker = new DockerArchiveBuilder();
        docker.Add(TwoLayers(), "first:1");
        docker.Add(new ImageSpec(Enumerable.Repeat(new LayerSpec(Tiny), ImageStore.MaxLayers + 1).ToArray()), "second:1");
        var steps = new List<string>();
        var ex = Assert.Throws<StrataException>(() => new ImageImporter(Images).Import(Input("two.tar", docker.Archive()),
            new ImageImporter.Options { Progress = p => steps.Add(p.Step) }));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.Contains($"manifest.json: [1] {TooMany(ImageStore.MaxLayers + 1)}", ex.Message);
        Assert.DoesNotContain("storing layers", steps);
        Assert.DoesNotContain("applying layers", steps);
        Assert.Empty(LayerIds());
        AssertClean();
    }

    [Fact]
    public void AnImageAtTheLimitImportsAndCannotBeCommittedOnto()
    {
        var oci = Repeated(ImageStore.MaxLayers, out var built);
        var image = Assert.Single(Import(Layout(oci), "deep:1"));
        Assert.Equal(ImageStore.MaxLayers, image.Layers.Count);
        AssertImported(image, built);

        var containers = ContainerStore.For(Layers);
        var c = containers.Create("deep:1", "c1");
        var ex = Assert.Throws<StrataException>(() => containers.Commit("c1", "deeper:1"));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.Contains($"image deep:1 has {ImageStore.MaxLayers} layers, the most an image may have", ex.Message);
        Assert.False(Images.TryGet("deeper:1", out _));
        containers.Remove(c.Id);
        AssertClean();
    }

    [Fact]
    public void ADockerArchiveOverTheLimitIsRefused()
    {
        var docker = new DockerArchiveBuilder();
        docker.Add(new ImageSpec(Enumerable.Repeat(new LayerSpec(Tiny), ImageStore.MaxLayers + 1).ToArray()), "x:1");
        Fails(Input("image.tar", docker.Archive()), ErrorKind.InvalidArgument, $"manifest.json: [0] {TooMany(ImageStore.MaxLayers + 1)}");
    }
}
