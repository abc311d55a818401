using System.CommandLine;
using Strata.Core.Images;

namespace Strata.Cli;

/// <summary>`strata image rm` and `strata rmi`: docker's lines (Untagged: / Deleted:) for what each argument removed;
/// an argument that fails is reported on its own line and the others are still removed; the exit code is the first
/// failure's.</summary>
public static partial class Commands
{
    static Command ImageRemove(string name, string description)
    {
        var references = new Argument<string[]>("IMAGE") { Description = "Image names, ids or id prefixes", Arity = ArgumentArity.OneOrMore };
        var force = new Option<bool>("--force", "-f") { Description = "Remove an image given by id with all its names (containers that use it still refuse it)" };
        var rm = new Command(name, description) { references, force };
        rm.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var catalog = Catalog(lease);
            return ForEach(r.GetValue(references)!, i =>
            {
                foreach (var e in catalog.Images.Remove(i, catalog.UsersOf, r.GetValue(force)))
                    Io.Current.Out.WriteLine($"{(e.Kind == ImageRemovalKind.Untagged ? "Untagged" : "Deleted")}: {e.What}");
            });
        });
        return rm;
    }
}
