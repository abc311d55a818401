// Issue 21: stdin and stdout as docker's (`docker save > x.tar`, `docker load < x.tar`).
using System.Diagnostics;
using System.Formats.Tar;
using Strata.Cli;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>Images through stdin and stdout, with the real binary, embedded and through `strata serve`: `image export
/// IMAGE` without -o (or with `-o -`) writes the tar to stdout, never to a terminal; `image import -` reads any image
/// tar or rootfs tar from stdin; `-o -` and `-i -` are stdout and stdin for every command that takes them; and an
/// input that is no image says so in one line (exit 2).</summary>
public sealed class ImageStdioTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;
    string Store => _temp.Combine("store");

    public ImageStdioTests() => _cli = new Cli(Store);

    public void Dispose() => _temp.Dispose();

    sealed record BinaryResult(int ExitCode, byte[] Stdout, string Stderr);

    /// <summary>Runs strata with <paramref name="stdin"/>, keeping stdout as bytes (a tar).</summary>
    static BinaryResult RunBinary(Cli cli, byte[]? stdin, params string[] args)
    {
        using var p = cli.Start(args);
        var err = p.StandardError.ReadToEndAsync();
        var output = new MemoryStream();
        var copy = p.StandardOutput.BaseStream.CopyToAsync(output);
        if (stdin is not null) p.StandardInput.BaseStream.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"strata {string.Join(' ', args)} did not finish");
        }
        copy.Wait();
        return new BinaryResult(p.ExitCode, output.ToArray(), err.Result);
    }

    byte[] Tar(params string[] args)
    {
        var r = RunBinary(_cli, null, args);
        Assert.True(r.ExitCode == 0, $"strata {string.Join(' ', args)} failed ({r.ExitCode}): {r.Stderr}");
        Assert.Equal("", r.Stderr);
        return r.Stdout;
    }

    static List<string> Members(byte[] tar)
    {
        var names = new List<string>();
        using var reader = new TarReader(new MemoryStream(tar));
        while (reader.GetNextEntry() is { } e) names.Add(e.Name);
        return names;
    }

    string RootfsTar(string content)
    {
        string dir = _temp.Dir("rootfs-" + content);
        File.WriteAllText(Path.Combine(dir, "file"), content);
        string tar = _temp.Combine(content + ".tar");
        Shell.Run("tar", "-C", dir, "-cf", tar, ".").Check("tar");
        return tar;
    }

    void AssertNoSpool(string store) => Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(store, "tmp")));

    [Theory]
    [InlineData("oci", "oci-layout")]
    [InlineData("docker-archive", "manifest.json")]
    public void AnExportOnStdoutImportsFromStdin(string format, string member)
    {
        string id = _cli.Ok("--driver", "vfs", "image", "import", RootfsTar("a"), "--name", "x:1", "-q").Split(' ')[0];
        byte[] tar = Tar("image", "export", "x:1", "--format", format);
        Assert.Contains(member, Members(tar));
        Assert.Contains("index.json", Members(tar));
        // -o - is stdout too, and a file written with -o holds the same bytes
        Assert.Equal(tar, Tar("image", "export", "x:1", "--format", format, "-o", "-"));
        Assert.False(File.Exists(Path.Combine(Environment.CurrentDirectory, "-")), "-o - made a file named '-'");
        string file = _temp.Combine("x.tar");
        _cli.Ok("image", "export", "x:1", "--format", format, "-o", file);
        Assert.Equal(tar, File.ReadAllBytes(file));

        var other = new Cli(_temp.Combine("other"));
        var imported = other.Run(tar, "--driver", "vfs", "image", "import", "-", "-q");
        Assert.Equal((0, $"{id} x:1", ""), (imported.ExitCode, imported.Out, imported.Stderr));
        Assert.Equal("a", File.ReadAllText(Path.Combine(other.Ok("container", "mount", other.Ok("container", "create", "x:1", "--name", "c1")), "file")));
        other.Ok("container", "unmount", "c1");
        other.Ok("container", "rm", "c1");
        AssertNoSpool(_temp.Combine("other"));
    }

    [Fact]
    public void ARootfsTarImportsFromStdin()
    {
        var r = _cli.Run(File.ReadAllBytes(RootfsTar("b")), "--driver", "vfs", "image", "import", "-", "--name", "r:1", "-q");
        Assert.Equal(0, r.ExitCode);
        Assert.Matches("^sha256:[0-9a-f]{64} r:1$", r.Out);
        AssertNoSpool(Store);
        Assert.Contains("Untagged: r:1", _cli.Ok("rmi", "r:1"));
    }

    public static TheoryData<string, byte[]?, string> NotImages => new()
    {
        { "stdin", [], "stdin: not an image or tar archive; tar: the input is empty" },
        { "stdin", Enumerable.Range(0, 4096).Select(i => (byte)(i * 7919 >> 3)).ToArray(), "stdin: not an image or tar archive; tar: header checksum" },
        { "text", null, "not an image or tar archive; tar: archive is truncated" },
        { "empty", null, "not an image or tar archive; tar: the input is empty" },
        { "truncated", null, "not an image or tar archive; tar: archive is truncated" },
        { "directory", null, "not an image or tar archive; a directory with neither oci-layout" },
    };

    [Theory]
    [MemberData(nameof(NotImages))]
    public void WhatIsNotAnImageIsSaidToBeSo(string input, byte[]? stdin, string message)
    {
        _cli.Ok("--driver", "vfs", "layer", "create", "l");
        string path = input switch
        {
            "stdin" => "-",
            "directory" => _temp.Dir("not-a-layout"),
            _ => _temp.Combine(input),
        };
        if (input == "text") File.WriteAllText(path, "this is not a tar\n");
        if (input == "empty") File.WriteAllBytes(path, []);
        if (input == "truncated") File.WriteAllBytes(path, File.ReadAllBytes(RootfsTar("c"))[..1000]);
        var r = _cli.Run(stdin ?? [], "image", "import", path);
        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Errors.AssertOneLine(r);
        Assert.StartsWith($"strata: {(input == "stdin" ? "" : path + ": ")}{message}", r.Stderr);
        Assert.DoesNotContain("checksum field is not a number\n", r.Stderr);
        AssertNoSpool(Store);
    }

    [ToolsFact("script")]
    public void ATarIsNeverWrittenToATerminal()
    {
        _cli.Ok("--driver", "vfs", "image", "import", RootfsTar("d"), "--name", "x:1", "-q");
        _cli.Ok("layer", "create", "l");
        foreach (var args in new[] { "image export x:1", "image export x:1 -o -", "layer diff l -o -" })
        {
            // script gives the command a terminal for stdout; -e: its exit code
            var r = Shell.Run("script", "-qec", $"{Cli.Binary} --root {Store} {args}", "/dev/null");
            Assert.True(r.ExitCode == ExitCodes.Usage, $"{args}: exit {r.ExitCode}: {r.Stdout}");
            Assert.Contains("strata: refusing to write a tar to a terminal; use -o FILE or redirect stdout", r.Stdout);
        }
    }

    [Fact]
    public void DashIsStdinAndStdoutForLayers()
    {
        _cli.Ok("--driver", "vfs", "layer", "create", "base");
        var applied = _cli.Run(File.ReadAllBytes(RootfsTar("e")), "layer", "apply", "app", "--parent", "base", "-i", "-");
        Assert.Equal(0, applied.ExitCode);
        byte[] diff = Tar("layer", "diff", "app");
        Assert.Contains(Members(diff), n => n.TrimStart('.', '/') == "file");
        Assert.Equal(diff, Tar("layer", "diff", "app", "-o", "-"));
        Assert.False(File.Exists(Path.Combine(Environment.CurrentDirectory, "-")), "-o - made a file named '-'");
    }

    [Fact]
    public void StdinAndStdoutGoThroughTheDaemon()
    {
        byte[] rootfs = File.ReadAllBytes(RootfsTar("f"));
        byte[] exported, dashExported, diff;
        string id;
        using (var serve = new StrataServe(Store, "overlay", "strata-test-" + Guid.NewGuid().ToString("N")[..10], _temp.Combine("serve.log")))
        {
            var imported = _cli.Run(rootfs, "image", "import", "-", "--name", "x:1", "-q");
            Assert.Equal(0, imported.ExitCode);
            id = imported.Out.Split(' ')[0];
            exported = Tar("image", "export", "x:1", "--format", "docker-archive");
            dashExported = Tar("image", "export", "x:1", "--format", "docker-archive", "-o", "-");
            diff = Tar("layer", "diff", JsonLayer("x:1"), "-o", "-");
            var applied = _cli.Run(diff, "layer", "apply", "copy", "-i", "-"); // the client streams stdin for -i -
            Assert.Equal((0, ""), (applied.ExitCode, applied.Stderr));
            Assert.Equal(diff, Tar("layer", "diff", "copy"));
            _cli.Ok("layer", "rm", "copy");
            var bad = _cli.Run("garbage, not a tar"u8.ToArray(), "image", "import", "-");
            Assert.Equal((ExitCodes.Usage, "strata: stdin: not an image or tar archive; tar: archive is truncated at byte 18\n"), (bad.ExitCode, bad.Stderr));
            _cli.Ok("image", "tag", "x:1", "y:1");
            Assert.Equal("Untagged: y:1", _cli.Ok("rmi", "y:1"));
            AssertNoSpool(Store);
            Assert.Contains("serving store", serve.Log());
        }
        // embedded again: the same bytes
        Assert.Equal(exported, dashExported);
        Assert.Equal(exported, Tar("image", "export", "x:1", "--format", "docker-archive"));
        Assert.Equal(diff, Tar("layer", "diff", JsonLayer("x:1")));
        Assert.StartsWith($"Untagged: x:1\nDeleted: {id}\nDeleted: sha256:", _cli.Ok("rmi", "x:1"));
    }

    string JsonLayer(string image) =>
        System.Text.Json.JsonDocument.Parse(_cli.Ok("image", "inspect", image)).RootElement[0].GetProperty("Image").GetProperty("Layers")[0].GetString()!;
}
