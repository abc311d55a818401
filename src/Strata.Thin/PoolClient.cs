using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Strata.Thin;

/// <summary>One call on a served pool (see <see cref="PoolClient"/>).</summary>
public sealed record PoolRequest
{
    /// <summary>create, snapshot, delete, resize, device, devices, status; and on a server only: attach and detach
    /// (a device given to the kernel's nbd module).</summary>
    public required string Op { get; init; }
    public string? Name { get; init; }
    public string? Source { get; init; }
    public long Size { get; init; }
    /// <summary>delete: mark an open device for deletion when its last user closes it, instead of refusing.</summary>
    public bool Defer { get; init; }
    /// <summary>create, snapshot: who holds the new device; delete: who asks (a held device is deleted only by its owner).</summary>
    public string? Owner { get; init; }
    /// <summary>delete: delete a device that someone else holds all the same.</summary>
    public bool Force { get; init; }
}

/// <summary>No server took the call (nothing listens on the socket): the request never ran, so it may be run elsewhere.</summary>
public sealed class PoolUnreachableException(string message, Exception inner) : StrataException(ErrorKind.Io, message, inner);

/// <summary>The answer: an error (kind and one-line message), or what the call returns.</summary>
public sealed record PoolReply
{
    public string? Error { get; init; }
    public ErrorKind Kind { get; init; }
    public ThinDeviceInfo? Device { get; init; }
    public List<string>? Names { get; init; }
    public PoolStatus? Status { get; init; }
    public bool Deleted { get; init; }
    public int DeferredDeletes { get; init; }
    /// <summary>Device files the server's FUSE export has open (each attached loop device holds one).</summary>
    public int OpenFiles { get; init; }
    /// <summary>attach: the kernel block device (/dev/nbdN).</summary>
    public string? Path { get; init; }
}

[JsonSerializable(typeof(PoolRequest))]
[JsonSerializable(typeof(PoolReply))]
public sealed partial class PoolWireJson : JsonSerializerContext;

/// <summary>
/// A pool served by `strata pool serve`, called through its control socket (POOL/strata.sock): one POST of a
/// <see cref="PoolRequest"/> to /v1/pool per call, answered by a <see cref="PoolReply"/>; errors come back as
/// the server's <see cref="StrataException"/> (same kind, same message). For callers that must not take the
/// pool's lock while a server owns it (the thin driver, whose devices the server keeps attached).
/// </summary>
public sealed class PoolClient : IDisposable
{
    readonly HttpClient _http;

    public PoolClient(string controlSocket)
    {
        Socket = controlSocket;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(controlSocket), ct);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
        };
        _http = new HttpClient(handler) { Timeout = TimeSpan.FromMinutes(5) };
    }

    public string Socket { get; }

    /// <summary>Whether a server answers on the socket.</summary>
    public bool Answers()
    {
        try
        {
            Call(new PoolRequest { Op = "status" });
            return true;
        }
        catch (PoolUnreachableException)
        {
            return false;
        }
    }

    public PoolReply Call(PoolRequest request)
    {
        using var message = new HttpRequestMessage(HttpMethod.Post, "http://strata/v1/pool")
        {
            Content = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(request, PoolWireJson.Default.PoolRequest)),
        };
        PoolReply? reply;
        try
        {
            using var response = _http.Send(message);
            if (!response.IsSuccessStatusCode)
                throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} refused the call ({(int)response.StatusCode})");
            using var body = response.Content.ReadAsStream();
            reply = JsonSerializer.Deserialize(body, PoolWireJson.Default.PoolReply);
        }
        catch (HttpRequestException ex) when (ex.HttpRequestError == HttpRequestError.ConnectionError)
        {
            throw new PoolUnreachableException($"no pool server answers at {Socket}: {ex.InnerException?.Message ?? ex.Message}", ex);
        }
        catch (HttpRequestException ex)
        {
            throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} failed during a '{request.Op}' call: {ex.InnerException?.Message ?? ex.Message}", ex);
        }
        catch (TaskCanceledException ex)
        {
            throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} did not answer a '{request.Op}' call within {_http.Timeout.TotalMinutes:0} minutes", ex);
        }
        catch (IOException ex)
        {
            throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} failed during a '{request.Op}' call: {ex.Message}", ex);
        }
        catch (JsonException ex)
        {
            throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} sent a malformed reply: {ex.Message}", ex);
        }
        if (reply is null) throw new StrataException(ErrorKind.Io, $"the pool server at {Socket} sent an empty reply");
        if (reply.Error is { } error) throw new StrataException(reply.Kind, error);
        return reply;
    }

    public void Dispose() => _http.Dispose();

    /// <summary>Runs a request on an open pool: what the server does with each call.</summary>
    public static PoolReply Execute(ThinPool pool, PoolRequest request, int openFiles = 0)
    {
        try
        {
            string Name() => request.Name ?? throw StrataException.Invalid($"pool call '{request.Op}' needs a name");
            return request.Op switch
            {
                "create" => new PoolReply { Device = pool.CreateDevice(Name(), request.Size, request.Owner) },
                "snapshot" => new PoolReply { Device = pool.Snapshot(request.Source ?? throw StrataException.Invalid("snapshot needs a source"), Name(), request.Owner) },
                "delete" => new PoolReply { Deleted = pool.DeleteDevice(Name(), request.Defer, request.Owner, request.Force), DeferredDeletes = pool.DeferredDeletes },
                "resize" => new PoolReply { Device = pool.ResizeDevice(Name(), request.Size) },
                "device" => new PoolReply { Device = pool.DeviceInfo(Name()) },
                "devices" => new PoolReply { Names = pool.DeviceNames().ToList() },
                "status" => new PoolReply { Status = pool.Status(), DeferredDeletes = pool.DeferredDeletes, OpenFiles = openFiles },
                _ => throw StrataException.Invalid($"unknown pool call '{request.Op}'"),
            };
        }
        catch (StrataException ex)
        {
            return new PoolReply { Error = ex.Message, Kind = ex.Kind };
        }
    }
}
