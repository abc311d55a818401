using System.Text.Json.Nodes;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>Listings and documents as docker users and scripts expect them: ids shortened to 12 unless --no-trunc, -q,
/// --filter, -a, id prefixes, `inspect` of several names as one JSON array, typed JSON in the shapes of docs/schemas, and
/// Go-template-style --format; sizes without a unit refused.</summary>
public sealed class ListingTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;

    public ListingTests() => _cli = new Cli(_temp.Combine("store"));

    public void Dispose()
    {
        _cli.Run("pool", "device", "rm", "--force", "v");
        _temp.Dispose();
    }

    static string[] Lines(string s) => s.Length == 0 ? [] : s.Split('\n');

    /// <summary>A rootfs tar holding a static busybox and <paramref name="marker"/> (so that two differ).</summary>
    string RootfsTar(string marker)
    {
        string root = _temp.Dir("rootfs-" + marker);
        Directory.CreateDirectory(Path.Combine(root, "bin"));
        File.Copy("/bin/busybox", Path.Combine(root, "bin", "busybox"));
        foreach (var applet in new[] { "sh", "dd", "sleep" }) File.CreateSymbolicLink(Path.Combine(root, "bin", applet), "busybox");
        File.WriteAllText(Path.Combine(root, "marker"), marker);
        string tar = _temp.Combine(marker + ".tar");
        Shell.Run("tar", "-C", root, "-cf", tar, ".").Check("tar");
        return tar;
    }

    [Fact]
    public void LayersListShortIdsFilterAndTakePrefixes()
    {
        string hex = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        _cli.Ok("layer", "create", "base");
        _cli.Ok("layer", "create", "--parent", "base", hex, "--label", "team=a+b");

        string table = _cli.Ok("layer", "ls");
        Assert.Contains(hex[..12], table);
        Assert.DoesNotContain(hex, table);
        Assert.Contains(hex, _cli.Ok("layer", "ls", "--no-trunc"));
        Assert.Equal(["base", hex[..12]], Lines(_cli.Ok("layer", "ls", "-q")));
        Assert.Equal(["base", hex], Lines(_cli.Ok("layer", "ls", "-q", "--no-trunc")));
        Assert.Equal([hex], Lines(_cli.Ok("layer", "ls", "-q", "--no-trunc", "--filter", "label=team=a+b")));
        Assert.Equal([hex], Lines(_cli.Ok("layer", "ls", "-q", "--no-trunc", "--filter", "label=team", "--filter", "parent=base")));
        Assert.Empty(Lines(_cli.Ok("layer", "ls", "-q", "--filter", "kind=rw")));
        Assert.Equal([$"{hex}:base:ReadOnly"], Lines(_cli.Ok("layer", "ls", "--filter", "parent=base", "--format", "{{.ID}}:{{.Parent}}:{{.Kind}}")));

        string json = _cli.Ok("layer", "ls", "--format", "json");
        JsonSchemas.AssertValid("layer", json, array: true);
        Assert.Contains("\"team\": \"a+b\"", json); // not \u002B
        Assert.Equal(0, JsonNode.Parse(json)![0]!["Size"]!.GetValue<long>());

        foreach (var (args, want) in new (string[], string)[]
        {
            (["layer", "ls", "--filter", "kind=xx"], "--filter kind= takes ro or rw, not 'xx'"),
            (["layer", "ls", "--filter", "owner=x"], "unknown filter 'owner' (use label=..., kind=..., parent=...)"),
            (["layer", "ls", "--filter", "label"], "is not KEY=VALUE"),
            (["layer", "ls", "-q", "--format", "json"], "do not go together"),
            (["layer", "ls", "--format", "{{range .}}x{{end}}"], "is not supported"),
            (["layer", "ls", "--format", "{{.Nope}}"], "no field 'Nope' (fields: Id, Parent"),
            (["layer", "ls", "--format", "yaml"], "unknown --format 'yaml'"),
        })
        {
            var r = _cli.Run(args);
            Assert.Equal(2, r.ExitCode);
            Errors.AssertOneLine(r);
            Assert.Contains(want, r.Stderr);
        }

        // prefixes of 4 characters or more name a layer wherever an id is taken
        string docs = _cli.Ok("layer", "inspect", hex[..12], "base");
        JsonSchemas.AssertValid("layer-inspect", docs, array: true);
        Assert.Equal([hex, "base"], JsonNode.Parse(docs)!.AsArray().Select(d => d!["Layer"]!["Id"]!.GetValue<string>()));
        Assert.NotEmpty(_cli.Ok("layer", "mount", hex[..6]));
        Assert.Equal(1, JsonNode.Parse(_cli.Ok("layer", "inspect", hex[..8]))![0]!["Layer"]!["Mounts"]!.GetValue<int>());
        _cli.Ok("layer", "unmount", hex[..6]);
        Assert.Equal("", _cli.Ok("layer", "changes", hex[..5]));

        // inspect of several: what is found is printed, each failure is a line, the exit code is the first failure's
        var partial = _cli.Run("layer", "inspect", "base", "nope", "base");
        Assert.Equal(3, partial.ExitCode);
        Assert.Equal(2, JsonNode.Parse(partial.Stdout)!.AsArray().Count);
        Assert.Equal("strata: layer nope does not exist", partial.Stderr.TrimEnd('\n'));

        string abcd1 = "abcd1" + hex[5..], abcd2 = "abcd2" + hex[5..];
        _cli.Ok("layer", "create", abcd1);
        _cli.Ok("layer", "create", abcd2);
        _cli.Ok("layer", "create", "base-v2");
        var ambiguous = _cli.Run("layer", "inspect", "abcd");
        Assert.Equal(2, ambiguous.ExitCode);
        Assert.Contains("layer id prefix abcd is ambiguous", ambiguous.Stderr);
        Assert.Equal(3, _cli.Run("layer", "inspect", "abc").ExitCode); // too short to be a prefix
        Assert.Equal(3, _cli.Run("layer", "inspect", "base-").ExitCode); // a name people chose matches only in full

        // rm of several goes on past a failure, and names the layers by their full ids
        var rm = _cli.Run("layer", "rm", "abcd1", "base", hex[..10]);
        Assert.Equal(5, rm.ExitCode); // base has a child: in use
        Assert.Equal([abcd1, hex], Lines(rm.Out));
        Assert.Contains("base", rm.Stderr);
    }

    [Fact]
    public void ImagesListShortIdsFiltersAndInspectSeveral()
    {
        string first = _cli.Ok("image", "import", RootfsTar("one"), "--name", "app:1", "-q").Split(' ')[0];
        _cli.Ok("image", "tag", "app:1", "other:2");
        string second = _cli.Ok("image", "import", RootfsTar("two"), "--name", "app:1", "-q").Split(' ')[0];
        string third = _cli.Ok("image", "import", RootfsTar("three"), "--name", "lone:1", "-q").Split(' ')[0];
        _cli.Ok("image", "import", RootfsTar("four"), "--name", "lone:1", "-q"); // third keeps no name: dangling
        string Short(string id) => id[7..19];

        string table = _cli.Ok("images");
        Assert.Contains(Short(first), table);
        Assert.DoesNotContain(first[7..], table);
        Assert.Contains("<none>", table);
        Assert.Contains(first, _cli.Ok("images", "--no-trunc"));
        Assert.Equal([Short(third)], Lines(_cli.Ok("images", "-q", "--filter", "dangling=true")));
        Assert.Equal([Short(second)], Lines(_cli.Ok("image", "ls", "-q", "--filter", "reference=app")));
        Assert.Equal([Short(first)], Lines(_cli.Ok("images", "-q", "--filter", "reference=oth*:?")));
        Assert.Equal([Short(second)], Lines(_cli.Ok("images", "-q", "--filter", "reference=app:1")));
        Assert.Equal(Lines(_cli.Ok("images", "-q")), Lines(_cli.Ok("images", "-a", "-q")));
        Assert.Equal(2, _cli.Run("images", "--filter", "dangling=maybe").ExitCode);

        string json = _cli.Ok("images", "--format", "json");
        JsonSchemas.AssertValid("image", json, array: true);
        Assert.Equal(4, JsonNode.Parse(json)!.AsArray().Count);

        string docs = _cli.Ok("image", "inspect", "app:1", Short(first));
        JsonSchemas.AssertValid("image-inspect", docs, array: true);
        Assert.Equal([second, first], JsonNode.Parse(docs)!.AsArray().Select(d => d!["Image"]!["Id"]!.GetValue<string>()));
        Assert.Equal($"{first} [\"other:2\"]", _cli.Ok("image", "inspect", "other:2", "--format", "{{.Image.Id}} {{json .Image.Names}}"));

        // docker's `inspect`: containers, images and layers alike
        _cli.Ok("layer", "create", "plain");
        var mixed = _cli.Run("inspect", "other:2", "plain", "ghost");
        Assert.Equal(3, mixed.ExitCode);
        var found = JsonNode.Parse(mixed.Stdout)!.AsArray();
        Assert.Equal(first, found[0]!["Image"]!["Id"]!.GetValue<string>());
        Assert.Equal("plain", found[1]!["Layer"]!["Id"]!.GetValue<string>());
        Assert.Equal("strata: no container, image or layer ghost", mixed.Stderr.TrimEnd('\n'));
        var none = _cli.Run("inspect", "ghost");
        Assert.Equal((3, "[]"), (none.ExitCode, none.Out)); // as docker: an empty array, and the error

        // docker's table templates: a column per tab-separated part, headed by the field names
        var rows = Lines(_cli.Ok("images", "--format", "table {{.Id}}\\t{{.Size}}"));
        Assert.Matches("^ID +SIZE", rows[0]);
        Assert.Equal(5, rows.Length);
        Assert.Contains(first, rows[1] + rows[2] + rows[3] + rows[4]);
        Assert.Equal(2, _cli.Run("image", "inspect", "app:1", "--format", "table {{.Image.Id}}").ExitCode);
    }

    [Fact]
    public void InfoAndPoolPrintTypedJson()
    {
        _cli.Ok("layer", "create", "one");
        string info = _cli.Ok("info", "--format", "json");
        JsonSchemas.AssertValid("info", info);
        var doc = JsonNode.Parse(info)!;
        Assert.Equal(1, doc["Layers"]!.GetValue<long>());
        Assert.Equal(0, doc["Images"]!.GetValue<long>());
        Assert.Equal(0, doc["Snapshots"]!["Total"]!.GetValue<long>());
        Assert.Equal(doc["StorageDriver"]!.GetValue<string>(), _cli.Ok("info", "--format", "{{.StorageDriver}}"));

        _cli.Ok("pool", "create", "--data-size", "1G", "--metadata-size", "16M");
        var bare = _cli.Run("pool", "device", "create", "v", "--size", "100");
        Assert.Equal(2, bare.ExitCode);
        Errors.AssertOneLine(bare);
        Assert.Contains("--size '100' has no unit: write 100M or 100G (or 100B for bytes)", bare.Stderr);
        Assert.Equal(2, _cli.Run("pool", "create", "--pool", _temp.Combine("p2"), "--data-size", "1024").ExitCode);
        _cli.Ok("pool", "device", "create", "v", "--size", "100M");

        string pool = _cli.Ok("pool", "info", "--format", "json");
        JsonSchemas.AssertValid("pool-info", pool);
        var p = JsonNode.Parse(pool)!;
        Assert.Equal(1L << 30, p["DataSpaceTotal"]!.GetValue<long>());
        Assert.False(p["NeedsCheck"]!.GetValue<bool>());
        Assert.Equal(1, p["ThinDevices"]!.GetValue<long>());

        string devices = _cli.Ok("pool", "device", "ls", "--format", "json");
        JsonSchemas.AssertValid("pool-device", devices, array: true);
        Assert.Equal(100L << 20, JsonNode.Parse(devices)![0]!["Size"]!.GetValue<long>());
        Assert.Equal(["v"], Lines(_cli.Ok("pool", "device", "ls", "-q")));
    }

    [Fact]
    public void ContainersListStateCommandAndOwnBytes()
    {
        if (!Shell.Has("runc")) Assert.Fail("runc is missing (test.sh installs it)");
        _cli.Ok("--driver", "overlay", "image", "import", RootfsTar("one"), "--name", "app:1", "-q");
        string created = _cli.Ok("container", "create", "app:1", "--name", "fresh");
        var run = _cli.Run("run", "--name", "done", "app:1", "sh", "-c", "dd if=/dev/zero of=/big bs=1k count=1000 2>/dev/null; exit 3");
        Assert.Equal(3, run.ExitCode);

        Assert.Equal("CONTAINER ID   NAME   IMAGE   COMMAND   CREATED   STATUS   SIZE", _cli.Ok("ps").TrimEnd()); // none runs
        string all = _cli.Ok("ps", "-a");
        Assert.Contains(created[..12], all);
        Assert.DoesNotContain(created, all);
        Assert.Contains(created, _cli.Ok("ps", "-a", "--no-trunc"));
        Assert.Matches(@"done +app:1 +""sh -c 'dd if=/dev/z…"" +\S+ \S+ +Exited \(3\) .* ago +1000 KiB", all);
        Assert.Matches(@"fresh +app:1 +"""" +\S+ \S+ +Created +0 B", all);

        Assert.Equal(["done"], Lines(_cli.Ok("ps", "--filter", "status=exited", "--format", "{{.Name}}")));
        Assert.Equal(["fresh"], Lines(_cli.Ok("ps", "-a", "--filter", "name=fre", "--format", "{{.Name}}")));
        Assert.Equal(2, Lines(_cli.Ok("ps", "-a", "-q", "--filter", "ancestor=app:1")).Length);
        Assert.Equal([created[..12]], Lines(_cli.Ok("ps", "-a", "-q", "--filter", "id=" + created[..6])));
        Assert.Equal(2, _cli.Run("ps", "--filter", "status=paused").ExitCode);
        using (var empty = new TempRoot())
        {
            // refused at once, not only when there is something to filter
            var none = new Cli(empty.Combine("store")).Run("--driver", "vfs", "ps", "--filter", "status=paused");
            Assert.Equal((2, "strata: --filter status= takes created, running or exited, not 'paused'"), (none.ExitCode, none.Stderr.TrimEnd('\n')));
        }

        string json = _cli.Ok("ps", "-a", "--format", "json");
        JsonSchemas.AssertValid("container", json, array: true);
        var done = JsonNode.Parse(json)!.AsArray().Single(c => c!["Name"]!.GetValue<string>() == "done")!;
        Assert.Equal(1000 * 1024, done["Size"]!.GetValue<long>());
        Assert.Equal(3, done["State"]!["ExitCode"]!.GetValue<int>());
        Assert.Equal(["sh", "-c", "dd if=/dev/zero of=/big bs=1k count=1000 2>/dev/null; exit 3"], done["Command"]!.AsArray().Select(a => a!.GetValue<string>()));

        string docs = _cli.Ok("container", "inspect", "fresh", created[..8], "done", "--size");
        JsonSchemas.AssertValid("container-inspect", docs, array: true);
        Assert.Equal([0L, 0L, 1000 * 1024L], JsonNode.Parse(docs)!.AsArray().Select(d => d!["Container"]!["Size"]!.GetValue<long>()));
        Assert.Null(JsonNode.Parse(_cli.Ok("container", "inspect", "fresh"))![0]!["Container"]!["Size"]); // counted only when asked

        // rm of several: what can go goes, each failure its own line
        var rm = _cli.Run("container", "rm", "fresh", "ghost", "done");
        Assert.Equal(3, rm.ExitCode);
        Assert.Equal(["fresh", "done"], Lines(rm.Out));
        Assert.Equal("strata: container ghost does not exist", rm.Stderr.TrimEnd('\n'));
    }
}
