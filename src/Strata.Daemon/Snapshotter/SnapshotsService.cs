using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ProtoEmpty = Google.Protobuf.WellKnownTypes.Empty; // Strata.Daemon has an Empty of its own (the plugin protocol)
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Strata.Core;
using Strata.Core.Snapshots;
using Api = Strata.Daemon.Snapshotter.Api;

namespace Strata.Daemon.Snapshotter;

/// <summary>
/// containerd's snapshot service (its proxy plugin protocol, <c>containerd.services.snapshots.v1.Snapshots</c>) over the
/// daemon's store: a thin adapter that turns each RPC into one <see cref="Core.Snapshots.Snapshotter"/> call and its
/// <see cref="StrataException"/> into the gRPC status containerd maps back to its error classes, once, here
/// (<see cref="StatusOf"/>). The snapshotter name in requests is containerd's name for this plugin and is not checked.
/// Calls run on the thread pool: the store's calls are synchronous. A request that does not parse is InvalidArgument
/// too (<see cref="BindService"/>).
/// </summary>
[BindServiceMethod(typeof(SnapshotsService), nameof(BindService))]
public sealed class SnapshotsService(SnapshotterHost host, ILogger<SnapshotsService> log) : Api.Snapshots.SnapshotsBase
{
    const string ServiceName = "containerd.services.snapshots.v1.Snapshots";

    /// <summary>What the generated <c>Snapshots.BindService</c> binds, with one difference: a request that does not parse
    /// (a string that is not UTF-8, a field cut short: what no protobuf library sends) is refused as InvalidArgument,
    /// "malformed request: ...", instead of escaping the generated parser as an exception the server answers with
    /// Unknown and logs as an error with its stack. Method names and types are the generated ones (the client's); the
    /// second parameter is the generated base, which gRPC's binder takes as the type whose methods are overridden.</summary>
    public static void BindService(ServiceBinderBase binder, Api.Snapshots.SnapshotsBase? service)
    {
        binder.AddMethod(Unary("Prepare", Api.PrepareSnapshotRequest.Parser, Api.PrepareSnapshotResponse.Parser), service is null ? null : service.Prepare);
        binder.AddMethod(Unary("View", Api.ViewSnapshotRequest.Parser, Api.ViewSnapshotResponse.Parser), service is null ? null : service.View);
        binder.AddMethod(Unary("Mounts", Api.MountsRequest.Parser, Api.MountsResponse.Parser), service is null ? null : service.Mounts);
        binder.AddMethod(Unary("Commit", Api.CommitSnapshotRequest.Parser, ProtoEmpty.Parser), service is null ? null : service.Commit);
        binder.AddMethod(Unary("Remove", Api.RemoveSnapshotRequest.Parser, ProtoEmpty.Parser), service is null ? null : service.Remove);
        binder.AddMethod(Unary("Stat", Api.StatSnapshotRequest.Parser, Api.StatSnapshotResponse.Parser), service is null ? null : service.Stat);
        binder.AddMethod(Unary("Update", Api.UpdateSnapshotRequest.Parser, Api.UpdateSnapshotResponse.Parser), service is null ? null : service.Update);
        binder.AddMethod(new Method<Api.ListSnapshotsRequest, Api.ListSnapshotsResponse>(MethodType.ServerStreaming, ServiceName, "List",
            MarshallerOf(Api.ListSnapshotsRequest.Parser), MarshallerOf(Api.ListSnapshotsResponse.Parser)), service is null ? null : service.List);
        binder.AddMethod(Unary("Usage", Api.UsageRequest.Parser, Api.UsageResponse.Parser), service is null ? null : service.Usage);
        binder.AddMethod(Unary("Cleanup", Api.CleanupRequest.Parser, ProtoEmpty.Parser), service is null ? null : service.Cleanup);
    }

