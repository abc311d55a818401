using System.CommandLine;
using Strata.Core.Containers;

namespace Strata.Cli;

/// <summary>`strata container snapshot create|ls|rm` and `strata container rollback`: snapshots of a container's
/// filesystem (<see cref="ContainerStore.TakeSnapshot"/>), as OpenVZ's vzctl snapshot, snapshot-switch and snapshot-delete.</summary>
public static partial class Commands
{
    static IEnumerable<Command> ContainerSnapshotCommands()
    {
        var container = new Argument<string>("CONTAINER") { Description = "Container name or id" };
        var name = new Argument<string>("NAME") { Description = "Snapshot name" };
        var optionalName = new Argument<string?>("NAME") { Description = "Snapshot name (default: s1, s2, ...)", Arity = ArgumentArity.ZeroOrOne };

        var snapshot = new Command("snapshot", "Snapshots of a container's filesystem: take (O(1) on thin, btrfs and overlay), list, remove");
        var create = new Command("create", "Take a snapshot of the container's filesystem as it is now; prints its name") { container, optionalName };
        create.SetAction(r =>
        {
            using var lease = OpenStore(r);
            Io.Current.Out.WriteLine(Catalog(lease).TakeSnapshot(r.GetValue(container)!, r.GetValue(optionalName)).Name);
            return 0;
        });
        snapshot.Subcommands.Add(create);

        var format = new Option<string?>("--format") { Description = "table (the default) or json", HelpName = "table|json" };
        var ls = new Command("ls", "List the container's snapshots, oldest first") { container, format };
        ls.SetAction(r =>
        {
            bool json = Output.Json(r.GetValue(format), "snapshot ls");
            using var lease = OpenStore(r);
            var list = Catalog(lease).Snapshots(r.GetValue(container)!);
            if (json)
            {
                Output.WriteJson(SnapshotsNode(list));
                return 0;
            }
            return Output.WriteTable(["NAME", "CREATED", "LAYER"], list.Select(s => new[] { new[] { s.Name, When(s.Created), s.Layer } }));
        });
        snapshot.Subcommands.Add(ls);

        var rm = new Command("rm", "Remove a snapshot: the container keeps its current state, and what only the snapshot held is freed (overlay: merged in by renames)") { container, name };
        rm.SetAction(r =>
        {
            using var lease = OpenStore(r);
            Catalog(lease).RemoveSnapshot(r.GetValue(container)!, r.GetValue(name)!);
            Io.Current.Out.WriteLine(r.GetValue(name));
            return 0;
        });
        snapshot.Subcommands.Add(rm);
        yield return snapshot;

        var force = new Option<bool>("--force", "-f") { Description = "Unmount a mounted container first" };
        var rollback = new Command("rollback", "Return the container's filesystem exactly to a snapshot (the snapshot stays); refused while it runs or is mounted, unless --force") { container, name, force };
        rollback.SetAction(r =>
        {
            using var lease = OpenStore(r);
            Catalog(lease).Rollback(r.GetValue(container)!, r.GetValue(name)!, r.GetValue(force));
            Io.Current.Out.WriteLine(r.GetValue(name));
            return 0;
        });
        yield return rollback;
    }

    static System.Text.Json.Nodes.JsonArray SnapshotsNode(IEnumerable<ContainerSnapshot> list) =>
        [.. list.Select(s => (System.Text.Json.Nodes.JsonNode)new System.Text.Json.Nodes.JsonObject { ["Name"] = s.Name, ["Created"] = s.Created, ["Layer"] = s.Layer })];
}
