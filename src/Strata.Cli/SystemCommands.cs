using System.CommandLine;
using Strata.Core;
using Strata.Core.Snapshots;

namespace Strata.Cli;

/// <summary>`strata serve` and `strata info`: the daemon, and the store's status.</summary>
public static partial class Commands
{
    const string DefaultSnapshotterSocket = "/run/strata/snapshotter.sock";

    static Command Serve()
    {
        var plugin = new Option<string>("--docker-plugin") { Description = "Serve Docker's graphdriver plugin protocol under this name (dockerd --experimental -s NAME)", DefaultValueFactory = _ => "strata" };
        var pluginDir = new Option<string>("--plugin-dir") { Description = "Directory of plugin sockets dockerd searches", DefaultValueFactory = _ => "/run/docker/plugins" };
        var snapshotter = new Option<string?>("--snapshotter-socket")
        {
            Description = $"Also serve containerd's snapshot service (a proxy plugin) on this unix socket (0600; without a path: {DefaultSnapshotterSocket})",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var logLevel = new Option<string>("--log-level") { Description = "debug, info, warn or error", DefaultValueFactory = _ => "info" };
        var metrics = MetricsOption("ROOT");
        var cmd = new Command("serve", "Run the Strata daemon: own the store and serve it to dockerd, and to containerd with --snapshotter-socket (stops on SIGTERM/SIGINT)") { plugin, pluginDir, snapshotter, logLevel, metrics };
        cmd.SetAction(r =>
        {
            var level = r.GetValue(logLevel) switch
            {
                "debug" => Microsoft.Extensions.Logging.LogLevel.Debug,
                "info" => Microsoft.Extensions.Logging.LogLevel.Information,
                "warn" => Microsoft.Extensions.Logging.LogLevel.Warning,
                "error" => Microsoft.Extensions.Logging.LogLevel.Error,
                var l => throw StrataException.Invalid($"unknown --log-level '{l}' (use debug, info, warn or error)"),
            };
            string name = r.GetValue(plugin)!;
            if (!LayerId.IsValid(name)) throw StrataException.Invalid($"invalid plugin name '{name}'");
            var all = Pairs(r.GetValue(StorageOption), "--storage-opt") ?? [];
            string? snapshotterSocket = r.GetResult(snapshotter) is null ? null : Io.Current.FullPath(r.GetValue(snapshotter) ?? DefaultSnapshotterSocket);
            Strata.Daemon.StrataDaemon.RunAsync(new Strata.Daemon.DaemonOptions
            {
                Store = new StoreOptions { Root = r.GetValue(RootOption)!, Driver = r.GetValue(DriverOption), DriverOptions = all },
                DockerPlugin = name,
                PluginDir = r.GetValue(pluginDir)!,
                LogLevel = level,
                ControlSocket = Control.SocketName,
                Control = (call, store) => Control.Run(call, store, snapshotterSocket),
                SnapshotterSocket = snapshotterSocket,
                Metrics = MetricsAddress(r, metrics, r.GetValue(RootOption)!),
            }).GetAwaiter().GetResult();
            return 0;
        });
        return cmd;
    }

    /// <summary>--metrics [ADDR] of the servers: off unless given; given alone, a unix socket in <paramref name="home"/>.</summary>
    static Option<string?> MetricsOption(string home) => new("--metrics")
    {
        Description = $"Serve Prometheus metrics at /metrics on this unix socket (0600; without a value: {home}/{Strata.Daemon.MetricsEndpoint.SocketName}) or TCP address (e.g. 127.0.0.1:9410)",
        HelpName = "PATH|IP:PORT",
        Arity = ArgumentArity.ZeroOrOne,
    };

    static string? MetricsAddress(ParseResult r, Option<string?> metrics, string home) =>
        r.GetResult(metrics) is null ? null
        : r.GetValue(metrics) is { } a ? (a.StartsWith('/') || !a.Contains(':', StringComparison.Ordinal) ? Io.Current.FullPath(a) : a)
        : Path.Combine(Io.Current.FullPath(home), Strata.Daemon.MetricsEndpoint.SocketName);

    static Command Info()
    {
        var format = FormatOption();
        var cmd = new Command("info", "Show the storage driver and its status (like `docker info`)") { format };
        cmd.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            var status = store.Status().ToList();
            var catalog = Catalog(lease);
            status.Add(StatusField.Count("Images", catalog.Images.List().Count));
            status.Add(StatusField.Count("Containers", catalog.List().Count));
            status.Add(Io.Current.SnapshotterSocket is { } socket ? new("Snapshotter Socket", socket)
                : new("Snapshotter Socket", Io.Current.Store is null ? "none (no daemon owns the store)" : "none (the daemon runs without --snapshotter-socket)", null));
            var kinds = Snapshotter.Count(store.Root);
            status.Add(kinds is null ? StatusField.Unknown("Snapshots", "unknown (a snapshot record does not parse)")
                : new("Snapshots",
                    FormattableString.Invariant($"{kinds.Values.Sum()} ({kinds.GetValueOrDefault(SnapshotKind.Active)} active, {kinds.GetValueOrDefault(SnapshotKind.Committed)} committed, {kinds.GetValueOrDefault(SnapshotKind.View)} views)"),
                    new Dictionary<string, object>
                    {
                        ["Total"] = (long)kinds.Values.Sum(), ["Active"] = (long)kinds.GetValueOrDefault(SnapshotKind.Active),
                        ["Committed"] = (long)kinds.GetValueOrDefault(SnapshotKind.Committed), ["Views"] = (long)kinds.GetValueOrDefault(SnapshotKind.View),
                    }));
            return Output.Document(r.GetValue(format), () =>
            {
                var doc = Output.Status(status);
                doc.Insert(0, "StorageDriver", store.Driver.Name);
                return doc;
            }, () =>
            {
                Io.Current.Out.WriteLine($"Storage Driver: {store.Driver.Name}");
                foreach (var f in status) Io.Current.Out.WriteLine($" {f.Key}: {f.Value}");
            });
        });
        return cmd;
    }
}
