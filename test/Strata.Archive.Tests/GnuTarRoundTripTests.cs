using Strata.Archive.Tar;
using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Archive.Tests;

/// <summary>Interoperability with real GNU tar, both ways, on a tree with everything a layer can hold.</summary>
public class GnuTarRoundTripTests
{
    static readonly string[] GnuXattrArgs = ["--xattrs", "--xattrs-include=*", "--numeric-owner"];

    static readonly Lazy<string?> s_noGnuTar = new(() =>
        !Shell.Has("tar") ? "tar is not installed"
        : !Shell.Run("tar", "--version").Stdout.StartsWith("tar (GNU tar)", StringComparison.Ordinal) ? "tar is not GNU tar"
        : null);

    /// <summary>Reports the test as skipped, with the reason, when this machine has no GNU tar to test against.</summary>
    static void SkipWithoutGnuTar() => Skip.If(s_noGnuTar.Value is not null, s_noGnuTar.Value);

    /// <summary>Builds a tree with every kind of node and attribute GNU tar and layers carry.</summary>
    internal static void BuildRichTree(string root)
    {
        Fs.Write(root + "/empty", "");
        Fs.Write(root + "/small.txt", "hello\n");
        Fs.Write(root + "/setuid", "#!/bin/sh\nexit 0\n", 0x9ED /* 04755 */);
        Fs.Write(root + "/owned-1-2", "one two\n", 0x1A0 /* 0640 */, 1, 2);
        Fs.Write(root + "/nobody", "nobody\n", 0x180 /* 0600 */, 65534, 65534);
        var random = new byte[300_000];
        new Random(42).NextBytes(random);
        Fs.Write(root + "/random.bin", random);
        Fs.Write(root + "/\u00fcn\u00ef-\u00e7\u00f8d\u00e9 with spaces.txt", "unicode\n");
        Fs.SetMtime(root + "/small.txt", 1_000_000_000, 123_456_789);
        Fs.Write(root + "/before-1970", "old\n");
        Fs.SetMtime(root + "/before-1970", -100_000_000);

        // sparse: holes before, between and after the data
        string sparse = root + "/sparse";
        using (var f = new FileStream(sparse, FileMode.CreateNew))
        {
            f.Position = 1 << 20;
            f.Write(random, 0, 100_000);
            f.Position = 3 << 20;
            f.Write(random, 0, 5000);
            f.SetLength(6 << 20);
        }

        Fs.Mkdir(root + "/sticky");
        Fs.Write(root + "/sticky/inside", "s\n");
        Fs.Chmod(root + "/sticky", 0x3C5 /* 01705 */);
        Fs.Mkdir(root + "/setgid", 0xBED /* 02755 */, 0, 2);
        Fs.Write(root + "/setgid/child", "g\n", Fs.File0644, 0, 2);
        Fs.Mkdir(root + "/owned-dir", 0x1E8 /* 0750 */, 65534, 65534);

        Fs.Mkdir(root + "/links");
        Fs.Symlink(root + "/links/abs", "/etc/passwd");
        Fs.Symlink(root + "/links/rel", "../small.txt");
        Fs.Symlink(root + "/links/dangling", "nowhere/at/all");
        Fs.Symlink(root + "/links/dir", "../sticky");
        Fs.Symlink(root + "/links/owned", "../nobody");
        Fs.Chown(root + "/links/owned", 1, 2);

        Fs.Mkdir(root + "/hard");
        Fs.Write(root + "/hard/a", "linked three times\n", 0x1ED, 1, 2);
        Fs.HardLink(root + "/hard/a", root + "/hard/b");
        Fs.HardLink(root + "/hard/a", root + "/links/c");
        Fs.Write(root + "/hard/x", "second group\n");
        Fs.HardLink(root + "/hard/x", root + "/hard/y");

        Fs.Mkdir(root + "/dev");
        Fs.Mknod(root + "/dev/null", FileKind.CharDevice, 0x1B6 /* 0666 */, 1, 3);
        Fs.Mknod(root + "/dev/loop200", FileKind.BlockDevice, 0x1B0 /* 0660 */, 7, 200);
        Fs.Mknod(root + "/dev/big", FileKind.CharDevice, 0x180, 4095, 0xFFFFF);
        Fs.Mknod(root + "/dev/fifo", FileKind.Fifo, 0x1A4);
        Fs.Xattr(root + "/dev/null", "trusted.dev", "d");

        string deep = root + "/" + string.Join('/', Enumerable.Repeat("a-rather-long-directory-name", 8));
        Fs.Write(deep + "/" + new string('f', 200), "deep\n");

        Fs.Mkdir(root + "/xattrs");
        string xf = Fs.Write(root + "/xattrs/file", "x\n", 0x1ED, 1, 2);
        Fs.Xattr(xf, "user.binary", [0, 0xFF, (byte)'\n', (byte)'=', 0x80, 0]);
        Fs.Xattr(xf, "user.text", "hello world");
        Fs.Xattr(xf, "user.a=b%3D%c", "name with '=' and '%'");
        Fs.Xattr(xf, "trusted.t", "trusted value");
        Fs.Xattr(xf, "security.strata", "s");
        Fs.Xattr(xf, "security.capability", Fs.CapNetBindService); // last: chown drops it
        Fs.Mkdir(root + "/xattrs/dir");
        Fs.Xattr(root + "/xattrs/dir", "user.d", "dir value");
        Fs.Xattr(root + "/xattrs/dir", "trusted.strata", "y");
        Fs.Symlink(root + "/xattrs/link", "file");
        Fs.Xattr(root + "/xattrs/link", "trusted.sym", "on the link itself");
        Fs.Chmod(root + "/xattrs/dir", 0x1C0 /* 0700 */);
    }

