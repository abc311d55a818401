using System.CommandLine;
using Strata.Core.Images;

namespace Strata.Cli;

/// <summary>`strata image import` and `strata image export`: images in and out as OCI layouts and archives; `-` (import)
/// and no -o, or `-o -` (export), are stdin and stdout, as `docker load` and `docker save` use them.</summary>
public static partial class Commands
{
    static Command ImportCommand()
    {
        var path = new Argument<string>("PATH") { Description = "OCI layout directory, oci-archive or docker-archive tar, or a rootfs tar; - reads the tar from stdin" };
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
            string from = r.GetValue(path)!;
            var imported = WithProgress(r, progress => from == "-"
                ? importer.Import(Io.Current.In(), "stdin", options with { Progress = progress })
                : importer.Import(Io.Current.FullPath(from), options with { Progress = progress }));
            foreach (var i in imported) Io.Current.Out.WriteLine($"{i.Id} {string.Join(' ', i.Names)}".TrimEnd());
            return 0;
        });
        return import;
    }

    static Command ExportCommand()
    {
        var reference = new Argument<string>("IMAGE") { Description = "Image name, id or id prefix" };
        var output = new Option<string?>("--output", "-o") { Description = "Where to write: a directory (oci), or a tar; - or none: a tar to stdout (never to a terminal)" };
        var exportFormat = new Option<string>("--format") { Description = "oci (a directory, or an oci-archive when the output is a .tar or stdout) or docker-archive (for docker load)", DefaultValueFactory = _ => "oci" };
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
            string image = r.GetValue(reference)!;
            string? to = r.GetValue(output);
            // stdout is refused when a terminal before a progress display starts there
            if (to is null or OutputFile.Stdout) OutputFile.Write(null, s => WithProgress(r, progress => { exporter.Export(image, s, f, progress); return 0; }));
            else WithProgress(r, progress => { exporter.Export(image, Io.Current.FullPath(to), f, progress); return 0; });
            return 0;
        });
        return export;
    }
}
