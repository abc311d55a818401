// SnapshotterHostileTests: the fixture (the real service on a real store over a unix socket), the calls, and the check
// that the store is consistent after them; the tests are in SnapshotterHostileTests.Requests.cs and .Races.cs.
using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Strata.Core;
using Strata.Daemon.Snapshotter;
using Strata.Daemon.Snapshotter.Api;
using Strata.Testing;

namespace Strata.Daemon.Tests;

/// <summary>
/// Requests containerd never sends, over gRPC to the real <see cref="SnapshotsService"/> on a real store (the driver the
/// store probes for: overlay where the kernel mounts it, else vfs): odd and oversized keys, labels past the limits,
/// parents of the wrong kind, calls on the wrong kind of snapshot, malformed filters and update masks, the remote-
/// snapshot label naming garbage, and races of two clients on one key. Each must get the status containerd's own
/// storage (snapshots/storage/bolt.go) gives, in one line, never Internal or Unknown; and each must leave the store
/// consistent: List shows exactly the snapshots expected, every snap-* layer belongs to a record, no temp record is left.
/// </summary>
public sealed partial class SnapshotterHostileTests : IAsyncLifetime
{
    readonly TempRoot _temp = new();
    readonly ErrorLog _errors = new();
    StoreHost? _host;
    WebApplication? _app;
    string _socket = "";
    readonly List<GrpcChannel> _channels = [];
    Snapshots.SnapshotsClient _client = null!;

    string StoreRoot => _temp.Combine("store");

