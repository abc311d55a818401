// A server's Prometheus metrics: the registry, the request middleware, and what is read from the engine at each scrape.
using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Prometheus;
using Strata.Core;
using Strata.Thin;
using Strata.Thin.Service;

namespace Strata.Daemon;

/// <summary>
/// A server's Prometheus metrics (`strata serve --metrics`, `strata pool serve --metrics`), in one registry of
/// prometheus-net, which formats the text: the requests of every frontend the server hosts (count, errors, duration;
/// fed by <see cref="UseRequestMetrics"/>), and, read at each scrape from what the engine keeps as plain fields, a
/// pool's statistics (<see cref="PoolStats"/>: space, commits, every device's counters) and the layer store's figures.
/// Names follow Prometheus' conventions: a strata_ prefix, base units (bytes, seconds), _total on counters. The
/// counters of a pool are labelled by its directory; when they start again (a new pool server) the series are made
/// anew, which Prometheus sees as a counter reset.
/// </summary>
public sealed class ServerMetrics
{
    readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    readonly Counter _requests, _errors;
    readonly Histogram _duration;
    readonly Gauge _dataBytes, _dataUsed, _metaBytes, _metaUsed, _inFlight;
    readonly Gauge? _layers, _layerBytes, _layerMounts; // a store's only
    readonly Counter _commits, _commitSeconds;
    readonly Counter[] _deviceCounters;
    readonly Func<DeviceStats, double>[] _deviceValues;
    readonly object _scrape = new();
    readonly Dictionary<string, (DateTimeOffset Since, Dictionary<string, uint> Devices)> _pools = []; // device names and ids shown, per pool

    /// <param name="pools">The pools whose statistics to show, read at each scrape (none answering: left out).</param>
    /// <param name="layers">The layer store's layers, read at each scrape (null: no store).</param>
    public ServerMetrics(Func<IEnumerable<(string Dir, PoolStats Stats)>>? pools, Func<IReadOnlyList<Layer>>? layers)
    {
        var f = Metrics.WithCustomRegistry(_registry);
        string[] request = ["frontend", "method"], pool = ["pool"], device = ["pool", "device"];
        _requests = f.CreateCounter("strata_requests_total", "Requests served, by frontend (docker, containerd, cli, pool) and method", request);
        _errors = f.CreateCounter("strata_request_errors_total", "Requests that failed, by frontend and method", request);
        _duration = f.CreateHistogram("strata_request_duration_seconds", "Time to serve a request, by frontend and method",
            new HistogramConfiguration { LabelNames = request, Buckets = Histogram.ExponentialBuckets(0.0005, 4, 9) });
        _dataBytes = f.CreateGauge("strata_pool_data_bytes", "The pool's data space", pool);
        _dataUsed = f.CreateGauge("strata_pool_data_bytes_used", "Data space mapped by the pool's devices", pool);
        _metaBytes = f.CreateGauge("strata_pool_metadata_bytes", "The pool's metadata space", pool);
        _metaUsed = f.CreateGauge("strata_pool_metadata_bytes_used", "Metadata space in use", pool);
        _commits = f.CreateCounter("strata_pool_commits_total", "Transactions the pool committed since its server opened it", pool);
        _commitSeconds = f.CreateCounter("strata_pool_commit_seconds_total", "Time spent committing", pool);
        _inFlight = f.CreateGauge("strata_device_requests_in_flight", "Requests a thin device is serving now", device);
        (string Name, string Help, Func<DeviceStats, double> Value)[] counters =
        [
            ("strata_device_reads_total", "Read requests", d => d.Reads),
            ("strata_device_read_bytes_total", "Bytes read", d => d.ReadBytes),
            ("strata_device_read_seconds_total", "Time read requests took, summed", d => d.ReadNs / 1e9),
            ("strata_device_writes_total", "Write requests", d => d.Writes),
            ("strata_device_written_bytes_total", "Bytes written", d => d.WriteBytes),
            ("strata_device_write_seconds_total", "Time write requests took, summed", d => d.WriteNs / 1e9),
            ("strata_device_flushes_total", "Flush requests", d => d.Flushes),
            ("strata_device_flush_seconds_total", "Time flushes took, summed", d => d.FlushNs / 1e9),
            ("strata_device_discards_total", "Discard and write-zeroes requests", d => d.Discards),
            ("strata_device_discarded_bytes_total", "Bytes discarded or zeroed", d => d.DiscardBytes),
            ("strata_device_discard_seconds_total", "Time discards took, summed", d => d.DiscardNs / 1e9),
            ("strata_device_busy_seconds_total", "Time at least one request was in flight (iostat's %util)", d => d.BusyNs / 1e9),
            ("strata_device_cow_blocks_total", "Blocks copied on write (shared with a snapshot or the last commit)", d => d.CowBlocks),
            ("strata_device_allocated_blocks_total", "Data blocks allocated by writes", d => d.AllocatedBlocks),
            ("strata_device_no_space_errors_total", "Writes failed for want of data space", d => d.NoSpaceErrors),
        ];
        _deviceCounters = [.. counters.Select(c => f.CreateCounter(c.Name, c.Help, device))];
        _deviceValues = [.. counters.Select(c => c.Value)];
        if (layers is not null)
        {
            _layers = f.CreateGauge("strata_layers", "Layers in the store, by kind (ro, rw)", "kind");
            _layerBytes = f.CreateGauge("strata_layer_content_bytes", "Bytes of regular-file content the store's layers add, summed");
            _layerMounts = f.CreateGauge("strata_layer_mounts", "Mounts of the store's layers held now");
        }
        _registry.AddBeforeCollectCallback(() =>
        {
            lock (_scrape)
            {
                if (pools is not null) SetPools(pools());
                if (layers is not null) SetLayers(layers());
            }
        });
    }

