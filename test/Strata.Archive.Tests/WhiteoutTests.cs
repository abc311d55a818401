using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Archive.Tests;

/// <summary>OCI whiteouts (.wh.name) and opaque directories (.wh..wh..opq), carried out (Oci) or
/// recorded overlayfs-style (Overlay).</summary>
public class WhiteoutTests
{
    static void BuildLower(string lower)
    {
        Fs.Write(lower + "/keep", "keep\n");
        Fs.Write(lower + "/gone-file", "bye\n");
        Fs.Write(lower + "/gone-dir/a", "a\n");
        Fs.Write(lower + "/gone-dir/sub/b", "b\n");
        Fs.Write(lower + "/d/old", "old\n");
        Fs.Write(lower + "/d/olddir/x", "x\n");
        Fs.Write(lower + "/d/sub/lower-grandchild", "lg\n");
        Fs.Write(lower + "/d/implied/lower-child", "lc\n");
        Fs.Write(lower + "/other/stays", "o\n");
    }

    [Fact]
    public void Whiteouts_DeleteAFileAndAWholeDirectory_AndAreNotMaterialised()
    {
        using var tmp = new TempRoot();
        string target = tmp.Dir("target");
        BuildLower(target);
        var tar = new TarBuilder().Whiteout(".wh.gone-dir").Whiteout(".wh.gone-file").Whiteout("other/.wh.stays").Whiteout("d/.wh.not-there").Bytes();
        Assert.Equal(0, Apply.Tar(tar, target));
        Assert.Equal(
            ["d d", "d d/implied", "f d/implied/lower-child", "f d/old", "d d/olddir", "f d/olddir/x", "d d/sub", "f d/sub/lower-grandchild", "f keep", "d other"],
            Fs.Listing(target));
    }

    [Fact]
    public void Whiteout_UnderAMissingDirectory_IsANoOp()
    {
        using var tmp = new TempRoot();
        string target = tmp.Dir("target");
        Fs.Write(target + "/keep", "k");
        Apply.Tar(new TarBuilder().Whiteout("no/such/dir/.wh.thing").Bytes(), target);
        Assert.Equal(["f keep"], Fs.Listing(target));
    }

    /// <summary>Where the opaque marker stands among the directory's other entries of the same layer.</summary>
    public enum MarkerAt { First, Middle, Last }

    [Theory]
    [InlineData(MarkerAt.First)]
    [InlineData(MarkerAt.Middle)]
    [InlineData(MarkerAt.Last)]
    public void OpaqueDirectory_HidesLowerChildren_KeepsWhatTheSameLayerAdds(MarkerAt at)
    {
        using var tmp = new TempRoot();
        string target = tmp.Dir("target");
        BuildLower(target);
        var b = new TarBuilder().Dir("d/");
        if (at == MarkerAt.First) b.Whiteout("d/.wh..wh..opq");
        b.File("d/new", "new\n")
         .Dir("d/sub/")                      // re-declared: its lower grandchild must still be hidden
         .File("d/sub/new-grandchild", "ng\n");
        if (at == MarkerAt.Middle) b.Whiteout("d/.wh..wh..opq");
        b.File("d/implied/x", "x\n")        // parent not declared, exists below with a child of its own
         .File("d/fresh/deeper/y", "y\n");  // parents not declared, not below either
        if (at == MarkerAt.Last) b.Whiteout("d/.wh..wh..opq");
        Apply.Tar(b.Bytes(), target);

        Assert.Equal(
            ["d d", "d d/fresh", "d d/fresh/deeper", "f d/fresh/deeper/y", "d d/implied", "f d/implied/x", "f d/new",
             "d d/sub", "f d/sub/new-grandchild", "d gone-dir", "f gone-dir/a", "d gone-dir/sub", "f gone-dir/sub/b", "f gone-file", "f keep",
             "d other", "f other/stays"],
            Fs.Listing(target));
        Assert.Equal("new\n", File.ReadAllText(target + "/d/new"));
    }

    [Fact]
    public void OpaqueRoot_HidesTheWholeLowerTree()
    {
        using var tmp = new TempRoot();
        string target = tmp.Dir("target");
        BuildLower(target);
        Apply.Tar(new TarBuilder().File("keep", "replaced\n").Whiteout(".wh..wh..opq").File("z", "z").Bytes(), target);
        Assert.Equal(["f keep", "f z"], Fs.Listing(target));
        Assert.Equal("replaced\n", File.ReadAllText(target + "/keep"));
    }

