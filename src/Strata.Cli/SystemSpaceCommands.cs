using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Strata.Core.Containers;

namespace Strata.Cli;

/// <summary>`strata system df` and `strata system prune`: the store's space as `docker system df` shows Docker's
/// (<see cref="StoreUsage"/>), and removing what nothing uses (<see cref="StorePrune"/>).</summary>
public static partial class Commands
{
    static Command SystemCommand()
    {
        var system = new Command("system", "The store's space: what it holds and what can go");

        var verbose = new Option<bool>("--verbose", "-v") { Description = "Also list every image and container with its space" };
        var format = new Option<string?>("--format") { Description = "table (the default) or json", HelpName = "table|json" };
        var df = new Command("df", "Show the space images, containers and layers take, and what `system prune` would give back (like `docker system df`)") { verbose, format };
        df.SetAction(r =>
        {
            bool json = Output.Json(r.GetValue(format), "system df");
            using var lease = OpenStore(r);
            var usage = StoreUsage.Measure(Catalog(lease), id => BytesOrUnknown(lease.Store, id));
            if (json)
            {
                Output.WriteJson(UsageDocument(usage));
                return 0;
            }
            Output.WriteTable(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], usage.Summary.Select(s => new[]
            {
                new[] { s.Type, Count(s.Total), Count(s.Active), Bytes(s.Size), $"{Bytes(s.Reclaimable)} ({(s.Size == 0 ? 0 : 100.0 * s.Reclaimable / s.Size):0}%)" },
            }));
            if (!r.GetValue(verbose)) return 0;
            Io.Current.Out.WriteLine();
            Io.Current.Out.WriteLine("Images space usage:");
            Io.Current.Out.WriteLine();
            Output.WriteTable(["NAME", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"], usage.Images.Select(i => new[]
            {
                new[] { i.Image.Names.Count > 0 ? string.Join(", ", i.Image.Names) : "<none>", i.Image.ShortId, When(i.Image.Created), Bytes(i.Size), Bytes(i.Shared), Bytes(i.Unique), Count(i.Containers) },
            }));
            Io.Current.Out.WriteLine();
            Io.Current.Out.WriteLine("Containers space usage:");
            Io.Current.Out.WriteLine();
            Output.WriteTable(["CONTAINER ID", "NAME", "IMAGE", "SIZE", "CREATED", "STATUS"], usage.Containers.Select(c => new[]
            {
                new[] { c.Container.ShortId, c.Container.Name, c.Container.Image, c.Size is { } s ? Bytes(s) : "-", When(c.Container.Created), c.State.Status },
            }));
            return 0;
        });
        system.Subcommands.Add(df);

        var all = new Option<bool>("--all", "-a") { Description = "Remove every image no container uses, not only those without a name" };
        var force = new Option<bool>("--force", "-f") { Description = "Do not ask for confirmation" };
        var prune = new Command("prune", "Remove stopped containers, images without a name (every unused one with -a) and dangling layers; asks first unless -f") { all, force };
        prune.SetAction(r =>
        {
            bool allImages = r.GetValue(all);
            if (!r.GetValue(force)) ConfirmPrune(allImages, Io.Current.Err, new StreamReader(Io.Current.In(), leaveOpen: true));
            using var lease = OpenStore(r);
            var report = StorePrune.Run(Catalog(lease), allImages, id => BytesOrUnknown(lease.Store, id));
            var o = Io.Current.Out;
            if (report.Containers.Count > 0)
            {
                o.WriteLine("Deleted Containers:");
                foreach (var c in report.Containers) o.WriteLine(c);
                o.WriteLine();
            }
            if (report.Images.Count > 0)
            {
                o.WriteLine("Deleted Images:");
                foreach (var i in report.Images) o.WriteLine($"deleted: {i}");
                o.WriteLine();
            }
            if (report.Layers.Count > 0)
            {
                o.WriteLine("Deleted Layers:");
                foreach (var l in report.Layers) o.WriteLine(l);
                o.WriteLine();
            }
            foreach (var k in report.Kept) Io.Current.Err.WriteLine($"strata: kept {k}");
            o.WriteLine($"Total reclaimed space: {Bytes(report.ReclaimedBytes)}");
            return 0;
        });
        system.Subcommands.Add(prune);
        return system;

        static string Count(int n) => n.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>Asks whether to prune (on <paramref name="err"/>, as docker does); anything but y or yes cancels: one line, exit 2.</summary>
    static void ConfirmPrune(bool allImages, TextWriter err, TextReader input)
    {
        err.WriteLine("WARNING! This will remove:");
        err.WriteLine("  - all stopped containers (and their snapshots)");
        err.WriteLine(allImages ? "  - all images without at least one container associated to them" : "  - all images without a name");
        err.WriteLine("  - all dangling layers (image and init layers nothing refers to)");
        err.Write("Are you sure you want to continue? [y/N] ");
        err.Flush();
        if (input.ReadLine()?.Trim().ToLowerInvariant() is not ("y" or "yes"))
        {
            err.WriteLine();
            throw StrataException.Invalid("prune cancelled: nothing removed (-f does not ask)");
        }
    }

    /// <summary>For a command that a daemon will run: `system prune` without -f asks here, in the caller's terminal (the
    /// daemon gets no input while it runs a command), and is sent on with --force once the answer is yes. Returns the
    /// arguments to send (the same for every other command).</summary>
    internal static string[] AskBeforeForwarding(ParseResult r, string[] args)
    {
        if (r.CommandResult.Command.Name != "prune" || !IsUnder(r, "system") || r.Errors.Count > 0) return args;
        bool Flag(string name) => r.GetValue((Option<bool>)r.CommandResult.Command.Options.First(o => o.Name == name));
        if (Flag("--force")) return args;
        ConfirmPrune(Flag("--all"), Console.Error, Console.In);
        return [.. args, "--force"];
    }

    /// <summary>A container's (or snapshot's) bytes, or unknown when they cannot be counted (a read-only open, a broken layer).</summary>
    static long? BytesOrUnknown(Strata.Core.LayerStore store, string id)
    {
        try
        {
            return OwnBytes(store, id);
        }
        catch (StrataException)
        {
            return null;
        }
    }

    static JsonObject UsageDocument(StoreUsage usage) => new()
    {
        ["Summary"] = new JsonArray([.. usage.Summary.Select(s => (JsonNode)new JsonObject
        {
            ["Type"] = s.Type, ["Total"] = s.Total, ["Active"] = s.Active, ["Size"] = s.Size, ["Reclaimable"] = s.Reclaimable,
        })]),
        ["Images"] = new JsonArray([.. usage.Images.Select(i => (JsonNode)new JsonObject
        {
            ["Id"] = i.Image.Id, ["Names"] = new JsonArray([.. i.Image.Names.Select(n => (JsonNode)n)]), ["Created"] = i.Image.Created,
            ["Size"] = i.Size, ["SharedSize"] = i.Shared, ["UniqueSize"] = i.Unique, ["Containers"] = i.Containers,
        })]),
        ["Containers"] = new JsonArray([.. usage.Containers.Select(c => (JsonNode)new JsonObject
        {
            ["Id"] = c.Container.Id, ["Name"] = c.Container.Name, ["Image"] = c.Container.Image, ["Size"] = c.Size, ["Status"] = c.State.Status,
        })]),
    };
}
