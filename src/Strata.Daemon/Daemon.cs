using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Strata.Core;
using Strata.Native;

namespace Strata.Daemon;

/// <summary>How `strata serve` runs.</summary>
public sealed record DaemonOptions
{
    public required StoreOptions Store { get; init; }
    /// <summary>Serve Docker's graphdriver plugin protocol as this plugin name (null: do not).</summary>
    public string? DockerPlugin { get; init; } = "strata";
    /// <summary>Where dockerd looks for plugin sockets.</summary>
    public string PluginDir { get; init; } = "/run/docker/plugins";
    public LogLevel LogLevel { get; init; } = LogLevel.Information;
    /// <summary>Where the log goes too, besides stderr (tests read it from here).</summary>
    public ILoggerProvider? AlsoLogTo { get; init; }
    /// <summary>Serve containerd's snapshot service (its proxy plugin protocol) on this unix socket (null: do not).</summary>
    public string? SnapshotterSocket { get; init; }
    /// <summary>Name of the control socket in the store root, where the CLI sends its commands.</summary>
    public string? ControlSocket { get; init; }
    /// <summary>Runs one command that came in on the control socket, on the daemon's store, and returns its exit code
    /// (the CLI's command tree lives in the CLI; <see cref="ControlServer"/> serves the socket).</summary>
    public Func<ControlCall, LayerStore, int>? Control { get; init; }
    /// <summary>Serve Prometheus metrics here (a unix socket path or IP:PORT; null: do not).</summary>
    public string? Metrics { get; init; }
}

/// <summary>
/// The long-running Strata service: owns one store (its lock, for as long as it runs) and serves it to
/// dockerd as a graphdriver plugin on a unix socket (0600). On SIGTERM or SIGINT it stops taking
/// requests, lets those in flight finish (up to 60 s), unmounts what it mounted for itself, removes its
/// sockets and releases the store. Layers dockerd has mounted (Get without Put yet: running containers)
/// stay mounted and counted, so a restart of this daemon does not pull a root from under a container.
/// </summary>
public static class StrataDaemon
{
    public static async Task RunAsync(DaemonOptions options, CancellationToken stop = default)
    {
        string? socket = options.DockerPlugin is { } name ? Path.Combine(options.PluginDir, name + ".sock") : null;
        if (socket is not null) PrepareSocket(socket, $"plugin '{options.DockerPlugin}'");
        using var host = new StoreHost(options.Store);
        string? control = options.ControlSocket is { } c ? Path.Combine(host.Root, c) : null;
        if (control is not null) PrepareSocket(control, "the control socket");
        string? snapshotter = options.SnapshotterSocket;
        if (snapshotter is not null) PrepareSocket(snapshotter, "containerd's snapshotter");
        string[] sockets = [.. new[] { socket, control }.OfType<string>()];
        string[] grpcSockets = snapshotter is null ? [] : [snapshotter];

        // declared after the store host: disposed before it, letting go of the devices it holds attached first
        using var snapshots = snapshotter is null ? null : new Snapshotter.SnapshotterHost(host);
        var builder = Hosting.Builder(sockets, grpcSockets);
        if (snapshots is not null)
        {
            builder.Services.AddGrpc();
            builder.Services.AddSingleton(snapshots);
        }
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fff ";
        });
        builder.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        if (options.AlsoLogTo is { } also) builder.Logging.AddProvider(also);
        builder.Logging.SetMinimumLevel(options.LogLevel);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        await using var app = builder.Build();
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("strata");
        var metrics = options.Metrics is null ? null
            : new ServerMetrics(() => host.Use(store => store.Driver is Core.Drivers.Thin.ThinDriver thin ? thin.PoolHome : null) is { } pool ? ServerMetrics.ServedPool(pool) : [],
                () => host.Use(store => store.List()));
        metrics?.UseRequestMetrics(app);
        WebApplication? metricsApp = null;
        foreach (var s in host.Use(store => store.Swept)) log.LogInformation("start-up sweep: {What}", s);
        new DockerPlugin(host, log).Map(app);
        if (options.Control is { } run) ControlServer.Map(app, call => host.Use(store => run(call, store)));
        if (snapshotter is not null) app.MapGrpcService<Snapshotter.SnapshotsService>();
        try
        {
            // first: starting an app sets the process's umask for a moment, which the main app's requests must not see
            if (metrics is not null)
            {
                (metricsApp, string at) = await MetricsEndpoint.StartAsync(metrics, options.Metrics!, stop);
                log.LogInformation("serving metrics of store {Root} on {Where}", host.Root, at);
            }
            await Hosting.StartPrivateAsync(app, [.. sockets, .. grpcSockets], stop); // sockets private from their first moment
            if (snapshotter is not null)
                log.LogInformation("serving store {Root} (driver {Driver}) to containerd as a snapshotter on {Socket}", host.Root, host.Use(store => store.Driver.Name), snapshotter);
            if (socket is not null)
            {
                log.LogInformation("serving store {Root} (driver {Driver}) to dockerd as plugin '{Name}' on {Socket}", host.Root, host.Use(store => store.Driver.Name), options.DockerPlugin, socket);
            }
            Systemd.Notify("READY=1"); // Type=notify: dockerd, ordered after us, starts only now
            await app.WaitForShutdownAsync(stop);
        }
        finally
        {
            Systemd.Notify("STOPPING=1");
            try
            {
                await MetricsEndpoint.StopAsync(metricsApp, options.Metrics);
                await app.StopAsync(CancellationToken.None); // in-flight requests finish first
                snapshots?.Dispose();
                host.Use(store => store.Cleanup());
            }
            finally
            {
                if (socket is not null) File.Delete(socket);
                if (control is not null) File.Delete(control);
                if (snapshotter is not null) File.Delete(snapshotter);
                log.LogInformation("stopped; store {Root} released", host.Root);
            }
        }
    }

    /// <summary>Makes the plugin directory, and removes a socket left by a previous run (refusing to take over
    /// one that another process still answers on).</summary>
    internal static void PrepareSocket(string socket, string name)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(socket)!);
        if (!Posix.TryLstat(socket, out var st)) return;
        if (st.Kind != FileKind.Socket) throw StrataException.Exists($"{socket} exists and is not a socket");
        using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        try
        {
            probe.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(socket));
            throw StrataException.InUse($"another process serves {name} on {socket}");
        }
        catch (System.Net.Sockets.SocketException)
        {
            File.Delete(socket); // nobody listens: a leftover
        }
    }
}
