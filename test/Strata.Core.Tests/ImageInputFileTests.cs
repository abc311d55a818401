using Strata.Archive.Tar;
using Strata.Core.Images;
using Strata.Native;

namespace Strata.Core.Tests;

/// <summary>
/// The files of an image that are not what an image's files must be — regular files inside it: symlinks that
/// lead out of a layout, FIFOs and devices where blobs should be, archive members of other types. Each is
/// one clear line, read nothing outside the image, never waits, and leaves nothing behind; symlinks that stay
/// inside the image (`docker save` links a repeated layer) still work.
/// </summary>
public sealed class ImageInputFileTests : ImageImportFixture
{
    const uint Fifo = 0x1000, CharDevice = 0x2000;

    /// <summary>A good two-layer layout, written out; <paramref name="built"/> says what is in it.</summary>
    string GoodLayout(out BuiltImage built)
    {
        var oci = new OciBuilder();
        built = oci.Add(TwoLayers());
        oci.Top(OciBuilder.Named(built.Descriptor, "1.0"));
        return Layout(oci);
    }

    static string BlobOf(string layout, string digest) => Path.Combine(layout, OciBuilder.PathOf(digest));

    /// <summary>Which of an image's files to replace: a layer (streamed), the manifest or config (read whole), or a top-level file.</summary>
    public static TheoryData<string> Files => ["layer", "manifest", "config", "index.json", "oci-layout"];

    static string FileOf(string layout, BuiltImage built, string which) => which switch
    {
        "layer" => BlobOf(layout, built.LayerDigests[1]),
        "manifest" => BlobOf(layout, built.ManifestDigest),
        "config" => BlobOf(layout, built.ConfigDigest),
        _ => Path.Combine(layout, which),
    };

    [Theory]
    [MemberData(nameof(Files))]
    public void AFileThatIsASymlinkOutOfTheLayoutIsRefused(string which)
    {
        string layout = GoodLayout(out var built);
        string file = FileOf(layout, built, which);
        // the very bytes the image expects, outside it: following the link would import them
        string outside = Path.Combine(Temp.Dir("outside"), "copy");
        File.Move(file, outside);
        File.CreateSymbolicLink(file, outside);
        Fails(layout, ErrorKind.Corrupt, "is a symlink that leads out of the image");

        File.Delete(file);
        File.CreateSymbolicLink(file, Path.GetRelativePath(Path.GetDirectoryName(file)!, outside));
        Fails(layout, ErrorKind.Corrupt, "is a symlink that leads out of the image");
    }