    /// <summary>Counts one request of <paramref name="frontend"/>.</summary>
    public void Observe(string frontend, string method, double seconds, bool failed)
    {
        _requests.WithLabels(frontend, method).Inc();
        if (failed) _errors.WithLabels(frontend, method).Inc();
        _duration.WithLabels(frontend, method).Observe(seconds);
    }

    /// <summary>Writes the metrics in Prometheus' text format.</summary>
    public Task WriteAsync(Stream to, CancellationToken ct) => _registry.CollectAndExportAsTextAsync(to, ct);

    void SetPools(IEnumerable<(string Dir, PoolStats Stats)> pools)
    {
        var seen = new HashSet<string>();
        foreach (var (dir, s) in pools)
        {
            seen.Add(dir);
            if (_pools.TryGetValue(dir, out var known) && known.Since != s.Since) Forget(dir, known.Devices); // counting started again
            if (!_pools.TryGetValue(dir, out known)) _pools[dir] = known = (s.Since, []);
            _dataBytes.WithLabels(dir).Set(s.DataBytes);
            _dataUsed.WithLabels(dir).Set(s.DataBytesUsed);
            _metaBytes.WithLabels(dir).Set(s.MetadataBytes);
            _metaUsed.WithLabels(dir).Set(s.MetadataBytesUsed);
            _commits.WithLabels(dir).IncTo(s.Commits);
            _commitSeconds.WithLabels(dir).IncTo(s.CommitNs / 1e9);
            var devices = new Dictionary<string, uint>();
            foreach (var d in s.Devices)
            {
                devices[d.Name] = d.Id;
                if (known.Devices.TryGetValue(d.Name, out uint id) && id != d.Id) ForgetDevice(dir, d.Name); // deleted and made again
                for (int i = 0; i < _deviceCounters.Length; i++) _deviceCounters[i].WithLabels(dir, d.Name).IncTo(_deviceValues[i](d));
                _inFlight.WithLabels(dir, d.Name).Set(d.InFlight);
            }
            foreach (var gone in known.Devices.Keys.Where(n => !devices.ContainsKey(n))) ForgetDevice(dir, gone);
            _pools[dir] = (s.Since, devices);
        }
        foreach (var (dir, known) in _pools.Where(p => !seen.Contains(p.Key)).ToList()) Forget(dir, known.Devices);
    }

