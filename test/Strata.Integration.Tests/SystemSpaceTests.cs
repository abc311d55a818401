using System.Text.Json;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>`strata system df` and `system prune` on a real store with runc: the space of images (shared and unique),
/// of containers (what each wrote), of dangling layers, and a prune that removes only what nothing uses (a container
/// running through `strata run` keeps itself and its image), asks first, and through the daemon removes the dangling
/// layers a long-running store accumulates.</summary>
[Collection(HeavyIo.Name)]
public sealed class SystemSpaceTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;

    public SystemSpaceTests() => _cli = new Cli(_temp.Combine("store"));

    public void Dispose() => _temp.Dispose();

    const long MiB = 1 << 20;

    JsonElement Df()
    {
        using var doc = JsonDocument.Parse(_cli.Ok("system", "df", "--format", "json"));
        return doc.RootElement.Clone();
    }

    static JsonElement Row(JsonElement df, string type) => df.GetProperty("Summary").EnumerateArray().Single(s => s.GetProperty("Type").GetString() == type);

    static long Get(JsonElement e, string name) => e.GetProperty(name).GetInt64();

    List<string> Names(string what) =>
        [.. JsonDocument.Parse(_cli.Ok(what, "ls", "-a", "--format", "json")).RootElement.EnumerateArray().Select(e => e.GetProperty("Name").GetString()!)];

    [ToolsFact("umoci", "runc")]
    public void DfCountsWhatEachHoldsAndPruneRemovesOnlyWhatNothingUses()
    {
        string layout = _temp.Combine("layout");
        Images.BuildBase(layout, "base", _temp.Path);
        _cli.Ok("image", "import", layout, "--name", "base:1", "-q");
        _cli.Ok("container", "create", "base:1", "--name", "fresh");
        var wrote = _cli.Run("run", "--name", "writer", "base:1", "sh", "-c", "dd if=/dev/zero of=/two bs=1M count=2 2>/dev/null");
        Assert.True(wrote.ExitCode == 0, wrote.Stderr);
        _cli.Ok("container", "commit", "writer", "derived:1");
        using var live = _cli.Start("run", "--name", "live", "base:1", "sh", "-c", "echo started; read line");
        try
        {
            Assert.Equal("started", live.StandardOutput.ReadLine());
            var df = Df();
            var images = Row(df, "Images");
            var baseImage = df.GetProperty("Images").EnumerateArray().Single(i => i.GetProperty("Names")[0].GetString() == "docker.io/library/base:1" || i.GetProperty("Names")[0].GetString() == "base:1");
            var derived = df.GetProperty("Images").EnumerateArray().Single(i => i.GetProperty("Id").GetString() != baseImage.GetProperty("Id").GetString());
            Assert.Equal((2L, 1L), (Get(images, "Total"), Get(images, "Active"))); // derived:1 has no container
            Assert.Equal(Get(baseImage, "Size"), Get(derived, "SharedSize")); // its base layer is base:1's
            Assert.Equal(2 * MiB, Get(derived, "UniqueSize"));
            Assert.Equal(2 * MiB, Get(images, "Reclaimable")); // the layer only derived:1 holds
            var containers = Row(df, "Containers");
            Assert.Equal((3L, 1L, 2 * MiB, 2 * MiB), (Get(containers, "Total"), Get(containers, "Active"), Get(containers, "Size"), Get(containers, "Reclaimable")));
            Assert.Contains("Images space usage:", _cli.Ok("system", "df", "-v"));

            // asked first: anything but yes removes nothing
            var no = _cli.Run("n\n"u8.ToArray(), "system", "prune");
            Assert.Equal(2, no.ExitCode);
            Assert.Contains("Are you sure you want to continue? [y/N]", no.Stderr);
            Assert.Equal(["fresh", "live", "writer"], Names("container").Order());

            // the stopped containers go; named images stay without -a
            var pruned = _cli.Run("y\n"u8.ToArray(), "system", "prune");
            Assert.True(pruned.ExitCode == 0, pruned.Stderr);
            Assert.Contains("Deleted Containers:\nfresh\nwriter\n", pruned.Stdout.Replace("writer\nfresh", "fresh\nwriter"));
            Assert.Equal(["live"], Names("container"));
            Assert.Equal(2, JsonDocument.Parse(_cli.Ok("image", "ls", "--format", "json")).RootElement.GetArrayLength());

            // -a: every image no container uses; the running container keeps base:1
            var all = _cli.Ok("system", "prune", "-a", "-f");
            Assert.Contains("deleted: " + derived.GetProperty("Id").GetString(), all);
            Assert.Contains("Total reclaimed space: 2 MiB", all);
            var left = JsonDocument.Parse(_cli.Ok("image", "ls", "--format", "json")).RootElement;
            Assert.Equal(baseImage.GetProperty("Id").GetString(), left.EnumerateArray().Single().GetProperty("Id").GetString());
            Assert.Equal(["live"], Names("container"));
        }
        finally
        {
            live.StandardInput.WriteLine("go");
            live.StandardInput.Close();
            Assert.True(live.WaitForExit(TimeSpan.FromSeconds(60)));
        }
        Assert.Equal(0, live.ExitCode);
        _cli.Ok("system", "prune", "-a", "-f");
        Assert.Empty(Names("container"));
        Assert.Equal((0L, 0L), (Get(Row(Df(), "Layers"), "Total"), Get(Row(Df(), "Images"), "Total")));
    }

    [Fact]
    public void ThroughTheDaemonDanglingLayersShowAsReclaimableAndPruneRemovesThemAndNothingElse()
    {
        using var serve = new StrataServe(_temp.Combine("store"), "vfs", "strata-test-" + Guid.NewGuid().ToString("N")[..10], _temp.Combine("serve.log"));
        _cli.Ok("system", "df"); // the daemon's store has swept what it found at its open
        // what an interrupted import leaves in a store that stays open: image layers no image refers to
        _cli.Ok("layer", "create", "orphan", "--label", "strata.image-layer=sha256:" + new string('0', 64));
        _cli.Ok("layer", "create", "orphan-child", "--parent", "orphan", "--label", "strata.image-layer=sha256:" + new string('1', 64));
        _cli.Ok("layer", "create", "mine"); // a layer of someone else (dockerd's, containerd's, a user's): never pruned
        var layers = Row(Df(), "Layers");
        Assert.Equal((3L, 1L), (Get(layers, "Total"), Get(layers, "Active")));
        // the question is asked here, in the caller's terminal, not in the daemon (which gets no input while it runs a command)
        var no = _cli.Run("no\n"u8.ToArray(), "system", "prune");
        Assert.Equal(2, no.ExitCode);
        Assert.Contains("Are you sure you want to continue? [y/N] ", no.Stderr);
        Assert.Equal(3, _cli.Ok("layer", "ls", "-q").Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        var pruned = _cli.Run("yes\n"u8.ToArray(), "system", "prune").Stdout;
        Assert.Contains("Deleted Layers:", pruned);
        Assert.Contains("orphan\n", pruned);
        Assert.Contains("orphan-child\n", pruned);
        Assert.Equal("mine", _cli.Ok("layer", "ls", "-q").Trim());
    }
}
