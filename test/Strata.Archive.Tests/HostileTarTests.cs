using Strata.Archive.Tar;
using Strata.Native;
using Strata.Testing;

namespace Strata.Archive.Tests;

/// <summary>
/// Hostile and broken archives. Each must fail with a one-line StrataException of the right kind, and
/// nothing outside the target may be created, changed or followed: a sentinel directory "outside" sits
/// next to the target, and host paths named by the archives are checked not to appear.
/// </summary>
public class HostileTarTests
{
    /// <summary>One scene: root/{target,outside}; "outside" holds a secret file and a subdirectory.</summary>
    sealed class Scene : IDisposable
    {
        readonly TempRoot _tmp = new();
        readonly List<NodeInfo> _outsideBefore;
        readonly List<string> _hostPaths = [];

        public Scene()
        {
            Target = _tmp.Dir("target");
            Outside = _tmp.Dir("outside");
            Fs.Write(Outside + "/secret", "secret\n", 0x180);
            Fs.Mkdir(Outside + "/sub");
            Fs.SetMtime(Outside + "/sub", Past);
            Fs.SetMtime(Outside, Past);
            _outsideBefore = TreeSnapshot.Capture(Outside, includeRoot: true);
            Tag = Path.GetFileName(_tmp.Path);
        }

        const long Past = 1_300_000_000;

        public string Target { get; }
        public string Outside { get; }
        /// <summary>Unique per scene, to name host paths an escape would create.</summary>
        public string Tag { get; }

        /// <summary>A host path an escaping archive would write; asserted absent afterwards.</summary>
        public string HostPath(string path)
        {
            _hostPaths.Add(path);
            return path;
        }

        public StrataException Reject(byte[] tar, ErrorKind kind, string fragment, WhiteoutFormat format = WhiteoutFormat.Oci)
        {
            var ex = Assert.ThrowsAny<StrataException>(() => Apply.Tar(tar, Target, format));
            Assert.True(kind == ex.Kind, $"expected {kind}, got {ex.Kind}: {ex.Message}");
            Assert.Contains(fragment, ex.Message);
            Assert.DoesNotContain('\n', ex.Message);
            AssertNothingEscaped();
            return ex;
        }

        public void AssertNothingEscaped()
        {
            TreeSnapshot.AssertSame(_outsideBefore, TreeSnapshot.Capture(Outside, includeRoot: true), MtimePrecision.Nanoseconds);
            Assert.Equal(["outside", "target"], Directory.GetFileSystemEntries(_tmp.Path).Select(p => Path.GetFileName(p)).Order());
            foreach (var p in _hostPaths)
                Assert.False(Posix.TryLstat(p, out _), $"escape: {p} exists");
        }

        public void Dispose()
        {
            foreach (var p in _hostPaths) Shell.Run("rm", "-rf", p);
            _tmp.Dispose();
        }
    }

    // --- names that leave the root -------------------------------------------------------------

    [Theory]
    [InlineData("../escape")]
    [InlineData("a/../../escape")]
    [InlineData("./../outside/secret")]
    [InlineData("a/b/../../../outside/new")]
    public void DotDotNames_AreRefused(string name)
    {
        using var s = new Scene();
        s.Reject(new TarBuilder().File("ok", "fine").File(name, "pwned").Bytes(), ErrorKind.InvalidArgument, "climbs out of the layer with '..'");
    }

    [Fact]
    public void DotDotDirectoryName_IsRefused()
    {
        using var s = new Scene();
        s.Reject(new TarBuilder().Dir("../outside/sub/").Bytes(), ErrorKind.InvalidArgument, "'..'");
    }

    [Fact]
    public void AbsoluteNames_AreRefused()
    {
        using var s = new Scene();
        string host = s.HostPath($"/tmp/{s.Tag}-escape");
        s.Reject(new TarBuilder().File(host, "pwned").Bytes(), ErrorKind.InvalidArgument, "is an absolute path");
        s.Reject(new TarBuilder().File(s.Outside + "/secret", "pwned").Bytes(), ErrorKind.InvalidArgument, "is an absolute path");
    }

    // --- symlinks written through ----------------------------------------------------------------