    void Forget(string dir, Dictionary<string, uint> devices)
    {
        foreach (var d in devices.Keys) ForgetDevice(dir, d);
        foreach (var g in new[] { _dataBytes, _dataUsed, _metaBytes, _metaUsed }) g.RemoveLabelled(dir);
        _commits.RemoveLabelled(dir);
        _commitSeconds.RemoveLabelled(dir);
        _pools.Remove(dir);
    }

    void ForgetDevice(string dir, string device)
    {
        foreach (var c in _deviceCounters) c.RemoveLabelled(dir, device);
        _inFlight.RemoveLabelled(dir, device);
    }

    void SetLayers(IReadOnlyList<Layer> layers)
    {
        if (_layers is null || _layerBytes is null || _layerMounts is null) return;
        _layers.WithLabels("ro").Set(layers.Count(l => l.Kind != LayerKind.ReadWrite));
        _layers.WithLabels("rw").Set(layers.Count(l => l.Kind == LayerKind.ReadWrite));
        _layerBytes.Set(layers.Sum(l => l.Size));
        _layerMounts.Set(layers.Sum(l => l.Mounts));
    }

    /// <summary>The statistics of the pool in <paramref name="dir"/> when a server has it open (none: nothing to show,
    /// its counters start with one), asked through its control socket in one call.</summary>
    public static IEnumerable<(string Dir, PoolStats Stats)> ServedPool(string dir)
    {
        using var server = RemotePool.ForPool(dir, TimeSpan.FromSeconds(5));
        PoolStats stats;
        try
        {
            stats = server.Stats();
        }
        catch (StrataException)
        {
            yield break; // no server answers (PoolUnreachableException), or it fails: the scrape shows the rest
        }
        yield return (dir, stats);
    }

    const string FailedKey = "strata.failed", MethodKey = "strata.method";

    /// <summary>Marks the request as failed though its status says nothing (a command's exit code, a pool call's error frame).</summary>
    public static void MarkFailed(HttpContext context) => context.Items[FailedKey] = true;

    /// <summary>Names the request's method where its path does not (a command of the CLI, a pool call).</summary>
    public static void NameMethod(HttpContext context, string method) => context.Items[MethodKey] = method;

    /// <summary>Counts every request <paramref name="app"/> serves: its frontend from the path, failed on a status of 400
    /// or more, a gRPC status other than OK, or a mark (<see cref="MarkFailed"/>).</summary>
    public void UseRequestMetrics(WebApplication app) => app.Use(async (context, next) =>
    {
        long start = Stopwatch.GetTimestamp();
        bool threw = true;
        try
        {
            await next(context);
            threw = false;
        }
        finally
        {
            var (frontend, method) = Classify(context);
            bool failed = threw || context.Response.StatusCode >= 400 || context.Items.ContainsKey(FailedKey) || GrpcFailed(context);
            Observe(frontend, method, Stopwatch.GetElapsedTime(start).TotalSeconds, failed);
        }
    });

    static (string Frontend, string Method) Classify(HttpContext context)
    {
        string path = context.Request.Path.Value ?? "";
        string? named = context.Items.TryGetValue(MethodKey, out var m) ? m as string : null;
        if (path == ControlProtocol.Path) return ("cli", named ?? "command");
        if (path == PoolWire.Endpoint) return ("pool", named ?? "call");
        if (path.StartsWith("/GraphDriver.", StringComparison.Ordinal) && context.GetEndpoint() is not null) return ("docker", path["/GraphDriver.".Length..]);
        if (path == "/Plugin.Activate") return ("docker", "Activate");
        const string snapshots = "/containerd.services.snapshots.v1.Snapshots/";
        if (path.StartsWith(snapshots, StringComparison.Ordinal) && context.GetEndpoint() is not null) return ("containerd", path[snapshots.Length..]);
        return ("other", "unknown"); // not a route: a bounded label, whatever the path
    }

    static bool GrpcFailed(HttpContext context)
    {
        string? status = context.Features.Get<IHttpResponseTrailersFeature>()?.Trailers["grpc-status"].ToString();
        if (string.IsNullOrEmpty(status)) status = context.Response.Headers["grpc-status"].ToString(); // a trailers-only reply
        return status is { Length: > 0 } && status != "0";
    }
}
