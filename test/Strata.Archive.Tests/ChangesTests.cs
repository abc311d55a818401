using Strata.Native;
using Strata.Testing;

namespace Strata.Archive.Tests;

/// <summary>TreeChanges (the naive diff of two trees), its size, and the diff it writes applied back.</summary>
public class ChangesTests
{
    const long Past = 1_400_000_000;

    /// <summary>A lower tree and an upper tree made from a copy of it, with one change of each kind.
    /// Returns the regular-file bytes the changes carry (hardlinked content once).</summary>
    static long BuildPair(string lower, string upper)
    {
        Fs.Write(lower + "/same", "same\n");
        Fs.Write(lower + "/content", "old content\n");
        Fs.Write(lower + "/same-size", "aaaa\n");
        Fs.Write(lower + "/mode", "mode\n");
        Fs.Write(lower + "/owner", "owner\n");
        Fs.Write(lower + "/xattr", "xattr\n");
        Fs.Write(lower + "/delfile", "delete me\n");
        Fs.Write(lower + "/deldir/a", "a\n");
        Fs.Write(lower + "/deldir/sub/b", "b\n");
        Fs.Write(lower + "/d2f/child", "child\n");
        Fs.Write(lower + "/f2d", "file\n");
        Fs.Write(lower + "/nested/deep/changed", "v1\n");
        Fs.Write(lower + "/nested/deep/unchanged", "u\n");
        Fs.Write(lower + "/nested/untouched/file", "u\n");
        Fs.Write(lower + "/nested/typechg/inner/x", "x\n");
        Fs.Mkdir(lower + "/xdir");
        Fs.Symlink(lower + "/sym", "same");
        Fs.Mknod(lower + "/dev", FileKind.CharDevice, 0x1B6, 1, 3);
        foreach (var n in TreeSnapshot.Capture(lower)) Fs.SetMtime(lower + "/" + n.Path, Past);
        Fs.CopyTree(lower + "/.", upper);

        long size = 0;
        size += File.ReadAllBytes(Fs.Write(upper + "/content", "new content, longer\n")).Length;
        Fs.Write(upper + "/same-size", "bbbb\n");                // same size, new mtime
        size += 5;
        Fs.Chmod(upper + "/mode", 0x1ED /* 0755 */);
        size += 5;
        Fs.Chown(upper + "/owner", 1000, 1000);
        size += 6;
        Fs.Xattr(upper + "/xattr", "trusted.new", [1, 2, 3]);
        size += 6;
        File.Delete(upper + "/delfile");
        Directory.Delete(upper + "/deldir", recursive: true);
        Directory.Delete(upper + "/d2f", recursive: true);
        size += File.ReadAllBytes(Fs.Write(upper + "/d2f", "now a file\n")).Length;
        File.Delete(upper + "/f2d");
        size += File.ReadAllBytes(Fs.Write(upper + "/f2d/c", "c\n")).Length;
        size += File.ReadAllBytes(Fs.Write(upper + "/nested/deep/changed", "v2\n")).Length;
        Directory.Delete(upper + "/nested/typechg", recursive: true);
        size += File.ReadAllBytes(Fs.Write(upper + "/nested/typechg", "was a directory\n")).Length;
        Fs.Xattr(upper + "/xdir", "user.dir", "on a directory");
        File.Delete(upper + "/sym");
        Fs.Symlink(upper + "/sym", "content");
        File.Delete(upper + "/dev");
        Fs.Mknod(upper + "/dev", FileKind.CharDevice, 0x1B6, 1, 5);
        size += File.ReadAllBytes(Fs.Write(upper + "/added", "added\n")).Length;
        size += File.ReadAllBytes(Fs.Write(upper + "/added-dir/x", "x\n")).Length;
        size += File.ReadAllBytes(Fs.Write(upper + "/hl1", new byte[10_000])).Length; // counted once
        Fs.HardLink(upper + "/hl1", upper + "/hl2");
        Fs.Mknod(upper + "/added-fifo", FileKind.Fifo, 0x1A4);
        return size;
    }

