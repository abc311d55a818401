using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Strata.Core.Containers;
using Strata.Core.Images;

namespace Strata.Cli;

/// <summary>`strata image ...` and `strata container ...` (and their Docker names `images`, `rmi`, `ps`): thin wrappers over
/// ImageStore and ContainerStore.</summary>
public static partial class Commands
{
    static ContainerStore Catalog(StoreLease lease) => ContainerStore.For(lease.Store);

    static readonly Option<bool> QuietOption = new("--quiet", "-q") { Description = "No progress display" };

    static Command ImageCommand()
    {
        var image = new Command("image", "Import, list, inspect, tag, export and remove images");

        var path = new Argument<string>("PATH") { Description = "OCI layout directory, oci-archive or docker-archive tar, or a rootfs tar" };
        var name = new Option<string?>("--name") { Description = "Name the image NAME[:TAG] (default: the names in the archive)" };
        var platform = new Option<string?>("--platform") { Description = "os/arch[/variant] to pick from a multi-platform image (default: this host's)" };
        var import = new Command("import", "Import an image; prints its id and names") { path, name, platform, QuietOption };
        import.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var importer = new ImageImporter(Catalog(lease).Images);
            var options = new ImageImporter.Options
            {
                Name = r.GetValue(name),
                Platform = r.GetValue(platform) is { } p ? Platform.Parse(p) : null,
            };
            var imported = WithProgress(r, progress => importer.Import(Io.Current.FullPath(r.GetValue(path)!), options with { Progress = progress }));
            foreach (var i in imported) Io.Current.Out.WriteLine($"{i.Id} {string.Join(' ', i.Names)}".TrimEnd());
            return 0;
        });
        image.Subcommands.Add(import);

        image.Subcommands.Add(ImageList("ls", "List images"));

        var reference = new Argument<string>("IMAGE") { Description = "Image name, id or id prefix" };
        var inspect = new Command("inspect", "Show an image's record, manifest and config as JSON") { reference };
        inspect.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var images = Catalog(lease).Images;
            var i = images.Get(r.GetValue(reference)!);
            WriteJson(new Dictionary<string, object?>
            {
                ["Image"] = i,
                ["Manifest"] = System.Text.Json.Nodes.JsonNode.Parse(images.Blobs.Read(Digest.Parse(i.Manifest))),
                ["Config"] = System.Text.Json.Nodes.JsonNode.Parse(images.Blobs.Read(i.Config)),
            });
            return 0;
        });
        image.Subcommands.Add(inspect);

        image.Subcommands.Add(ImageRemove("rm", "Remove images (refused while containers use them); layers and blobs no other image uses go too"));

        var target = new Argument<string>("NAME") { Description = "New name NAME[:TAG]" };
        var tag = new Command("tag", "Give an image another name") { reference, target };
        tag.SetAction(r =>
        {
            using var lease = OpenStore(r);
            Catalog(lease).Images.Tag(r.GetValue(reference)!, r.GetValue(target)!);
            return 0;
        });
        image.Subcommands.Add(tag);

        var output = new Option<string>("--output", "-o") { Description = "Where to write: a directory (oci), or a tar", Required = true };
        var exportFormat = new Option<string>("--format") { Description = "oci (a directory, or an oci-archive when PATH ends in .tar) or docker-archive (for docker load)", DefaultValueFactory = _ => "oci" };
        var export = new Command("export", "Write an image out with its blobs as stored") { reference, output, exportFormat, QuietOption };
        export.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var f = r.GetValue(exportFormat) switch
            {
                "oci" => ExportFormat.Oci,
                "docker-archive" or "docker" => ExportFormat.DockerArchive,
                var x => throw StrataException.Invalid($"unknown --format '{x}' (use oci or docker-archive)"),
            };
            var exporter = new ImageExporter(Catalog(lease).Images);
            WithProgress(r, progress =>
            {
                exporter.Export(r.GetValue(reference)!, Io.Current.FullPath(r.GetValue(output)!), f, progress);
                return 0;
            });
            return 0;
        });
        image.Subcommands.Add(export);
        return image;
    }

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
        return container;
    }

    /// <summary>The names Docker users type for three of these commands: `strata images` (`image ls`), `strata rmi`
    /// (`image rm`) and `strata ps` (`container ls`), the same commands under a second name.</summary>
    static IEnumerable<Command> DockerAliases()
    {
        yield return ImageList("images", "List images (as `strata image ls`)");
        yield return ImageRemove("rmi", "Remove images (as `strata image rm`)");
        yield return ContainerList("ps", "List containers (as `strata container ls`)");
    }

    static Command ImageList(string name, string description)
    {
        var format = FormatOption();
        var ls = new Command(name, description) { format };
        ls.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var images = Catalog(lease).Images.List();
            if (IsJson(r, format))
            {
                WriteJson(images);
                return 0;
            }
            var table = Table("NAME", "ID", "LAYERS", "SIZE", "CREATED");
            foreach (var i in images)
                foreach (var n in i.Names.DefaultIfEmpty("<none>"))
                    table.AddRow(Markup.Escape(n), i.ShortId, i.Layers.Count.ToString(CultureInfo.InvariantCulture), Bytes(i.Size), When(i.Created));
            Io.Current.Ansi.Write(table);
            return 0;
        });
        return ls;
    }

    static Command ImageRemove(string name, string description)
    {
        var references = new Argument<string[]>("IMAGE") { Description = "Image names or ids", Arity = ArgumentArity.OneOrMore };
        var rm = new Command(name, description) { references };
        rm.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var catalog = Catalog(lease);
            foreach (var i in r.GetValue(references)!)
            {
                catalog.Images.Remove(i, catalog.UsersOf);
                Io.Current.Out.WriteLine(i);
            }
            return 0;
        });
        return rm;
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

    static Table Table(params string[] headers)
    {
        var table = new Table().NoBorder().HideRowSeparators();
        foreach (var h in headers) table.AddColumn(new TableColumn(h).PadLeft(0).PadRight(3));
        return table;
    }

    static string When(DateTimeOffset t) => t.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    /// <summary>Runs <paramref name="work"/> with a progress display (bytes and rate per step) on stderr when it is a
    /// terminal and --quiet is not given; otherwise quietly.</summary>
    static T WithProgress<T>(ParseResult r, Func<Action<ImportProgress>?, T> work)
    {
        if (r.GetValue(QuietOption) || !Io.Current.ErrIsTerminal) return work(null);
        T result = default!;
        Io.Current.ErrAnsi.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                result = work(p =>
                {
                    if (!tasks.TryGetValue(p.Step, out var task))
                    {
                        foreach (var t in tasks.Values) t.StopTask();
                        tasks[p.Step] = task = ctx.AddTask(p.Step, maxValue: Math.Max(p.Total, 1));
                    }
                    if (p.Total > 0) task.MaxValue = p.Total;
                    task.Value = p.Done;
                });
                foreach (var t in tasks.Values)
                {
                    t.Value = t.MaxValue;
                    t.StopTask();
                }
            });
        return result;
    }
}