    [Theory]
    [InlineData("absolute")]
    [InlineData("../outside")]
    [InlineData("../../outside")]
    [InlineData("sub/../../outside")]
    public void SymlinkThenWriteThrough_IsRefused(string how)
    {
        using var s = new Scene();
        string target = how == "absolute" ? s.Outside : how;
        s.Reject(new TarBuilder().Symlink("evil", target).File("evil/secret", "pwned").Bytes(),
            ErrorKind.InvalidArgument, "writes through symlink 'evil' created earlier in the same tar");
        s.Reject(new TarBuilder().Symlink("evil", target).Dir("evil/sub/").Bytes(),
            ErrorKind.InvalidArgument, "writes through symlink 'evil'");
        s.Reject(new TarBuilder().Dir("d/").Symlink("d/evil", target).File("d/evil/new", "pwned").Bytes(),
            ErrorKind.InvalidArgument, "writes through symlink 'd/evil'");
        s.Reject(new TarBuilder().Symlink("evil", target).Whiteout("evil/.wh.secret").Bytes(),
            ErrorKind.InvalidArgument, "writes through symlink 'evil'");
        s.Reject(new TarBuilder().Symlink("evil", target).Whiteout("evil/.wh..wh..opq").Bytes(),
            ErrorKind.InvalidArgument, "writes through symlink 'evil'");
    }

    [Fact]
    public void SymlinkToTheHostTmp_ThenWriteThrough_CreatesNothingOnTheHost()
    {
        using var s = new Scene();
        string host = s.HostPath($"/tmp/{s.Tag}-escape");
        s.Reject(new TarBuilder().Symlink("tmp", "/tmp").File($"tmp/{s.Tag}-escape", "pwned").Bytes(),
            ErrorKind.InvalidArgument, "writes through symlink 'tmp'");
        Assert.False(File.Exists(host));
    }

    [Fact]
    public void SymlinkLoopInTheSameTar_IsRefused()
    {
        using var s = new Scene();
        s.Reject(new TarBuilder().Symlink("a", "b").Symlink("b", "a").File("a/x", "x").Bytes(),
            ErrorKind.InvalidArgument, "writes through symlink 'a'");
    }

    [Fact]
    public void SymlinkLoopFromALowerLayer_IsRefused()
    {
        using var s = new Scene();
        Fs.Symlink(s.Target + "/a", "b");
        Fs.Symlink(s.Target + "/b", "a");
        s.Reject(new TarBuilder().File("a/x", "x").Bytes(), ErrorKind.InvalidArgument, "lies under 'a', which is a symlink loop");
    }

    // --- hardlinks --------------------------------------------------------------------------------

    [Theory]
    [InlineData("../../etc/passwd", "climbs out of the layer with '..'")]
    [InlineData("../outside/secret", "climbs out of the layer with '..'")]
    [InlineData("a/../../outside/secret", "climbs out of the layer with '..'")]
    [InlineData("/etc/passwd", "is an absolute path")]
    public void HardlinkOutside_IsRefused(string linkName, string fragment)
    {
        using var s = new Scene();
        uint links = Posix.Lstat("/etc/passwd").Nlink;
        var ex = s.Reject(new TarBuilder().HardLink("h", linkName).Bytes(), ErrorKind.InvalidArgument, fragment);
        Assert.Contains("hardlink target of h", ex.Message);
        Assert.Equal(links, Posix.Lstat("/etc/passwd").Nlink);
    }

