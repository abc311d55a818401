// Shell completion: what each word of the command tree completes to, the `strata completion SHELL` command, and the
// run of System.CommandLine's [suggest] directive that the shell scripts call.
using System.CommandLine;
using System.CommandLine.Completions;
using System.CommandLine.Parsing;

namespace Strata.Cli;

/// <summary>
/// Completion as dotnet-suggest does it: the shell's script (<see cref="CompletionScripts"/>) runs
/// <c>strata "[suggest:N]" "COMMAND LINE"</c> (N: the cursor's position in the line) and offers the lines printed.
/// System.CommandLine completes subcommands and options by itself; <see cref="Attach"/> adds, in this one place, the
/// values it cannot know: the fixed sets of options (--format, --driver, --log-level, ...) and the names in the store
/// the command line names (--root, env STRATA_ROOT), found by walking the built tree: an IMAGE argument completes
/// image names, CONTAINER container names, a layer command's ID and --parent layer ids, a pool device's NAME or
/// SOURCE the pool's device names. Arguments that name something new (`layer create ID`, `pool device create NAME`,
/// the snapshot's NAME, `container commit`'s new IMAGE) complete nothing.
/// </summary>
static class Completion
{
    /// <summary>Adds the completions to the tree <see cref="Commands.Build"/> made, and `strata completion`.</summary>
    public static void Attach(RootCommand root)
    {
        var rootOption = (Option<string>)root.Options.Single(o => o.Name == "--root");
        Option<string?>? poolOption = null;
        foreach (var (command, path) in Walk(root, ""))
        {
            foreach (var option in command.Options)
            {
                if (option.Name == "--pool" && option is Option<string?> pool) poolOption = pool;
                if (Values(path, option.Name) is { } values) option.CompletionSources.Add(values);
                if (option.Name == "--parent" && path.StartsWith("layer ", StringComparison.Ordinal))
                    option.CompletionSources.Add(c => StoreNames.Layers(Root(c, rootOption)));
            }
            foreach (var argument in command.Arguments)
            {
                if (Names(path, argument.Name) is not { } kind) continue;
                argument.CompletionSources.Add(c => kind switch
                {
                    Kind.Image => StoreNames.Images(Root(c, rootOption), ids: LooksLikeId(c.WordToComplete)),
                    Kind.Container => StoreNames.Containers(Root(c, rootOption), ids: LooksLikeId(c.WordToComplete)),
                    Kind.Layer => StoreNames.Layers(Root(c, rootOption)),
                    _ => StoreNames.Devices(PoolDir(c, rootOption, poolOption)),
                });
            }
        }
        root.Subcommands.Add(CompletionCommand());
    }

    enum Kind { Image, Container, Layer, Device }

    /// <summary>Which store names an argument of the command at <paramref name="path"/> takes, if any.</summary>
    static Kind? Names(string path, string argument) => (path, argument) switch
    {
        ("container commit", "IMAGE") => null, // the new image's name
        (_, "IMAGE") => Kind.Image,
        (_, "CONTAINER") => Kind.Container,
        ("layer create", _) => null,
        (_, "ID") when path.StartsWith("layer ", StringComparison.Ordinal) => Kind.Layer,
        ("pool device create" or "pool device snapshot", "NAME") => null, // a new device's name
        (_, "NAME" or "SOURCE") when path.StartsWith("pool device ", StringComparison.Ordinal) => Kind.Device,
        _ => null,
    };

    /// <summary>The values an option takes when they are a fixed set.</summary>
    static string[]? Values(string path, string option) => (path, option) switch
    {
        ("image export", "--format") => ["oci", "docker-archive"],
        (_, "--format") => ["table", "json"],
        (_, "--driver") => [.. Core.Drivers.DriverRegistry.Names],
        (_, "--log-level") => ["debug", "info", "warn", "error"],
        (_, "--compression") => ["gzip", "zstd"],
        _ => null,
    };

