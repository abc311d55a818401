namespace Strata.Native.Tests;

/// <summary>A StrataException's message is one line that can be shown as it is, whatever input from outside (a name
/// in an archive, a digest in a manifest) put into it.</summary>
public sealed class StrataExceptionTests
{
    [Theory]
    [InlineData("invalid digest 'sha256:ab\ncd'", "invalid digest 'sha256:ab\\ncd'")]
    [InlineData("a\r\nb\tc", "a\\r\\nb\\tc")]
    [InlineData("nel\u0085ls\u2028ps\u2029esc\u001b", "nel\\u0085ls\\u2028ps\\u2029esc\\u001b")]
    [InlineData("plain text, café 🙂", "plain text, café 🙂")]
    public void AMessageIsOneLine(string message, string shown)
    {
        Assert.Equal(shown, StrataException.Corrupt(message).Message);
        Assert.Equal(shown, new StrataException(ErrorKind.Io, message).Message);
    }

    [Fact]
    public void AnErrnoExceptionNamingAPathOverTwoLinesIsOneLine()
    {
        var ex = new ErrnoException(Errno.ENOENT, "open", "/tmp/a\nb");
        Assert.DoesNotContain('\n', ex.Message);
        Assert.Contains("/tmp/a\\nb", ex.Message);
        Assert.Equal("/tmp/a\nb", ex.Path); // the path itself stays as it is
    }
}
