// Issue 21: `image rm` / `rmi` as docker's.
using System.Text.Json;
using Strata.Cli;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>`strata image rm` and `strata rmi` through the real binary, with docker's semantics and lines: a name of
/// several is untagged ("Untagged: NAME"); the last name or the id deletes the image ("Untagged:" for each name, then
/// "Deleted: sha256:ID", then "Deleted:" for each layer that went); an id of an image with several names is refused
/// without -f (exit 5); with several arguments, each failure is one `strata:` line, the rest is done, and the exit
/// code is the first failure's.</summary>
public sealed class ImageRemoveTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;

    public ImageRemoveTests() => _cli = new Cli(_temp.Combine("store"));

    public void Dispose()
    {
        _cli.Run("container", "rm", "c1");
        _temp.Dispose();
    }

    /// <summary>Imports a one-layer image of its own content as <paramref name="name"/>; returns its id and layer.</summary>
    (string Id, string Layer) Image(string name, string content)
    {
        string dir = _temp.Dir("rootfs-" + content);
        File.WriteAllText(Path.Combine(dir, "file"), content);
        string tar = _temp.Combine(content + ".tar");
        Shell.Run("tar", "-C", dir, "-cf", tar, ".").Check("tar");
        string id = _cli.Ok("--driver", "vfs", "image", "import", tar, "--name", name, "-q").Split(' ')[0];
        var record = JsonDocument.Parse(_cli.Ok("image", "inspect", name)).RootElement[0].GetProperty("Image");
        return (id, record.GetProperty("Layers")[0].GetString()!);
    }

    bool Exists(string kind, string name) => _cli.Run(kind, "inspect", name).ExitCode switch
    {
        0 => true,
        ExitCodes.NotFound => false,
        var code => throw new InvalidOperationException($"{kind} inspect {name} failed ({code})"),
    };

    [Fact]
    public void ANameOfSeveralIsUntaggedAndTheLastDeletesTheImage()
    {
        var (id, layer) = Image("x:1", "a");
        _cli.Ok("image", "tag", "x:1", "y");
        Assert.Equal("Untagged: y:latest", _cli.Ok("rmi", "y"));
        Assert.False(Exists("image", "y"));
        Assert.True(Exists("image", "x:1"));
        Assert.Equal($"Untagged: x:1\nDeleted: {id}\nDeleted: sha256:{layer}", _cli.Ok("image", "rm", "x:1"));
        Assert.False(Exists("image", id));
        Assert.False(Exists("layer", layer));
    }

    [Fact]
    public void AnIdOfAnImageWithSeveralNamesIsRemovedOnlyWithForce()
    {
        var (id, layer) = Image("x:1", "a");
        _cli.Ok("image", "tag", "x:1", "y:2");
        string shortId = id[7..19];
        var refused = _cli.Run("image", "rm", shortId);
        Assert.Equal((ExitCodes.InUse, $"strata: image {shortId} has 2 names (x:1, y:2); remove them one by one, or all with -f\n", ""),
            (refused.ExitCode, refused.Stderr, refused.Stdout));
        Assert.True(Exists("image", "x:1") && Exists("image", "y:2"));
        Assert.Equal($"Untagged: x:1\nUntagged: y:2\nDeleted: {id}\nDeleted: sha256:{layer}", _cli.Ok("rmi", "-f", shortId));
        Assert.False(Exists("image", id));
    }

    [Fact]
    public void SeveralArgumentsDoWhatCanBeDoneAndReportEachFailure()
    {
        var (a, _) = Image("a:1", "a");
        Image("used:1", "u");
        var (b, _) = Image("b:1", "b");
        _cli.Ok("container", "create", "used:1", "--name", "c1");

        var r = _cli.Run("image", "rm", "missing:1", "a:1", "used:1", "b:1");
        Assert.Equal(ExitCodes.NotFound, r.ExitCode); // the first failure's
        Assert.Equal([
            "strata: image missing:1 does not exist",
            "strata: image used:1 is used by container(s) c1; remove them first",
        ], r.Stderr.TrimEnd('\n').Split('\n'));
        var lines = r.Stdout.TrimEnd('\n').Split('\n');
        Assert.Equal(["Untagged: a:1", $"Deleted: {a}"], lines[..2]);
        Assert.Contains("Untagged: b:1", lines);
        Assert.Contains($"Deleted: {b}", lines);
        Assert.Equal([false, true, false], new[] { "a:1", "used:1", "b:1" }.Select(n => Exists("image", n)));

        // -f does not remove an image a container uses (nor the container)
        var forced = _cli.Run("rmi", "-f", "used:1");
        Assert.Equal((ExitCodes.InUse, "strata: image used:1 is used by container(s) c1; remove them first\n"), (forced.ExitCode, forced.Stderr));
        _cli.Ok("container", "rm", "c1");
        Assert.StartsWith("Untagged: used:1\nDeleted: sha256:", _cli.Ok("rmi", "used:1"));
    }
}
