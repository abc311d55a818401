using Spectre.Console;

namespace Strata.Cli;

/// <summary>
/// Where one command's input and output go, and which store it works on. Embedded (the default): this
/// process's console and a store it opens for the command. Through the daemon: the streams of a
/// control-socket request and the daemon's open store. Commands use <see cref="Current"/> and never the
/// console directly, so the same command tree serves both.
/// </summary>
sealed class Io
{
    static readonly AsyncLocal<Io?> s_current = new();

    public static Io Current
    {
        get => s_current.Value ??= Console();
        set => s_current.Value = value;
    }

    public required TextWriter Out { get; init; }
    public required TextWriter Err { get; init; }
    /// <summary>Binary stdout (tars); null when stdout is a terminal.</summary>
    public required Func<Stream?> BinaryOut { get; init; }
    public required Func<Stream> In { get; init; }
    /// <summary>Relative paths in arguments are relative to this directory.</summary>
    public required string Cwd { get; init; }
    /// <summary>The daemon's store, when the command runs inside the daemon.</summary>
    public Core.LayerStore? Store { get; init; }
    /// <summary>The socket on which the daemon serves containerd's snapshotter, when the command runs inside a daemon that does.</summary>
    public string? SnapshotterSocket { get; init; }
    public required bool OutIsTerminal { get; init; }
    /// <summary>Whether stderr is a terminal (progress displays go there).</summary>
    public bool ErrIsTerminal { get; init; }
    /// <summary>The terminal's width when output is one (null: ask the console).</summary>
    public int? Width { get; init; }
    /// <summary>Through a daemon: the client reads -i and writes -o itself; the command uses <see cref="In"/> and
    /// <see cref="BinaryOut"/> for them.</summary>
    public bool FilesAtClient { get; init; }

    IAnsiConsole? _ansi, _errAnsi;

    /// <summary>Spectre console on stderr, for progress displays.</summary>
    public IAnsiConsole ErrAnsi => _errAnsi ??= AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(Err),
        Ansi = ErrIsTerminal ? AnsiSupport.Yes : AnsiSupport.No,
        ColorSystem = ErrIsTerminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        Interactive = ErrIsTerminal ? InteractionSupport.Yes : InteractionSupport.No,
    });

    /// <summary>Spectre console for tables; when output is not a terminal, plain text at a width that never wraps ids.</summary>
    public IAnsiConsole Ansi => _ansi ??= CreateAnsi();

    IAnsiConsole CreateAnsi()
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(Out),
            Ansi = OutIsTerminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = OutIsTerminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        });
        if (!OutIsTerminal) console.Profile.Width = 1000;
        else if (Width is > 0 and var w) console.Profile.Width = w;
        return console;
    }

    public string FullPath(string path) => Path.GetFullPath(path, Cwd);

    static Io Console() => new()
    {
        Out = System.Console.Out,
        Err = System.Console.Error,
        BinaryOut = () => System.Console.IsOutputRedirected ? System.Console.OpenStandardOutput() : null,
        In = () => System.Console.OpenStandardInput(1 << 20),
        Cwd = Environment.CurrentDirectory,
        OutIsTerminal = !System.Console.IsOutputRedirected,
        ErrIsTerminal = !System.Console.IsErrorRedirected,
    };
}