    /// <summary>Every command with its path below the root ("image ls").</summary>
    static IEnumerable<(Command, string)> Walk(Command command, string path)
    {
        yield return (command, path);
        foreach (var sub in command.Subcommands)
            foreach (var c in Walk(sub, path.Length == 0 ? sub.Name : $"{path} {sub.Name}"))
                yield return c;
    }

    // ids are offered once a word is begun that could start one, so that a bare TAB lists names, not hex
    static bool LooksLikeId(string word) => word.Length > 0 && word.All(char.IsAsciiHexDigitLower);

    static string Root(CompletionContext c, Option<string> rootOption) => Path.GetFullPath(c.ParseResult.GetValue(rootOption)!);

    static string PoolDir(CompletionContext c, Option<string> rootOption, Option<string?>? poolOption) =>
        Path.GetFullPath((poolOption is null ? null : c.ParseResult.GetValue(poolOption)) ?? Path.Combine(Root(c, rootOption), "thin"));

    /// <summary>Whether this command line is for completion, which runs here: a [suggest] directive (never sent to a
    /// daemon: it only reads names) or `strata completion` (which needs no store).</summary>
    public static bool Handles(ParseResult parsed) =>
        Suggesting(parsed) || parsed.CommandResult.Command is { Name: "completion" } c && c.Parents.OfType<RootCommand>().Any();

    static bool Suggesting(ParseResult parsed) =>
        parsed.RootCommandResult.Command is RootCommand root && root.Directives.OfType<SuggestDirective>().Any(d => parsed.GetResult(d) is not null);

    /// <summary>Runs a command line <see cref="Handles"/> accepted: the candidates, one a line, or the usual run of
    /// `strata completion`. A suggestion that fails prints nothing (the shell would offer its message as a candidate).</summary>
    public static int Run(ParseResult parsed)
    {
        if (!Suggesting(parsed)) return Runner.Run(parsed);
        try
        {
            foreach (string candidate in Candidates(parsed)) Io.Current.Out.WriteLine(candidate);
            return ExitCodes.Ok;
        }
        catch (Exception)
        {
            return ExitCodes.Failure;
        }
    }

    /// <summary>What the [suggest:N] directive's line completes to at N (its end without N), as docker's completion
    /// offers it: only what starts with the word at the cursor (System.CommandLine's own action offers whatever
    /// contains it), options only once the word starts with '-', and without the DOS-style help aliases.</summary>
    static IEnumerable<string> Candidates(ParseResult parsed)
    {
        var root = (RootCommand)parsed.RootCommandResult.Command;
        var directive = root.Directives.OfType<SuggestDirective>().First(d => parsed.GetResult(d) is not null);
        string line = parsed.Tokens.LastOrDefault(t => t.Type != TokenType.Directive)?.Value ?? "";
        int position = int.TryParse(parsed.GetResult(directive)!.Values.SingleOrDefault(), out int at) ? Math.Clamp(at, 0, line.Length) : line.Length;
        int start = line.AsSpan(0, position).LastIndexOfAny(' ', '\t') + 1;
        string word = line[start..position];
        return root.Parse(line).GetCompletions(position)
            .Select(c => c.Label)
            .Where(l => l.StartsWith(word, StringComparison.Ordinal) && l is not ("-?" or "/?" or "/h") && (word.StartsWith('-') || !l.StartsWith('-')))
            .Distinct();
    }

    static Command CompletionCommand()
    {
        var shell = new Argument<string?>("SHELL") { Description = "bash, zsh or fish", Arity = ArgumentArity.ZeroOrOne };
        shell.CompletionSources.Add(CompletionScripts.Shells);
        var command = new Command("completion", "Print the completion script for bash, zsh or fish (see docs/cli.md, Completion, for where to install it)") { shell };
        command.SetAction(r =>
        {
            Io.Current.Out.Write(CompletionScripts.For(r.GetValue(shell)));
            return 0;
        });
        return command;
    }
}
