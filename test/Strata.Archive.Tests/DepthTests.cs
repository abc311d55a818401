using Strata.Native;
using Strata.Testing;

namespace Strata.Archive.Tests;

/// <summary>A hostile depth gets a clear error from every walk, never a stack overflow; removal still works.</summary>
public class DepthTests
{
    [Fact]
    public void TreesDeeperThanTheLimitAreRefusedByWalksAndStillRemovable()
    {
        using var temp = new TempRoot();
        string root = temp.Dir("deep");
        using (var fd = Posix.Open(root, Posix.O_RDONLY | Posix.O_DIRECTORY))
        {
            var dir = fd;
            var opened = new List<FileDescriptor>();
            for (int i = 0; i < TreeWalker.MaxDepth + 10; i++)
            {
                Posix.MkdirAt(dir, "d", 0x1ED);
                dir = Posix.OpenAt(dir, "d", Posix.O_RDONLY | Posix.O_DIRECTORY);
                opened.Add(dir);
                if (opened.Count > 64)
                {
                    opened[0].Dispose();
                    opened.RemoveAt(0);
                }
            }
            opened.ForEach(f => f.Dispose());
        }
        var ex = Assert.Throws<StrataException>(() => TreeChanges.Compute(root, null));
        Assert.Contains("directories deep", ex.Message);
        FileTree.Remove(root);
        Assert.False(Directory.Exists(root));
    }
}