    [Fact]
    public void ReservedMetaWhiteouts_AreIgnored()
    {
        using var tmp = new TempRoot();
        string target = tmp.Dir("target");
        Fs.Write(target + "/keep", "k");
        Apply.Tar(new TarBuilder().Dir(".wh..wh.plnk/").File(".wh..wh.plnk/123.456", "x").Whiteout("d/.wh..wh.aufs").Bytes(), target);
        Assert.Equal(["f keep"], Fs.Listing(target));
    }

    [Fact]
    public void OverlayFormat_RecordsWhiteoutsAsDevicesAndOpaqueAsXattr_DeletesNothing()
    {
        using var tmp = new TempRoot();
        string upper = tmp.Dir("upper");
        Fs.Write(upper + "/d/already-in-upper", "u\n");
        Fs.Write(upper + "/replaced", "was a file in this upper dir\n");
        var tar = new TarBuilder()
            .Whiteout(".wh.gone")
            .Whiteout(".wh.replaced")
            .Dir("d/", 0x1E8 /* 0750 */)
            .Whiteout("d/.wh..wh..opq")
            .File("d/new", "n\n")
            .Whiteout("x/y/.wh.z")
            .Whiteout("o/.wh..wh..opq")
            .Bytes();
        Apply.Tar(tar, upper, WhiteoutFormat.Overlay);

        // an opaque directory holds exactly what this tar puts in it, as under the OCI format: what an
        // earlier apply left in the upper dir goes, what lies below is only hidden
        Assert.Equal(
            ["d d", "f d/new", "c gone", "d o", "c replaced", "d x", "d x/y", "c x/y/z"],
            Fs.Listing(upper));
        foreach (var w in new[] { "gone", "replaced", "x/y/z" })
        {
            var st = Posix.Lstat(upper + "/" + w);
            Assert.Equal((FileKind.CharDevice, 0u, 0u), (st.Kind, st.RdevMajor, st.RdevMinor));
        }
        foreach (var dir in new[] { "d", "o" })
            Assert.Contains(Posix.LgetXattrs(upper + "/" + dir), x => x.Key == Whiteouts.OverlayOpaqueXattr && x.Value.AsSpan().SequenceEqual("y"u8));
        Assert.DoesNotContain(Posix.LgetXattrs(upper + "/x"), x => x.Key == Whiteouts.OverlayOpaqueXattr);
        Assert.Equal(0x1E8u, Posix.Lstat(upper + "/d").Permissions);
    }

    [Fact]
    public void OverlayFormat_OpaqueRoot_IsRefused()
    {
        using var tmp = new TempRoot();
        var ex = Assert.Throws<StrataException>(() => Apply.Tar(new TarBuilder().Whiteout(".wh..wh..opq").Bytes(), tmp.Dir("upper"), WhiteoutFormat.Overlay));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.Contains("layer root opaque", ex.Message);
    }

    /// <summary>The two formats must mean the same thing: the kernel's overlay view of (lower + overlay-format
    /// upper) equals the lower tree with the layer applied OCI-style.</summary>
    [SkippableFact]
    public void OverlayFormat_MountedByTheKernel_ShowsWhatOciApplyGives()
    {
        using var tmp = new TempRoot();
        string lower = tmp.Dir("lower"), upper = tmp.Dir("upper"), work = tmp.Dir("work"), merged = tmp.Dir("merged"), oci = tmp.Combine("oci");
        BuildLower(lower);
        foreach (var n in TreeSnapshot.Capture(lower)) Fs.SetMtime(lower + "/" + n.Path, 1_500_000_000);
        Fs.CopyTree(lower, oci);
        var tar = new TarBuilder()
            .Dir("d/", 0x1ED, 1, 2)
            .Whiteout("d/.wh..wh..opq")
            .File("d/new", "new\n")
            .Dir("d/sub/")
            .File("d/sub/new-grandchild", "ng\n")
            .Whiteout(".wh.gone-dir")
            .Whiteout(".wh.gone-file")
            .Dir("other/", 0x1C0 /* 0700 */)
            .Whiteout("other/.wh.stays")
            .File("other/added", "added\n", 0x9ED /* 04755 */, 5, 6)
            .Bytes();
        Apply.Tar(tar, oci, WhiteoutFormat.Oci);
        Apply.Tar(tar, upper, WhiteoutFormat.Overlay);

        var mount = Shell.Run("mount", "-t", "overlay", "overlay", "-o", $"lowerdir={lower},upperdir={upper},workdir={work}", merged);
        Skip.If(mount.ExitCode != 0, $"cannot mount overlayfs here: {mount.Stderr.Trim()}");
        try
        {
            TreeSnapshot.AssertSame(oci, merged, MtimePrecision.Seconds);
        }
        finally
        {
            Shell.Run("umount", merged);
        }
    }
}
