using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Strata.Core;
using Strata.Core.Snapshots;

namespace Strata.Cli;

/// <summary>The command tree. Each action opens the store, makes one call, prints the result: no storage logic here.</summary>
public static partial class Commands
{
    static readonly Option<string> RootOption = new("--root")
    {
        Description = "Store directory (env STRATA_ROOT; default /var/lib/strata)",
        Recursive = true,
        DefaultValueFactory = _ => StoreOptions.DefaultRoot,
    };

    static readonly Option<string?> DriverOption = new("--driver")
    {
        Description = $"Storage driver: {string.Join(", ", Core.Drivers.DriverRegistry.Names)} (default: the store's own, or probed for a new store: btrfs on btrfs, overlay where the kernel mounts it, else vfs)",
        Recursive = true,
    };

    static readonly Option<string[]> StorageOption = new("--storage-opt")
    {
        Description = "KEY=VALUE (repeatable): driver options (with a dot, e.g. overlay.mount_program=/usr/bin/fuse-overlayfs) and, for `layer create`, layer options (e.g. size=50M)",
        Recursive = true,
        AllowMultipleArgumentsPerToken = false,
    };

    static readonly Option<string?> OutputOption = new("--output", "-o") { Description = "Write the tar to FILE instead of stdout" };
    static readonly Option<string?> InputOption = new("--input", "-i") { Description = "Read the tar from FILE instead of stdin" };

    public static RootCommand Build()
    {
        var root = new RootCommand("Strata: copy-on-write storage for containers");
        root.Options.Add(RootOption);
        root.Options.Add(DriverOption);
        root.Options.Add(StorageOption);
        root.Subcommands.Add(Info());
        root.Subcommands.Add(Serve());
        var layer = new Command("layer", "Create, inspect, mount, diff and apply layers");
        foreach (var c in LayerCommands()) layer.Subcommands.Add(c);
        root.Subcommands.Add(layer);
        root.Subcommands.Add(ImageCommand());
        root.Subcommands.Add(ContainerCommand());
        root.Subcommands.Add(RunCommand());
        root.Subcommands.Add(PoolCommand());
        foreach (var c in RegistryCommands().Concat(DockerAliases())) root.Subcommands.Add(c);
        return root;
    }

    static StoreLease OpenStore(ParseResult r) => OpenStore(r, out _, layerOptionsAllowed: false);

    /// <summary>The store a command works on, with the driver options of --storage-opt (keys with a dot; the rest
    /// are layer options): opened for this command, or the daemon's when the command runs inside it.</summary>
    static StoreLease OpenStore(ParseResult r, out Dictionary<string, string> layerOptions, bool layerOptionsAllowed = true)
    {
        var all = Pairs(r.GetValue(StorageOption), "--storage-opt") ?? [];
        var driverOptions = all.Where(p => p.Key.Contains('.')).ToDictionary();
        layerOptions = all.Where(p => !p.Key.Contains('.')).ToDictionary();
        if (!layerOptionsAllowed && layerOptions.Count > 0)
            throw StrataException.Invalid($"--storage-opt {layerOptions.Keys.First()}= is a layer option: only `layer create` takes it");
        if (Io.Current.Store is { } served)
        {
            served.RequireConfiguration(r.GetValue(DriverOption), driverOptions); // as opening it would
            return new StoreLease(served, owned: false);
        }
        var err = Io.Current.Err;
        return new StoreLease(LayerStore.Open(new StoreOptions
        {
            Root = r.GetValue(RootOption)!,
            Driver = r.GetValue(DriverOption),
            DriverOptions = driverOptions,
            Waiting = message =>
            {
                err.WriteLine(message);
                err.Flush();
            },
        }), owned: true);
    }

    /// <summary>A store for one command; disposing closes it only if the command opened it.</summary>
    sealed class StoreLease(LayerStore store, bool owned) : IDisposable
    {
        public LayerStore Store => store;

        public void Dispose()
        {
            if (owned) store.Dispose();
        }
    }