    static Method<TRequest, TResponse> Unary<TRequest, TResponse>(string name, MessageParser<TRequest> request, MessageParser<TResponse> response)
        where TRequest : class, IMessage<TRequest> where TResponse : class, IMessage<TResponse> =>
        new(MethodType.Unary, ServiceName, name, MarshallerOf(request), MarshallerOf(response));

    static Marshaller<T> MarshallerOf<T>(MessageParser<T> parser) where T : class, IMessage<T> => Marshallers.Create<T>(
        (message, context) =>
        {
            context.SetPayloadLength(message.CalculateSize());
            message.WriteTo(context.GetBufferWriter());
            context.Complete();
        },
        context =>
        {
            try
            {
                return parser.ParseFrom(context.PayloadAsReadOnlySequence());
            }
            catch (InvalidProtocolBufferException ex)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, "malformed request: " + StrataException.OneLine(ex.Message)));
            }
        });

    public override Task<Api.PrepareSnapshotResponse> Prepare(Api.PrepareSnapshotRequest request, ServerCallContext context) => Run(s =>
    {
        var reply = new Api.PrepareSnapshotResponse();
        try
        {
            reply.Mounts.Add(s.Prepare(request.Key, Parent(request.Parent), request.Labels).Select(ToApi));
        }
        catch (StrataException ex) when (ex.Kind == ErrorKind.AlreadyExists && request.Labels.ContainsKey(Core.Snapshots.Snapshotter.SnapshotRefLabel))
        {
            // the remote-snapshot answer: containerd skips this layer's download and unpack
            log.LogInformation("prepare {Key}: AlreadyExists ({Message})", request.Key, ex.Message);
            throw;
        }
        return reply;
    });

    public override Task<Api.ViewSnapshotResponse> View(Api.ViewSnapshotRequest request, ServerCallContext context) => Run(s =>
    {
        var reply = new Api.ViewSnapshotResponse();
        reply.Mounts.Add(s.View(request.Key, Parent(request.Parent), request.Labels).Select(ToApi));
        return reply;
    });

    public override Task<Api.MountsResponse> Mounts(Api.MountsRequest request, ServerCallContext context) => Run(s =>
    {
        var reply = new Api.MountsResponse();
        reply.Mounts.Add(s.Mounts(request.Key).Select(ToApi));
        return reply;
    });

    public override Task<ProtoEmpty> Commit(Api.CommitSnapshotRequest request, ServerCallContext context) => Run(s =>
    {
        s.Commit(request.Name, request.Key, request.Labels);
        return new ProtoEmpty();
    });

    public override Task<ProtoEmpty> Remove(Api.RemoveSnapshotRequest request, ServerCallContext context) => Run(s =>
    {
        s.Remove(request.Key);
        return new ProtoEmpty();
    });

    public override Task<Api.StatSnapshotResponse> Stat(Api.StatSnapshotRequest request, ServerCallContext context) =>
        Run(s => new Api.StatSnapshotResponse { Info = ToApi(s.Stat(request.Key)) });

    public override Task<Api.UpdateSnapshotResponse> Update(Api.UpdateSnapshotRequest request, ServerCallContext context) => Run(s =>
    {
        var info = request.Info ?? throw StrataException.Invalid("an update needs the snapshot's info");
        var given = new SnapshotInfo(info.Name, Parent(info.Parent), SnapshotKind.Active, DateTimeOffset.MinValue, DateTimeOffset.MinValue,
            new Dictionary<string, string>(info.Labels));
        return new Api.UpdateSnapshotResponse { Info = ToApi(s.Update(given, request.UpdateMask?.Paths)) };
    });

    /// <summary>Every snapshot that one of the filters (containerd's syntax, see <see cref="SnapshotFilter"/>) matches, in
    /// batches as containerd's own service streams them (100 at most), and of <see cref="MaxListBatchBytes"/> at most
    /// unless one snapshot alone is larger: a snapshot's labels may come near gRPC's 4 MiB request limit, and a hundred
    /// of those in one message are past any client's limit (containerd's is 16 MiB).</summary>
    public override async Task List(Api.ListSnapshotsRequest request, IServerStreamWriter<Api.ListSnapshotsResponse> responseStream, ServerCallContext context)
    {
        var infos = await Run(s =>
        {
            var filter = SnapshotFilter.Parse(request.Filters);
            return s.Walk(filter.Matches);
        });
        const int MaxBatch = 100;
        var reply = new Api.ListSnapshotsResponse();
        int bytes = 0;
        foreach (var info in infos)
        {
            var api = ToApi(info);
            int size = api.CalculateSize();
            if (reply.Info.Count == MaxBatch || (reply.Info.Count > 0 && bytes + size > MaxListBatchBytes))
            {
                await responseStream.WriteAsync(reply, context.CancellationToken);
                reply = new Api.ListSnapshotsResponse();
                bytes = 0;
            }
            reply.Info.Add(api);
            bytes += size;
        }
        await responseStream.WriteAsync(reply, context.CancellationToken); // the last batch; one empty reply when none matched
    }

    /// <summary>The snapshots' bytes one List message holds at most (one larger snapshot goes alone).</summary>
    public const int MaxListBatchBytes = 1 << 20;

    public override Task<Api.UsageResponse> Usage(Api.UsageRequest request, ServerCallContext context) => Run(s =>
    {
        var usage = s.Usage(request.Key);
        return new Api.UsageResponse { Size = usage.Bytes, Inodes = usage.Inodes };
    });

    public override Task<ProtoEmpty> Cleanup(Api.CleanupRequest request, ServerCallContext context) => Run(s =>
    {
        s.Cleanup();
        return new ProtoEmpty();
    });

    /// <summary>containerd sends an empty string for "no parent".</summary>
    static string? Parent(string parent) => parent.Length == 0 ? null : parent;

    Task<T> Run<T>(Func<Core.Snapshots.Snapshotter, T> call) => Task.Run(() =>
    {
        try
        {
            return host.Use(call);
        }
        catch (StrataException ex)
        {
            throw new RpcException(new Status(StatusOf(ex.Kind), ex.Message));
        }
    });

    /// <summary>The one translation of the store's error kinds into the status codes containerd's errdefs map back.</summary>
    public static StatusCode StatusOf(ErrorKind kind) => kind switch
    {
        ErrorKind.NotFound => StatusCode.NotFound,
        ErrorKind.AlreadyExists => StatusCode.AlreadyExists,
        ErrorKind.InUse => StatusCode.FailedPrecondition,
        ErrorKind.ReadOnly => StatusCode.FailedPrecondition,
        ErrorKind.InvalidArgument => StatusCode.InvalidArgument,
        ErrorKind.NoSpace => StatusCode.ResourceExhausted,
        ErrorKind.Unsupported => StatusCode.Unimplemented,
        ErrorKind.PermissionDenied => StatusCode.PermissionDenied,
        ErrorKind.Io => StatusCode.Unavailable,
        _ => StatusCode.Internal,
    };

    static Api.Mount ToApi(MountSpec m)
    {
        var mount = new Api.Mount { Type = m.Type, Source = m.Source, Target = m.Target ?? "" };
        mount.Options.Add(m.Options);
        return mount;
    }

    static Api.Info ToApi(SnapshotInfo i)
    {
        var info = new Api.Info
        {
            Name = i.Name,
            Parent = i.Parent ?? "",
            Kind = i.Kind switch
            {
                SnapshotKind.View => Api.Kind.View,
                SnapshotKind.Active => Api.Kind.Active,
                SnapshotKind.Committed => Api.Kind.Committed,
                _ => Api.Kind.Unknown,
            },
            CreatedAt = Timestamp.FromDateTimeOffset(i.Created),
            UpdatedAt = Timestamp.FromDateTimeOffset(i.Updated),
        };
        foreach (var (k, v) in i.Labels) info.Labels[k] = v;
        return info;
    }
}
