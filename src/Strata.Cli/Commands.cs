using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Strata.Core;
using Strata.Core.Snapshots;

namespace Strata.Cli;

/// <summary>The command tree. Each action opens the store, makes one call, prints the result: no storage logic here.</summary>
public static partial class Commands
{
    static readonly Option<string> RootOption = new("--root")
    {
        Description = "Store directory (env STRATA_ROOT)",
        HelpName = "DIR",
        Recursive = true,
        DefaultValueFactory = _ => StoreOptions.DefaultRoot,
    };

    static readonly Option<string?> DriverOption = new("--driver")
    {
        Description = $"Storage driver: {string.Join(", ", Core.Drivers.DriverRegistry.Names)} (default: the store's own, or probed for a new store: btrfs on btrfs, overlay where the kernel mounts it, else vfs)",
        HelpName = "NAME",
        Recursive = true,
    };

    static readonly Option<string[]> StorageOption = new("--storage-opt")
    {
        Description = "KEY=VALUE (repeatable): driver options (with a dot, e.g. overlay.mount_program=/usr/bin/fuse-overlayfs) and, for `layer create`, layer options (e.g. size=50M)",
        Recursive = true,
        AllowMultipleArgumentsPerToken = false,
        HelpName = "KEY=VALUE",
    };

    static readonly Option<string?> OutputOption = new("--output", "-o") { Description = "Write to FILE instead of stdout (-: stdout)", HelpName = "FILE" };
    static readonly Option<string?> InputOption = new("--input", "-i") { Description = "Read from FILE instead of stdin (-: stdin)", HelpName = "FILE" };

    public static RootCommand Build()
    {
        var root = new RootCommand("Strata: copy-on-write storage for containers");
        root.Options.Add(RootOption);
        root.Options.Add(DriverOption);
        root.Options.Add(StorageOption);
        root.Subcommands.Add(InitCommand());
        root.Subcommands.Add(Info());
        root.Subcommands.Add(InspectCommand());
        root.Subcommands.Add(Serve());
        var layer = new Command("layer", "Create, inspect, mount, diff and apply layers");
        foreach (var c in LayerCommands()) layer.Subcommands.Add(c);
        root.Subcommands.Add(layer);
        root.Subcommands.Add(ImageCommand());
        root.Subcommands.Add(ContainerCommand());
        root.Subcommands.Add(RunCommand());
        root.Subcommands.Add(SystemCommand());
        root.Subcommands.Add(PoolCommand());
        root.Subcommands.Add(DmCommand());
        foreach (var c in RegistryCommands().Concat(DockerAliases())) root.Subcommands.Add(c);
        Completion.Attach(root);
        return root;
    }

    /// <summary>How a parsed command line is sent to a daemon: the control socket of the store it names (`strata serve`
    /// owns a store), whether it may run inside a daemon that owns that store (everything but `serve`, `run`, `pool`,
    /// `login`, `logout`, help and version), whether it
    /// reads stdin, and the files of -i and -o, which the client reads and writes itself (they are the
    /// caller's files, under the caller's permissions and working directory).</summary>
    internal static Route Route(ParseResult r)
    {
        var command = r.CommandResult.Command;
        bool forwardable = r.Errors.Count == 0 && Usage.Problem(r) is null && r.Action is not null && command is not RootCommand && command.Name is not ("serve" or "run")
            && !r.Tokens.Any(t => t.Value is "--help" or "-h" or "-?" or "--version");
        string? input = r.GetResult(InputOption) is not null && r.GetValue(InputOption) is not "-" ? r.GetValue(InputOption) : null;
        string? output = r.GetResult(OutputOption) is not null ? r.GetValue(OutputOption) : null;
        bool reads = command.Name is "apply" || command.Name is "import" && r.CommandResult.Tokens.Any(t => t.Value == "-"); // the forwardable commands that read stdin
        // pool commands run here, and reach a pool's server through its typed calls (PoolCommands), not as command lines
        if (IsPoolCommand(r)) forwardable = false;
        if (IsClientCommand(command.Name)) forwardable = false; // they use no store, and read the caller's terminal and config
        if (IsDmCommand(r)) forwardable = false; // they use no store: the files they name are the caller's
        string root = Path.GetFullPath(r.GetValue(RootOption)!);
        return new Route(Path.Combine(root, Control.SocketName), $"store {root}", forwardable, reads, input, output);
    }

    static Option<string?> FormatOption() => Output.FormatOption();

    /// <summary>Does <paramref name="act"/> for each name as docker does with several: what can be done is done, each failure
    /// is its own `strata:` line, and the exit code is the first failure's.</summary>
    static int ForEach(IReadOnlyList<string> names, Action<string> act)
    {
        int code = ExitCodes.Ok;
        foreach (var name in names)
            try
            {
                act(name);
            }
            catch (StrataException ex)
            {
                Io.Current.Err.WriteLine($"strata: {ex.Message}");
                if (code == ExitCodes.Ok) code = ExitCodes.For(ex.Kind);
            }
        return code;
    }

    static Dictionary<string, string>? Pairs(string[]? items, string option)
    {
        if (items is null || items.Length == 0) return null;
        var d = new Dictionary<string, string>();
        foreach (var item in items)
        {
            int eq = item.IndexOf('=');
            if (eq <= 0) throw StrataException.Invalid($"{option} '{item}' is not KEY=VALUE");
            d[item[..eq]] = item[(eq + 1)..];
        }
        return d;
    }

    static Stream OpenInput(string? path)
    {
        if (path is null or "-" || Io.Current.FilesAtClient) return Io.Current.In(); // `-i -` is stdin, as for tar
        return OpenFile(Io.Current.FullPath(path));
    }

    internal static Stream OpenFile(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        }
        catch (FileNotFoundException)
        {
            throw StrataException.NotFound($"input file {path} does not exist");
        }
    }

    static void WriteJson(object value) => Output.WriteJson(value);

    internal static string Bytes(long n) => n switch
    {
        < 1024 => $"{n} B",
        < 1024 * 1024 => $"{n / 1024.0:0.#} KiB",
        < 1024L * 1024 * 1024 => $"{n / (1024.0 * 1024):0.#} MiB",
        _ => $"{n / (1024.0 * 1024 * 1024):0.##} GiB",
    };
}

/// <summary>See <see cref="Commands.Route"/>.</summary>
sealed record Route(string Socket, string Owner, bool Forwardable, bool ReadsInput, string? InputFile, string? OutputFile);
