using System.Diagnostics;

namespace Strata.Integration.Tests;

/// <summary>Runs the real `strata` binary: the one named by STRATA_BIN (test.sh sets it to the native build that
/// ./strata makes and users run), else the one built beside the tests. <paramref name="environment"/>: variables set for
/// every run (STRATA_CONFIG, DOCKER_CONFIG).</summary>
sealed class Cli(string root, IReadOnlyDictionary<string, string>? environment = null)
{
    public static readonly string Binary = Environment.GetEnvironmentVariable("STRATA_BIN") is { Length: > 0 } bin
        ? Path.GetFullPath(bin)
        : Path.Combine(AppContext.BaseDirectory, "strata");

    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public string Out => Stdout.TrimEnd('\n');
    }

    public Result Run(params string[] args) => Run(null, args);

    public Result Run(byte[]? stdin, params string[] args)
    {
        using var p = Start(args);
        var err = p.StandardError.ReadToEndAsync();
        var outp = p.StandardOutput.ReadToEndAsync();
        if (stdin is not null) p.StandardInput.BaseStream.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"strata {string.Join(' ', args)} did not finish");
        }
        return new Result(p.ExitCode, outp.Result, err.Result);
    }

    /// <summary>Runs and asserts success; returns stdout without the final newline.</summary>
    public string Ok(params string[] args)
    {
        var r = Run(args);
        Assert.True(r.ExitCode == 0, $"strata {string.Join(' ', args)} failed ({r.ExitCode}): {r.Stderr}");
        return r.Out;
    }

    public Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo(Binary)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("--root");
        psi.ArgumentList.Add(root);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("STRATA_ROOT");
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        return Process.Start(psi)!;
    }
}
