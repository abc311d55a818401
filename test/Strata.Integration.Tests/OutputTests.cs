using Strata.Native;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>`-o PATH` behaves as `dd of=`, `tar -f` and `docker save -o`: an existing device, FIFO or socket is written
/// into as it is; a regular file appears only when complete; a symlink to a regular file is refused rather than
/// replaced; a missing parent directory is an error, never created. In embedded mode and through `strata serve`
/// (where the client writes the file).</summary>
public sealed class OutputTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;
    string Store => _temp.Combine("store");

    public OutputTests()
    {
        _cli = new Cli(Store);
        string src = _temp.Dir("src");
        File.WriteAllText(Path.Combine(src, "hello"), "world\n");
        Shell.Run("tar", "-C", src, "-cf", _temp.Combine("a.tar"), ".").Check("tar");
        _cli.Ok("--driver", "vfs", "layer", "apply", "app", "-i", _temp.Combine("a.tar"));
        _cli.Ok("image", "import", _temp.Combine("a.tar"), "--name", "img:1", "-q");
    }

    public void Dispose() => _temp.Dispose();

    static string Kind(string path) => Posix.Lstat(path).Kind.ToString();

    byte[] Expected()
    {
        _cli.Ok("layer", "diff", "app", "-o", _temp.Combine("expected.tar"));
        return File.ReadAllBytes(_temp.Combine("expected.tar"));
    }

    /// <summary>Runs strata with -o into a FIFO whose reader copies what arrives into a file; returns those bytes.</summary>
    byte[] ThroughFifo(params string[] args)
    {
        string fifo = _temp.Combine("fifo-" + Guid.NewGuid().ToString("N")[..8]), got = fifo + ".out";
        Shell.Run("mkfifo", fifo).Check("mkfifo");
        // the reader gives up after 60 s: a FIFO replaced by a regular file would never be opened for writing
        var reader = Task.Run(() => Shell.Sh($"timeout 60 cat '{fifo}' > '{got}'"));
        var r = _cli.Run([.. args, "-o", fifo]);
        Assert.True(r.ExitCode == 0, $"strata {string.Join(' ', args)} -o FIFO failed ({r.ExitCode}): {r.Stderr}");
        Assert.Equal(0, reader.Result.ExitCode);
        Assert.Equal("Fifo", Kind(fifo));
        return File.ReadAllBytes(got);
    }

    [Fact]
    public void ADeviceStaysADevice()
    {
        string nul = _temp.Combine("null");
        Shell.Run("mknod", nul, "c", "1", "3").Check("mknod"); // a /dev/null of the test's own
        _cli.Ok("layer", "diff", "app", "-o", nul);
        Assert.Equal("CharDevice", Kind(nul));
        _cli.Ok("image", "export", "img:1", "-o", nul, "-q");
        _cli.Ok("image", "export", "img:1", "--format", "docker-archive", "-o", nul, "-q");
        Assert.Equal("CharDevice", Kind(nul));
        // through a symlink too, as -o /dev/stdout is
        File.CreateSymbolicLink(_temp.Combine("null.link"), nul);
        _cli.Ok("layer", "diff", "app", "-o", _temp.Combine("null.link"));
        Assert.Equal("Symlink", Kind(_temp.Combine("null.link")));
        Assert.Equal("CharDevice", Kind(nul));
        Assert.Empty(Directory.GetFiles(_temp.Path, "*.tmp-*"));
    }

    [Fact]
    public void AFifosReaderGetsTheBytes()
    {
        byte[] expected = Expected();
        Assert.Equal(expected, ThroughFifo("layer", "diff", "app"));
        // an image export into a FIFO is the oci-archive tar, the same bytes as an export to a .tar file
        _cli.Ok("image", "export", "img:1", "-o", _temp.Combine("img.tar"), "-q");
        Assert.Equal(File.ReadAllBytes(_temp.Combine("img.tar")), ThroughFifo("image", "export", "img:1", "-q"));
    }

    [Fact]
    public void ThroughTheDaemonTheClientWritesIntoTheFifo()
    {
        byte[] expected = Expected();
        using var serve = new StrataServe(Store, "vfs", "strata-test-" + Guid.NewGuid().ToString("N")[..10], _temp.Combine("serve.log"));
        Assert.Equal(expected, ThroughFifo("layer", "diff", "app"));
        var missing = _cli.Run("layer", "diff", "app", "-o", _temp.Combine("no", "such", "dir", "x.tar"));
        Assert.Equal((3, $"strata: directory {_temp.Combine("no", "such", "dir")} does not exist\n"), (missing.ExitCode, missing.Stderr));
        Assert.False(Directory.Exists(_temp.Combine("no")));
    }

    [Fact]
    public void AMissingParentIsAnErrorNotCreated()
    {
        foreach (var args in new[] { new[] { "layer", "diff", "app" }, ["image", "export", "img:1", "-q"], ["image", "export", "img:1", "--format", "docker-archive", "-q"] })
        {
            var r = _cli.Run([.. args, "-o", _temp.Combine("no", "such", "out")]);
            Assert.Equal((3, $"strata: directory {_temp.Combine("no", "such")} does not exist\n"), (r.ExitCode, r.Stderr));
            Assert.False(Directory.Exists(_temp.Combine("no")), string.Join(' ', args));
        }
    }

    [Fact]
    public void ASymlinkToAFileIsRefusedAndBothStayAsTheyWere()
    {
        string target = _temp.Combine("precious"), link = _temp.Combine("link.tar");
        File.WriteAllText(target, "keep me\n");
        File.CreateSymbolicLink(link, target);
        foreach (var args in new[] { new[] { "layer", "diff", "app" }, ["image", "export", "img:1", "-q"], ["image", "export", "img:1", "--format", "docker-archive", "-q"] })
        {
            var r = _cli.Run([.. args, "-o", link]);
            Assert.Equal(2, r.ExitCode);
            Assert.Contains("is a symbolic link", r.Stderr);
            Assert.Equal("Symlink", Kind(link));
            Assert.Equal("keep me\n", File.ReadAllText(target));
        }
    }

    [Fact]
    public void ARegularFileIsReplacedWhole()
    {
        string file = _temp.Combine("out.tar");
        File.WriteAllText(file, new string('x', 100_000)); // longer than the tar: no tail of the old content may remain
        _cli.Ok("layer", "diff", "app", "-o", file);
        Assert.Equal(Expected(), File.ReadAllBytes(file));
        var r = _cli.Run("layer", "diff", "missing", "-o", file);
        Assert.Equal(3, r.ExitCode);
        Assert.Equal(Expected(), File.ReadAllBytes(file)); // a failed command leaves the old file
        Assert.Empty(Directory.GetFiles(_temp.Path, "*.tmp-*"));
    }

    [Fact]
    public void DevStdoutSentToAFileGetsTheBytes()
    {
        string file = _temp.Combine("stdout.tar");
        File.WriteAllText(file, new string('x', 100_000));
        Shell.Sh($"'{Cli.Binary}' --root '{Store}' layer diff app -o /dev/stdout > '{file}'").Check("layer diff -o /dev/stdout");
        Assert.Equal(Expected(), File.ReadAllBytes(file));
    }
}
