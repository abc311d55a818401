using System.Text;
using System.Text.Json;
using Strata.Native;
using Strata.Testing;

namespace Strata.Daemon.Tests;

/// <summary>The graphdriver plugin protocol at the wire: the JSON dockerd sends and expects (moby's
/// daemon/graphdriver/proxy.go field names), error replies, and the calls' effects on the store. The
/// Docker tests in Strata.Integration.Tests run real dockerds on it; these pin the contract itself.</summary>
public sealed class PluginProtocolTests : IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void EveryEndpointAnswersWithTheFieldsDockerdReads()
    {
        using var plugin = new PluginServer(_temp, "vfs");
        using (var activate = plugin.Post("Plugin.Activate", null))
        {
            Assert.Equal("""{"Implements":["GraphDriver"]}""", PluginServer.Text(activate));
            Assert.Equal(DockerPlugin.Accept, activate.Content.Headers.ContentType?.MediaType);
        }
        Assert.Equal("{}", plugin.Ok("Init", """{"Home":"/var/lib/docker/strata","Opts":[],"UIDMaps":null,"GIDMaps":null}""").GetRawText());
        Assert.False(plugin.Ok("Capabilities", "").GetProperty("Capabilities").GetProperty("ReproducesExactDiffs").GetBoolean());
        plugin.Ok("Create", """{"ID":"base","Parent":"","MountLabel":"","StorageOpt":null}""");
        plugin.Ok("CreateReadWrite", """{"ID":"c","Parent":"base","MountLabel":"","StorageOpt":{}}""");
        Assert.True(plugin.Ok("Exists", """{"ID":"c"}""").GetProperty("Exists").GetBoolean());
        Assert.False(plugin.Ok("Exists", """{"ID":"nope"}""").GetProperty("Exists").GetBoolean());
        Assert.False(plugin.Ok("Exists", """{"ID":"../etc"}""").GetProperty("Exists").GetBoolean()); // not an id: simply absent
        string dir = plugin.Ok("Get", """{"ID":"c","MountLabel":""}""").GetProperty("Dir").GetString()!;
        File.WriteAllText(Path.Combine(dir, "hello"), "world");
        Assert.Equal("""{"Changes":[{"Path":"/hello","Kind":1}]}""", plugin.Ok("Changes", """{"ID":"c","Parent":"base"}""").GetRawText());
        Assert.Equal(5, plugin.Ok("DiffSize", """{"ID":"c","Parent":"base"}""").GetProperty("Size").GetInt64());
        using (var diff = plugin.Post("GraphDriver.Diff", new StringContent("""{"ID":"c","Parent":"base"}""")))
        {
            Assert.Equal(200, (int)diff.StatusCode);
            Assert.Equal("application/x-tar", diff.Content.Headers.ContentType?.MediaType);
            byte[] tar = PluginServer.Bytes(diff);
            Assert.Equal(0, tar.Length % 512);
            Assert.Equal("hello", Encoding.ASCII.GetString(tar, 0, 5));
        }
        Assert.Equal("{}", plugin.Ok("Put", """{"ID":"c"}""").GetRawText());
        var status = plugin.Ok("Status", "").GetProperty("Status").EnumerateArray().Select(p => (p[0].GetString(), p[1].GetString())).ToList();
        Assert.Contains(("Strata Driver", "vfs"), status);
        Assert.Equal(JsonValueKind.Object, plugin.Ok("GetMetadata", """{"ID":"c"}""").GetProperty("Metadata").ValueKind);
        plugin.Ok("Remove", """{"ID":"c"}""");
        plugin.Ok("Remove", """{"ID":"c"}"""); // gone already: dockerd cleans up after failed applies this way
        plugin.Ok("Cleanup", "");
    }

    [Fact]
    public void ApplyDiffStreamsTheTarInAndChecksTheParentDockerdExpects()
    {
        using var plugin = new PluginServer(_temp, "vfs");
        plugin.Ok("Create", """{"ID":"base"}""");
        plugin.Ok("Create", """{"ID":"top","Parent":"base"}""");
        byte[] tar = Tar(("etc/motd", "hi there\n"));
        Assert.Equal(9, ApplyDiff(plugin, "top", "base", tar).GetProperty("Size").GetInt64());
        Assert.Equal("""{"Changes":[{"Path":"/etc","Kind":1},{"Path":"/etc/motd","Kind":1}]}""", plugin.Ok("Changes", """{"ID":"top","Parent":"base"}""").GetRawText());
        plugin.Ok("Create", """{"ID":"other","Parent":"base"}""");
        var (status, reply) = Post(plugin, "GraphDriver.ApplyDiff?id=other&parent=top", tar);
        Assert.Equal(500, status);
        Assert.Equal("layer other has parent base, not top", reply.GetProperty("Err").GetString());
        (status, reply) = Post(plugin, "GraphDriver.ApplyDiff?id=other&parent=base", "this is no tar"u8.ToArray());
        Assert.Equal(500, status);
        Assert.Contains("truncated", reply.GetProperty("Err").GetString());
        Assert.Equal("[]", plugin.Ok("Changes", """{"ID":"other","Parent":"base"}""").GetProperty("Changes").GetRawText()); // nothing half-applied
    }

    [Fact]
    public void FailuresAreErrRepliesADockerUserCanRead()
    {
        using var plugin = new PluginServer(_temp, "vfs");
        Assert.StartsWith("malformed request: ", plugin.Err("Create", "{\"ID\": "));
        Assert.Contains("invalid layer id '../x'", plugin.Err("Create", """{"ID":"../x"}"""));
        Assert.Equal("layer missing does not exist", plugin.Err("Get", """{"ID":"missing"}"""));
        Assert.Contains("layer option", plugin.Err("Init", """{"Home":"/h","Opts":["size=10G"]}"""));
        Assert.Contains("userns-remap", plugin.Err("Init", """{"Home":"/h","Opts":[],"UIDMaps":[{"container_id":0,"host_id":100000,"size":65536}]}"""));
        plugin.Ok("Create", """{"ID":"base"}""");
        plugin.Ok("Create", """{"ID":"child","Parent":"base"}""");
        Assert.Equal("layer base has 1 child layer(s) (child); remove them first", plugin.Err("Remove", """{"ID":"base"}"""));
        // a store with layers keeps its driver: dockerd started with another one gets the store's reason
        Assert.Contains("was created with driver 'vfs', not 'overlay'", plugin.Err("Init", """{"Home":"/h","Opts":["strata.driver=overlay"]}"""));
    }

    [Fact]
    public void InitPicksTheDriverOfAnEmptyStore()
    {
        using var plugin = new PluginServer(_temp, "vfs");
        plugin.Ok("Init", """{"Home":"/h","Opts":["strata.driver=overlay"]}""");
        Assert.Contains(("Strata Driver", "overlay"), Status(plugin));
        Assert.Equal("overlay", File.ReadLines(Path.Combine(plugin.Store, "driver")).First());
        plugin.Ok("Create", """{"ID":"base"}""");
        plugin.Ok("Init", """{"Home":"/h","Opts":["strata.driver=overlay"]}"""); // the same again: nothing to do
        plugin.Ok("Remove", """{"ID":"base"}""");
    }

    [Fact]
    public void PutOfAMountSomethingStillUsesDropsTheCountAndDetachesIt()
    {
        // dockerd never retries a failed Put: a refusal would keep `docker rm` failing for ever
        using var plugin = new PluginServer(_temp, "overlay");
        plugin.Ok("Create", """{"ID":"base"}""");
        plugin.Ok("CreateReadWrite", """{"ID":"c","Parent":"base"}""");
        string dir = plugin.Ok("Get", """{"ID":"c"}""").GetProperty("Dir").GetString()!;
        using (var held = File.Create(Path.Combine(dir, "open-file")))
        {
            plugin.Ok("Put", """{"ID":"c"}""");
            Assert.False(MountTable.IsMountPoint(dir));
            held.Write("the holder keeps its file"u8);
        }
        plugin.Ok("Remove", """{"ID":"c"}""");
        plugin.Ok("Remove", """{"ID":"base"}""");
    }

    [Fact]
    public void StoppingTheDaemonLeavesLayersDockerdMountedInPlaceForTheNextStart()
    {
        string dir;
        using (var plugin = new PluginServer(_temp, "overlay"))
        {
            plugin.Ok("Create", """{"ID":"base"}""");
            plugin.Ok("CreateReadWrite", """{"ID":"c","Parent":"base"}""");
            dir = plugin.Ok("Get", """{"ID":"c"}""").GetProperty("Dir").GetString()!;
            File.WriteAllText(Path.Combine(dir, "running"), "yes");
            plugin.Stop(); // a running container keeps its root
            Assert.True(MountTable.IsMountPoint(dir));
        }
        using (var plugin = new PluginServer(_temp, "overlay"))
        {
            Assert.Equal(dir, plugin.Ok("Get", """{"ID":"c"}""").GetProperty("Dir").GetString());
            Assert.Single(MountTable.Read(), m => m.MountPoint == dir); // no second overlay on the same upper dir
            plugin.Ok("Put", """{"ID":"c"}""");
            Assert.True(MountTable.IsMountPoint(dir)); // the first Get's user is still counted
            plugin.Ok("Put", """{"ID":"c"}""");
            Assert.False(MountTable.IsMountPoint(dir));
            plugin.Ok("Remove", """{"ID":"c"}""");
        }
    }

    [Fact]
    public void ADiffWhoseReaderHangsUpStopsAndReleasesItsLayers()
    {
        using var plugin = new PluginServer(_temp, "vfs");
        plugin.Ok("Create", """{"ID":"big"}""");
        string dir = plugin.Ok("Get", """{"ID":"big"}""").GetProperty("Dir").GetString()!;
        // 1 TiB of holes: a tar of it takes minutes to write, even to nobody
        using (var f = new FileStream(Path.Combine(dir, "sparse"), FileMode.CreateNew)) f.SetLength(1L << 40);
        plugin.Ok("Put", """{"ID":"big"}""");
        using (var request = new HttpRequestMessage(HttpMethod.Post, "GraphDriver.Diff") { Content = new StringContent("""{"ID":"big"}""") })
        using (var response = plugin.Http.Send(request, HttpCompletionOption.ResponseHeadersRead))
        using (var body = response.Content.ReadAsStream())
        {
            var buffer = new byte[1 << 20];
            body.ReadExactly(buffer); // the diff is under way, and holds its layer
            Assert.Contains("in use", plugin.Err("Remove", """{"ID":"big"}"""));
        }
        // the client hung up: the diff must notice at its next write instead of writing the rest for nobody
        var deadline = DateTime.UtcNow.AddSeconds(30);
        string? refusal;
        while ((refusal = Refusal(plugin, "Remove", """{"ID":"big"}""")) is not null && DateTime.UtcNow < deadline) Thread.Sleep(200);
        Assert.Null(refusal);
    }

    [Fact]
    public void InitRepeatingTheStoresOptionsDoesNotWaitForRequestsInFlight()
    {
        const string program = "/usr/bin/fuse-overlayfs"; // test.sh installs it
        var options = new Dictionary<string, string> { ["overlay.mount_program"] = program };
        using var plugin = new PluginServer(_temp, "overlay", options);
        plugin.Ok("Create", """{"ID":"big"}""");
        string dir = plugin.Ok("Get", """{"ID":"big"}""").GetProperty("Dir").GetString()!;
        using (var f = new FileStream(Path.Combine(dir, "sparse"), FileMode.CreateNew)) f.SetLength(1L << 40);
        plugin.Ok("Put", """{"ID":"big"}""");
        using var request = new HttpRequestMessage(HttpMethod.Post, "GraphDriver.Diff") { Content = new StringContent("""{"ID":"big"}""") };
        using var response = plugin.Http.Send(request, HttpCompletionOption.ResponseHeadersRead);
        using var body = response.Content.ReadAsStream();
        body.ReadExactly(new byte[1 << 16]); // a diff in flight, stalled by its reader: it holds the store's shared lock
        // dockerd restarting with the options the store has: answered at once (the 60 s client timeout fails a wait)
        plugin.Ok("Init", $$"""{"Home":"/h","Opts":["overlay.mount_program={{program}}"]}""");
        Assert.Contains("fixed when a store is created", plugin.Err("Init", """{"Home":"/h","Opts":["overlay.mount_program=/bin/true"]}"""));
    }

    static string? Refusal(PluginServer plugin, string method, string json)
    {
        var (status, reply) = plugin.Call(method, json);
        return status == 200 ? null : reply.GetProperty("Err").GetString();
    }

    static List<(string?, string?)> Status(PluginServer plugin) =>
        plugin.Ok("Status", "").GetProperty("Status").EnumerateArray().Select(p => (p[0].GetString(), p[1].GetString())).ToList();

    static JsonElement ApplyDiff(PluginServer plugin, string id, string parent, byte[] tar)
    {
        var (status, reply) = Post(plugin, $"GraphDriver.ApplyDiff?id={id}&parent={parent}", tar);
        Assert.True(status == 200, reply.ToString());
        return reply;
    }

    static (int, JsonElement) Post(PluginServer plugin, string path, byte[] body)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new("application/x-tar");
        using var response = plugin.Post(path, content);
        return ((int)response.StatusCode, JsonDocument.Parse(PluginServer.Text(response)).RootElement.Clone());
    }

    /// <summary>A tar of regular files made by GNU tar from a scratch directory.</summary>
    byte[] Tar(params (string Path, string Content)[] files)
    {
        string src = _temp.Dir("tar-" + Guid.NewGuid().ToString("N")[..8]);
        foreach (var (path, content) in files)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(src, path))!);
            File.WriteAllText(Path.Combine(src, path), content);
        }
        string tar = src + ".tar";
        Shell.Run("tar", "-C", src, "--owner=0", "--group=0", "-cf", tar, ".").Check("tar");
        return File.ReadAllBytes(tar);
    }
}
