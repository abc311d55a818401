using System.Diagnostics;

namespace Strata.Testing;

/// <summary>Runs real tools (GNU tar, mkfs, mount, ...) for tests.</summary>
public static class Shell
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public Result Check(string what)
        {
            if (ExitCode != 0) throw new InvalidOperationException($"{what} failed ({ExitCode}): {Stderr.Trim()} {Stdout.Trim()}");
            return this;
        }
    }

    public static Result Run(string file, params string[] args) => RunIn(null, file, args);

    public static Result RunIn(string? cwd, string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (cwd is not null) psi.WorkingDirectory = cwd;
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string outp = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return new Result(p.ExitCode, outp, err.Result);
    }

    public static Result Sh(string script) => Run("/bin/sh", "-c", script);

    public static bool Has(string tool) => Sh($"command -v {tool}").ExitCode == 0;
}
