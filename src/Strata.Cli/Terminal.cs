using System.Text.Json;
using System.Text.Json.Serialization;
using Spectre.Console;

namespace Strata.Cli;

/// <summary>Spectre console for tables; when output is not a terminal, plain text at a width that never wraps ids.</summary>
static class Terminal
{
    public static readonly IAnsiConsole Out = Create();

    static IAnsiConsole Create()
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(Console.Out),
            Ansi = Console.IsOutputRedirected ? AnsiSupport.No : AnsiSupport.Detect,
            ColorSystem = Console.IsOutputRedirected ? ColorSystemSupport.NoColors : ColorSystemSupport.Detect,
        });
        if (Console.IsOutputRedirected) console.Profile.Width = 1000;
        return console;
    }
}

static class CliJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
        TypeInfoResolver = new System.Text.Json.Serialization.Metadata.DefaultJsonTypeInfoResolver(),
    };
}

/// <summary>Binary output to stdout or to a file that appears only when complete (temp + rename).</summary>
static class OutputFile
{
    public static T Write<T>(string? path, Func<Stream, T> produce)
    {
        if (path is null)
        {
            if (!Console.IsOutputRedirected)
                throw new StrataException(ErrorKind.InvalidArgument, "refusing to write a tar to a terminal; use -o FILE or redirect stdout");
            using var stdout = Console.OpenStandardOutput();
            return produce(stdout);
        }
        string full = Path.GetFullPath(path);
        string tmp = $"{full}.tmp-{Environment.ProcessId}";
        try
        {
            T result;
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1))
                result = produce(fs);
            File.Move(tmp, full, overwrite: true);
            return result;
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
    }
}
