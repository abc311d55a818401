using System.Text;
using System.Text.Json;
using Strata.Testing;
using Strata.Thin;
using Strata.Thin.Service;

namespace Strata.Daemon.Tests;

/// <summary>
/// Request bodies dockerd and the CLI never send — nulls, wrong JSON types, missing fields, bodies that are not
/// objects or are empty or huge — on every endpoint of the plugin and of the pool's control socket. Each must be
/// refused with one InvalidArgument line (the plugin's Err says "malformed request: ..."), the daemon must log
/// no error or stack trace for it, change nothing, and go on serving.
/// </summary>
public sealed class HostileRequestTests : IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>Bodies that are no request of any kind.</summary>
    static readonly string[] NotAnObject = ["[]", "5", "\"x\"", "true", "{", "{\"ID\":", "{}}"];

    /// <summary>For the endpoints that name a layer; "" is an empty body.</summary>
    static readonly string[] LayerBodies =
    [
        .. NotAnObject, "", "null", "{}",
        """{"ID":null}""", """{"ID":5}""", """{"ID":{}}""", """{"ID":[]}""", """{"ID":true}""", """{"ID":""}""",
        """{"ID":"x","Parent":5}""", """{"ID":"x","Parent":{}}""", """{"ID":"x","MountLabel":[]}""",
        """{"ID":"new","StorageOpt":{"size":null}}""", """{"ID":"new","StorageOpt":{"size":5}}""",
        """{"ID":"new","StorageOpt":[]}""", """{"ID":"new","StorageOpt":"size=1G"}""",
    ];

    static readonly string[] InitBodies =
    [
        .. NotAnObject,
        """{"Opts":[null]}""", """{"Opts":["a.b=c",null]}""", """{"Opts":[5]}""", """{"Opts":"a.b=c"}""", """{"Opts":{}}""",
        """{"Home":5}""", """{"Home":[]}""", """{"UIDMaps":[null]}""", """{"GIDMaps":5}""",
        """{"UIDMaps":[{"container_id":0,"host_id":null,"size":1}]}""", """{"GIDMaps":[{"size":"x"}]}""",
    ];

    static readonly string[] LayerEndpoints = ["Create", "CreateReadWrite", "Remove", "Get", "Put", "Exists", "GetMetadata", "Changes", "DiffSize", "Diff"];

    [Fact]
    public void EveryPluginEndpointRefusesMalformedBodiesInOneLine_AndLogsNoStackTrace()
    {
        using var plugin = new PluginServer(_temp, "vfs");
        plugin.Ok("Create", """{"ID":"x"}""");
        var cases = LayerEndpoints.SelectMany(m => LayerBodies.Select(b => (m, b)))
            .Concat(InitBodies.Select(b => ("Init", b)))
            .Concat(new[] { "Capabilities", "Status", "Cleanup" }.SelectMany(m => NotAnObject.Select(b => (m, b))));
        var wrong = new List<string>();
        foreach (var (method, body) in cases)
        {
            using var response = plugin.Post("GraphDriver." + method, new StringContent(body, Encoding.UTF8, "application/json"));
            string text = PluginServer.Text(response);
            string? err = null;
            try
            {
                err = JsonDocument.Parse(text).RootElement.GetProperty("Err").GetString();
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
            {
            }
            if ((int)response.StatusCode != 500 || err is null || !err.StartsWith("malformed request: ", StringComparison.Ordinal) || err.Contains('\n'))
                wrong.Add($"{method} {body} -> {(int)response.StatusCode} {text}");
        }
        Assert.True(wrong.Count == 0, $"{wrong.Count} answered wrongly:\n{string.Join('\n', wrong)}");
        Assert.Empty(plugin.Errors());
        Assert.Equal("x", Assert.Single(Directory.GetDirectories(Path.Combine(plugin.Store, "vfs")).Select(Path.GetFileName))); // nothing made or removed
        plugin.Ok("Remove", """{"ID":"x"}""");
    }

    [Fact]
    public void ANullStorageOptionIsRefusedBeforeTheDriverSeesIt()
    {
        // overlay takes a size per layer (vfs refuses every option, which hides the null)
        using var plugin = new PluginServer(_temp, "overlay");
        plugin.Ok("Create", """{"ID":"base"}""");
        Assert.Equal("malformed request: StorageOpt 'size' is null", plugin.Err("CreateReadWrite", """{"ID":"c","Parent":"base","StorageOpt":{"size":null}}"""));
        Assert.Equal("malformed request: StorageOpt 'size' is null", plugin.Err("Create", """{"ID":"c","Parent":"base","StorageOpt":{"size":null}}"""));
        Assert.Empty(plugin.Errors());
        Assert.False(plugin.Ok("Exists", """{"ID":"c"}""").GetProperty("Exists").GetBoolean());
        plugin.Ok("Remove", """{"ID":"base"}""");
    }

    [Fact]
    public void ApplyDiffWithoutOneLayerIdIsRefusedInOneLine()
    {
        using var plugin = new PluginServer(_temp, "vfs");
        plugin.Ok("Create", """{"ID":"x"}""");
        foreach (var query in new[] { "", "?id=", "?parent=x", "?id=x&id=y" })
        {
            using var response = plugin.Post("GraphDriver.ApplyDiff" + query, new ByteArrayContent([]));
            string err = JsonDocument.Parse(PluginServer.Text(response)).RootElement.GetProperty("Err").GetString()!;
            Assert.True((int)response.StatusCode == 500 && err.StartsWith("malformed request: ", StringComparison.Ordinal), $"ApplyDiff{query}: {err}");
        }
        Assert.Empty(plugin.Errors());
    }

    [Fact]
    public void AnErrThatQuotesTheRequestIsStillOneLine()
    {
        using var plugin = new PluginServer(_temp, "vfs");
        Assert.StartsWith("invalid layer id 'a\\nb'", plugin.Err("Create", """{"ID":"a\nb"}"""));
        Assert.Equal("storage option 'a?b' is not KEY=VALUE", plugin.Err("Init", """{"Opts":["a\nb"]}"""));
        Assert.Equal("malformed request: StorageOpt 'a?b' is null", plugin.Err("Create", """{"ID":"c","StorageOpt":{"a\rb":null}}"""));
    }

    [Fact]
    public void ApplyDiffOfALayerWithExtendedHeadersPastTheLimitIsRefusedInOneLine()
    {
        // the reader's limits reach dockerd as an Err: 20 xattrs of 60 KiB make one PAX header of 1.2 MB, gzip-compressed
        using var plugin = new PluginServer(_temp, "vfs");
        plugin.Ok("Create", """{"ID":"x"}""");
        var gz = new MemoryStream();
        using (var z = new System.IO.Compression.GZipStream(gz, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new Strata.Archive.Tar.TarWriter(z))
        {
            var xattrs = Enumerable.Range(0, 20).Select(i => new KeyValuePair<string, byte[]>($"user.{i}", new byte[60 << 10])).ToList();
            tar.WriteHeader(new Strata.Archive.Tar.TarEntry { Name = "f", Type = Strata.Archive.Tar.TarEntryType.Regular, Xattrs = xattrs });
            tar.Finish();
        }
        using var response = plugin.Post("GraphDriver.ApplyDiff?id=x", new ByteArrayContent(gz.ToArray()));
        string err = JsonDocument.Parse(PluginServer.Text(response)).RootElement.GetProperty("Err").GetString()!;
        Assert.StartsWith("tar: extended headers before one member exceed the limit of 1 MiB (", err);
        Assert.DoesNotContain('\n', err);
        Assert.False(plugin.Ok("Exists", """{"ID":"x"}""").GetProperty("Exists").GetBoolean()); // the store drops a failed apply's layer
        Assert.Empty(plugin.Errors());
    }

    [Fact]
    public void APluginRequestBodyPastTheLimitIsRefusedBeforeItIsAllRead()
    {
        using var plugin = new PluginServer(_temp, "vfs");
        string huge = "{\"ID\":\"" + new string('a', 2 << 20) + "\"}";
        Assert.Equal("malformed request: the body is larger than 1 MiB", plugin.Err("Create", huge));
        Assert.Empty(plugin.Errors());
    }

    [Fact]
    public void ThePoolControlSocketRefusesMalformedCallsInOneLine()
    {
        using var pool = new ServedTestPool(_temp);
        string[] calls =
        [
            .. NotAnObject, "null", "{}",
            """{"Op":null}""", """{"Op":5}""", """{"Op":{}}""", """{"Name":"d"}""", """{"Op":"create\nfile"}""", """{"Op":"nothing"}""",
            """{"Op":"create","Name":5,"Size":1048576}""", """{"Op":"create","Name":"d","Size":"1G"}""",
            """{"Op":"create","Name":"d","Size":null}""", """{"Op":"create","Name":"d","Size":1.5}""", """{"Op":"create","Name":"d"}""",
            """{"Op":"create","Name":null,"Size":1048576}""", """{"Op":"delete","Name":"d","Defer":"yes"}""",
            """{"Op":"delete","Name":"d","Defer":null}""", """{"Op":"snapshot","Name":"s","Source":[]}""",
            """{"Op":"snapshot","Name":"s","Source":null}""", """{"Op":"resize","Name":null,"Size":1}""",
            """{"Op":"attach","Name":null}""", """{"Op":"detach","Name":5}""", """{"Op":"attached","Name":[]}""",
            """{"Op":"read","Name":"d","Offset":0}""", """{"Op":"write","Name":"d","Offset":"0"}""",
        ];
        // and bodies whose framing is wrong: empty, a length cut short, a call of no bytes, fewer bytes than the length says
        byte[][] bodies = [.. calls.Select(ServedTestPool.Framed), [], [0, 0], [0, 0, 0, 0], [0, 0, 0, 9, (byte)'{', (byte)'}']];
        var wrong = new List<string>();
        foreach (var body in bodies)
        {
            var (status, reply) = pool.Call(body);
            if (status != 200 || ServedTestPool.ErrorOf(reply) is not { Kind: ErrorKind.InvalidArgument, Message: { } error } || error.Contains('\n'))
                wrong.Add($"{Convert.ToHexString(body.AsSpan(0, Math.Min(body.Length, 80)))} -> {status} {Encoding.UTF8.GetString(reply)}");
        }
        Assert.True(wrong.Count == 0, $"{wrong.Count} answered wrongly:\n{string.Join('\n', wrong)}");
        var (hugeStatus, hugeReply) = pool.Call(ServedTestPool.Framed("{\"Op\":\"create\",\"Name\":\"" + new string('a', 2 << 20) + "\"}"));
        Assert.Equal((200, "malformed request: the call is larger than 1 MiB"), (hugeStatus, ServedTestPool.ErrorOf(hugeReply)?.Message));
        Assert.Equal([], pool.Value(new DeviceNamesCall())); // nothing was made
        pool.Value(new CreateCall("d", 1 << 20));
        Assert.Equal(["d"], pool.Value(new DeviceNamesCall()));
        Assert.Empty(pool.Log());
    }
}
