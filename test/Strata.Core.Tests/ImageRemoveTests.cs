using Strata.Core.Containers;
using Strata.Core.Images;

namespace Strata.Core.Tests;

/// <summary>
/// <see cref="ImageStore.Remove"/> as `docker rmi`: a name of an image that has others is untagged; the last name, or
/// the id, deletes the image and its layers no other image keeps, and says so in docker's order (untagged names,
/// the image, its layers top first); an id of an image with several names needs force; an image a container uses is
/// never deleted, forced or not.
/// </summary>
public sealed class ImageRemoveTests : ImageImportFixture
{
    static readonly Func<string, IReadOnlyList<string>> Unused = _ => [];

    ImageRecord TwoLayerImage(string name) => Assert.Single(Import(Layout(Built(TwoLayers())), name));

    static OciBuilder Built(ImageSpec spec)
    {
        var oci = new OciBuilder();
        oci.Top(oci.Add(spec).Descriptor);
        return oci;
    }

    static ImageRemoval Untagged(string name) => new(ImageRemovalKind.Untagged, name);

    static ImageRemoval Deleted(string id) => new(ImageRemovalKind.Deleted, id);

    static ImageRemoval LayerDeleted(string layer) => new(ImageRemovalKind.DeletedLayer, "sha256:" + layer);

    [Fact]
    public void ANameOfSeveralIsUntaggedAndTheLastDeletesTheImageAndItsLayers()
    {
        var image = TwoLayerImage("x:1");
        Images.Tag("x:1", "y");

        Assert.Equal([Untagged("y:latest")], Images.Remove("y", Unused));
        Assert.Equal(["x:1"], Images.Get(image.Id).Names);
        Assert.Equal(image.Layers.Order(StringComparer.Ordinal), LayerIds());

        Assert.Equal([Untagged("x:1"), Deleted(image.Id), LayerDeleted(image.Layers[1]), LayerDeleted(image.Layers[0])], Images.Remove("x:1", Unused));
        Assert.Empty(ImageIds());
        Assert.Empty(LayerIds());
        Assert.Empty(BlobNames());
        AssertClean();
    }

    [Fact]
    public void AnIdOfAnImageWithSeveralNamesNeedsForce()
    {
        var image = TwoLayerImage("x:1");
        Images.Tag("x:1", "y:2");
        Images.Tag("x:1", "z:3");

        var refused = Assert.Throws<StrataException>(() => Images.Remove(image.Id[7..19], Unused));
        Assert.Equal(ErrorKind.InUse, refused.Kind);
        Assert.Equal($"image {image.ShortId} has 3 names (x:1, y:2, z:3); remove them one by one, or all with -f", refused.Message);
        Assert.Equal(["x:1", "y:2", "z:3"], Images.Get(image.Id).Names);

        Assert.Equal([Untagged("x:1"), Untagged("y:2"), Untagged("z:3"), Deleted(image.Id), LayerDeleted(image.Layers[1]), LayerDeleted(image.Layers[0])],
            Images.Remove(image.Id, Unused, force: true));
        Assert.Empty(ImageIds());
        AssertClean();
    }

    [Fact]
    public void AnIdOfAnImageWithOneNameOrNoneDeletesIt()
    {
        var named = TwoLayerImage("x:1");
        Assert.Equal([Untagged("x:1"), Deleted(named.Id), LayerDeleted(named.Layers[1]), LayerDeleted(named.Layers[0])], Images.Remove(named.Id[7..15], Unused));
        var nameless = Assert.Single(Import(Layout(Built(TwoLayers()))));
        Assert.Empty(nameless.Names);
        Assert.Equal([Deleted(nameless.Id), LayerDeleted(nameless.Layers[1]), LayerDeleted(nameless.Layers[0])], Images.Remove(nameless.Id, Unused));
        AssertClean();
    }

    [Fact]
    public void OnlyTheLayersThatGoAreReported()
    {
        var both = TwoLayerImage("both:1");
        var baseOnly = Assert.Single(Import(Layout(Built(new ImageSpec(new LayerSpec(BaseTar)))), "base:1"));
        Assert.Equal(both.Layers[0], baseOnly.TopLayer);

        // the base layer stays for base:1
        Assert.Equal([Untagged("both:1"), Deleted(both.Id), LayerDeleted(both.Layers[1])], Images.Remove("both:1", Unused));
        Assert.Equal([both.Layers[0]], LayerIds());
        Assert.Equal([Untagged("base:1"), Deleted(baseOnly.Id), LayerDeleted(baseOnly.TopLayer)], Images.Remove("base:1", Unused));
        AssertClean();
    }

    [Fact]
    public void RepositoryDigestsAreReferencesToo()
    {
        var image = TwoLayerImage("x:1");
        string digest = "example.com/x@" + image.Manifest;
        Images.Add(image with { Names = [], RepoDigests = [digest] });

        // a digest of an image that has a name is untagged alone
        Assert.Equal([Untagged(digest)], Images.Remove(digest, Unused));
        Assert.Null(Images.Get("x:1").RepoDigests);
        Images.Add(image with { Names = [], RepoDigests = [digest] });
        // the last name takes the digests with it (docker cleans up a repository's digests with its last tag)
        Assert.Equal([Untagged("x:1"), Untagged(digest), Deleted(image.Id), LayerDeleted(image.Layers[1]), LayerDeleted(image.Layers[0])], Images.Remove("x:1", Unused));
        AssertClean();
    }

    [Fact]
    public void AnImageThatAContainerUsesIsNeverDeleted()
    {
        var image = TwoLayerImage("x:1");
        Images.Tag("x:1", "y:1");
        var containers = ContainerStore.For(Layers);
        containers.Create("x:1", "c1");

        // a name of several is still untagged: the image stays under the others
        Assert.Equal([Untagged("y:1")], Images.Remove("y:1", containers.UsersOf));
        foreach (bool force in new[] { false, true })
        {
            var refused = Assert.Throws<StrataException>(() => Images.Remove(image.Id, containers.UsersOf, force));
            Assert.Equal(ErrorKind.InUse, refused.Kind);
            Assert.Contains("used by container(s) c1", refused.Message);
        }
        Assert.Equal(["x:1"], Images.Get(image.Id).Names);
        containers.Remove("c1");
        Assert.Equal(Deleted(image.Id), Images.Remove("x:1", containers.UsersOf)[1]);
        Assert.Empty(LayerIds());
    }

    [Fact]
    public void AMissingImageIsNotFound() =>
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => Images.Remove("nothing:1", Unused)).Kind);
}
