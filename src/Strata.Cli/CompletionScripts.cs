// The completion scripts `strata completion bash|zsh|fish` prints: each asks strata itself what to offer.
namespace Strata.Cli;

/// <summary>
/// One script per shell, each a thin caller of <c>strata "[suggest:N]" "LINE"</c> (System.CommandLine's suggest
/// directive; see <see cref="Completion"/>): LINE is the command line up to the cursor, N its length, and the lines
/// printed are the candidates. The strata called is the one on the command line (so ./strata completes as itself).
/// Where strata offers nothing (a file argument), each falls back to the shell's file completion. Image names carry
/// a ':' before their tag, which bash alone splits words at: its script completes the whole word and hands back the
/// part after the last ':', as bash-completion's __ltrim_colon_completions does.
/// </summary>
static class CompletionScripts
{
    public static readonly string[] Shells = ["bash", "zsh", "fish"];

    public static string For(string? shell) => shell switch
    {
        "bash" => Bash,
        "zsh" => Zsh,
        "fish" => Fish,
        null => throw StrataException.Invalid("'strata completion' needs a shell: bash, zsh or fish"),
        _ => throw StrataException.Invalid($"unknown shell '{StrataException.OneLine(shell.Length > 40 ? shell[..40] + "..." : shell)}' (use bash, zsh or fish)"),
    };

    const string Bash = """
        # bash completion for strata (`strata completion bash`): install it as
        # /usr/share/bash-completion/completions/strata, or source it from ~/.bashrc
        _strata()
        {
            local line="${COMP_LINE:0:COMP_POINT}" cmd="${COMP_WORDS[0]}" word c
            local -a found
            [[ $cmd == "~/"* ]] && cmd="$HOME/${cmd#"~/"}"
            # the whole word at the cursor: strata's parser does not split at ':' (image:tag) as bash does
            word="${line##*[[:space:]]}"
            mapfile -t found < <("$cmd" "[suggest:${#line}]" "$line" 2>/dev/null)
            COMPREPLY=()
            for c in "${found[@]}"; do
                [[ $c == "$word"* ]] || continue
                if [[ $word == *:* && $COMP_WORDBREAKS == *:* ]]; then c="${c#"${word%:*}:"}"; fi
                COMPREPLY+=("$c")
            done
        }
        complete -o default -F _strata strata

        """;

    const string Zsh = """
        #compdef strata
        # zsh completion for strata (`strata completion zsh`): install it as _strata in a directory of $fpath
        # (e.g. /usr/local/share/zsh/site-functions), then run compinit
        _strata()
        {
            local cmd="${words[1]}"
            local line="${(j: :)${(@)words[1,CURRENT-1]}} $PREFIX"
            local -a found
            [[ $cmd == '~/'* ]] && cmd="$HOME/${cmd#\~/}"
            found=("${(@f)$("$cmd" "[suggest:${#line}]" "$line" 2>/dev/null)}")
            found=(${found:#})
            if (( ${#found} )); then
                compadd -Q -- "${found[@]}"
            else
                _files
            fi
        }
        if [[ "${funcstack[1]}" == "_strata" ]]; then
            _strata "$@"
        else
            compdef _strata strata
        fi

        """;

    const string Fish = """
        # fish completion for strata (`strata completion fish`): install it as ~/.config/fish/completions/strata.fish
        function __strata_complete
            set -l line (commandline -cp)
            set -l cmd (commandline -opc)[1]
            set -l found ($cmd "[suggest:"(string length -- "$line")"]" "$line" 2>/dev/null)
            if set -q found[1]
                printf '%s\n' $found
            else
                __fish_complete_path (commandline -ct)
            end
        end
        complete -c strata -f -a '(__strata_complete)'

        """;
}