    [Fact]
    public void HardlinkThroughASymlinkOfTheSameTar_IsRefused()
    {
        using var s = new Scene();
        s.Reject(new TarBuilder().Symlink("s", s.Outside).HardLink("h", "s/secret").Bytes(),
            ErrorKind.InvalidArgument, "writes through symlink 's'");
        s.Reject(new TarBuilder().Symlink("s", "../outside").HardLink("h", "s/secret").Bytes(),
            ErrorKind.InvalidArgument, "writes through symlink 's'");
        s.Reject(new TarBuilder().Symlink("etc", "/etc").HardLink("h", "etc/passwd").Bytes(),
            ErrorKind.InvalidArgument, "writes through symlink 'etc'");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void HardlinkThroughALowerSymlink_ResolvesInsideTheRoot(bool absolute)
    {
        using var s = new Scene();
        Fs.Symlink(s.Target + "/s", absolute ? s.Outside : "../outside");
        s.Reject(new TarBuilder().HardLink("h", "s/secret").Bytes(), ErrorKind.InvalidArgument, "which does not exist in this layer or below");
    }

    [Fact]
    public void HardlinkToALowerSymlinkItself_LinksTheSymlinkNotItsTarget()
    {
        using var s = new Scene();
        Fs.Symlink(s.Target + "/s", s.Outside + "/secret");
        Apply.Tar(new TarBuilder().HardLink("h", "s").Bytes(), s.Target);
        Assert.True(Posix.Lstat(s.Target + "/h").IsSymlink);
        s.AssertNothingEscaped();
    }

    [Fact]
    public void HardlinkToADirectoryOrNothing_IsRefused()
    {
        using var s = new Scene();
        s.Reject(new TarBuilder().Dir("d/").HardLink("h", "d").Bytes(), ErrorKind.InvalidArgument, "is a hardlink to directory 'd'");
        s.Reject(new TarBuilder().HardLink("h", "missing").Bytes(), ErrorKind.InvalidArgument, "does not exist in this layer or below");
        s.Reject(new TarBuilder().HardLink("h", "h").Bytes(), ErrorKind.InvalidArgument, "which is not a file");
        s.Reject(new TarBuilder().HardLink("h", "./").Bytes(), ErrorKind.InvalidArgument, "which is not a file");
    }

    // --- lower-layer symlinks in member paths stay inside the root ----------------------------------

    [Fact]
    public void MemberUnderARelativeLowerSymlink_LandsInsideTheTarget()
    {
        using var s = new Scene();
        Fs.Mkdir(s.Target + "/usr");
        Fs.Mkdir(s.Target + "/usr/lib");
        Fs.Mkdir(s.Target + "/outside");
        Fs.Symlink(s.Target + "/lib", "usr/lib");
        Fs.Symlink(s.Target + "/up", "../../outside"); // from the root, ".." stays at the root
        Apply.Tar(new TarBuilder().File("lib/x", "x\n").File("up/secret", "contained\n").Bytes(), s.Target);
        Assert.Equal("x\n", File.ReadAllText(s.Target + "/usr/lib/x"));
        Assert.True(Posix.Lstat(s.Target + "/lib").IsSymlink);
        Assert.Equal("contained\n", File.ReadAllText(s.Target + "/outside/secret"));
        s.AssertNothingEscaped();
    }

    [Fact]
    public void MemberUnderAnAbsoluteLowerSymlink_ResolvesInTheTargetRoot()
    {
        using var s = new Scene();
        s.HostPath($"/run/{s.Tag}");
        Fs.Mkdir(s.Target + "/var");
        Fs.Mkdir(s.Target + "/run");
        Directory.CreateDirectory(s.Target + s.Outside);
        Fs.Symlink(s.Target + "/var/run", "/run");
        Fs.Symlink(s.Target + "/out", s.Outside);
        Apply.Tar(new TarBuilder().File($"var/run/{s.Tag}", "pid\n").File("out/secret", "shadow\n").Bytes(), s.Target);
        Assert.Equal("pid\n", File.ReadAllText($"{s.Target}/run/{s.Tag}"));
        Assert.Equal("shadow\n", File.ReadAllText(s.Target + s.Outside + "/secret"));
        s.AssertNothingEscaped();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WhiteoutsUnderALowerSymlinkToOutside_DeleteNothingOutside(bool absolute)
    {
        using var s = new Scene();
        Fs.Symlink(s.Target + "/l", absolute ? s.Outside : "../outside");
        Apply.Tar(new TarBuilder().Whiteout("l/.wh.secret").Whiteout("l/.wh.sub").Whiteout("l/.wh..wh..opq").Bytes(), s.Target);
        s.AssertNothingEscaped();
        // overlay format has to create the whiteout device, and "l" leads nowhere inside the root
        s.Reject(new TarBuilder().Whiteout("l/.wh.secret").Bytes(), ErrorKind.InvalidArgument, "lies under 'l', a symlink", WhiteoutFormat.Overlay);
        s.Reject(new TarBuilder().Whiteout("l/.wh..wh..opq").Bytes(), ErrorKind.InvalidArgument, "marks a non-directory opaque", WhiteoutFormat.Overlay);
    }

    [Fact]
    public void SymlinkMadeByHardlinkingALowerSymlink_ThenWriteThrough_StaysInside()
    {
        // the same-tar symlink check does not see this one; resolution in the root must still hold
        using var s = new Scene();
        Fs.Symlink(s.Target + "/s", s.Outside);
        s.Reject(new TarBuilder().HardLink("h", "s").File("h/secret", "pwned").Bytes(), ErrorKind.InvalidArgument, "'h'");
        s.Reject(new TarBuilder().HardLink("h2", "s").Dir("h2/sub/").File("h2/sub/new", "pwned").Bytes(), ErrorKind.InvalidArgument, "'h2'");
    }

    [Fact]
    public void LowerSymlinkReplacedAfterAMemberWentThroughIt_LaterMembersUseTheReplacement()
    {
        using var s = new Scene();
        Fs.Mkdir(s.Target + "/usr");
        Fs.Mkdir(s.Target + "/usr/lib");
        Fs.Symlink(s.Target + "/lib", "usr/lib");
        Apply.Tar(new TarBuilder().File("lib/x", "x").Dir("lib/").File("lib/y", "y").Bytes(), s.Target);
        Assert.Equal(["d lib", "f lib/y", "d usr", "d usr/lib", "f usr/lib/x"], Fs.Listing(s.Target));
        s.AssertNothingEscaped();
    }

    [Fact]
    public void MemberUnderADanglingRelativeLowerSymlink_IsRefused()
    {
        using var s = new Scene();
        Fs.Symlink(s.Target + "/up", "../outside"); // the target has no /outside; next to it there is one
        s.Reject(new TarBuilder().File("up/secret", "pwned").Bytes(), ErrorKind.InvalidArgument, "'up'");
    }

    [Fact]
    public void MemberUnderADanglingAbsoluteLowerSymlink_IsRefusedAndNeverReachesTheHost()
    {
        using var s = new Scene();
        s.HostPath($"/run/{s.Tag}");
        Fs.Mkdir(s.Target + "/var");
        Fs.Symlink(s.Target + "/var/run", "/run"); // the target has no /run: on the host it would exist
        s.Reject(new TarBuilder().File($"var/run/{s.Tag}", "pid\n").Bytes(), ErrorKind.InvalidArgument, "'var/run'");
        s.Reject(new TarBuilder().Whiteout("var/run/.wh.utmp").File($"var/run/{s.Tag}", "pid\n").Bytes(), ErrorKind.InvalidArgument, "'var/run'");
    }

    [Fact]
    public void ReplacingALowerSymlinkToOutside_NeverTouchesItsTarget()
    {
        using var s = new Scene();
        Fs.Symlink(s.Target + "/file", s.Outside + "/secret");
        Fs.Symlink(s.Target + "/dir", s.Outside + "/sub");
        Fs.Symlink(s.Target + "/gone", s.Outside + "/sub");
        Apply.Tar(new TarBuilder().File("file", "replaced\n", 0x1FF).Dir("dir/", 0x1C0).Whiteout(".wh.gone").Bytes(), s.Target);
        Assert.True(Posix.Lstat(s.Target + "/file").IsRegular);
        Assert.True(Posix.Lstat(s.Target + "/dir").IsDirectory);
        Assert.False(Posix.TryLstat(s.Target + "/gone", out _));
        s.AssertNothingEscaped();
    }

    // --- broken archives --------------------------------------------------------------------------

    static byte[] TwoFiles() => new TarBuilder().File("a", new byte[1000]).File("b", new byte[1000]).Bytes();

    [Fact]
    public void TruncatedMidHeader_IsCorrupt()
    {
        using var s = new Scene();
        var tar = TwoFiles();
        int second = 512 + 1024; // header a + 2 data blocks
        s.Reject(tar[..(second + 100)], ErrorKind.Corrupt, "archive is truncated");
        s.Reject(tar[..300], ErrorKind.Corrupt, "archive is truncated");
    }

    [Fact]
    public void TruncatedMidData_IsCorrupt()
    {
        using var s = new Scene();
        var tar = TwoFiles();
        s.Reject(tar[..(512 + 700)], ErrorKind.Corrupt, "archive is truncated");
        s.Reject(tar[..(512 + 1000)], ErrorKind.Corrupt, "archive is truncated"); // data complete, padding missing
    }

    [Fact]
    public void TruncatedInsideAnExtendedHeader_IsCorrupt()
    {
        using var s = new Scene();
        var tar = new TarBuilder().File(new string('n', 300), "x").Bytes(); // PAX header first
        s.Reject(tar[..(512 + 10)], ErrorKind.Corrupt, "archive is truncated");
        s.Reject(tar[..1024], ErrorKind.Corrupt, "archive is truncated"); // PAX header complete, member missing
    }

    [Fact]
    public void CorruptHeaderChecksum_IsCorrupt()
    {
        using var s = new Scene();
        var tar = TwoFiles();
        tar[1536 + 1] ^= 0x20; // a byte of the second header's name
        s.Reject(tar, ErrorKind.Corrupt, "header checksum mismatch (header at byte 1536)");
        var garbage = new byte[2048];
        new Random(3).NextBytes(garbage);
        s.Reject(garbage, ErrorKind.Corrupt, "header checksum");
    }

    [Fact]
    public void CompressedLayers_AreNamedAsSuch()
    {
        using var s = new Scene();
        var gz = new MemoryStream();
        using (var z = new System.IO.Compression.GZipStream(gz, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
            z.Write(TwoFiles());
        s.Reject(gz.ToArray(), ErrorKind.Unsupported, "the archive is gzip-compressed; decompress it first");
        var bigger = new MemoryStream();
        using (var z = new System.IO.Compression.GZipStream(bigger, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        {
            var random = new byte[100_000];
            new Random(5).NextBytes(random);
            z.Write(new TarBuilder().File("r", random).Bytes());
        }
        s.Reject(bigger.ToArray(), ErrorKind.Unsupported, "gzip-compressed");
        var zstd = new byte[1024];
        new byte[] { 0x28, 0xb5, 0x2f, 0xfd }.CopyTo(zstd, 0);
        s.Reject(zstd, ErrorKind.Unsupported, "the archive is zstd-compressed");
    }

    [Fact]
    public void DuplicateEntries_AreRefused()
    {
        using var s = new Scene();
        s.Reject(new TarBuilder().File("a", "1").File("a", "2").Bytes(), ErrorKind.InvalidArgument, "member 'a' appears twice in the tar");
        s.Reject(new TarBuilder().Dir("d/").File("d/f", "f").Dir("./d").Bytes(), ErrorKind.InvalidArgument, "member 'd' appears twice");
        s.Reject(new TarBuilder().File("x", "1").Symlink("./x", "y").Bytes(), ErrorKind.InvalidArgument, "appears twice");
        s.Reject(new TarBuilder().File("w", "1").Whiteout(".wh.w").Bytes(), ErrorKind.InvalidArgument, "whiteout names a path that appears twice");
        s.Reject(new TarBuilder().Whiteout("d/.wh..wh..opq").Whiteout("d/.wh..wh..opq").Bytes(), ErrorKind.InvalidArgument, "appears twice");
    }

    [Theory]
    [InlineData(".wh...", "'..'")]
    [InlineData("d/.wh...", "'..'")]
    [InlineData(".wh..", "'.'")]
    [InlineData(".wh.", "''")]
    [InlineData("d/.wh.", "''")]
    public void InvalidWhiteouts_AreRefused(string name, string names)
    {
        using var s = new Scene();
        Fs.Write(s.Target + "/d/keep", "k");
        s.Reject(new TarBuilder().Whiteout(name).Bytes(), ErrorKind.InvalidArgument, $"is not a valid whiteout (it names {names})");
        s.Reject(new TarBuilder().Whiteout(name).Bytes(), ErrorKind.InvalidArgument, "is not a valid whiteout", WhiteoutFormat.Overlay);
        Assert.Equal("k", File.ReadAllText(s.Target + "/d/keep"));
    }

    [Fact]
    public void HugeDeclaredSize_WithFewBytesPresent_IsTruncatedNotAllocated()
    {
        using var s = new Scene();
        var header = RawTar.Header("huge", size: 8L << 30); // 8 GiB: does not fit 11 octal digits, so base-256
        RawTar.WithBase256(header, TarFormat.SizeOff, 12, [0x02, 0, 0, 0, 0]);
        s.Reject(RawTar.Concat(header, RawTar.Data("only this")), ErrorKind.Corrupt, "archive is truncated");
        if (Posix.TryLstat(s.Target + "/huge", out var st)) Assert.True(st.Blocks * 512 < 1 << 20, $"{st.Blocks} blocks allocated");

        var viaPax = new TarBuilder().Entry(new TarEntry { Name = "pax-huge", Type = TarEntryType.Regular, Size = 9L << 30 }).BytesWithoutEnd();
        s.Reject(RawTar.Concat(viaPax, RawTar.Data("few bytes")), ErrorKind.Corrupt, "archive is truncated");
    }

    [Fact]
    public void SizeFieldsThatOverflow_AreCorrupt()
    {
        using var s = new Scene();
        var overflow = RawTar.WithBase256(RawTar.Header("f"), TarFormat.SizeOff, 12, Enumerable.Repeat((byte)0xFF, 11).ToArray());
        s.Reject(RawTar.Concat(overflow, RawTar.End), ErrorKind.Corrupt, "size field");

        var tooBig = RawTar.WithBase256(RawTar.Header("f"), TarFormat.SizeOff, 12, [0x10, 0, 0, 0, 0, 0, 0, 0]); // 2^60
        s.Reject(RawTar.Concat(tooBig, RawTar.End), ErrorKind.Corrupt, "is larger than any member can be");

        var negative = RawTar.Header("f");
        negative.AsSpan(TarFormat.SizeOff, 12).Fill(0xFF);
        TarFormat.WriteChecksum(negative);
        s.Reject(RawTar.Concat(negative, RawTar.End), ErrorKind.Corrupt, "size field");

        foreach (var (value, fragment) in new[] { ("99999999999999999999", "PAX size"), ("9223372036854775807", "larger than any member"), ("-1", "PAX size"), ("1e3", "PAX size") })
        {
            var rec = new List<byte>();
            TarFormat.AppendPaxRecord(rec, "size", System.Text.Encoding.ASCII.GetBytes(value));
            var data = new byte[512];
            rec.CopyTo(data);
            s.Reject(RawTar.Concat(RawTar.Header("PaxHeaders/f", (byte)'x', size: rec.Count), data, RawTar.Header("f"), RawTar.End), ErrorKind.Corrupt, fragment);
        }
    }

    [Fact]
    public void OtherBadHeaders_AreCorrupt()
    {
        using var s = new Scene();
        var badMode = RawTar.Header("f");
        "12x4567\0"u8.CopyTo(badMode.AsSpan(TarFormat.ModeOff));
        TarFormat.WriteChecksum(badMode);
        s.Reject(RawTar.Concat(badMode, RawTar.End), ErrorKind.Corrupt, "mode field is not a number");

        s.Reject(RawTar.Concat(RawTar.Header(""), RawTar.End), ErrorKind.Corrupt, "member with an empty name");

        var bigUid = RawTar.WithBase256(RawTar.Header("f"), TarFormat.UidOff, 8, [0x01, 0, 0, 0, 0]);
        s.Reject(RawTar.Concat(bigUid, RawTar.End), ErrorKind.Corrupt, "uid 4294967296 is out of range");
    }

    [Fact]
    public void SymlinkWithEmptyTarget_IsRefused()
    {
        using var s = new Scene();
        s.Reject(new TarBuilder().Symlink("l", "").Bytes(), ErrorKind.InvalidArgument, "is a symlink with an empty target");
    }

    [Fact]
    public void MemberUnderAFile_IsRefused()
    {
        using var s = new Scene();
        s.Reject(new TarBuilder().File("f", "f").File("f/x", "x").Bytes(), ErrorKind.InvalidArgument, "needs 'f' to be a directory, and it is not");
    }
}
