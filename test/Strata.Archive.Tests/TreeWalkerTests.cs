using Strata.Native;
using Strata.Testing;

namespace Strata.Archive.Tests;

public class TreeWalkerTests
{
    [Fact]
    public void ReusesTheOpenChainAndNeverFollowsASymlinkedComponent()
    {
        using var temp = new TempRoot();
        string root = temp.Dir("root");
        Directory.CreateDirectory(Path.Combine(root, "a/b/c"));
        Directory.CreateDirectory(Path.Combine(root, "a/d"));
        string outside = temp.Dir("outside");
        File.CreateSymbolicLink(Path.Combine(root, "escape"), outside);
        using var walker = new TreeWalker(root);
        Assert.Equal(Posix.Lstat(Path.Combine(root, "a/b/c")).Inode, Posix.Fstat(walker.Dir("a/b/c")).Inode);
        Assert.Equal(Posix.Lstat(Path.Combine(root, "a/d")).Inode, Posix.Fstat(walker.Dir("a/d")).Inode);
        Assert.Equal(Posix.Lstat(root).Inode, Posix.Fstat(walker.Dir("")).Inode);
        var ex = Assert.Throws<StrataException>(() => walker.Dir("escape"));
        Assert.Contains("stopped being a directory", ex.Message);
        // a directory swapped for a symlink after it was read is refused too
        Directory.Delete(Path.Combine(root, "a/d"));
        File.CreateSymbolicLink(Path.Combine(root, "a/d"), outside);
        Assert.Throws<StrataException>(() => walker.Dir("a/d"));
    }
}
