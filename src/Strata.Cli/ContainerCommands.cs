using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Strata.Core.Containers;
using Strata.Core.Images;

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
        var inspect = new Command("inspect", "Show a container's record and its image's process config as JSON") { id };
        inspect.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var catalog = Catalog(lease);
            var c = catalog.Get(r.GetValue(id)!);
            var layer = lease.Store.Inspect(c.Id);
            WriteJson(new Dictionary<string, object?> { ["Container"] = c, ["Config"] = catalog.Config(c).Config, ["Mounts"] = layer.Mounts });
            return 0;
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
            foreach (var c in r.GetValue(ids)!)
            {
                Catalog(lease).Remove(c, r.GetValue(force));
                Io.Current.Out.WriteLine(c);
            }
            return 0;
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
        return container;
    }

    static Command ContainerList(string name, string description)
    {
        var format = FormatOption();
        var ls = new Command(name, description) { format };
        ls.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var catalog = Catalog(lease);
            var list = catalog.List().Select(c => (Container: c, Layer: lease.Store.Inspect(c.Id))).ToList();
            if (IsJson(r, format))
            {
                WriteJson(list.Select(x => new Dictionary<string, object> { ["Container"] = x.Container, ["Mounts"] = x.Layer.Mounts, ["Size"] = x.Layer.Size }).ToList());
                return 0;
            }
            var table = Table("ID", "NAME", "IMAGE", "MOUNTS", "CREATED");
            foreach (var (c, layer) in list)
                table.AddRow(c.ShortId, Markup.Escape(c.Name), Markup.Escape(c.Image), layer.Mounts.ToString(CultureInfo.InvariantCulture), When(c.Created));
            Io.Current.Ansi.Write(table);
            return 0;
        });
        return ls;
    }
}
