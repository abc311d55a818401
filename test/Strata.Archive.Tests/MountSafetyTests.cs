using Strata.Testing;

namespace Strata.Archive.Tests;

/// <summary>Nothing Strata removes may reach into a mount, not even one mounted at the very path removed.</summary>
public class MountSafetyTests
{
    [Fact]
    public void AWhiteoutOfAMountPointNeverEmptiesTheMount()
    {
        using var temp = new TempRoot();
        string target = temp.Dir("target"), mnt = Path.Combine(target, "m");
        Directory.CreateDirectory(mnt);
        Shell.Run("mount", "-t", "tmpfs", "tmpfs", mnt).Check("mount tmpfs");
        try
        {
            File.WriteAllText(Path.Combine(mnt, "keep"), "host data");
            var ex = Assert.Throws<StrataException>(() => Apply.Tar(new TarBuilder().Whiteout(".wh.m").Bytes(), target));
            Assert.Equal(ErrorKind.InUse, ex.Kind);
            Assert.Contains("mount point", ex.Message);
            var ex2 = Assert.Throws<StrataException>(() => Apply.Tar(new TarBuilder().File("m", "replaced").Bytes(), target));
            Assert.Equal(ErrorKind.InUse, ex2.Kind);
            Assert.Throws<StrataException>(() => FileTree.Remove(mnt));
            Assert.Equal("host data", File.ReadAllText(Path.Combine(mnt, "keep")));
        }
        finally
        {
            Shell.Run("umount", mnt);
        }
    }
}
