// Issue 21's first piece: command-line mistakes named as docker names them.
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>Mistakes on the command line: an unknown flag or command is named, with the closest valid one, and the
/// `--help` of the command concerned; a missing argument is named; a word starting with '-' is never taken as a name
/// (unless after `--`). Each is one line, exit code 2, and creates nothing.</summary>
public sealed class UsageTests : IDisposable
{
    readonly TempRoot _temp = new();

    [Theory]
    [InlineData("run -it img", "unknown flag: -it; did you mean -t? (see 'strata run --help')")]
    [InlineData("image rm --forse x", "unknown flag: --forse; did you mean --force? (see 'strata image rm --help')")]
    [InlineData("imgae ls", "unknown command 'imgae' for 'strata'; did you mean image? (see 'strata --help')")]
    [InlineData("pool device creat x", "unknown command 'creat' for 'strata pool device'; did you mean create? (see 'strata pool device --help')")]
    [InlineData("container create", "'strata container create' needs IMAGE (see 'strata container create --help')")]
    [InlineData("image ls --formt json", "unknown flag: --formt; did you mean --format? (see 'strata image ls --help')")]
    [InlineData("image", "'strata image' needs a command: import, ls, inspect, rm, tag, export (see 'strata image --help')")]
    [InlineData("layer create --parnt x y", "unknown flag: --parnt; did you mean --parent? (see 'strata layer create --help')")]
    public void AMistakeIsNamedWithWhatToDo(string line, string expected)
    {
        string root = _temp.Combine("store");
        var r = new Cli(root).Run(line.Split(' '));
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("strata: " + expected, r.Stderr.TrimEnd('\n'));
        Assert.Equal("", r.Stdout);
        Assert.False(Directory.Exists(root), "a command line that cannot run created the store");
    }

    [Fact]
    public void AfterTwoDashesAWordStartingWithADashIsAName()
    {
        var r = new Cli(_temp.Combine("store")).Run("layer", "rm", "--", "-x");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("invalid layer id '-x'", r.Stderr);
    }

    [Theory]
    [InlineData("ab", "ab", 0)]
    [InlineData("imgae", "image", 1)]
    [InlineData("creat", "create", 1)]
    [InlineData("--formt", "--format", 1)]
    [InlineData("pool", "image", 5)]
    public void DistanceCountsEditsAndSwaps(string a, string b, int expected) => Assert.Equal(expected, Strata.Cli.Usage.Distance(a, b));

    public void Dispose() => _temp.Dispose();
}
