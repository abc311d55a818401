// Issue 21: `strata completion bash|zsh|fish` and the [suggest] directive its scripts call, through the real binary
// and, where they are installed, the real shells.
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>Each script is valid for its shell and, run by that shell as its completion system would, offers
/// subcommands, options, fixed option values and the names in the store the command line names; completing against a
/// root without a store creates nothing; `strata completion` with no or an unknown shell is a one-line usage error.</summary>
public sealed class CompletionTests : IDisposable
{
    readonly TempRoot _temp = new();

    string Store => _temp.Combine("store");

    /// <summary>The script for <paramref name="shell"/>, written to a file.</summary>
    string Script(string shell)
    {
        var r = new Cli(Store).Run("completion", shell);
        Assert.True(r.ExitCode == 0, $"strata completion {shell} failed ({r.ExitCode}): {r.Stderr}");
        Assert.Equal("", r.Stderr);
        string file = _temp.Combine("strata." + shell);
        File.WriteAllText(file, r.Stdout);
        return file;
    }

    /// <summary>A store with images busybox:1 and alpine:3 (one image, two names), container web, layer mylayer.</summary>
    void MakeStore()
    {
        string src = _temp.Dir("rootfs");
        File.WriteAllText(Path.Combine(src, "f"), "x");
        Shell.Run("tar", "-C", src, "-cf", _temp.Combine("rootfs.tar"), ".").Check("tar");
        var cli = new Cli(Store);
        cli.Ok("--driver", "vfs", "image", "import", _temp.Combine("rootfs.tar"), "--name", "busybox:1", "-q");
        cli.Ok("image", "tag", "busybox:1", "alpine:3");
        cli.Ok("container", "create", "busybox:1", "--name", "web");
        cli.Ok("layer", "create", "mylayer");
    }

