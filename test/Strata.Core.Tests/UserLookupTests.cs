using Strata.Core.Containers;
using Strata.Testing;

namespace Strata.Core.Tests;

/// <summary>
/// An image's User resolved against the image's own /etc/passwd and /etc/group: names and numbers, a group given
/// apart from the user, users and groups that are not there, malformed lines, and files that are not regular files
/// or that a symlink points out of the image.
/// </summary>
public sealed class UserLookupTests : IDisposable
{
    const string Passwd = """
        root:x:0:0:root:/root:/bin/sh
        broken line without fields
        short:x:7
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
        app:x:1000:1001::/home/app:/bin/sh
        nogid:x:1002:none::/:/bin/sh
        badid:x:abc:10::/:/bin/sh
        """;

    const string Group = """
        root:x:0:
        junk
        staff:x:50:app
        weird:x:notanumber:
        """;

    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    static (uint, uint) Resolve(string user, string? passwd = Passwd, string? group = Group) =>
        UserLookup.Resolve(user, path => (path switch
        {
            "etc/passwd" => passwd,
            "etc/group" => group,
            _ => throw new InvalidOperationException(path),
        })?.Split('\n') ?? []);

    [Theory]
    [InlineData("", 0u, 0u)]
    [InlineData("root", 0u, 0u)]
    [InlineData("app", 1000u, 1001u)]
    [InlineData("1000", 1000u, 1001u)]      // a number takes its primary group from its line
    [InlineData("app:staff", 1000u, 50u)]
    [InlineData("app:77", 1000u, 77u)]      // a group by number is taken as is
    [InlineData("1000:0", 1000u, 0u)]
    [InlineData("nogid", 1002u, 0u)]        // a primary group that is not a number: 0
    public void NamesAndNumbersResolveInTheImagesFiles(string user, uint uid, uint gid) =>
        Assert.Equal((uid, gid), Resolve(user));

    [Fact]
    public void AUserThatIsNotThereIsNotFound()
    {
        var ex = Assert.Throws<StrataException>(() => Resolve("nobody"));
        Assert.Equal(ErrorKind.NotFound, ex.Kind);
        Assert.Equal("user 'nobody' is not in the image's /etc/passwd", ex.Message);
        // a number need not be there (then its group is 0, or the one given)
        Assert.Equal((4242u, 0u), Resolve("4242"));
        Assert.Equal((4242u, 50u), Resolve("4242:staff"));
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => Resolve("root", passwd: null)).Kind);
    }

    [Fact]
    public void AGroupThatIsNotThereIsNotFound()
    {
        var ex = Assert.Throws<StrataException>(() => Resolve("app:wheel"));
        Assert.Equal(ErrorKind.NotFound, ex.Kind);
        Assert.Equal("group 'wheel' is not in the image's /etc/group", ex.Message);
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => Resolve("app:weird")).Kind); // its gid is not a number
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => Resolve("app:staff", group: null)).Kind);
    }

    [Fact]
    public void MalformedLinesAreSkippedAndAUsersUidMustBeANumber()
    {
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => Resolve("short")).Kind); // too few fields: not a user
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => Resolve("broken line without fields")).Kind);
        var ex = Assert.Throws<StrataException>(() => Resolve("badid"));
        Assert.Equal(ErrorKind.Corrupt, ex.Kind);
        Assert.Contains("'abc'", ex.Message);
        Assert.Equal((1u, 1u), Resolve("daemon", passwd: "\n\n::::\ndaemon:x:1:1::/:/bin/sh\r")); // empty lines, a CR at the end
    }

    [Fact]
    public void TheFilesAreReadInsideTheRootfs()
    {
        string rootfs = _temp.Dir("rootfs");
        Directory.CreateDirectory(Path.Combine(rootfs, "etc"));
        File.WriteAllText(Path.Combine(rootfs, "etc/passwd"), Passwd);
        File.WriteAllText(Path.Combine(rootfs, "etc/group"), Group);
        Assert.Equal((1000u, 50u), UserLookup.Resolve(rootfs, "app:staff"));
        Assert.Equal((0u, 0u), UserLookup.Resolve(rootfs, ""));

        // an absolute symlink resolves inside the image, not on the host (whose /etc/passwd has root)
        File.Delete(Path.Combine(rootfs, "etc/passwd"));
        File.CreateSymbolicLink(Path.Combine(rootfs, "etc/passwd"), "/etc/passwd.real");
        File.WriteAllText(Path.Combine(rootfs, "etc/passwd.real"), "app:x:1000:1001::/:/bin/sh\n");
        Assert.Equal((1000u, 1001u), UserLookup.Resolve(rootfs, "app"));
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => UserLookup.Resolve(rootfs, "root")).Kind);
    }

    [Fact]
    public void APasswdThatIsNotARegularFileIsCorrupt()
    {
        string rootfs = _temp.Dir("rootfs");
        Directory.CreateDirectory(Path.Combine(rootfs, "etc"));
        Shell.Run("mkfifo", Path.Combine(rootfs, "etc/passwd")).Check("mkfifo");
        var ex = Assert.Throws<StrataException>(() => UserLookup.Resolve(rootfs, "app"));
        Assert.Equal(ErrorKind.Corrupt, ex.Kind);
        Assert.Contains("not a regular file", ex.Message);
    }
}
