using System.Net.Sockets;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Strata.Daemon.Snapshotter.Api;
using Strata.Testing;

namespace Strata.Daemon.Tests;

/// <summary>The plumbing of the containerd snapshotter, without the snapshotter: the code generated from our
/// copy of containerd's snapshots.proto, served by Kestrel on a unix socket with HTTP/2 only (as containerd's
/// proxy plugin connects: h2c, no TLS), and called through a Grpc.Net.Client channel over that socket. Status
/// codes, a server stream, and maps and repeated fields come back as sent.</summary>
public sealed class SnapshotterPlumbingTests : IAsyncLifetime
{
    readonly TempRoot _temp = new();
    WebApplication? _app;
    GrpcChannel? _channel;
    Snapshots.SnapshotsClient _client = null!;

    public async Task InitializeAsync()
    {
        string socket = _temp.Combine("snapshotter.sock");
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddGrpc();
        builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(socket, o => o.Protocols = HttpProtocols.Http2));
        _app = builder.Build();
        _app.MapGrpcService<FixedSnapshots>();
        await _app.StartAsync();
        _channel = UnixChannel(socket);
        _client = new Snapshots.SnapshotsClient(_channel);
    }

    public async Task DisposeAsync()
    {
        _channel?.Dispose();
        if (_app is not null) await _app.DisposeAsync();
        _temp.Dispose();
    }

    /// <summary>A gRPC channel whose every connection is <paramref name="socket"/>; the address only names the
    /// authority (containerd's Go client does the same with its "unix://" dialer).</summary>
    static GrpcChannel UnixChannel(string socket) =>
        GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = Strata.Native.UnixSocketHttp.Handler(socket),
        });

    [Fact]
    public async Task AStatusCodeComesBackAsSent()
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await _client.StatAsync(new StatSnapshotRequest { Snapshotter = "strata", Key = "default/1/missing" }));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        Assert.Equal("snapshot default/1/missing does not exist", e.Status.Detail);
    }

    [Fact]
    public async Task AnRpcTheServerDoesNotImplementIsUnimplemented()
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await _client.CleanupAsync(new CleanupRequest { Snapshotter = "strata" }));
        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
    }

    [Fact]
    public async Task LabelsAndMountsRoundTrip()
    {
        var request = new PrepareSnapshotRequest { Snapshotter = "strata", Key = "default/2/active", Parent = "default/1/base" };
        request.Labels.Add("containerd.io/gc.root", "2026-12-06T00:00:00Z");
        var reply = await _client.PrepareAsync(request);
        var mount = Assert.Single(reply.Mounts);
        Assert.Equal("bind", mount.Type);
        Assert.Equal("/snapshots/default/2/active", mount.Source);
        Assert.Equal(["rbind", "rw", "containerd.io/gc.root=2026-12-06T00:00:00Z"], mount.Options);
    }

    [Fact]
    public async Task ListStreamsBatches()
    {
        using var call = _client.List(new ListSnapshotsRequest { Snapshotter = "strata", Filters = { "kind==committed" } });
        var names = new List<string>();
        await foreach (var batch in call.ResponseStream.ReadAllAsync())
            names.AddRange(batch.Info.Select(i => $"{i.Name}:{i.Kind}:{i.CreatedAt.Seconds}"));
        Assert.Equal(["a:Committed:1", "b:Committed:2", "c:Committed:3"], names);
    }

    /// <summary>A snapshotter that knows no snapshot: just enough behaviour to see each kind of call cross the wire.</summary>
    sealed class FixedSnapshots : Snapshots.SnapshotsBase
    {
        public override Task<StatSnapshotResponse> Stat(StatSnapshotRequest request, ServerCallContext context) =>
            throw new RpcException(new Status(StatusCode.NotFound, $"snapshot {request.Key} does not exist"));

        public override Task<PrepareSnapshotResponse> Prepare(PrepareSnapshotRequest request, ServerCallContext context)
        {
            var mount = new Mount { Type = "bind", Source = "/snapshots/" + request.Key, Options = { "rbind", "rw" } };
            mount.Options.Add(request.Labels.Select(l => $"{l.Key}={l.Value}"));
            return Task.FromResult(new PrepareSnapshotResponse { Mounts = { mount } });
        }

        public override async Task List(ListSnapshotsRequest request, IServerStreamWriter<ListSnapshotsResponse> responseStream, ServerCallContext context)
        {
            Assert.Equal(["kind==committed"], request.Filters);
            Info Committed(string name, int seconds) =>
                new() { Name = name, Kind = Kind.Committed, CreatedAt = new Timestamp { Seconds = seconds }, UpdatedAt = new Timestamp { Seconds = seconds } };
            await responseStream.WriteAsync(new ListSnapshotsResponse { Info = { Committed("a", 1), Committed("b", 2) } });
            await responseStream.WriteAsync(new ListSnapshotsResponse { Info = { Committed("c", 3) } });
        }
    }
}