    [Theory]
    [MemberData(nameof(Files))]
    public async Task AFifoInTheLayoutIsRefusedWithoutWaitingForAWriter(string which)
    {
        string layout = GoodLayout(out var built);
        string file = FileOf(layout, built, which);
        File.Delete(file);
        Posix.MknodAt(FileDescriptor.Cwd, file, Fifo | 0x180, 0, 0);
        var import = Task.Run(() => Assert.Throws<StrataException>(() => Import(layout)));
        // a hang detector, not a time limit: an import that waits for a writer waits forever
        if (await Task.WhenAny(import, Task.Delay(TimeSpan.FromSeconds(60))) != import)
        {
            using (Posix.Open(file, Posix.O_RDWR)) { } // a writer that comes and goes lets it go on
            await import;
            Assert.Fail($"the import waited for a writer of the FIFO {which}");
        }
        var ex = await import;
        Assert.Equal(ErrorKind.Corrupt, ex.Kind);
        Assert.Contains("is a fifo, not a regular file", ex.Message);
        Fails(layout, ErrorKind.Corrupt, "is a fifo, not a regular file");
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void ADeviceInTheLayoutIsRefused(string which)
    {
        string layout = GoodLayout(out var built);
        string file = FileOf(layout, built, which);
        File.Delete(file);
        Posix.MknodAt(FileDescriptor.Cwd, file, CharDevice | 0x1B6, 1, 5); // /dev/zero: a stat size of 0, and no end
        Fails(layout, ErrorKind.Corrupt, "is a character device, not a regular file");

        File.Delete(file);
        File.CreateSymbolicLink(file, "/dev/zero");
        Fails(layout, ErrorKind.Corrupt, "is a symlink that leads out of the image");
    }

    [Fact]
    public void ADirectoryWhereABlobShouldBeIsRefused()
    {
        string layout = GoodLayout(out var built);
        string file = BlobOf(layout, built.ConfigDigest);
        File.Delete(file);
        Directory.CreateDirectory(file);
        Fails(layout, ErrorKind.Corrupt, "is a directory, not a regular file");
    }

    [Fact]
    public void SymlinksThatStayInsideTheLayoutAreFollowed()
    {
        string layout = GoodLayout(out var built);
        // a blob kept elsewhere in the layout, and a blob directory that is itself a link inside it
        string layer = BlobOf(layout, built.LayerDigests[1]);
        Directory.CreateDirectory(Path.Combine(layout, "store"));
        File.Move(layer, Path.Combine(layout, "store", "layer"));
        File.CreateSymbolicLink(layer, "../../store/layer");
        Directory.Move(Path.Combine(layout, "blobs"), Path.Combine(layout, "real-blobs"));
        Directory.CreateSymbolicLink(Path.Combine(layout, "blobs"), "real-blobs");

        var image = Assert.Single(Import(layout));
        AssertImported(image, built);
        InTree(image.TopLayer, AssertTwoLayerTree);
        AssertClean();
    }

    // ---- docker-archive directories (an extracted `docker save`) ----

    string DockerDirectory(out string configDigest, out List<string> layerPaths)
    {
        var docker = new DockerArchiveBuilder();
        configDigest = docker.Add(TwoLayers(), "x:1");
        string dir = Temp.Combine("in", "docker-" + Guid.NewGuid().ToString("N"));
        docker.WriteDir(dir);
        layerPaths = docker.Files.Keys.Where(k => k.EndsWith("/layer.tar", StringComparison.Ordinal)).Select(k => Path.Combine(dir, k)).ToList();
        return dir;
    }

    [Fact]
    public void ADockerArchiveDirectoryWithASymlinkedRepeatedLayerImports()
    {
        string dir = DockerDirectory(out var id, out var layers);
        // docker save links a layer it has written already: <id>/layer.tar -> ../<other id>/layer.tar
        string top = layers.Single(l => File.ReadAllBytes(l).SequenceEqual(TopTar));
        Directory.CreateDirectory(Path.Combine(dir, "other"));
        File.Move(top, Path.Combine(dir, "other", "layer.tar"));
        File.CreateSymbolicLink(top, "../other/layer.tar");

        var image = Assert.Single(Import(dir));
        Assert.Equal(id, image.Id);
        Assert.Equal(["x:1"], image.Names);
        InTree(image.TopLayer, AssertTwoLayerTree);
        AssertClean();
    }

    [Fact]
    public void ADockerArchiveDirectorysFilesMustBeRegularFilesInsideIt()
    {
        string dir = DockerDirectory(out _, out var layers);
        string outside = Path.Combine(Temp.Dir("outside"), "layer.tar");
        File.Move(layers[1], outside);
        File.CreateSymbolicLink(layers[1], outside);
        Fails(dir, ErrorKind.Corrupt, "is a symlink that leads out of the image");

        string manifest = Path.Combine(dir, "manifest.json");
        File.Delete(manifest);
        Posix.MknodAt(FileDescriptor.Cwd, manifest, CharDevice | 0x1B6, 1, 5);
        Fails(dir, ErrorKind.Corrupt, "manifest.json in " + dir + " is a character device, not a regular file");
    }

    // ---- tar archives ----

    [Theory]
    [InlineData(TarEntryType.Fifo)]
    [InlineData(TarEntryType.CharDevice)]
    [InlineData(TarEntryType.BlockDevice)]
    public void AnArchiveMemberThatIsNotAFileOrLinkIsRefused(TarEntryType type)
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        oci.Top(built.Descriptor);
        var tar = new LayerTar();
        foreach (var (name, data) in oci.Files.Where(f => f.Key != OciBuilder.PathOf(built.ConfigDigest)).OrderBy(f => f.Key, StringComparer.Ordinal)) tar.File(name, data);
        tar.Entry(new TarEntry { Name = OciBuilder.PathOf(built.ConfigDigest), Type = type, Mode = 0x1A4, DevMajor = 1, DevMinor = 5 });
        Fails(Input("image.tar", tar.Bytes()), ErrorKind.Corrupt, "an image archive holds only files, directories and links");
    }

    [Theory]
    [InlineData("/dev/zero", "is missing")]
    [InlineData("../../../etc/passwd", "points outside the archive")]
    [InlineData("blobs", "is missing")] // a directory of the archive, not a file
    public void AnArchiveMemberLinkedToWhatIsNotAFileOfTheArchiveIsRefused(string target, string fragment)
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        oci.Top(built.Descriptor);
        var tar = new LayerTar().Dir("blobs/").Dir("blobs/sha256/");
        foreach (var (name, data) in oci.Files.Where(f => f.Key != OciBuilder.PathOf(built.ConfigDigest)).OrderBy(f => f.Key, StringComparer.Ordinal)) tar.File(name, data);
        tar.Symlink(OciBuilder.PathOf(built.ConfigDigest), target);
        Fails(Input("image.tar", tar.Bytes()), ErrorKind.Corrupt, fragment);
    }

    [Fact]
    public void AnArchiveMemberWhoseSizeLiesIsRefused()
    {
        var oci = new OciBuilder();
        oci.Top(oci.Add(TwoLayers()).Descriptor);
        var archive = oci.Archive();
        // the first member's header says far more bytes than the archive holds
        var lying = archive.ToArray();
        "77777777777\0"u8.CopyTo(lying.AsSpan(124));
        FixChecksum(lying);
        Fails(Input("image.tar", lying), ErrorKind.InvalidArgument, "not an image or tar archive; tar: archive is truncated");
    }

    static void FixChecksum(byte[] header)
    {
        for (int i = 148; i < 156; i++) header[i] = (byte)' ';
        int sum = 0;
        for (int i = 0; i < 512; i++) sum += header[i];
        System.Text.Encoding.ASCII.GetBytes(Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ").CopyTo(header, 148);
    }
}
