using Strata.Native;
using Strata.Testing;

namespace Strata.Archive.Tests;

/// <summary>trusted.overlay.* is how overlayfs encodes a layer, never layer content (LayerXattrs).</summary>
public class XattrPolicyTests
{
    [Theory]
    [InlineData("trusted.overlay.opaque")]
    [InlineData("trusted.overlay.redirect")]
    [InlineData("trusted.overlay.metacopy")]
    public void ATarCarryingOverlayXattrsIsRefused(string name)
    {
        using var temp = new TempRoot();
        string target = temp.Dir("target");
        var tar = new TarBuilder().File("f", "x", xattrs: [new(name, "y"u8.ToArray())]).Bytes();
        var ex = Assert.Throws<StrataException>(() => Apply.Tar(tar, target));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.Contains($"carries xattr '{name}'", ex.Message);
        Assert.False(File.Exists(Path.Combine(target, "f")));
    }

    [Fact]
    public void AnXattrNameWithANulIsRefusedNotTruncated()
    {
        using var temp = new TempRoot();
        string target = temp.Dir("target");
        var tar = new TarBuilder().File("f", "x", xattrs: [new("user.a\0b", "y"u8.ToArray())]).Bytes();
        var ex = Assert.Throws<StrataException>(() => Apply.Tar(tar, target));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.Contains("NUL", ex.Message);
        Assert.DoesNotContain(Posix.LgetXattrs(temp.Path + "/target"), kv => kv.Key == "user.a");
    }

    [Fact]
    public void DiffsAndChangesLeaveOverlayXattrsOut()
    {
        using var temp = new TempRoot();
        string lower = temp.Dir("lower"), upper = temp.Dir("upper");
        Directory.CreateDirectory(Path.Combine(lower, "d"));
        Directory.CreateDirectory(Path.Combine(upper, "d"));
        Posix.LsetXattr(Path.Combine(upper, "d"), "trusted.overlay.opaque", "y"u8);
        Posix.LsetXattr(Path.Combine(upper, "d"), "user.kept", "k"u8);
        Assert.Equal(["C /d"], TreeChanges.Compute(upper, lower).Select(c => c.ToString()));
        Posix.LsetXattr(Path.Combine(lower, "d"), "user.kept", "k"u8);
        Assert.Empty(TreeChanges.Compute(upper, lower));

        var tar = new MemoryStream();
        DiffWriter.Write(tar, upper, TreeChanges.Compute(upper, null));
        var entry = Assert.Single(Apply.ReadAll(tar.ToArray()));
        Assert.Equal(["user.kept"], entry.Xattrs!.Select(kv => kv.Key));
    }
}
