using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Strata.Core.Containers;
using Strata.Core.Images;

namespace Strata.Cli;

/// <summary>`strata image rm` and `strata rmi`.</summary>
public static partial class Commands
{
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
}
