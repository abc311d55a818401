using Strata.Testing;

namespace Strata.Native.Tests;

public sealed class PosixTests
{
    [Fact]
    public void ErrorsCarryErrnoPathAndKind()
    {
        var ex = Assert.Throws<ErrnoException>(() => Posix.Lstat("/nonexistent/strata"));
        Assert.Equal(Errno.ENOENT, ex.Errno);
        Assert.Equal(ErrorKind.NotFound, ex.Kind);
        Assert.Equal("stat /nonexistent/strata: No such file or directory", ex.Message);
    }

    [Fact]
    public void OpenAt2InRootCannotEscape()
    {
        Assert.True(Posix.HasOpenAt2, "openat2 is required (Linux 5.6+)");
        using var temp = new TempRoot();
        string root = temp.Dir("root");
        File.CreateSymbolicLink(Path.Combine(root, "up"), "../../../../..");
        File.CreateSymbolicLink(Path.Combine(root, "etc"), "/inner");
        Directory.CreateDirectory(Path.Combine(root, "inner"));
        File.WriteAllText(Path.Combine(root, "inner", "passwd"), "inside");
        using var rootFd = Posix.Open(root, Posix.O_PATH | Posix.O_DIRECTORY);
        Assert.Equal(0, Posix.TryOpenAt2(rootFd, "up", Posix.O_PATH | Posix.O_DIRECTORY, Posix.RESOLVE_IN_ROOT, out var up));
        using (up) Assert.Equal(Posix.Lstat(root).Inode, Posix.Fstat(up!).Inode);
        // an absolute symlink resolves against the root, never the host's /etc
        Assert.Equal(0, Posix.TryOpenAt2(rootFd, "etc/passwd", Posix.O_RDONLY, Posix.RESOLVE_IN_ROOT, out var passwd));
        using (passwd) Assert.Equal(Posix.Lstat(Path.Combine(root, "inner", "passwd")).Inode, Posix.Fstat(passwd!).Inode);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4096)]
    [InlineData(4097)]
    [InlineData(100_000)]
    public void ReadFileReturnsTheWholeContent(int length)
    {
        using var temp = new TempRoot();
        var data = new byte[length];
        new Random(length).NextBytes(data);
        File.WriteAllBytes(temp.Combine("f"), data);
        Assert.Equal(data, Posix.ReadFile(temp.Combine("f")));
        var missing = Assert.Throws<ErrnoException>(() => Posix.ReadFile(temp.Combine("missing")));
        Assert.Equal(ErrorKind.NotFound, missing.Kind);
    }

    [Fact]
    public void ReadDirIsSortedAndRepeatable()
    {
        using var temp = new TempRoot();
        foreach (var n in new[] { "b", "a", "c" }) File.WriteAllText(temp.Combine(n), "");
        using var fd = Posix.Open(temp.Path, Posix.O_RDONLY | Posix.O_DIRECTORY);
        Assert.Equal(["a", "b", "c"], Posix.ReadDir(fd, temp.Path).Select(e => e.Name));
        Assert.Equal(["a", "b", "c"], Posix.ReadDir(fd, temp.Path).Select(e => e.Name));
    }

    [Fact]
    public void XattrsRoundTripIncludingBinaryValues()
    {
        using var temp = new TempRoot();
        string f = temp.Combine("f");
        File.WriteAllText(f, "");
        byte[] binary = [0, 1, 2, 255, 0];
        Posix.LsetXattr(f, "trusted.bin", binary);
        Posix.LsetXattr(f, "user.text", "v"u8);
        var all = Posix.LgetXattrs(f);
        Assert.Equal(["trusted.bin", "user.text"], all.Select(kv => kv.Key));
        Assert.Equal(binary, all[0].Value);
    }
}
