using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Strata.Archive;
using Strata.Core;

namespace Strata.Daemon;

/// <summary>
/// Docker's legacy graphdriver plugin protocol (moby daemon/graphdriver/proxy.go) over a LayerStore:
/// every call is a POST of JSON to /GraphDriver.Method answered with JSON, except Diff (the reply body is
/// the tar) and ApplyDiff (the request body is the tar); both stream. Failures are non-200 replies
/// carrying {"Err": "..."}, which dockerd shows to the user. Field names are those of the Go structs.
/// </summary>
public sealed class DockerPlugin(StoreHost host, ILogger logger)
{
    public const string Accept = "application/vnd.docker.plugins.v1.2+json";

    public void Map(WebApplication app)
    {
        app.MapPost("/Plugin.Activate", context => Write(context, new PluginActivation(["GraphDriver"])));
        Post(app, "Init", (InitRequest r) =>
        {
            // dockerd's storage options pick the store's driver and driver options (strata.driver=NAME, and the
            // driver's own dotted keys) while the store is empty; a store with layers keeps what it has
            string? driver = null;
            var driverOptions = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var opt in r.Opts ?? [])
            {
                int eq = opt.IndexOf('=');
                if (eq <= 0) throw StrataException.Invalid($"storage option '{RequestBody.Quote(opt)}' is not KEY=VALUE");
                string key = opt[..eq], value = opt[(eq + 1)..];
                if (key == "strata.driver") driver = value;
                else if (key.Contains('.')) driverOptions[key] = value;
                else throw StrataException.Invalid($"storage option '{RequestBody.Quote(key)}' is a layer option; give it per container (docker run --storage-opt {RequestBody.Quote(key)}=...)");
            }
            if ((r.UIDMaps?.Count ?? 0) > 0 || (r.GIDMaps?.Count ?? 0) > 0)
                throw StrataException.Unsupported("user namespace remapping (userns-remap) is not supported by strata yet");
            host.Configure(driver, driverOptions);
            logger.LogInformation("dockerd connected: home {Home}, options [{Opts}]; store {Root} uses driver {Driver}", r.Home, string.Join(", ", r.Opts ?? []), host.Root, host.Use(s => s.Driver.Name));
            return Ok();
        }, WireJson.Default.InitRequest);
        Post(app, "Capabilities", (Empty _) => new CapabilitiesReply(new DriverCapabilities(false)), WireJson.Default.Empty);
        Post(app, "Create", (LayerRequest r) =>
        {
            host.Use(store => store.Create(r.ID, Parent(r.Parent), LayerKind.ReadOnly, storageOptions: r.StorageOpt));
            return Ok();
        }, WireJson.Default.LayerRequest);
        Post(app, "CreateReadWrite", (LayerRequest r) =>
        {
            host.Use(store => store.Create(r.ID, Parent(r.Parent), LayerKind.ReadWrite, storageOptions: r.StorageOpt));
            return Ok();
        }, WireJson.Default.LayerRequest);
        Post(app, "Remove", (LayerRequest r) =>
        {
            // as the built-in drivers do, removing what is not there succeeds (dockerd cleans up after failed applies)
            host.Use(store =>
            {
                if (store.Exists(r.ID)) store.Remove(r.ID);
            });
            return Ok();
        }, WireJson.Default.LayerRequest);
        Post(app, "Get", (LayerRequest r) => new DirReply(host.Use(store => store.Mount(r.ID))), WireJson.Default.LayerRequest);
        Post(app, "Put", (LayerRequest r) =>
        {
            // dockerd never retries a failed Put: refusing would leave a count that keeps `docker rm` failing for
            // ever, so a mount that something still uses is detached lazily, as Docker's overlay2 does
            if (host.Use(store => store.Unmount(r.ID, detachBusy: true)) is { } busy) logger.LogWarning("Put {Id}: detached a busy mount ({Busy})", r.ID, busy);
            return Ok();
        }, WireJson.Default.LayerRequest);
        Post(app, "Exists", (LayerRequest r) => new ExistsReply(LayerId.IsValid(r.ID) && host.Use(store => store.Exists(r.ID))), WireJson.Default.LayerRequest);
        // docker info prints "Storage Driver: strata" itself: the first line says which of Strata's drivers serves it
        Post(app, "Status", (Empty _) => new StatusReply(host.Use(store =>
            store.Status().Prepend(new("Strata Driver", store.Driver.Name)).Select(p => new[] { p.Key, p.Value }).ToList())), WireJson.Default.Empty);
        Post(app, "GetMetadata", (LayerRequest r) => new MetadataReply(new(host.Use(store => store.Metadata(r.ID)))), WireJson.Default.LayerRequest);
        Post(app, "Cleanup", (Empty _) =>
        {
            host.Use(store => store.Cleanup());
            return Ok();
        }, WireJson.Default.Empty);
        Post(app, "Changes", (LayerRequest r) =>
            new ChangesReply(host.Use(store => store.Changes(r.ID, Parent(r.Parent))).Select(c => new WireChange(LayerPath.Display(c.Path), (int)c.Kind)).ToList()),
            WireJson.Default.LayerRequest);
        Post(app, "DiffSize", (LayerRequest r) => new SizeReply(host.Use(store => store.DiffSize(r.ID, Parent(r.Parent)))), WireJson.Default.LayerRequest);
        app.MapPost("/GraphDriver.Diff", async context =>
        {
            var r = await Read(context, WireJson.Default.LayerRequest);
            if (r is null) return;
            try
            {
                context.Response.ContentType = "application/x-tar";
                // the tar goes straight to the socket; once it has begun, a failure can only cut it short
                var body = new ClientStream(context.Response.Body, context.RequestAborted);
                var result = await Task.Run(() => host.Use(store => store.Diff(r.ID, Parent(r.Parent), body)));
                if (result.SkippedSockets.Count > 0) logger.LogInformation("diff of {Id} left out {Count} socket(s)", r.ID, result.SkippedSockets.Count);
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                logger.LogWarning("Diff of {Id} stopped: dockerd closed the connection", r.ID);
            }
            catch (Exception ex) when (!context.Response.HasStarted)
            {
                await Fail(context, "Diff", ex);
            }
        });
        app.MapPost("/GraphDriver.ApplyDiff", async context =>
        {
            try
            {
                // the tar is the body: the layer and its parent travel in the query
                var query = context.Request.Query;
                if (query["id"] is not [{ Length: > 0 } id]) throw RequestBody.Malformed("the query names no layer id, or more than one");
                if (query["parent"].Count > 1) throw RequestBody.Malformed("the query names more than one parent");
                string parent = query["parent"].ToString();
                long size = await Task.Run(() => host.Use(store =>
                {
                    // dockerd names the parent it expects the layer to have; applying onto another would be a wrong layer
                    if (parent.Length > 0 && store.Inspect(id).Parent != parent)
                        throw StrataException.Invalid($"layer {id} has parent {store.Inspect(id).Parent ?? "(none)"}, not {parent}");
                    return store.ApplyDiff(id, context.Request.Body);
                }));
                await Write(context, new SizeReply(size));
            }
            catch (Exception ex)
            {
                await Fail(context, "ApplyDiff", ex);
            }
        });
    }

    static string? Parent(string? parent) => string.IsNullOrEmpty(parent) ? null : parent;

    /// <summary>A JSON endpoint: the request body decoded (an empty body is an empty request), the work run off
    /// the request thread (store calls block on disk and mounts), the reply written, or {"Err"} on failure.</summary>
    void Post<TRequest>(WebApplication app, string method, Func<TRequest, object> handle, JsonTypeInfo<TRequest> type) where TRequest : class, IPluginRequest, new()
    {
        app.MapPost("/GraphDriver." + method, async context =>
        {
            var request = await Read(context, type);
            if (request is null) return;
            try
            {
                if (logger.IsEnabled(LogLevel.Debug)) logger.LogDebug("{Method} {Request}", method, JsonSerializer.Serialize(request, type));
                var reply = await Task.Run(() => handle(request));
                await Write(context, reply);
            }
            catch (Exception ex)
            {
                await Fail(context, method, ex);
            }
        });
    }

    /// <summary>The request, checked (<see cref="IPluginRequest.Check"/>); an empty body or null is the empty request.
    /// Null when it is malformed, after answering so.</summary>
    async Task<T?> Read<T>(HttpContext context, JsonTypeInfo<T> type) where T : class, IPluginRequest, new()
    {
        try
        {
            var request = await RequestBody.ReadJsonAsync(context.Request.Body, type, context.RequestAborted) ?? new T();
            request.Check();
            return request;
        }
        catch (StrataException ex)
        {
            await Fail(context, context.Request.Path, ex);
            return null;
        }
    }

    async Task Fail(HttpContext context, string method, Exception ex)
    {
        // Strata's own errors and the system's (no space, I/O error) speak for themselves; anything else is a bug
        bool expected = ex is StrataException or IOException or UnauthorizedAccessException;
        // dockerd shows Err as one line, and the log keeps one line per event: a message that quotes a request cannot break either
        string message = (expected ? ex.Message : $"internal error: {ex.Message}").ReplaceLineEndings(" ");
        if (expected) logger.LogWarning("{Method} failed: {Message}", method, message);
        else logger.LogError(ex, "{Method} failed", method);
        context.Response.StatusCode = 500;
        await Write(context, new ErrReply(message));
    }

    static async Task Write(HttpContext context, object reply)
    {
        context.Response.ContentType = Accept;
        await JsonSerializer.SerializeAsync(context.Response.Body, reply, reply.GetType(), WireJson.Default);
    }

    static ErrReply Ok() => new(null);
}
