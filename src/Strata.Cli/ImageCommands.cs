using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Strata.Core.Containers;
using System.Text.Json.Nodes;
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

        var references = new Argument<string[]>("IMAGE") { Description = "Image names, ids or id prefixes", Arity = ArgumentArity.OneOrMore };
        var inspectFormat = FormatOption();
        var inspect = new Command("inspect", "Show images' records, manifests and configs (a JSON array, one object per image)") { references, inspectFormat };
        inspect.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var images = Catalog(lease).Images;
            return Inspected(r.GetValue(inspectFormat), r.GetValue(references)!, name => ImageDocument(images, images.Get(name)));
        });
        image.Subcommands.Add(inspect);

        image.Subcommands.Add(ImageRemove("rm", "Remove image names, and images with their last name (as docker rmi: an id of an image with several names needs -f; refused while containers use the image); layers and blobs no other image uses go too"));

        var reference = new Argument<string>("IMAGE") { Description = "Image name, id or id prefix" };
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
        var options = new Output.ListOptions("image", "reference", "label", "dangling=true|false|1|0");
        var all = new Option<bool>("--all", "-a") { Description = "Show all images (every image is: Strata keeps no intermediate images)" };
        var ls = new Command(name, description) { all };
        options.AddTo(ls);
        ls.SetAction(r =>
        {
            var filters = options.Filters(r); // before the store: a bad filter is refused even where there is none
            using var lease = OpenStore(r);
            var store = Catalog(lease).Images;
            var images = store.List().Where(i =>
                filters.Match("dangling", v => Output.Filters.Flag(v) == (i.Names.Count == 0))
                && filters.Match("reference", v => i.Names.Any(n => ImageName.Matches(n, v)))
                && filters.Match("label", v => Output.Filters.Label(v, ImageLabels(store, i)))).ToList();
            return Output.List(r, options, images, i => i.Id, i => Output.Node(i), ["NAME", "ID", "LAYERS", "SIZE", "CREATED"], (i, full) =>
                i.Names.DefaultIfEmpty("<none>").Select(n => new[]
                {
                    n, Output.Id(i.Id, full), i.Layers.Count.ToString(CultureInfo.InvariantCulture), Bytes(i.Size), When(i.Created),
                }));
        });
        return ls;
    }

    /// <summary>The labels in an image's config (config.Labels), or none.</summary>
    static Dictionary<string, string>? ImageLabels(ImageStore images, ImageRecord image) =>
        JsonNode.Parse(images.Blobs.Read(image.Config))?["config"]?["Labels"] is JsonObject labels
            ? labels.Where(p => p.Value is JsonValue).ToDictionary(p => p.Key, p => p.Value!.ToString())
            : null;

    /// <summary>What `inspect` shows of an image: the listing's object as "Image", its manifest and its config.</summary>
    static JsonObject ImageDocument(ImageStore images, ImageRecord i) => new()
    {
        ["Image"] = Output.Node(i),
        ["Manifest"] = JsonNode.Parse(images.Blobs.Read(Digest.Parse(i.Manifest))),
        ["Config"] = JsonNode.Parse(images.Blobs.Read(i.Config)),
    };

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
