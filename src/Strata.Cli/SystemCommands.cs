using System.CommandLine;
using System.Globalization;
using Spectre.Console;
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
        var cmd = new Command("serve", "Run the Strata daemon: own the store and serve it to dockerd, and to containerd with --snapshotter-socket (stops on SIGTERM/SIGINT)") { plugin, pluginDir, snapshotter, logLevel };
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
            }).GetAwaiter().GetResult();
            return 0;
        });
        return cmd;
    }

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
            status.Add(new("Images", catalog.Images.List().Count.ToString(CultureInfo.InvariantCulture)));
            status.Add(new("Containers", catalog.List().Count.ToString(CultureInfo.InvariantCulture)));
            status.Add(new("Snapshotter Socket", Io.Current.SnapshotterSocket
                ?? (Io.Current.Store is null ? "none (no daemon owns the store)" : "none (the daemon runs without --snapshotter-socket)")));
            status.Add(new("Snapshots", Snapshotter.Count(store.Root) is { } kinds
                ? FormattableString.Invariant($"{kinds.Values.Sum()} ({kinds.GetValueOrDefault(SnapshotKind.Active)} active, {kinds.GetValueOrDefault(SnapshotKind.Committed)} committed, {kinds.GetValueOrDefault(SnapshotKind.View)} views)")
                : "unknown (a snapshot record does not parse)"));
            if (IsJson(r, format))
            {
                var doc = new Dictionary<string, object>
                {
                    ["Driver"] = store.Driver.Name,
                    ["Status"] = status.Select(p => new[] { p.Key, p.Value }).ToArray(),
                };
                WriteJson(doc);
                return 0;
            }
            Io.Current.Out.WriteLine($"Storage Driver: {store.Driver.Name}");
            foreach (var (k, v) in status) Io.Current.Out.WriteLine($" {k}: {v}");
            return 0;
        });
        return cmd;
    }
}
