using System.CommandLine;
using System.Text.Json.Nodes;
using Strata.Core;

namespace Strata.Cli;

/// <summary>`inspect` as docker's: any number of names in, one JSON array out (or a template line each), every name that
/// resolves printed even when others fail (<see cref="ForEach"/>: each failure on its own line, the first one's exit code). The
/// top-level `strata inspect` takes containers, images and layers alike, looked up in that order.</summary>
public static partial class Commands
{
    /// <summary>Prints the documents of <paramref name="names"/> that <paramref name="document"/> finds.</summary>
    static int Inspected(string? format, IReadOnlyList<string> names, Func<string, JsonNode> document)
    {
        Output.Kind(format, table: false); // a bad --format fails before anything prints
        var found = new List<JsonNode?>();
        int code = ForEach(names, name => found.Add(document(name)));
        Output.Documents(format, found); // `[]` when nothing was found, as docker prints
        return code;
    }

    static Command InspectCommand()
    {
        var names = new Argument<string[]>("NAME") { Description = "Container, image or layer names, ids or id prefixes", Arity = ArgumentArity.OneOrMore };
        var format = FormatOption();
        var cmd = new Command("inspect", "Show containers, images and layers (as `docker inspect`: a JSON array, one object each, by the kind's name: {\"Container\": ...})") { names, format };
        cmd.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var catalog = Catalog(lease);
            var store = lease.Store;
            var broken = new Lazy<IReadOnlySet<string>?>(store.Broken);
            return Inspected(r.GetValue(format), r.GetValue(names)!, name =>
            {
                if (TryFind(() => catalog.Get(name)) is { } c) return ContainerDocument(lease, catalog, c);
                if (catalog.Images.TryGet(name, out var image)) return ImageDocument(catalog.Images, image!);
                if (LayerId.IsValid(name) && TryFind(() => store.Inspect(store.Resolve(name))) is { } layer) return LayerInspectDocument(store, layer, broken.Value);
                throw StrataException.NotFound($"no container, image or layer {name}");
            });
        });
        return cmd;
    }

    static T? TryFind<T>(Func<T> find) where T : class
    {
        try
        {
            return find();
        }
        catch (StrataException ex) when (ex.Kind is ErrorKind.NotFound)
        {
            return null;
        }
    }
}
