// One snapshot service to time: a unix socket, the snapshotter name to put in requests, and the containerd namespace.
using Grpc.Core;
using Grpc.Net.Client;
using Strata.Daemon.Snapshotter.Api;

namespace Strata.SnapshotterBench;

/// <summary>A snapshot service reached over <see cref="Socket"/>: strata serve's snapshotter socket (which ignores the
/// snapshotter name and the namespace) or containerd's own socket, where <see cref="Snapshotter"/> picks the backend and
/// the <c>containerd-namespace</c> header the namespace (containerd's metadata store prefixes keys with it).</summary>
public sealed class Target : IDisposable
{
    /// <summary>containerd's gc keeps snapshots with this label; without it a Prepare through containerd's socket (no
    /// lease) could be collected mid-run. Sent to every side alike.</summary>
    const string GcRoot = "containerd.io/gc.root";

    readonly GrpcChannel _channel;
    readonly CallOptions _options;

    public string Name { get; }
    public string Socket { get; }
    public string Snapshotter { get; }
    public Snapshots.SnapshotsClient Client { get; }

    Target(string name, string socket, string snapshotter, string ns)
    {
        Name = name;
        Socket = socket;
        Snapshotter = snapshotter;
        _channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = Strata.Native.UnixSocketHttp.Handler(socket) });
        _options = new CallOptions(new Metadata { { "containerd-namespace", ns } });
        Client = new Snapshots.SnapshotsClient(_channel);
    }

    /// <summary>Parses NAME=SOCKET,SNAPSHOTTER[,NAMESPACE] (namespace default "strata-bench").</summary>
    public static Target Parse(string spec)
    {
        int eq = spec.IndexOf('=');
        var parts = eq > 0 ? spec[(eq + 1)..].Split(',') : [];
        if (parts.Length is < 2 or > 3) throw new ArgumentException($"--target {spec}: expected NAME=SOCKET,SNAPSHOTTER[,NAMESPACE]");
        return new Target(spec[..eq], parts[0], parts[1], parts.Length == 3 ? parts[2] : "strata-bench");
    }

    public async Task<int> Prepare(string key, string? parent)
    {
        var request = new PrepareSnapshotRequest { Snapshotter = Snapshotter, Key = key, Parent = parent ?? "" };
        request.Labels.Add(GcRoot, "bench");
        return (await Client.PrepareAsync(request, _options)).Mounts.Count;
    }

    public async Task<int> Mounts(string key) =>
        (await Client.MountsAsync(new MountsRequest { Snapshotter = Snapshotter, Key = key }, _options)).Mounts.Count;

    public async Task Commit(string name, string key)
    {
        var request = new CommitSnapshotRequest { Snapshotter = Snapshotter, Name = name, Key = key };
        request.Labels.Add(GcRoot, "bench");
        await Client.CommitAsync(request, _options);
    }

    public async Task Remove(string key) =>
        await Client.RemoveAsync(new RemoveSnapshotRequest { Snapshotter = Snapshotter, Key = key }, _options);

    public void Dispose() => _channel.Dispose();
}
