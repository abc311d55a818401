using System.CommandLine;
using System.Globalization;
using Strata.Core;
using System.Text.Json.Nodes;

namespace Strata.Cli;

/// <summary>`strata layer ...`: thin wrappers over LayerStore.</summary>
public static partial class Commands
{
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
            var layer = store.Create(r.GetValue(id)!, ParentOf(store, r.GetValue(parent)), r.GetValue(rw) ? LayerKind.ReadWrite : LayerKind.ReadOnly,
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
            return ForEach(r.GetValue(ids)!, i =>
            {
                string layerId = store.Resolve(i);
                store.Remove(layerId);
                Io.Current.Out.WriteLine(layerId);
            });
        });
        yield return rm;

        var lsOptions = new Output.ListOptions("layer", "label", "kind=ro|rw", "parent");
        var ls = new Command("ls", "List layers");
        lsOptions.AddTo(ls);
        ls.SetAction(r =>
        {
            var filters = lsOptions.Filters(r); // before the store: a bad filter is refused even where there is none
            using var lease = OpenStore(r);
            var store = lease.Store;
            var layers = store.List().Where(l =>
                filters.Match("label", v => Output.Filters.Label(v, l.Labels))
                && filters.Match("kind", v => (l.Kind == LayerKind.ReadWrite) == (v == "rw"))
                && filters.Match("parent", v => l.Parent == store.Resolve(v))).ToList();
            var broken = store.Broken(); // data gone under the store (a thin layer's device deleted with --force)
            return Output.List(r, lsOptions, layers, l => l.Id, l => LayerDocument(l, broken),
                ["ID", "PARENT", "KIND", "SIZE", "MOUNTS", "CREATED", "STATUS"], (l, full) =>
                [[
                    Output.Id(l.Id, full), Output.Id(l.Parent, full), l.Kind == LayerKind.ReadWrite ? "rw" : "ro", Bytes(l.Size),
                    l.Mounts.ToString(CultureInfo.InvariantCulture), When(l.Created), LayerStatus(l, broken),
                ]]);
        });
        yield return ls;

        var inspectIds = new Argument<string[]>("ID") { Description = "Layer ids or id prefixes", Arity = ArgumentArity.OneOrMore };
        var inspectFormat = FormatOption();
        var inspect = new Command("inspect", "Show layers' records and driver metadata (a JSON array, one object per layer)") { inspectIds, inspectFormat };
        inspect.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            var broken = store.Broken();
            return Inspected(r.GetValue(inspectFormat), r.GetValue(inspectIds)!, i =>
            {
                return LayerInspectDocument(store, store.Inspect(store.Resolve(i)), broken);
            });
        });
        yield return inspect;

        var mount = new Command("mount", "Mount a layer and print the path of its tree") { id };
        mount.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            Io.Current.Out.WriteLine(store.Mount(store.Resolve(r.GetValue(id)!)));
            return 0;
        });
        yield return mount;

        var unmount = new Command("unmount", "Release one mount of a layer") { id };
        unmount.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            store.Unmount(store.Resolve(r.GetValue(id)!));
            return 0;
        });
        yield return unmount;

        var output = OutputOption;
        var diff = new Command("diff", "Write the layer's changes as an OCI layer tar") { id, parent, output };
        diff.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            string layerId = store.Resolve(r.GetValue(id)!);
            var result = OutputFile.Write(r.GetValue(output), s =>
                r.GetResult(parent) is null ? store.Diff(layerId, s) : store.Diff(layerId, ParentOf(store, r.GetValue(parent)), s));
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
            long size = store.Apply(r.GetValue(id)!, tar, ParentOf(store, r.GetValue(parent)), parentGiven: r.GetResult(parent) is not null);
            Io.Current.Out.WriteLine(size.ToString(CultureInfo.InvariantCulture));
            return 0;
        });
        yield return apply;

        var changes = new Command("changes", "List changed paths (A added, C changed, D deleted), sorted") { id, parent };
        changes.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var store = lease.Store;
            string layerId = store.Resolve(r.GetValue(id)!);
            var list = r.GetResult(parent) is null ? store.Changes(layerId) : store.Changes(layerId, ParentOf(store, r.GetValue(parent)));
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
            string layerId = store.Resolve(r.GetValue(id)!);
            long size = r.GetResult(parent) is null ? store.DiffSize(layerId) : store.DiffSize(layerId, ParentOf(store, r.GetValue(parent)));
            Io.Current.Out.WriteLine(size.ToString(CultureInfo.InvariantCulture));
            return 0;
        });
        yield return diffSize;
    }

    /// <summary>A layer as listings and inspect show it: its record and whether its data is there (ok, broken, unknown).</summary>
    static JsonNode LayerDocument(Layer l, IReadOnlySet<string>? broken)
    {
        var node = Output.Node(l)!.AsObject();
        node.Remove(nameof(Layer.Incomplete)); // listings show complete layers only
        node["Status"] = LayerStatus(l, broken);
        return node;
    }

    /// <summary>What `inspect` shows of a layer: the listing's object as "Layer", the driver and its facts about the layer.</summary>
    static JsonObject LayerInspectDocument(LayerStore store, Layer layer, IReadOnlySet<string>? broken) =>
        new() { ["Layer"] = LayerDocument(layer, broken), ["Driver"] = store.Driver.Name, ["Metadata"] = Output.Node(store.Metadata(layer.Id)) };

    static string LayerStatus(Layer l, IReadOnlySet<string>? broken) => broken is null ? "unknown" : broken.Contains(l.Id) ? "broken" : "ok";

    /// <summary>A --parent as given (an id or id prefix), resolved; empty or absent as it is (no parent).</summary>
    static string? ParentOf(LayerStore store, string? parent) => parent is { Length: > 0 } p ? store.Resolve(p) : parent;
}
