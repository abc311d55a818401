using Strata.Testing;

namespace Strata.Native.Tests;

public sealed class PathEncodingTests
{
    [Fact]
    public void EveryByteSequenceRoundTrips()
    {
        var rng = new Random(42);
        for (int i = 0; i < 2000; i++)
        {
            var bytes = new byte[rng.Next(1, 40)];
            rng.NextBytes(bytes);
            for (int k = 0; k < bytes.Length; k++) if (bytes[k] is 0 or (byte)'/') bytes[k] = (byte)'x';
            Assert.Equal(bytes, PathEncoding.Encode(PathEncoding.Decode(bytes)));
        }
        for (int b = 1; b < 256; b++) Assert.Equal([(byte)b], PathEncoding.Encode(PathEncoding.Decode([(byte)b])));
    }

    [Fact]
    public void ValidUtf8IsPlainText()
    {
        Assert.Equal("café 🙂", PathEncoding.Decode("café 🙂"u8));
        Assert.Equal("café 🙂"u8.ToArray(), PathEncoding.Encode("café 🙂"));
        Assert.Equal("caf\uDCE9", PathEncoding.Decode([(byte)'c', (byte)'a', (byte)'f', 0xE9]));
    }

    [Fact]
    public void NamesThatAreNotUtf8ReachTheFileSystemByteForByte()
    {
        using var temp = new TempRoot();
        string latin1 = "caf\uDCE9", other = "caf\uDCE8";
        File.WriteAllText(temp.Combine("marker"), "");
        using (Posix.Open(temp.Combine(latin1), Posix.O_WRONLY | Posix.O_CREAT, 0x1A4)) { }
        using (Posix.Open(temp.Combine(other), Posix.O_WRONLY | Posix.O_CREAT, 0x1A4)) { }
        Assert.Equal([other, latin1, "marker"], Posix.ReadDir(temp.Path).Select(e => e.Name).Order(StringComparer.Ordinal));
        string ls = Shell.Run("ls", "-b", temp.Path).Check("ls").Stdout;
        Assert.Equal("caf\\350\ncaf\\351\nmarker\n", ls);
        Posix.SymlinkAt(latin1, FileDescriptor.Cwd, temp.Combine("link"));
        Assert.Equal(latin1, Posix.ReadLink(temp.Combine("link")));
    }
}
