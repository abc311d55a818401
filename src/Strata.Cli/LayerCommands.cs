using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Strata.Core;
using Strata.Core.Snapshots;

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
}
