using System.CommandLine;

namespace Strata.Integration.Tests;

/// <summary>Help stays reviewed: `--help` of every command, through the real binary, is compared with its golden copy in
/// golden/help/ (one file per command). A change of help shows as a failing test with the difference; after reviewing
/// it, `STRATA_UPDATE_GOLDEN=1 dotnet test --filter HelpTests` rewrites the copies (the diff then goes into the commit).
/// Also: every default is said once (in the description or as System.CommandLine's [default: ...], not both), and no
/// hidden option shows.</summary>
public sealed class HelpTests
{
    static readonly string Golden = Path.Combine(JsonSchemas.RepoRoot(), "test", "Strata.Integration.Tests", "golden", "help");

    /// <summary>Every command's path below the root ("" for the root, "image ls", ...).</summary>
    public static TheoryData<string> CommandPaths() => [.. Paths()];

    static List<string> Paths()
    {
        var data = new List<string>();
        void Walk(Command c, string path)
        {
            data.Add(path);
            foreach (var sub in c.Subcommands.Where(s => !s.Hidden)) Walk(sub, (path + " " + sub.Name).Trim());
        }
        Walk(global::Strata.Cli.Commands.Build(), "");
        return data;
    }

    static string FileOf(string path) => Path.Combine(Golden, (path.Length == 0 ? "strata" : "strata-" + path.Replace(' ', '-')) + ".txt");

    [Theory]
    [MemberData(nameof(CommandPaths))]
    public void HelpIsAsReviewed(string path)
    {
        using var temp = new Strata.Testing.TempRoot();
        var r = new Cli(temp.Combine("store"))
            .Run([.. path.Split(' ', StringSplitOptions.RemoveEmptyEntries), "--help"]);
        Assert.Equal(0, r.ExitCode);
        // the store directory the test runs with is not part of the help
        string help = r.Stdout.Replace(temp.Combine("store"), "/var/lib/strata", StringComparison.Ordinal);
        Assert.False(Directory.Exists(temp.Combine("store")), "--help created the store");
        foreach (var line in help.Split('\n').Where(l => l.Contains("[default:", StringComparison.Ordinal)))
            Assert.DoesNotContain("(default", line);
        Assert.DoesNotContain("--new-session", help);

        string file = FileOf(path);
        if (Environment.GetEnvironmentVariable("STRATA_UPDATE_GOLDEN") == "1")
        {
            Directory.CreateDirectory(Golden);
            File.WriteAllText(file, help);
            return;
        }
        Assert.True(File.Exists(file), $"no golden help for 'strata {path}': run STRATA_UPDATE_GOLDEN=1 dotnet test --filter HelpTests, review {file}, commit it");
        Assert.Equal(File.ReadAllText(file), help);
    }

    [Fact]
    public void EveryGoldenFileIsACommand()
    {
        var expected = Paths().Select(FileOf).ToHashSet();
        foreach (var file in Directory.Exists(Golden) ? Directory.GetFiles(Golden) : [])
            Assert.True(expected.Contains(file), $"{file} is the help of no command: remove it");
    }
}