    [SkippableFact]
    public void GnuTarArchive_AppliesToTheSameTree()
    {
        SkipWithoutGnuTar();
        using var tmp = new TempRoot();
        string src = tmp.Dir("src"), dst = tmp.Dir("dst"), tar = tmp.Combine("x.tar");
        BuildRichTree(src);
        Shell.Run("tar", [.. GnuXattrArgs, "-C", src, "-cf", tar, "."]).Check("tar -c");

        long size;
        using (var f = File.OpenRead(tar)) size = LayerApplier.Apply(f, dst);

        TreeSnapshot.AssertSame(src, dst, MtimePrecision.Seconds);
        long expected = TreeSnapshot.Capture(src).Where(n => n.Kind == FileKind.Regular).GroupBy(n => n.LinkGroup.Length > 0 ? n.LinkGroup : n.Path).Sum(g => g.First().Size);
        Assert.Equal(expected, size);
        // GNU tar's PAX headers carry nanoseconds; they must land too
        Assert.Equal(123_456_789u, Posix.Lstat(dst + "/small.txt").Mtime.Nanoseconds);
    }

    [SkippableFact]
    public void OurDiff_ExtractedByGnuTar_GivesTheSameTree()
    {
        SkipWithoutGnuTar();
        using var tmp = new TempRoot();
        string src = tmp.Dir("src"), dst = tmp.Dir("dst"), tar = tmp.Combine("x.tar");
        BuildRichTree(src);
        var changes = TreeChanges.Compute(src, null);
        Assert.All(changes, c => Assert.Equal(ChangeKind.Add, c.Kind));
        DiffResult result;
        using (var f = File.Create(tar)) result = DiffWriter.Write(f, src, changes);
        Assert.Empty(result.SkippedSockets);
        Assert.Equal(TreeChanges.Size(src, changes), result.Size);

        var x = Shell.Run("tar", [.. GnuXattrArgs, "-xpf", tar, "-C", dst]);
        // GNU tar extracts a pre-1970 mtime faithfully but always remarks on it
        var complaints = x.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.Contains("before-1970: implausibly old time stamp")).ToList();
        Assert.True(x.ExitCode == 0 && complaints.Count == 0, $"GNU tar complained ({x.ExitCode}): {x.Stderr}");
        TreeSnapshot.AssertSame(src, dst, MtimePrecision.Seconds);
    }

    [Fact]
    public void OurDiff_AppliedByUs_GivesTheSameTree()
    {
        using var tmp = new TempRoot();
        string src = tmp.Dir("src"), dst = tmp.Dir("dst");
        BuildRichTree(src);
        var ms = new MemoryStream();
        var changes = TreeChanges.Compute(src, null);
        var result = DiffWriter.Write(ms, src, changes);
        Assert.Equal(result.Size, Apply.Tar(ms.ToArray(), dst));
        TreeSnapshot.AssertSame(src, dst, MtimePrecision.Seconds);
    }

    [Fact]
    public void Sockets_AreSkippedAndReported()
    {
        using var tmp = new TempRoot();
        string src = tmp.Dir("src");
        Fs.Write(src + "/f", "f");
        // kept open: .NET removes the socket file when a bound socket is disposed
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        socket.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(src + "/sock"));
        Assert.Equal(FileKind.Socket, Posix.Lstat(src + "/sock").Kind);
        var ms = new MemoryStream();
        var result = DiffWriter.Write(ms, src, TreeChanges.Compute(src, null));
        Assert.Equal(["/sock"], result.SkippedSockets);
        Assert.Equal(["f"], Apply.ReadAll(ms.ToArray()).Select(e => e.Name));
    }

    [SkippableFact]
    public void HolesStayHoles()
    {
        SkipWithoutGnuTar();
        using var tmp = new TempRoot();
        string src = tmp.Dir("src"), dst = tmp.Dir("dst"), tar = tmp.Combine("x.tar");
        var data = new byte[1 << 20];
        new Random(1).NextBytes(data);
        using (var f = new FileStream(src + "/holey", FileMode.CreateNew))
        {
            f.Position = 32 << 20;
            f.Write(data);
            f.SetLength(64 << 20);
        }
        // no -S: GNU tar stores the zeros as data, so the applier has to find the holes itself
        Shell.Run("tar", "-C", src, "-cf", tar, ".").Check("tar -c");
        Assert.True(new FileInfo(tar).Length > 64 << 20);

        long size;
        using (var f = File.OpenRead(tar)) size = LayerApplier.Apply(f, dst);

        Assert.Equal(64L << 20, size);
        var st = Posix.Lstat(dst + "/holey");
        Assert.Equal(64L << 20, st.Size);
        long allocated = st.Blocks * 512;
        Assert.True(allocated < 4 << 20, $"64 MiB file with 1 MiB of data has {allocated} bytes allocated");
        Assert.True(allocated >= 1 << 20, $"the 1 MiB of data must be there: {allocated} bytes allocated");
        TreeSnapshot.AssertSame(src, dst, MtimePrecision.Seconds);
    }

    [SkippableFact]
    public void GnuFormatArchive_LongNamesLongLinksAndBase256Ids_AreRead()
    {
        SkipWithoutGnuTar();
        // --format=gnu uses 'L'/'K' long-name members and base-256 numbers instead of PAX
        using var tmp = new TempRoot();
        string src = tmp.Dir("src"), dst = tmp.Dir("dst"), tar = tmp.Combine("x.tar");
        string longDir = string.Join('/', Enumerable.Repeat("directory-name-of-some-length", 6));
        string longTarget = "/" + string.Join('/', Enumerable.Repeat("link-target", 15));
        Fs.Write(src + "/" + longDir + "/" + new string('n', 150), "long\n", Fs.File0644, 3_000_000, 4_000_000_000);
        Fs.Symlink(src + "/link", longTarget);
        Shell.Run("tar", "--format=gnu", "--numeric-owner", "-C", src, "-cf", tar, ".").Check("tar -c");

        var bytes = File.ReadAllBytes(tar);
        var entries = Apply.ReadAll(bytes);
        var file = entries.Single(e => e.Name.EndsWith(new string('n', 150), StringComparison.Ordinal));
        Assert.Equal("./" + longDir + "/" + new string('n', 150), file.Name);
        Assert.Equal((3_000_000u, 4_000_000_000u), (file.Uid, file.Gid));
        Assert.Equal(longTarget, entries.Single(e => e.Name == "./link").LinkName);
        Assert.Contains(bytes.Chunk(512), b => b[TarFormat.TypeOff] == 'L');
        Assert.Contains(bytes.Chunk(512), b => b[TarFormat.TypeOff] == 'K');

        LayerApplier.Apply(new MemoryStream(bytes), dst);
        TreeSnapshot.AssertSame(src, dst, MtimePrecision.Seconds);
    }

    [SkippableFact]
    public void OurLongNamesAndLinks_AreReadByGnuTar()
    {
        SkipWithoutGnuTar();
        using var tmp = new TempRoot();
        string dst = tmp.Dir("dst");
        string name = string.Join('/', Enumerable.Repeat("component", 30)) + "/file";
        string odd = new string('a', 99) + "/" + new string('b', 120) + "/c";
        string target = string.Join('/', Enumerable.Repeat("..", 60)) + "/target";
        var tar = new TarBuilder().File(name, "content", uid: 3_000_000, gid: 7).File(odd, "odd").Symlink("l", target).Bytes();
        File.WriteAllBytes(tmp.Combine("x.tar"), tar);
        Shell.Run("tar", "--numeric-owner", "-xpf", tmp.Combine("x.tar"), "-C", dst).Check("tar -x");
        Assert.Equal("content", File.ReadAllText(dst + "/" + name));
        Assert.Equal(3_000_000u, Posix.Lstat(dst + "/" + name).Uid);
        Assert.Equal("odd", File.ReadAllText(dst + "/" + odd));
        Assert.Equal(target, Posix.ReadLink(dst + "/l"));
    }
}