    /// <summary>How a parsed command line is sent to a daemon: the control socket of the store it names (`strata serve`
    /// owns a store), whether it may run inside a daemon that owns that store (everything but `serve`, `run`, `pool`,
    /// `login`, `logout`, help and version), whether it
    /// reads stdin, and the files of -i and -o, which the client reads and writes itself (they are the
    /// caller's files, under the caller's permissions and working directory).</summary>
    internal static Route Route(ParseResult r)
    {
        var command = r.CommandResult.Command;
        bool forwardable = r.Errors.Count == 0 && Usage.Problem(r) is null && r.Action is not null && command is not RootCommand && command.Name is not ("serve" or "run")
            && !r.Tokens.Any(t => t.Value is "--help" or "-h" or "-?" or "--version");
        string? input = r.GetResult(InputOption) is not null ? r.GetValue(InputOption) : null;
        string? output = r.GetResult(OutputOption) is not null ? r.GetValue(OutputOption) : null;
        bool reads = command.Name is "apply"; // the forwardable commands that read stdin
        // pool commands run here, and reach a pool's server through its typed calls (PoolCommands), not as command lines
        if (IsPoolCommand(r)) forwardable = false;
        if (IsClientCommand(command.Name)) forwardable = false; // they use no store, and read the caller's terminal and config
        string root = Path.GetFullPath(r.GetValue(RootOption)!);
        return new Route(Path.Combine(root, Control.SocketName), $"store {root}", forwardable, reads, input, output);
    }

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

