using System.CommandLine;
using Strata.Core;

namespace Strata.Cli;

/// <summary>Which store a command works on and how it is opened: for this command, or the daemon's.</summary>
public static partial class Commands
{
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
            Mode = ModeOf(r),
            Waiting = message =>
            {
                err.WriteLine(message);
                err.Flush();
            },
        }), owned: true);
    }

    /// <summary>Commands that only list or show what the store holds: they open it read-only (<see cref="StoreMode.ReadOnly"/>),
    /// sharing its lock with each other, so they run together, work on a read-only store, and change nothing.</summary>
    static readonly HashSet<string> Listings = new(StringComparer.Ordinal)
    {
        "info", "inspect", "layer ls", "layer inspect", "image ls", "images", "image inspect", "image export", "container ls", "ps", "container inspect",
    };

    /// <summary>Commands that read layers' trees or stage in the store's tmp/: they may mount layers (a diff against another
    /// layer than the parent, a thin layer) or write scratch files (push --compression), which wants the store's one
    /// owner, so they open it as writes do, but only a store that exists (<see cref="StoreMode.Existing"/>).</summary>
    static readonly HashSet<string> ContentReads = new(StringComparer.Ordinal)
    {
        "layer changes", "layer diff", "layer diff-size", "container diff", "push",
    };

    /// <summary>How the parsed command opens the store, by its path ("layer ls"); every other command writes.</summary>
    static StoreMode ModeOf(ParseResult r)
    {
        string path = CommandPath(r);
        // `container inspect --size` counts a container's bytes, which mounts its layer on most drivers
        if (path == "container inspect" && r.CommandResult.Children.OfType<System.CommandLine.Parsing.OptionResult>().Any(o => o.Option.Name == "--size" && o.GetValueOrDefault<bool>()))
            return StoreMode.Existing;
        // an export writes the tars of layers a migration kept as their tar-split (from the layers' trees) into the store
        if (path == "image export" && Strata.Core.Images.BlobStore.KeepsTarSplits(r.GetValue(RootOption)!))
            return StoreMode.Existing;
        return Listings.Contains(path) ? StoreMode.ReadOnly : ContentReads.Contains(path) ? StoreMode.Existing : StoreMode.Create;
    }

    /// <summary>The names of the command and its parents below the root command: "layer ls", "ps".</summary>
    static string CommandPath(ParseResult r)
    {
        var words = new List<string>();
        for (var c = r.CommandResult; c is not null && c.Command is not RootCommand; c = c.Parent as System.CommandLine.Parsing.CommandResult)
            words.Insert(0, c.Command.Name);
        return string.Join(' ', words);
    }

    /// <summary>`strata init`: makes the store when the root has none and says so with its driver; on a store that
    /// exists it says that instead and succeeds too (as `git init` does, so a provisioning script may run it every
    /// time), unless --driver or --storage-opt ask for another driver or options than the store's (exit 2, as any
    /// open with them).</summary>
    static Command InitCommand()
    {
        var cmd = new Command("init", "Create the store (at --root, with --driver and --storage-opt) if it does not exist; prints its root and driver");
        cmd.SetAction(r =>
        {
            bool existed = Io.Current.Store is not null || LayerStore.ExistsAt(r.GetValue(RootOption)!);
            using var lease = OpenStore(r);
            var store = lease.Store;
            string options = string.Concat(store.DriverOptions.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $", {p.Key}={p.Value}"));
            Io.Current.Out.WriteLine(existed
                ? $"store {store.Root} exists (driver {store.Driver.Name}{options})"
                : $"created store {store.Root} (driver {store.Driver.Name}{options})");
            return 0;
        });
        return cmd;
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
}
