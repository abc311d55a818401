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