    static IEnumerable<Command> LayerCommands()
    {
        var id = new Argument<string>("ID") { Description = "Layer id" };
        var parent = new Option<string?>("--parent") { Description = "Parent layer id" };

        var rw = new Option<bool>("--rw") { Description = "Create a read-write (container) layer" };
        var labels = new Option<string[]>("--label") { Description = "Label KEY=VALUE (repeatable)", AllowMultipleArgumentsPerToken = false };
        var create = new Command("create", "Create an empty layer, or a copy-on-write child of --parent") { id, parent, rw, labels };
        create.SetAction(r =>
        {
            using var lease = OpenStore(r, out var layerOptions);
            var store = lease.Store;
            var layer = store.Create(r.GetValue(id)!, r.GetValue(parent), r.GetValue(rw) ? LayerKind.ReadWrite : LayerKind.ReadOnly,
                Pairs(r.GetValue(labels), "--label"), layerOptions);
            Io.Current.Out.WriteLine(layer.Id);
            return 0;
        });
        yield return create;

        var ids = new Argument<string[]>("ID") { Description = "Layer ids", Arity = ArgumentArity.OneOrMore };
        var rm = new Command("rm", "Remove layers (refused while a layer has children or is mounted)") { ids };
        rm.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            foreach (var i in r.GetValue(ids)!)
            {
                store.Remove(i);
                Io.Current.Out.WriteLine(i);
            }
            return 0;
        });
        yield return rm;

        var format = FormatOption();
        var ls = new Command("ls", "List layers") { format };
        ls.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            var layers = store.List();
            var broken = store.Broken(); // data gone under the store (a thin layer's device deleted with --force)
            if (IsJson(r, format))
            {
                WriteJson(new System.Text.Json.Nodes.JsonArray([.. layers.Select(l =>
                {
                    var node = System.Text.Json.JsonSerializer.SerializeToNode(l, CliJson.Default.Layer)!;
                    if (broken?.Contains(l.Id) == true) node["Broken"] = true;
                    return node;
                })]));
                return 0;
            }
            var table = new Table().NoBorder().HideRowSeparators();
            foreach (var h in new[] { "ID", "PARENT", "KIND", "SIZE", "MOUNTS", "CREATED", "STATUS" }) table.AddColumn(new TableColumn(h).PadLeft(0).PadRight(3));
            foreach (var l in layers)
                table.AddRow(Markup.Escape(l.Id), Markup.Escape(l.Parent ?? "-"), l.Kind == LayerKind.ReadWrite ? "rw" : "ro",
                    Bytes(l.Size), l.Mounts.ToString(CultureInfo.InvariantCulture), l.Created.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),
                    broken is null ? "unknown" : broken.Contains(l.Id) ? "broken" : "ok");
            Io.Current.Ansi.Write(table);
            return 0;
        });
        yield return ls;

        var inspect = new Command("inspect", "Show a layer's record and driver metadata as JSON") { id };
        inspect.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            var layer = store.Inspect(r.GetValue(id)!);
            WriteJson(new Dictionary<string, object> { ["Layer"] = layer, ["Driver"] = store.Driver.Name, ["Metadata"] = store.Metadata(layer.Id) });
            return 0;
        });
        yield return inspect;

        var mount = new Command("mount", "Mount a layer and print the path of its tree") { id };
        mount.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            Io.Current.Out.WriteLine(store.Mount(r.GetValue(id)!));
            return 0;
        });
        yield return mount;

        var unmount = new Command("unmount", "Release one mount of a layer") { id };
        unmount.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            store.Unmount(r.GetValue(id)!);
            return 0;
        });
        yield return unmount;

        var output = OutputOption;
        var diff = new Command("diff", "Write the layer's changes as an OCI layer tar") { id, parent, output };
        diff.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            string layerId = r.GetValue(id)!;
            var result = OutputFile.Write(r.GetValue(output), s =>
                r.GetResult(parent) is null ? store.Diff(layerId, s) : store.Diff(layerId, r.GetValue(parent), s));
            foreach (var s in result.SkippedSockets) Io.Current.Err.WriteLine($"strata: note: socket {s} skipped (tar cannot hold sockets)");
            return 0;
        });
        yield return diff;

        var input = InputOption;
        var apply = new Command("apply", "Apply an OCI layer tar: creates layer ID (child of --parent) if it does not exist; prints the bytes applied") { id, parent, input };
        apply.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            using var tar = OpenInput(r.GetValue(input));
            long size = store.Apply(r.GetValue(id)!, tar, r.GetValue(parent), parentGiven: r.GetResult(parent) is not null);
            Io.Current.Out.WriteLine(size.ToString(CultureInfo.InvariantCulture));
            return 0;
        });
        yield return apply;

        var changes = new Command("changes", "List changed paths (A added, C changed, D deleted), sorted") { id, parent };
        changes.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            string layerId = r.GetValue(id)!;
            var list = r.GetResult(parent) is null ? store.Changes(layerId) : store.Changes(layerId, r.GetValue(parent));
            var outw = Io.Current.Out;
            foreach (var c in list) outw.WriteLine(c.ToString());
            outw.Flush();
            return 0;
        });
        yield return changes;

        var diffSize = new Command("diff-size", "Print the bytes of file content the layer's diff carries") { id, parent };
        diffSize.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            string layerId = r.GetValue(id)!;
            long size = r.GetResult(parent) is null ? store.DiffSize(layerId) : store.DiffSize(layerId, r.GetValue(parent));
            Io.Current.Out.WriteLine(size.ToString(CultureInfo.InvariantCulture));
            return 0;
        });
        yield return diffSize;
    }

    static Option<string?> FormatOption() => new("--format") { Description = "Output format: table (default) or json" };

    static bool IsJson(ParseResult r, Option<string?> format) => r.GetValue(format) switch
    {
        null or "table" => false,
        "json" => true,
        var f => throw StrataException.Invalid($"unknown --format '{f}' (use table or json)"),
    };

    static Dictionary<string, string>? Pairs(string[]? items, string option)
    {
        if (items is null || items.Length == 0) return null;
        var d = new Dictionary<string, string>();
        foreach (var item in items)
        {
            int eq = item.IndexOf('=');
            if (eq <= 0) throw StrataException.Invalid($"{option} '{item}' is not KEY=VALUE");
            d[item[..eq]] = item[(eq + 1)..];
        }
        return d;
    }

    static Stream OpenInput(string? path)
    {
        if (path is null || Io.Current.FilesAtClient) return Io.Current.In();
        return OpenFile(Io.Current.FullPath(path));
    }

    internal static Stream OpenFile(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        }
        catch (FileNotFoundException)
        {
            throw StrataException.NotFound($"input file {path} does not exist");
        }
    }

    static void WriteJson(object value) => Io.Current.Out.WriteLine(CliJson.Serialize(value));

    internal static string Bytes(long n) => n switch
    {
        < 1024 => $"{n} B",
        < 1024 * 1024 => $"{n / 1024.0:0.#} KiB",
        < 1024L * 1024 * 1024 => $"{n / (1024.0 * 1024):0.#} MiB",
        _ => $"{n / (1024.0 * 1024 * 1024):0.##} GiB",
    };
}

/// <summary>See <see cref="Commands.Route"/>.</summary>
sealed record Route(string Socket, string Owner, bool Forwardable, bool ReadsInput, string? InputFile, string? OutputFile);
