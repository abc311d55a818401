using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Strata.Core;
using Strata.Core.Containers;

namespace Strata.Cli;

/// <summary>`strata container ...` and `strata ps`: thin wrappers over ContainerStore.</summary>
public static partial class Commands
{
    static Command ContainerCommand()
    {
        var container = new Command("container", "Create, list, mount, diff, commit and remove containers");
        var image = new Argument<string>("IMAGE") { Description = "Image name, id or id prefix" };
        var name = new Option<string?>("--name") { Description = "Container name (default c-<short id>)" };
        var create = new Command("create", "Create a container (a read-write layer over the image); prints its id") { image, name };
        create.SetAction(r =>
        {
            using var lease = OpenStore(r);
            Io.Current.Out.WriteLine(Catalog(lease).Create(r.GetValue(image)!, r.GetValue(name)).Id);
            return 0;
        });
        container.Subcommands.Add(create);

        container.Subcommands.Add(ContainerList("ls", "List containers"));

        var id = new Argument<string>("CONTAINER") { Description = "Container name, id or id prefix" };
        var inspectIds = new Argument<string[]>("CONTAINER") { Description = "Container names, ids or id prefixes", Arity = ArgumentArity.OneOrMore };
        var inspectFormat = FormatOption();
        var inspectSize = new Option<bool>("--size", "-s") { Description = "Also count the bytes each container wrote (Size; null without it)" };
        var inspect = new Command("inspect", "Show containers' records and their images' process configs (a JSON array, one object per container)") { inspectIds, inspectFormat, inspectSize };
        inspect.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var catalog = Catalog(lease);
            return Inspected(r.GetValue(inspectFormat), r.GetValue(inspectIds)!, name => ContainerDocument(lease, catalog, catalog.Get(name), r.GetValue(inspectSize)));
        });
        container.Subcommands.Add(inspect);

        var mount = new Command("mount", "Mount a container's root filesystem and print its path") { id };
        mount.SetAction(r =>
        {
            using var lease = OpenStore(r);
            Io.Current.Out.WriteLine(Catalog(lease).Mount(r.GetValue(id)!));
            return 0;
        });
        container.Subcommands.Add(mount);

        var unmount = new Command("unmount", "Release one mount of a container") { id };
        unmount.SetAction(r =>
        {
            using var lease = OpenStore(r);
            Catalog(lease).Unmount(r.GetValue(id)!);
            return 0;
        });
        container.Subcommands.Add(unmount);

        var ids = new Argument<string[]>("CONTAINER") { Description = "Container names or ids", Arity = ArgumentArity.OneOrMore };
        var force = new Option<bool>("--force", "-f") { Description = "Unmount a mounted container first" };
        var rm = new Command("rm", "Remove containers and their layers") { ids, force };
        rm.SetAction(r =>
        {
            using var lease = OpenStore(r);
            return ForEach(r.GetValue(ids)!, c =>
            {
                Catalog(lease).Remove(c, r.GetValue(force));
                Io.Current.Out.WriteLine(c);
            });
        });
        container.Subcommands.Add(rm);

        var diff = new Command("diff", "List the container's changes to its image (A added, C changed, D deleted)") { id };
        diff.SetAction(r =>
        {
            using var lease = OpenStore(r);
            foreach (var c in Catalog(lease).Changes(r.GetValue(id)!)) Io.Current.Out.WriteLine(c.ToString());
            return 0;
        });
        container.Subcommands.Add(diff);

        var newImage = new Argument<string>("IMAGE") { Description = "Name of the new image NAME[:TAG]" };
        var message = new Option<string?>("--message", "-m") { Description = "Comment for the image's history" };
        var commit = new Command("commit", "Make the container's changes a new layer and a new image; prints its id") { id, newImage, message };
        commit.SetAction(r =>
        {
            using var lease = OpenStore(r);
            Io.Current.Out.WriteLine(Catalog(lease).Commit(r.GetValue(id)!, r.GetValue(newImage)!, r.GetValue(message)).Id);
            return 0;
        });
        container.Subcommands.Add(commit);
        container.Subcommands.Add(ContainerStateCommand());
        foreach (var c in ContainerSnapshotCommands()) container.Subcommands.Add(c);
        return container;
    }

    static Command ContainerList(string name, string description)
    {
        var options = new Output.ListOptions("container", "id", "name", "ancestor", "status=created|running|exited");
        var all = new Option<bool>("--all", "-a") { Description = "Show all containers (default: running ones only, as docker ps)" };
        var ls = new Command(name, description) { all };
        options.AddTo(ls);
        ls.SetAction(r =>
        {
            var filters = options.Filters(r); // before the store: a bad filter is refused even where there is none
            using var lease = OpenStore(r);
            var catalog = Catalog(lease);
            var ancestors = new Dictionary<string, string?>();
            string? Ancestor(string reference) => ancestors.TryGetValue(reference, out var known) ? known
                : ancestors[reference] = catalog.Images.TryGet(reference, out var image) ? image!.Id : null;
            var list = catalog.List().Select(c => (Container: c, State: catalog.StateOf(c)))
                .Where(x => (r.GetValue(all) || x.State.Status == ContainerState.Running || filters.Has("status"))
                    && filters.Match("id", v => x.Container.Id.StartsWith(v, StringComparison.Ordinal))
                    && filters.Match("name", v => x.Container.Name.Contains(v, StringComparison.Ordinal))
                    && filters.Match("ancestor", v => x.Container.ImageId == Ancestor(v) || x.Container.Image == v)
                    && filters.Match("status", v => x.State.Status == v))
                .Select(x => ContainerListing(lease, catalog, x.Container, x.State, withSize: true)).ToList();
            return Output.List(r, options, list, c => c.Container.Id, c => c.Document, ["CONTAINER ID", "NAME", "IMAGE", "COMMAND", "CREATED", "STATUS", "SIZE"], (c, full) =>
            [[
                Output.Id(c.Container.Id, full), c.Container.Name, c.Container.Image, Shown(c.Command, full), When(c.Container.Created), Status(c.State), c.Size is { } size ? Bytes(size) : "-",
            ]]);
        });
        return ls;
    }

    /// <summary>A container as listings show it: its record with its state as it is now, the command it runs (the last run's,
    /// or its image's), its own bytes (what it wrote over its image: counted only <paramref name="withSize"/>, as docker
    /// counts them for ps, not inspect, unless asked) and its layer's mounts.</summary>
    sealed record ContainerRow(Container Container, ContainerState State, IReadOnlyList<string> Command, long? Size, JsonNode Document);

    static ContainerRow ContainerListing(StoreLease lease, ContainerStore catalog, Container c, ContainerState state, bool withSize)
    {
        var layer = lease.Store.Inspect(c.Id);
        var command = c.Command ?? DefaultCommand(catalog, c);
        long? size = withSize ? OwnBytes(lease.Store, c.Id) : null;
        var node = Output.Node(c with { State = state, Command = command })!;
        node["Size"] = size;
        node["Mounts"] = layer.Mounts;
        return new ContainerRow(c, state, command, size, node);
    }

    /// <summary>The bytes a container wrote over its image; null where counting them needs its layer mounted and the store is
    /// open for reading only (a listing: vfs, btrfs and thin layers are mounted to be compared; overlay's are read as they are).</summary>
    static long? OwnBytes(LayerStore store, string id)
    {
        try
        {
            return store.DiffSize(id);
        }
        catch (StrataException ex) when (ex.Kind == ErrorKind.ReadOnly)
        {
            return null;
        }
    }

    /// <summary>What `inspect` shows of a container: the listing's object as "Container", its image's process config, and
    /// its layer's mounts.</summary>
    static JsonObject ContainerDocument(StoreLease lease, ContainerStore catalog, Container c, bool withSize = false)
    {
        var row = ContainerListing(lease, catalog, c, catalog.StateOf(c), withSize);
        return new JsonObject
        {
            ["Container"] = row.Document, ["Config"] = Output.Node(catalog.Config(c).Config), ["Mounts"] = row.Document["Mounts"]!.DeepClone(),
            ["Snapshots"] = SnapshotsNode(catalog.Snapshots(c.Id)),
        };
    }

    /// <summary>The image's entrypoint and cmd: what a run without a command runs.</summary>
    static IReadOnlyList<string> DefaultCommand(ContainerStore catalog, Container c)
    {
        try
        {
            var config = catalog.Config(c).Config;
            return [.. config?.Entrypoint ?? [], .. config?.Cmd ?? []];
        }
        catch (StrataException)
        {
            return []; // the image is gone or unreadable: the listing still shows the container
        }
    }

    /// <summary>A command line as docker ps shows it: quoted, cut at 20 characters unless <paramref name="full"/>.</summary>
    static string Shown(IReadOnlyList<string> command, bool full)
    {
        string line = string.Join(' ', command.Select(a => a.Length == 0 || a.Any(ch => char.IsWhiteSpace(ch) || ch is '"' or '\'' or '\\') ? "'" + a.Replace("'", "'\\''") + "'" : a));
        if (!full && line.Length > 20) line = line[..19] + "…";
        return "\"" + line + "\"";
    }

    /// <summary>A state as docker ps shows it: Created, Up 5 minutes, Exited (0) 2 hours ago.</summary>
    static string Status(ContainerState state)
    {
        var now = DateTimeOffset.UtcNow;
        return state.Status switch
        {
            "running" => $"Up {Duration(now - (state.StartedAt ?? now))}",
            "exited" => $"Exited ({(state.ExitCode is { } code ? code.ToString(CultureInfo.InvariantCulture) : "unknown")})"
                + (state.FinishedAt is { } finished ? $" {Duration(now - finished)} ago" : ""), // a killed run recorded no end
            _ => "Created",
        };
    }

    static string Duration(TimeSpan t) => t.TotalSeconds switch
    {
        < 1 => "Less than a second",
        < 60 => $"{(int)t.TotalSeconds} seconds",
        < 120 => "About a minute",
        < 3600 => $"{(int)t.TotalMinutes} minutes",
        < 7200 => "About an hour",
        < 48 * 3600 => $"{(int)t.TotalHours} hours",
        _ => $"{(int)t.TotalDays} days",
    };
}
