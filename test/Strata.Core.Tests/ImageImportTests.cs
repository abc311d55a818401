using System.Text;
using System.Text.Json.Nodes;
using Strata.Core.Containers;
using Strata.Core.Images;
using Strata.Native;
using Strata.Testing;

namespace Strata.Core.Tests;

/// <summary>
/// Image import: good OCI layouts, oci-archives, docker-archives and rootfs tars import with the layers their
/// chain ids name; bad ones fail with one clear line of the right kind and leave nothing behind: no image
/// record, no new layer, no blob no image refers to, an empty tmp/.
/// </summary>
public sealed class ImageImportTests : ImageImportFixture
{
    // ---- good images ----

    [Fact]
    public void AnOciLayoutWithTwoGzipLayersAndAWhiteoutImports()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        oci.Top(OciBuilder.Named(built.Descriptor, "1.0"));
        var images = Import(Layout(oci), "x:1");

        var image = Assert.Single(images);
        AssertImported(image, built);
        Assert.Equal(["x:1"], image.Names);
        Assert.Equal(built.ManifestDigest, image.Manifest);
        Assert.Equal(MediaTypes.OciManifest, image.ManifestMediaType);
        Assert.Equal(Platform.Host.ToString(), image.Platform);
        Assert.Equal(image.Id, Images.Get("x:1").Id);
        // the very bytes that came in are kept, for export
        foreach (var d in built.LayerDigests.Append(built.ConfigDigest).Append(built.ManifestDigest))
            Assert.Equal(oci.Read(d), Images.Blobs.Read(Digest.Parse(d)));
        Assert.Equal(built.ChainIds.Order(StringComparer.Ordinal), LayerIds());
        InTree(image.TopLayer, AssertTwoLayerTree);
        InTree(image.Layers[0], tree => Assert.Equal("deleted by the layer above", File.ReadAllText(Path.Combine(tree, "tmp/gone"))));
        AssertClean();
    }

    [Fact]
    public void AnOciLayoutsRefNameNamesTheImage()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        oci.Top(OciBuilder.Named(built.Descriptor, "example.com/app:2.0"));
        var image = Assert.Single(Import(Layout(oci)));
        Assert.Equal(["example.com/app:2.0"], image.Names);
        AssertImported(image, built);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AnOciArchiveImports(bool gzip)
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        oci.Top(OciBuilder.Named(built.Descriptor, "1.0"));
        var archive = oci.Archive();
        var image = Assert.Single(Import(Input("image.tar", gzip ? Blob.Gzip(archive) : archive), "x:1"));
        AssertImported(image, built);
        Assert.Equal(built.ManifestDigest, image.Manifest);
        InTree(image.TopLayer, AssertTwoLayerTree);
        AssertClean();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ADockerArchiveImports(bool gzip)
    {
        var docker = new DockerArchiveBuilder();
        var spec = TwoLayers();
        string id = docker.Add(spec, "busybox:latest", "example.com/busybox:1");
        var archive = docker.Archive();
        var image = Assert.Single(Import(Input("image.tar", gzip ? Blob.Gzip(archive) : archive)));

        Assert.Equal(id, image.Id);
        Assert.Equal(["busybox:latest", "example.com/busybox:1"], image.Names);
        var built = new BuiltImage(new JsonObject(), id, "", [], spec.Layers.Select(l => l.DiffId).ToList());
        AssertImported(image, built);
        // a docker-archive has no manifest: the store writes one over the layer tars as they came
        var manifest = OciJson.Decode(Images.Blobs.Read(Digest.Parse(image.Manifest)), OciJson.Default.ImageManifest, "manifest");
        Assert.Equal(id, manifest.Config.Digest);
        Assert.Equal(spec.Layers.Select(l => l.DiffId), manifest.Layers.Select(l => l.Digest));
        Assert.All(manifest.Layers, l => Assert.Equal(MediaTypes.OciLayer, l.MediaType));
        InTree(image.TopLayer, AssertTwoLayerTree);
        AssertClean();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ARootfsTarImportsAsOneLayerWithAMinimalConfig(bool gzip)
    {
        var tar = BaseTar;
        var image = Assert.Single(Import(Input("rootfs.tar", gzip ? Blob.Gzip(tar) : tar), "rootfs:1"));

        string diffId = Blob.DigestOf(tar);
        Assert.Equal([diffId[7..]], image.Layers);
        Assert.Equal(["rootfs:1"], image.Names);
        var config = JsonNode.Parse(Images.Blobs.Read(image.Config))!;
        Assert.Equal(diffId, Assert.Single(config["rootfs"]!["diff_ids"]!.AsArray())!.GetValue<string>());
        Assert.Equal("layers", config["rootfs"]!["type"]!.GetValue<string>());
        Assert.Equal(Platform.Host.Os, config["os"]!.GetValue<string>());
        Assert.Equal(Platform.Host.Architecture, config["architecture"]!.GetValue<string>());
        var manifest = OciJson.Decode(Images.Blobs.Read(Digest.Parse(image.Manifest)), OciJson.Default.ImageManifest, "manifest");
        Assert.Equal(gzip ? MediaTypes.OciLayerGzip : MediaTypes.OciLayer, Assert.Single(manifest.Layers).MediaType);
        InTree(image.TopLayer, tree =>
        {
            Assert.Equal("ID=base\n", File.ReadAllText(Path.Combine(tree, "etc/os-release")));
            Assert.Equal("deleted by the layer above", File.ReadAllText(Path.Combine(tree, "tmp/gone")));
        });
        AssertClean();
    }

    // ---- platforms ----

    [Fact]
    public void ANestedIndexGivesTheHostsImageOrTheOneAskedFor()
    {
        var oci = new OciBuilder();
        var host = oci.Add(TwoLayers());
        var other = oci.Add(new ImageSpec(new LayerSpec(new LayerTar().File("arch", OtherArchitecture).Bytes())) { Architecture = OtherArchitecture });
        var index = oci.Index(other.Descriptor, host.Descriptor);
        oci.Top(OciBuilder.Named(index, "multi"));
        string layout = Layout(oci);

        var image = Assert.Single(Import(layout));
        AssertImported(image, host);
        Assert.Equal(["strata/image:multi"], image.Names);

        var picked = Assert.Single(Import(layout, "multi:other", new Platform { Os = "linux", Architecture = OtherArchitecture }));
        AssertImported(picked, other);
        Assert.Equal($"linux/{OtherArchitecture}", picked.Platform);
        InTree(picked.TopLayer, tree => Assert.Equal(OtherArchitecture, File.ReadAllText(Path.Combine(tree, "arch"))));
        Assert.Equal(2, Images.List().Count);
        AssertClean();
    }

    [Fact]
    public void AnIndexWithoutTheHostsPlatformIsRefusedNamingThePlatforms()
    {
        var oci = new OciBuilder();
        var other = oci.Add(TwoLayers() with { Architecture = OtherArchitecture });
        oci.Top(OciBuilder.Named(oci.Index(other.Descriptor), "multi"));
        var ex = Fails(Layout(oci), ErrorKind.NotFound, $"no manifest for platform {Platform.Host}");
        Assert.Contains($"linux/{OtherArchitecture}", ex.Message);
        Assert.Contains("--platform", ex.Message);
    }

    [Fact]
    public void TopLevelManifestsForOtherPlatformsAreNotImported()
    {
        var oci = new OciBuilder();
        var host = oci.Add(TwoLayers());
        var other = oci.Add(TwoLayers() with { Architecture = OtherArchitecture });
        oci.Top(OciBuilder.Named(other.Descriptor, "1.0"), OciBuilder.Named(host.Descriptor, "1.0"));
        AssertImported(Assert.Single(Import(Layout(oci))), host);

        var only = new OciBuilder();
        only.Top(only.Add(TwoLayers() with { Architecture = OtherArchitecture }).Descriptor);
        Fails(Layout(only), ErrorKind.NotFound, $"no manifest for platform {Platform.Host} (it has linux/{OtherArchitecture})");
    }

    // ---- bad blobs ----

    [Fact]
    public void ALayerWhoseContentIsNotItsDigestIsRefused()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        oci.Top(built.Descriptor);
        oci.Tamper(built.LayerDigests[1], b => [.. b[..^1], (byte)(b[^1] ^ 1)]);
        Fails(Layout(oci), ErrorKind.Corrupt, $"layer {built.LayerDigests[1]} has digest sha256:");
    }

    [Fact]
    public void AConfigWhoseContentIsNotItsDigestIsRefused()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        oci.Top(built.Descriptor);
        oci.Tamper(built.ConfigDigest, b => Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(b).Replace("/bin/sh", "/bin/xx")));
        Fails(Layout(oci), ErrorKind.Corrupt, $"config {built.ConfigDigest} has digest sha256:");
    }

    [Fact]
    public void AManifestWhoseContentIsNotItsDigestIsRefused()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        oci.Top(built.Descriptor);
        oci.Tamper(built.ManifestDigest, b => [.. b, (byte)' ']);
        Fails(Layout(oci), ErrorKind.Corrupt, $"manifest {built.ManifestDigest} has");
    }

    [Fact]
    public void AMissingBlobIsRefusedNamingIt()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        oci.Top(built.Descriptor);
        oci.Files.Remove(OciBuilder.PathOf(built.LayerDigests[1]));
        Fails(Layout(oci), ErrorKind.Corrupt, $"{OciBuilder.PathOf(built.LayerDigests[1])} is missing");

        oci.Files[OciBuilder.PathOf(built.LayerDigests[1])] = [];
        oci.Files.Remove(OciBuilder.PathOf(built.ConfigDigest));
        Fails(Layout(oci), ErrorKind.Corrupt, $"config {built.ConfigDigest} is missing");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(-1)]
    public void ALayerOfAnotherSizeThanItsDescriptorSaysIsRefused(int delta)
    {
        var oci = new OciBuilder();
        string? digest = null;
        long size = 0;
        var built = oci.Add(TwoLayers(editManifest: m =>
        {
            var layer = m["layers"]![1]!;
            digest = layer["digest"]!.GetValue<string>();
            size = layer["size"]!.GetValue<int>() + delta;
            layer["size"] = size;
        }));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, delta > 0 ? $"layer {digest} has {size - delta} bytes, not {size}" : $"layer {digest} is larger than the {size} bytes");
    }

    [Fact]
    public void ATruncatedGzipLayerIsRefused()
    {
        var oci = new OciBuilder();
        var top = new LayerSpec(new LayerTar().File("big", new byte[200_000].Select((_, i) => (byte)(i * 7919 >> 3)).ToArray()).Bytes()) { Blob = b => b[..(b.Length / 2)] };
        var built = oci.Add(TwoLayers(top: top));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, $"layer {built.LayerDigests[1]}: tar: archive is truncated");
    }

    [Fact]
    public void ALayerThatUnpacksToAnotherDiffIdIsRefused()
    {
        string wrong = Blob.DigestOf("not the layer"u8.ToArray());
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers(editConfig: c => c["rootfs"]!["diff_ids"]![1] = wrong));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, $"layer {built.LayerDigests[1]} unpacks to a tar with digest {built.DiffIds[1]}, not the diff id {wrong}");
    }

    [Fact]
    public void ALayerDeclaredUncompressedButGzippedIsRefused()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers(top: new LayerSpec(TopTar) { MediaType = MediaTypes.OciLayer }));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, $"not the diff id {built.DiffIds[1]}");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void DiffIdsThatDoNotCountTheLayersAreRefused(int count)
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers(editConfig: c =>
        {
            var ids = c["rootfs"]!["diff_ids"]!.AsArray();
            if (count < ids.Count) ids.RemoveAt(1);
            else ids.Add(ids[0]!.DeepClone());
        }));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, $"config {built.ConfigDigest} lists {count} layer diff id(s) for 2 layer(s)");
    }

    [Fact]
    public void AnUnknownLayerMediaTypeIsUnsupported()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers(top: new LayerSpec(TopTar) { MediaType = "application/vnd.example.layer.v1+squashfs" }));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Unsupported, $"layer {built.LayerDigests[1]} has unknown media type 'application/vnd.example.layer.v1+squashfs'");
    }

    // ---- bad JSON ----

    [Theory]
    [InlineData("{ not json", ErrorKind.Corrupt, "index.json is not valid JSON")]
    [InlineData("""{"schemaVersion":2,"manifests":[]}""", ErrorKind.Corrupt, "index.json lists no image")]
    [InlineData("""{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:abc","size":1}]}""", ErrorKind.Corrupt, "invalid manifest digest 'sha256:abc'")]
    public void ABadIndexIsRefused(string index, ErrorKind kind, string fragment)
    {
        var oci = new OciBuilder();
        oci.Add(TwoLayers());
        oci.Files["index.json"] = Encoding.UTF8.GetBytes(index);
        Fails(Layout(oci), kind, fragment);
    }

    [Fact]
    public void AnEmptyNestedIndexIsRefused()
    {
        var oci = new OciBuilder();
        var empty = oci.Index();
        oci.Top(empty);
        Fails(Layout(oci), ErrorKind.Corrupt, $"index {empty["digest"]} lists no manifest");
    }

    [Theory]
    [InlineData("{}", ErrorKind.Corrupt, "oci-layout has no imageLayoutVersion")]
    [InlineData("""{"imageLayoutVersion":"2.0.0"}""", ErrorKind.Unsupported, "image layout version '2.0.0' is not supported")]
    [InlineData("""{"imageLayoutVersion":1}""", ErrorKind.Corrupt, "oci-layout is not valid JSON")]
    [InlineData("oci", ErrorKind.Corrupt, "oci-layout is not valid JSON")]
    public void ABadOciLayoutFileIsRefused(string layout, ErrorKind kind, string fragment)
    {
        var oci = new OciBuilder();
        oci.Top(oci.Add(TwoLayers()).Descriptor);
        oci.Files["oci-layout"] = Encoding.UTF8.GetBytes(layout);
        Fails(Layout(oci), kind, fragment);
        Fails(Input("image.tar", oci.Archive()), kind, fragment);
    }

    [Fact]
    public void ADirectoryWithoutOciLayoutIsNotALayout()
    {
        var oci = new OciBuilder();
        oci.Top(oci.Add(TwoLayers()).Descriptor);
        oci.Files.Remove("oci-layout");
        string dir = Layout(oci);
        Fails(dir, ErrorKind.InvalidArgument, $"{dir}: not an image or tar archive; a directory with neither oci-layout (an OCI image layout) nor manifest.json (an extracted docker-archive)");
    }

    // ---- bad archives ----

    [Theory]
    [InlineData("Config", "../x")]
    [InlineData("Config", "/etc/passwd")]
    [InlineData("Config", "a/../../x.json")]
    [InlineData("Layers", "../x")]
    [InlineData("Layers", "/etc/passwd")]
    public void DockerManifestPathsOutsideTheArchiveAreRefused(string field, string path)
    {
        var docker = new DockerArchiveBuilder
        {
            EditManifest = m =>
            {
                if (field == "Config") m[0]!["Config"] = path;
                else m[0]!["Layers"]![1] = path;
            },
        };
        docker.Add(TwoLayers(), "x:1");
        Fails(Input("image.tar", docker.Archive()), ErrorKind.Corrupt, $"{(field == "Config" ? "config" : "layer")} path '{path}' points outside the image");
    }

    [Theory]
    [InlineData("../evil")]
    [InlineData("a/../../evil")]
    [InlineData("/evil")]
    public void ArchiveEntriesOutsideTheArchiveAreRefused(string name)
    {
        var docker = new DockerArchiveBuilder();
        docker.Add(TwoLayers(), "x:1");
        Fails(Input("docker.tar", docker.Archive(new KeyValuePair<string, byte[]>(name, "pwned"u8.ToArray()))), ErrorKind.Corrupt, $"archive entry '{name}' points outside the image");

        var oci = new OciBuilder();
        oci.Top(oci.Add(TwoLayers()).Descriptor);
        oci.Files[name] = "pwned"u8.ToArray();
        Fails(Input("oci.tar", oci.Archive()), ErrorKind.Corrupt, $"archive entry '{name}' points outside the image");
        Assert.False(File.Exists(Path.Combine(Root, "evil")));
        Assert.False(File.Exists(Temp.Combine("evil")));
    }

    [Fact]
    public void ADockerArchiveWithAnAlteredConfigIsRefused()
    {
        var docker = new DockerArchiveBuilder();
        string id = docker.Add(TwoLayers(), "x:1");
        string path = id[7..] + ".json";
        docker.Files[path] = [.. docker.Files[path], (byte)' '];
        Fails(Input("image.tar", docker.Archive()), ErrorKind.Corrupt, $"config {path} has digest sha256:");
    }

    [Fact]
    public void ADockerArchiveLayerThatIsNotItsDiffIdIsRefused()
    {
        var docker = new DockerArchiveBuilder();
        docker.Add(TwoLayers());
        var layer = docker.Files.Keys.Single(k => docker.Files[k] == TopTar);
        docker.Files[layer] = new LayerTar().File("other", "other").Bytes();
        Fails(Input("image.tar", docker.Archive()), ErrorKind.Corrupt, $"not the diff id {Blob.DigestOf(TopTar)}");
    }

    [Fact]
    public void AnEmptyDockerManifestIsRefused()
    {
        var docker = new DockerArchiveBuilder { EditManifest = m => m.Clear() };
        docker.Add(TwoLayers());
        Fails(Input("image.tar", docker.Archive()), ErrorKind.Corrupt, "manifest.json lists no image");
    }

    [Fact]
    public void ADockerArchiveWhoseSecondImageIsBadLeavesNothingOfTheFirst()
    {
        var docker = new DockerArchiveBuilder();
        docker.Add(TwoLayers(), "first:1");
        docker.Add(TwoLayers(editConfig: c => c["rootfs"]!["diff_ids"]![1] = Blob.DigestOf("wrong"u8.ToArray())), "second:1");
        Fails(Input("image.tar", docker.Archive()), ErrorKind.Corrupt, "not the diff id");
    }

    [Fact]
    public void ANameForAnArchiveOfTwoImagesIsRefusedAndLeavesNothing()
    {
        var docker = new DockerArchiveBuilder();
        docker.Add(TwoLayers(), "first:1");
        docker.Add(new ImageSpec(new LayerSpec(BaseTar)), "second:1");
        Fails(Input("image.tar", docker.Archive()), ErrorKind.InvalidArgument, "the archive holds 2 images; --name can name only one", name: "x:1");
    }

    // ---- layers that try to escape ----

    public static TheoryData<string> Escapes => ["dotdot", "deep", "symlink-dir", "symlink-file", "hardlink", "absolute"];

    [Theory]
    [MemberData(nameof(Escapes))]
    public void ALayerThatTriesToEscapeIsRefusedAndTheHostIsUntouched(string how)
    {
        string outside = Temp.Dir("outside");
        string sentinel = Path.Combine(outside, "sentinel");
        File.WriteAllText(sentinel, "untouched");
        string up = string.Concat(Enumerable.Repeat("../", 24));
        var tar = new LayerTar().File("ok", "ok");
        var hostile = how switch
        {
            "dotdot" => tar.File("../evil", "pwned"),
            "deep" => tar.File(up + sentinel.TrimStart('/'), "pwned"),
            "symlink-dir" => tar.Symlink("evil", outside).File("evil/sentinel", "pwned"),
            "symlink-file" => tar.Symlink("evil", up + outside.TrimStart('/')).File("evil/new", "pwned"),
            "hardlink" => tar.HardLink("evil", up + sentinel.TrimStart('/')),
            _ => tar.File(sentinel, "pwned"),
        };
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers(top: new LayerSpec(hostile.Bytes())));
        oci.Top(built.Descriptor);
        var ex = Fails(Layout(oci), ErrorKind.InvalidArgument, $"layer {built.LayerDigests[1]}");
        Assert.Matches("'\\.\\.'|absolute path|writes through symlink", ex.Message);
        Assert.Equal("untouched", File.ReadAllText(sentinel));
        Assert.Equal(["sentinel"], Directory.GetFileSystemEntries(outside).Select(Path.GetFileName));
        Assert.False(File.Exists(Path.Combine(Root, "evil")));
        Assert.Empty(Directory.GetFiles(Root, "evil", SearchOption.AllDirectories));
    }

    [Fact]
    public void ARootfsTarThatTriesToEscapeIsRefused()
    {
        string outside = Temp.Dir("outside");
        var tar = new LayerTar().Symlink("evil", outside).File("evil/new", "pwned").Bytes();
        Fails(Input("rootfs.tar", Blob.Gzip(tar)), ErrorKind.InvalidArgument, "writes through symlink 'evil'");
        Assert.Empty(Directory.GetFileSystemEntries(outside));
    }

    [Fact]
    public void ATruncatedGzipRootfsIsRefused()
    {
        var gz = Blob.Gzip(new LayerTar().File("big", new byte[200_000].Select((_, i) => (byte)(i * 7919 >> 3)).ToArray()).Bytes());
        string path = Input("rootfs.tar.gz", gz[..(gz.Length / 2)]);
        Fails(path, ErrorKind.InvalidArgument, $"{path}: not an image or tar archive; tar: archive is truncated");
    }

    static byte[] WithBadCrc(byte[] gz)
    {
        var bad = gz.ToArray();
        bad[^8] ^= 0xff; // the gzip trailer's CRC32
        return bad;
    }

    [Fact]
    public void AGzipLayerWithABadChecksumIsRefused()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers(top: new LayerSpec(TopTar) { Blob = WithBadCrc }));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, $"layer {built.LayerDigests[1]}: gzip:");
    }

    [Fact]
    public void AGzipRootfsWithABadChecksumIsRefused()
    {
        string path = Input("rootfs.tar.gz", WithBadCrc(Blob.Gzip(BaseTar)));
        Fails(path, ErrorKind.InvalidArgument, $"{path}: not an image or tar archive; gzip:");
    }

    // ---- what is not an image at all ----

    public static TheoryData<string, byte[], string> NotImages => new()
    {
        { "empty", [], "tar: the input is empty" },
        { "random bytes", Enumerable.Range(0, 4096).Select(i => (byte)(i * 7919 >> 3)).ToArray(), "tar: header checksum" },
        { "text", "hello, this is not a tar\n"u8.ToArray(), "tar: archive is truncated" },
        { "a tar cut short", BaseTar[..700], "tar: archive is truncated" },
        { "gzip of text", Blob.Gzip("not a tar at all, though compressed, and long enough to fill more than no block"u8.ToArray()), "tar: archive is truncated" },
    };

    [Theory]
    [MemberData(nameof(NotImages))]
    public void WhatIsNotAnImageIsRefusedAsSuch(string what, byte[] bytes, string found)
    {
        string path = Input(what.Replace(' ', '-'), bytes);
        Fails(path, ErrorKind.InvalidArgument, $"{path}: not an image or tar archive; {found}");
        // from a stream (stdin) too, named as the caller names it, and the spool is gone
        var ex = Assert.Throws<StrataException>(() => new ImageImporter(Images).Import(new MemoryStream(bytes), "stdin", new ImageImporter.Options()));
        Assert.Equal((ErrorKind.InvalidArgument, true), (ex.Kind, ex.Message.StartsWith($"stdin: not an image or tar archive; {found}", StringComparison.Ordinal)));
        AssertClean();
        Assert.Empty(ImageIds());
    }

    [Theory]
    [InlineData("oci-archive")]
    [InlineData("docker-archive")]
    [InlineData("rootfs")]
    public void EachArchiveImportsFromAStream(string format)
    {
        byte[] archive;
        if (format == "oci-archive")
        {
            var oci = new OciBuilder();
            oci.Top(OciBuilder.Named(oci.Add(TwoLayers()).Descriptor, "1.0"));
            archive = oci.Archive();
        }
        else if (format == "docker-archive")
        {
            var docker = new DockerArchiveBuilder();
            docker.Add(TwoLayers(), "x:1");
            archive = docker.Archive();
        }
        else archive = Blob.Gzip(BaseTar);
        var image = Assert.Single(new ImageImporter(Images).Import(new MemoryStream(archive), "stdin", new ImageImporter.Options { Name = "x:1" }));
        Assert.Equal(["x:1"], image.Names);
        Assert.Equal(format == "rootfs" ? 1 : 2, image.Layers.Count);
        InTree(image.TopLayer, tree => Assert.Equal(format == "rootfs" ? "ID=base\n" : "ID=top\n", File.ReadAllText(Path.Combine(tree, "etc/os-release"))));
        AssertClean();
    }

    // ---- shared layers ----

    [Fact]
    public void ImagesShareTheirBaseLayerAndAFailedImportKeepsIt()
    {
        var first = new OciBuilder();
        var a = first.Add(TwoLayers());
        first.Top(OciBuilder.Named(a.Descriptor, "first"));
        var imageA = Assert.Single(Import(Layout(first)));
        var baseLayer = Layers.Inspect(imageA.Layers[0]);

        var second = new OciBuilder();
        var b = second.Add(new ImageSpec(new LayerSpec(BaseTar), new LayerSpec(new LayerTar().File("b", "b").Bytes())));
        second.Top(OciBuilder.Named(b.Descriptor, "second"));
        var imageB = Assert.Single(Import(Layout(second)));
        Assert.Equal(imageA.Layers[0], imageB.Layers[0]);
        Assert.Equal(baseLayer.Created, Layers.Inspect(imageB.Layers[0]).Created); // not made again
        Assert.Equal(3, Layers.List().Count);

        // a third image on the same base whose own layer is bad: the base stays, with what it holds
        var third = new OciBuilder();
        var c = third.Add(new ImageSpec(new LayerSpec(BaseTar), new LayerSpec(new LayerTar().File("c", "c").Bytes()))
        {
            EditConfig = cfg => cfg["rootfs"]!["diff_ids"]![1] = Blob.DigestOf("wrong"u8.ToArray()),
        });
        third.Top(OciBuilder.Named(c.Descriptor, "third"));
        Fails(Layout(third), ErrorKind.Corrupt, "not the diff id");
        Assert.Equal(baseLayer.Created, Layers.Inspect(imageA.Layers[0]).Created);
        Assert.True(Images.Blobs.Exists(Digest.Parse(a.LayerDigests[0])));
        InTree(imageA.TopLayer, AssertTwoLayerTree);
        InTree(imageB.TopLayer, tree => Assert.Equal("b", File.ReadAllText(Path.Combine(tree, "b"))));
    }

    [Fact]
    public void AFailedDockerImportOnASharedBaseKeepsTheBaseAndDropsItsOwnBlobs()
    {
        var oci = new OciBuilder();
        var a = oci.Add(TwoLayers());
        oci.Top(OciBuilder.Named(a.Descriptor, "first"));
        var imageA = Assert.Single(Import(Layout(oci)));

        // the same base, uncompressed this time (another blob, the same layer), under a layer that is not its diff id
        var docker = new DockerArchiveBuilder();
        docker.Add(TwoLayers(editConfig: c => c["rootfs"]!["diff_ids"]![1] = Blob.DigestOf("wrong"u8.ToArray())), "second:1");
        Fails(Input("image.tar", docker.Archive()), ErrorKind.Corrupt, "not the diff id");
        Assert.False(Images.Blobs.Exists(Digest.Parse(Blob.DigestOf(BaseTar))));
        InTree(imageA.TopLayer, AssertTwoLayerTree);

        // and the good one reuses the base layer
        var good = new DockerArchiveBuilder();
        good.Add(TwoLayers(top: new LayerSpec(new LayerTar().File("d", "d").Bytes())), "second:1");
        var imageB = Assert.Single(Import(Input("good.tar", good.Archive())));
        Assert.Equal(imageA.Layers[0], imageB.Layers[0]);
        Assert.Equal(3, Layers.List().Count);
        AssertClean();

        // a failed import that brings the very blob an image has does not take it
        Fails(Input("image.tar", docker.Archive()), ErrorKind.Corrupt, "not the diff id");
        Assert.True(Images.Blobs.Exists(Digest.Parse(Blob.DigestOf(BaseTar))));
        InTree(imageB.TopLayer, tree => Assert.Equal("d", File.ReadAllText(Path.Combine(tree, "d"))));
    }

    [Fact]
    public void ALayerBlobThatIsNotItsDiffIdIsRefusedEvenWhenTheLayerExists()
    {
        var first = new OciBuilder();
        var a = first.Add(TwoLayers());
        first.Top(OciBuilder.Named(a.Descriptor, "first"));
        var imageA = Assert.Single(Import(Layout(first)));

        // the layers' diff ids are those of the stored layers, but the second blob holds another tar: reusing the
        // layer would record an image whose blob is not its layer (an export would hand out the wrong tar)
        var other = new LayerTar().File("other", "other").Bytes();
        var docker = new DockerArchiveBuilder();
        docker.Add(TwoLayers(), "second:1");
        var top = docker.Files.Keys.Single(k => docker.Files[k] == TopTar);
        docker.Files[top] = other;
        Fails(Input("image.tar", docker.Archive()), ErrorKind.Corrupt, $"unpacks to a tar with digest {Blob.DigestOf(other)}, not the diff id {a.DiffIds[1]}");

        var oci = new OciBuilder();
        var b = oci.Add(TwoLayers(editConfig: c => c["rootfs"]!["diff_ids"]![1] = a.DiffIds[1], top: new LayerSpec(other)));
        oci.Top(b.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, $"layer {b.LayerDigests[1]} unpacks to a tar with digest {Blob.DigestOf(other)}, not the diff id {a.DiffIds[1]}");
        InTree(imageA.TopLayer, AssertTwoLayerTree);
    }

    [Fact]
    public void AnIndexOfManyNamesRecordsEachOnceAndTheLastEntryForANameTakesIt()
    {
        var oci = new OciBuilder();
        var a = oci.Add(TwoLayers());
        var b = oci.Add(new ImageSpec(new LayerSpec(BaseTar)));
        // one image under 500 names, then another that takes one of them (as a later `docker load` would)
        var entries = Enumerable.Range(0, 500).Select(i => OciBuilder.Named(a.Descriptor, $"example.com/a:{i}")).Append(OciBuilder.Named(b.Descriptor, "example.com/a:7")).ToArray();
        oci.Top(entries);
        var images = Import(Layout(oci));
        Assert.Equal(2, images.Count);
        var imageA = Images.Get(a.ConfigDigest);
        Assert.Equal(Enumerable.Range(0, 500).Where(i => i != 7).Select(i => $"example.com/a:{i}"), imageA.Names);
        Assert.Equal(["example.com/a:7"], Images.Get(b.ConfigDigest).Names);
        Assert.Equal(2, Images.List().Count);
        AssertClean();
    }

    [Fact]
    public void OneManifestNamedTwiceIsOneImageThatNameCanName()
    {
        var oci = new OciBuilder();
        var a = oci.Add(TwoLayers());
        oci.Top(OciBuilder.Named(a.Descriptor, "x:1"), OciBuilder.Named(a.Descriptor, "x:2"));
        string layout = Layout(oci);
        Assert.Equal(["x:1", "x:2"], Assert.Single(Import(layout)).Names);
        Assert.Equal(["x:1", "x:2", "y:1"], Assert.Single(Import(layout, "y:1")).Names);

        // the same manifest under two sizes: one of them lies
        var lying = (JsonObject)a.Descriptor.DeepClone();
        lying["size"] = lying["size"]!.GetValue<int>() + 1;
        oci.Top(a.Descriptor, lying);
        Fails(Layout(oci), ErrorKind.Corrupt, $"manifest {a.ManifestDigest} is named with sizes");
    }

    [Fact]
    public void ImportingTheSameImageAgainAddsNothing()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        oci.Top(built.Descriptor);
        string layout = Layout(oci);
        var first = Assert.Single(Import(layout, "x:1"));
        var layers = LayerIds();
        var blobs = BlobNames();
        var again = Assert.Single(Import(layout, "x:2"));
        Assert.Equal(first.Id, again.Id);
        Assert.Equal(["x:1", "x:2"], again.Names);
        Assert.Equal(layers, LayerIds());
        Assert.Equal(blobs, BlobNames());
        Assert.Single(Images.List());
    }
}
