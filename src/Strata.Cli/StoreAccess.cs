using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Strata.Core;
using Strata.Core.Snapshots;

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
}
