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
        var poolOption = Walk(root).SelectMany(c => c.Options).OfType<Option<string?>>().FirstOrDefault(o => o.Name == "--pool");
        string RootOf(CompletionContext c) => Path.GetFullPath(c.ParseResult.GetValue(rootOption)!);
        string PoolOf(CompletionContext c) => Path.GetFullPath((poolOption is null ? null : c.ParseResult.GetValue(poolOption)) ?? Path.Combine(RootOf(c), "thin"));

        // one source per argument or option, deciding by the command being completed: commands share their
        // argument objects (`layer create` and `layer rm` the same ID), and only some of them name what exists
        var seen = new HashSet<Symbol>();
        foreach (var command in Walk(root))
        {
            foreach (var option in command.Options.Where(seen.Add))
                option.CompletionSources.Add(c => Values(PathOf(c), option.Name) switch
                {
                    { } values => values,
                    null when c is TextCompletionContext && option.Name == "--parent" && PathOf(c).StartsWith("layer ", StringComparison.Ordinal) => StoreNames.Layers(RootOf(c)),
                    null => [],
                });
            foreach (var argument in command.Arguments.Where(seen.Add))
                // names only for a line being completed: help asks too (to show values), and must not read the store
                argument.CompletionSources.Add(c => c is not TextCompletionContext || !Completing(c, argument) ? [] : Names(PathOf(c), argument.Name) switch
                {
                    Kind.Image => StoreNames.Images(RootOf(c), ids: LooksLikeId(c.WordToComplete)),
                    Kind.Container => StoreNames.Containers(RootOf(c), ids: LooksLikeId(c.WordToComplete)),
                    Kind.Layer => StoreNames.Layers(RootOf(c)),
                    Kind.Device => StoreNames.Devices(PoolOf(c)),
                    _ => [],
                });
        }
        root.Subcommands.Add(CompletionCommand());
    }

    /// <summary>The path below the root ("image ls") of the command a completion is for.</summary>
    static string PathOf(CompletionContext c)
    {
        var names = new List<string>();
        for (var r = c.ParseResult.CommandResult; r is not null && r.Command is not RootCommand; r = r.Parent as CommandResult) names.Insert(0, r.Command.Name);
        return string.Join(' ', names);
    }

    /// <summary>Whether the word at the cursor is for <paramref name="argument"/>: System.CommandLine asks every argument
    /// of the command, a full one too (`pool device snapshot disk1 ` would offer devices for SOURCE again).</summary>
    static bool Completing(CompletionContext c, Argument argument)
    {
        if (c.ParseResult.GetResult(argument) is not { } result || result.Tokens.Count < argument.Arity.MaximumNumberOfValues) return true;
        return c.WordToComplete.Length > 0 && result.Tokens[^1].Value == c.WordToComplete;
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

    static IEnumerable<Command> Walk(Command command) => command.Subcommands.SelectMany(Walk).Prepend(command);

    // ids are offered once a word is begun that could start one, so that a bare TAB lists names, not hex
    static bool LooksLikeId(string word) => word.Length > 0 && word.All(char.IsAsciiHexDigitLower);

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