    static readonly string[] Expected =
    [
        "A /added",
        "A /added-dir",
        "A /added-dir/x",
        "A /added-fifo",
        "C /content",
        "C /d2f",
        "D /deldir",
        "D /delfile",
        "C /dev",
        "C /f2d",
        "A /f2d/c",
        "A /hl1",
        "A /hl2",
        "C /mode",
        "C /nested",
        "C /nested/deep",
        "C /nested/deep/changed",
        "C /nested/typechg",
        "C /owner",
        "C /same-size",
        "C /sym",
        "C /xattr",
        "C /xdir",
    ];

    [Fact]
    public void Compute_ListsExactlyTheChanges_Sorted()
    {
        using var tmp = new TempRoot();
        string lower = tmp.Dir("lower"), upper = tmp.Dir("upper");
        BuildPair(lower, upper);
        var changes = TreeChanges.Compute(upper, lower);
        Assert.Equal(Expected, changes.Select(c => c.ToString()));
        Assert.Equal(changes.Select(c => c.Path).Order(StringComparer.Ordinal), changes.Select(c => c.Path));
    }

    [Fact]
    public void Compute_IdenticalTrees_HaveNoChanges()
    {
        using var tmp = new TempRoot();
        string lower = tmp.Dir("lower"), upper = tmp.Combine("upper");
        GnuTarRoundTripTests.BuildRichTree(lower);
        Fs.CopyTree(lower, upper);
        Assert.Empty(TreeChanges.Compute(upper, lower));
    }

    [Fact]
    public void Compute_AgainstNothing_AddsEverything()
    {
        using var tmp = new TempRoot();
        string dir = tmp.Dir("dir");
        Fs.Write(dir + "/a/b/c", "c");
        Fs.Write(dir + "/z", "z");
        Fs.Mkdir(dir + "/a/empty");
        Assert.Equal(["A /a", "A /a/b", "A /a/b/c", "A /a/empty", "A /z"], TreeChanges.Compute(dir, null).Select(c => c.ToString()));
    }

    [Fact]
    public void Size_CountsRegularBytesWithHardlinksOnce_AndMatchesWhatApplyingTheDiffWrites()
    {
        using var tmp = new TempRoot();
        string lower = tmp.Dir("lower"), upper = tmp.Dir("upper"), target = tmp.Combine("target");
        long expected = BuildPair(lower, upper);
        var changes = TreeChanges.Compute(upper, lower);
        Assert.Equal(expected, TreeChanges.Size(upper, changes));

        var diff = new MemoryStream();
        var result = DiffWriter.Write(diff, upper, changes);
        Assert.Equal(expected, result.Size);

        Fs.CopyTree(lower, target);
        Assert.Equal(expected, Apply.Tar(diff.ToArray(), target));
        // the whole point of a diff: parent + diff == layer
        TreeSnapshot.AssertSame(upper, target, MtimePrecision.Seconds);
        var st1 = Posix.Lstat(target + "/hl1");
        var st2 = Posix.Lstat(target + "/hl2");
        Assert.Equal((2u, st1.Inode), (st1.Nlink, st2.Inode));
    }

    [Fact]
    public void Diff_OfALayerOnTopOfARichTree_ReappliesExactly()
    {
        using var tmp = new TempRoot();
        string lower = tmp.Dir("lower"), upper = tmp.Combine("upper"), target = tmp.Combine("target");
        GnuTarRoundTripTests.BuildRichTree(lower);
        Fs.CopyTree(lower, upper);
        Directory.Delete(upper + "/links", recursive: true);       // holds one name of a hardlink group
        File.Delete(upper + "/hard/b");
        Fs.Write(upper + "/hard/x", "rewritten in place, still linked to y\n");
        Directory.Delete(upper + "/dev", recursive: true);
        Fs.Write(upper + "/dev", "a file where a directory of devices was\n");
        Fs.Chmod(upper + "/sticky", 0x1ED);
        Fs.Xattr(upper + "/xattrs/file", "user.text", "changed");
        Fs.Xattr(upper + "/xattrs/file", "security.capability", Fs.CapNetBindService);

        var diff = new MemoryStream();
        var changes = TreeChanges.Compute(upper, lower);
        DiffWriter.Write(diff, upper, changes);
        Fs.CopyTree(lower, target);
        Assert.Equal(TreeChanges.Size(upper, changes), Apply.Tar(diff.ToArray(), target));
        TreeSnapshot.AssertSame(upper, target, MtimePrecision.Seconds);
    }
}