    /// <summary>COMPREPLY after bash, with the script sourced, calls its completion function as bash's programmable
    /// completion does for <paramref name="line"/> with the cursor at its end (the first word: the binary's path).</summary>
    string[] Bash(string line)
    {
        string script = Script("bash");
        var r = Shell.Run("bash", "-c", """
            unset STRATA_ROOT
            source "$1"
            COMP_LINE="$2"
            COMP_POINT=${#COMP_LINE}
            read -ra COMP_WORDS <<< "$COMP_LINE"
            if [[ $COMP_LINE == *[[:space:]] ]]; then COMP_WORDS+=(""); fi
            COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
            "$(complete -p strata | sed -E 's/.* -F ([^ ]+) .*/\1/')"
            printf '%s\n' "${COMPREPLY[@]}"
            """, "bash", script, $"{Cli.Binary} {line}");
        Assert.True(r.ExitCode == 0, $"bash completion of '{line}' failed ({r.ExitCode}): {r.Stderr}");
        return r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>What strata's [suggest] directive prints for <paramref name="line"/>, the cursor at its end.</summary>
    string[] Suggest(string line, string? root = null)
    {
        string full = $"strata --root {root ?? Store} {line}";
        var r = Shell.Run("env", "-u", "STRATA_ROOT", Cli.Binary, $"[suggest:{full.Length}]", full);
        Assert.True(r.ExitCode == 0, $"[suggest] of '{full}' failed ({r.ExitCode}): {r.Stderr}");
        return r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    [Fact]
    public void TheBashScriptIsValidBash()
    {
        var r = Shell.Run("bash", "-n", Script("bash"));
        Assert.True(r.ExitCode == 0, r.Stderr);
    }

    [SkippableFact]
    public void TheZshScriptIsValidZsh()
    {
        Skip.IfNot(Shell.Has("zsh"), "zsh is not installed (test.sh installs it)");
        var r = Shell.Run("zsh", "-n", Script("zsh"));
        Assert.True(r.ExitCode == 0, r.Stderr);
    }

    [SkippableFact]
    public void TheFishScriptIsValidFish()
    {
        Skip.IfNot(Shell.Has("fish"), "fish is not installed (its Debian package pulls python3 and man-db, so test.sh leaves it out)");
        var r = Shell.Run("fish", "--no-execute", Script("fish"));
        Assert.True(r.ExitCode == 0, r.Stderr);
    }

    [Theory]
    [InlineData(new string[0], "strata: 'strata completion' needs a shell: bash, zsh or fish")]
    [InlineData(new[] { "pwsh" }, "strata: unknown shell 'pwsh' (use bash, zsh or fish)")]
    public void AMissingOrUnknownShellIsAUsageErrorNamingTheShells(string[] shell, string expected)
    {
        var r = new Cli(Store).Run(["completion", .. shell]);
        Assert.Equal(2, r.ExitCode);
        Errors.AssertOneLine(r);
        Assert.Equal(expected, r.Stderr.TrimEnd('\n'));
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void BashCompletesSubcommandsOptionsAndFixedValues()
    {
        Assert.Equal(["image", "images"], Bash("ima"));
        Assert.Equal(["--filter", "--format"], Bash("image ls --f"));
        Assert.Equal(["--format"], Bash("image ls --fo"));
        Assert.Equal(["json", "table"], Bash("image ls --format "));
        Assert.Equal(["docker-archive", "oci"], Bash("image export x --format ").Order());
        Assert.Contains("vfs", Bash("--driver "));
        Assert.Equal(["bash", "fish", "zsh"], Bash("completion "));
        Assert.DoesNotContain(Bash("image "), c => c.StartsWith('-')); // options once a word starts with '-'
    }

    [Fact]
    public void BashCompletesNamesFromTheStoreTheLineNames()
    {
        MakeStore();
        Assert.Equal(["alpine:3", "busybox:1"], Bash($"--root {Store} image inspect ").Order());
        Assert.Equal(["web"], Bash($"--root {Store} container rm "));
        Assert.Equal(["mylayer"], Bash($"--root {Store} layer rm my"));
        Assert.Equal(["mylayer"], Bash($"--root {Store} layer create --parent my"));
        // bash splits words at ':': what replaces the word is the part after it
        Assert.Equal(["1"], Bash($"--root {Store} image inspect busybox:"));
        // a short id once a word starts like one
        string id = new Cli(Store).Ok("image", "inspect", "busybox:1").Split("sha256:")[1][..12];
        Assert.Equal([id], Bash($"--root {Store} image inspect {id[..3]}"));
        Assert.Empty(Bash($"--root {Store} layer create ")); // a new layer's id
    }

    [Fact]
    public void TheStoreIsTheOneOfStrataRoot()
    {
        MakeStore();
        var r = Shell.Run("env", $"STRATA_ROOT={Store}", Cli.Binary, "[suggest:20]", "strata container rm ");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("web", r.Stdout.TrimEnd('\n'));
    }

    [Fact]
    public void PoolDeviceNamesComeFromThePool()
    {
        var cli = new Cli(Store);
        cli.Ok("pool", "create", "--data-size", "64M", "--metadata-size", "8M");
        cli.Ok("pool", "device", "create", "disk1", "--size", "1M");
        Assert.Equal(["disk1"], Suggest("pool device rm "));
        Assert.Equal(["disk1"], Suggest("pool device snapshot "));
        Assert.Empty(Suggest("pool device snapshot disk1 ")); // the snapshot's new name
    }

    [Fact]
    public void CompletingAgainstARootWithoutAStoreCreatesNothing()
    {
        string root = _temp.Combine("none");
        foreach (var line in new[] { "image inspect ", "container rm ", "layer rm ", "pool device rm ", "layer create --parent " })
            Assert.Empty(Suggest(line, root));
        Assert.False(Directory.Exists(root), "completion created the store");
    }

    [SkippableFact]
    public void ZshCompletesSubcommandsAndNames()
    {
        Skip.IfNot(Shell.Has("zsh"), "zsh is not installed (test.sh installs it)");
        MakeStore();
        string script = Script("zsh");
        // the script's function run by zsh with the completion system's words, CURRENT and PREFIX; compadd, _files and
        // compdef (builtins of a completion widget, which a script cannot run outside one) print what they are given
        string[] Zsh(string line)
        {
            var r = Shell.Run("zsh", "-c", """
                unset STRATA_ROOT
                compdef() { : }
                compadd() { while [[ $1 == -* ]]; do if [[ $1 == -- ]]; then shift; break; fi; shift; done; print -rl -- "$@" }
                _files() { print -r -- "(files)" }
                source "$1"
                words=(${(z)2})
                [[ $2 == *' ' ]] && words+=('')
                CURRENT=${#words}
                PREFIX=${words[CURRENT]}
                _strata
                """, "zsh", script, $"{Cli.Binary} {line}");
            Assert.True(r.ExitCode == 0, $"zsh completion of '{line}' failed ({r.ExitCode}): {r.Stderr}");
            return r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        }
        Assert.Equal(["image", "images"], Zsh("ima"));
        Assert.Equal(["alpine:3", "busybox:1"], Zsh($"--root {Store} image inspect ").Order());
        Assert.Equal(["busybox:1"], Zsh($"--root {Store} image inspect busybox:"));
        Assert.Equal(["web"], Zsh($"--root {Store} container rm "));
        Assert.Equal(["(files)"], Zsh($"--root {Store} image import ")); // a path: the shell's file completion
    }

    public void Dispose() => _temp.Dispose();
}