    public async Task InitializeAsync()
    {
        try
        {
            _host = new StoreHost(new StoreOptions { Root = StoreRoot });
            _socket = _temp.Combine("snapshotter.sock");
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.Logging.AddProvider(_errors);
            builder.Services.AddGrpc();
            builder.Services.AddSingleton(new SnapshotterHost(_host));
            builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(_socket, o => o.Protocols = HttpProtocols.Http2));
            _app = builder.Build();
            _app.MapGrpcService<SnapshotsService>();
            await _app.StartAsync();
            _client = NewClient();
        }
        catch
        {
            await DisposeAsync(); // xunit does not dispose what failed to initialize
            throw;
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var c in _channels) c.Dispose();
        try
        {
            if (_app is not null) await _app.DisposeAsync();
        }
        finally
        {
            _host?.Dispose();
            _temp.Dispose();
        }
    }

    /// <summary>A client of its own connection, as a second containerd (or a second of containerd's goroutines) would be;
    /// it takes messages up to containerd's 16 MiB (defaults.DefaultMaxRecvMsgSize).</summary>
    Snapshots.SnapshotsClient NewClient()
    {
        var channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = Strata.Native.UnixSocketHttp.Handler(_socket),
            MaxReceiveMessageSize = 16 << 20,
            MaxSendMessageSize = null,
        });
        _channels.Add(channel);
        return new Snapshots.SnapshotsClient(channel);
    }

    // ---- calls, and what a failed call must look like ----

    /// <summary>The call's status (OK when it succeeded). Whatever it is, it is never Internal or Unknown, and its message is
    /// one line: a refusal of bad input names what was wrong, it does not dump a stack.</summary>
    async Task<Status> StatusOf(Func<Task> call)
    {
        try
        {
            await call();
            return Status.DefaultSuccess;
        }
        catch (RpcException e)
        {
            Assert.False(e.StatusCode is StatusCode.Internal or StatusCode.Unknown, $"{e.StatusCode}: {e.Status.Detail}; logged: {string.Join('\n', Complaints())}");
            Assert.False(e.Status.Detail.Contains('\n') || e.Status.Detail.Contains('\r'), $"not one line: {e.Status.Detail}");
            Assert.True(e.Status.Detail.Length is > 0 and < 1024, $"{e.Status.Detail.Length} characters: {e.Status.Detail[..Math.Min(200, e.Status.Detail.Length)]}");
            return e.Status;
        }
    }

    async Task<string> Fails(StatusCode expected, Func<Task> call, string what = "")
    {
        var status = await StatusOf(call);
        Assert.True(status.StatusCode == expected, $"{what}: expected {expected}, got {status.StatusCode} '{status.Detail}'");
        return status.Detail;
    }

    Task<PrepareSnapshotResponse> Prepare(string key, string parent = "", IDictionary<string, string>? labels = null, Snapshots.SnapshotsClient? client = null)
    {
        var request = new PrepareSnapshotRequest { Snapshotter = "strata", Key = key, Parent = parent };
        if (labels is not null) request.Labels.Add(labels);
        return (client ?? _client).PrepareAsync(request).ResponseAsync;
    }

    Task<ViewSnapshotResponse> View(string key, string parent = "", IDictionary<string, string>? labels = null)
    {
        var request = new ViewSnapshotRequest { Snapshotter = "strata", Key = key, Parent = parent };
        if (labels is not null) request.Labels.Add(labels);
        return _client.ViewAsync(request).ResponseAsync;
    }

    Task Commit(string name, string key, IDictionary<string, string>? labels = null, Snapshots.SnapshotsClient? client = null)
    {
        var request = new CommitSnapshotRequest { Snapshotter = "strata", Name = name, Key = key };
        if (labels is not null) request.Labels.Add(labels);
        return (client ?? _client).CommitAsync(request).ResponseAsync;
    }

    Task Remove(string key, Snapshots.SnapshotsClient? client = null) =>
        (client ?? _client).RemoveAsync(new RemoveSnapshotRequest { Snapshotter = "strata", Key = key }).ResponseAsync;

    async Task<Info> Stat(string key) => (await _client.StatAsync(new StatSnapshotRequest { Snapshotter = "strata", Key = key })).Info;

    Task<MountsResponse> Mounts(string key) => _client.MountsAsync(new MountsRequest { Snapshotter = "strata", Key = key }).ResponseAsync;

    Task<UsageResponse> Usage(string key) => _client.UsageAsync(new UsageRequest { Snapshotter = "strata", Key = key }).ResponseAsync;

    Task<UpdateSnapshotResponse> Update(Info? info, params string[] paths)
    {
        var request = new UpdateSnapshotRequest { Snapshotter = "strata", Info = info };
        if (paths.Length > 0) request.UpdateMask = new FieldMask { Paths = { paths } };
        return _client.UpdateAsync(request).ResponseAsync;
    }

    async Task<List<Info>> List(params string[] filters)
    {
        using var call = _client.List(new ListSnapshotsRequest { Snapshotter = "strata", Filters = { filters } });
        var infos = new List<Info>();
        await foreach (var batch in call.ResponseStream.ReadAllAsync()) infos.AddRange(batch.Info);
        return infos;
    }

    static Dictionary<string, string> Plain(IDictionary<string, string> labels) => new(labels);

    static Dictionary<string, string> Labels(params (string Key, string Value)[] pairs) => pairs.ToDictionary(p => p.Key, p => p.Value);

    /// <summary>Prepares <paramref name="key"/> and commits it as <paramref name="name"/>.</summary>
    async Task Committed(string name, string key, string parent = "")
    {
        await Prepare(key, parent);
        await Commit(name, key);
    }

    // ---- the store after the calls ----

    /// <summary>The store holds exactly <paramref name="names"/>: List says so, one record each (and no temp file of one)
    /// in ROOT/snapshots/, every snap-* layer of the store is the layer of one of them, and the service logged no
    /// error.</summary>
    async Task AssertStoreHolds(params string[] names)
    {
        var expected = names.Order(StringComparer.Ordinal).ToList();
        Assert.Equal(expected, (await List()).Select(i => i.Name).ToList());
        string dir = Path.Combine(StoreRoot, "snapshots");
        var files = Directory.GetFiles(dir).Select(Path.GetFileName).ToList();
        Assert.All(files, f => Assert.True(f!.EndsWith(".json", StringComparison.Ordinal) && !f.Contains(".tmp", StringComparison.Ordinal), $"left in {dir}: {f}"));
        var records = files.Select(f => JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, f!))).RootElement).ToList();
        Assert.Equal(expected, records.Select(r => r.GetProperty("Key").GetString()!).Order(StringComparer.Ordinal).ToList());
        var own = records.Where(r => !(r.TryGetProperty("Borrowed", out var b) && b.GetBoolean())).Select(r => r.GetProperty("Layer").GetString()!)
            .Order(StringComparer.Ordinal).ToList();
        var snapLayers = _host!.Use(store => store.List()).Select(l => l.Id).Where(id => id.StartsWith("snap-", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).ToList();
        Assert.Equal(own, snapLayers);
        Assert.Empty(Complaints());
    }

    /// <summary>What the service logged as a warning or an error (gRPC logs a refused message at Information, with its
    /// exception: that is not one).</summary>
    List<string> Complaints() => _errors.Entries().Where(e => !e.StartsWith("Information:", StringComparison.Ordinal) && !e.StartsWith("Debug:", StringComparison.Ordinal)).ToList();

    static string Escape(string s) => JsonSerializer.Serialize(s.Length > 80 ? s[..80] + "..." : s);
}
