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

        image.Subcommands.Add(ImportCommand());

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

        image.Subcommands.Add(ExportCommand());
        return image;
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
