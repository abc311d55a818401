using System.CommandLine;
using System.CommandLine.Parsing;

namespace Strata.Cli;

/// <summary>What is wrong with a command line, in one line as docker says it: the unknown flag or command by name,
/// with the closest valid one when there is one, the missing argument by name, and the `--help` of the command
/// concerned. A word that starts with '-' where a name is expected is an unknown flag, not a name (`run -it img` used
/// to look for an image "-it"), unless it comes after `--`.</summary>
static class Usage
{
    /// <summary>The line to print for a command line that cannot run, or null when it can.</summary>
    public static string? Problem(ParseResult parsed)
    {
        var command = parsed.CommandResult.Command;
        string path = Path(parsed.CommandResult);
        string help = $"see 'strata{(path.Length > 0 ? " " + path : "")} --help'";
        // a flag taken as a name explains what follows it too (`layer create --parnt x y`: x and y left over)
        if (DashedArgument(parsed, help) is { } flag) return flag;
        if (parsed.UnmatchedTokens.Count > 0)
        {
            string token = parsed.UnmatchedTokens[0];
            if (token.StartsWith('-') && token.Length > 1) return UnknownFlag(token, parsed.CommandResult, help);
            if (command.Subcommands.Count > 0 && parsed.CommandResult.Children.All(c => c is not ArgumentResult))
                return $"unknown command '{Shown(token)}' for 'strata{(path.Length > 0 ? " " + path : "")}'{Suggest(token, command.Subcommands.Where(c => !c.Hidden).SelectMany(c => c.Aliases.Prepend(c.Name)))} ({help})";
            return $"unexpected argument '{Shown(token)}' ({help})";
        }
        if (parsed.Errors.Count == 0) return null;
        // a command that needs a subcommand, and got none
        if (command.Subcommands.Count > 0 && command.Action is null)
            return $"'strata{(path.Length > 0 ? " " + path : "")}' needs a command: {string.Join(", ", command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name))} ({help})";
        var missing = command.Arguments.Where(a => a.Arity.MinimumNumberOfValues > 0 && !Given(parsed.CommandResult, a)).Select(a => a.Name).ToList();
        if (missing.Count > 0) return $"'strata {path}' needs {string.Join(" and ", missing)} ({help})";
        return $"{StrataException.OneLine(parsed.Errors[0].Message)} ({help})";
    }

    static bool Given(CommandResult result, Argument argument) =>
        result.Children.OfType<ArgumentResult>().Any(a => a.Argument == argument && a.Tokens.Count > 0);

    /// <summary>An argument value that looks like a flag: an unknown one, unless it follows `--`.</summary>
    static string? DashedArgument(ParseResult parsed, string help)
    {
        int dashes = -1;
        for (int i = 0; i < parsed.Tokens.Count; i++)
            if (parsed.Tokens[i].Type == TokenType.DoubleDash)
            {
                dashes = i;
                break;
            }
        for (var result = parsed.CommandResult; result is not null; result = result.Parent as CommandResult)
            foreach (var argument in result.Children.OfType<ArgumentResult>())
                foreach (var token in argument.Tokens)
                {
                    if (!token.Value.StartsWith('-') || token.Value.Length < 2 || char.IsAsciiDigit(token.Value[1])) continue;
                    int at = IndexOf(parsed.Tokens, token);
                    if (dashes >= 0 && at > dashes) continue;
                    return UnknownFlag(token.Value, parsed.CommandResult, help);
                }
        return null;
    }

    static int IndexOf(IReadOnlyList<Token> tokens, Token token)
    {
        for (int i = 0; i < tokens.Count; i++)
            if (ReferenceEquals(tokens[i], token)) return i;
        return -1;
    }

    static string UnknownFlag(string token, CommandResult where, string help)
    {
        var names = new List<string>();
        for (var r = where; r is not null; r = r.Parent as CommandResult)
            foreach (var o in r.Command.Options.Where(o => !o.Hidden && (r == where || o.Recursive)))
                names.AddRange(o.Aliases.Prepend(o.Name));
        string flag = token.Split('=')[0];
        return $"unknown flag: {Shown(flag)}{Suggest(flag, names)} ({help})";
    }

    /// <summary>", did you mean X?" for the closest of <paramref name="candidates"/> within a few edits, else "".</summary>
    static string Suggest(string typed, IEnumerable<string> candidates)
    {
        var best = candidates.Distinct().Select(c => (Name: c, Distance: Distance(typed, c))).OrderBy(c => c.Distance).ThenBy(c => c.Name, StringComparer.Ordinal).FirstOrDefault();
        return best.Name is not null && best.Distance <= Math.Max(2, typed.Length / 3) ? $"; did you mean {best.Name}?" : "";
    }

    /// <summary>Levenshtein distance, with a swap of two neighbours counting as one edit (imgae: image).</summary>
    internal static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        return d[a.Length, b.Length];
    }

    /// <summary>The command's path below the root: "image rm".</summary>
    static string Path(CommandResult result)
    {
        var names = new List<string>();
        for (var r = result; r is not null && r.Command is not RootCommand; r = r.Parent as CommandResult) names.Insert(0, r.Command.Name);
        return string.Join(' ', names);
    }

    static string Shown(string s) => StrataException.OneLine(s.Length > 60 ? s[..60] + "..." : s);
}
