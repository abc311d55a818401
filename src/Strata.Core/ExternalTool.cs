using System.ComponentModel;
using System.Diagnostics;

namespace Strata.Core;

/// <summary>Starts helper programs from the distribution (mount, mkfs, resize2fs, a mount program, runc): the one
/// place that turns a program and its arguments into a process, and a program that cannot start into a
/// <see cref="StrataException"/>.</summary>
public static class ExternalTool
{
    /// <summary>Which of the child's standard streams this process takes; the others are this process's own.</summary>
    [Flags]
    public enum Redirect
    {
        None = 0,
        Input = 1,
        Output = 2,
        Error = 4,
    }

    /// <summary>Starts <paramref name="program"/> with <paramref name="args"/> (in <paramref name="cwd"/> when given).
    /// A program that cannot be started (missing, not executable) throws what <paramref name="cannotStart"/> makes of
    /// the system's reason.</summary>
    public static Process Start(string program, IEnumerable<string> args, Redirect redirect, Func<string, StrataException> cannotStart, string? cwd = null)
    {
        var psi = new ProcessStartInfo(program)
        {
            UseShellExecute = false,
            RedirectStandardInput = redirect.HasFlag(Redirect.Input),
            RedirectStandardOutput = redirect.HasFlag(Redirect.Output),
            RedirectStandardError = redirect.HasFlag(Redirect.Error),
        };
        if (cwd is not null) psi.WorkingDirectory = cwd;
        foreach (var a in args) psi.ArgumentList.Add(a);
        try
        {
            return Process.Start(psi) ?? throw cannotStart("no process started");
        }
        catch (Win32Exception ex)
        {
            throw cannotStart(ex.Message);
        }
    }

    /// <summary>Runs <paramref name="program"/> to completion with no input, its output read and dropped; returns its
    /// exit code and, in <paramref name="stderr"/>, what it wrote there.</summary>
    public static int Run(string program, IReadOnlyList<string> args, Func<string, StrataException> cannotStart, out string stderr, string? cwd = null)
    {
        using var p = Start(program, args, Redirect.Input | Redirect.Output | Redirect.Error, cannotStart, cwd);
        p.StandardInput.Close();
        var error = p.StandardError.ReadToEndAsync();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        stderr = error.Result;
        return p.ExitCode;
    }

    /// <summary>Runs <paramref name="program"/> with <paramref name="args"/> (in <paramref name="cwd"/> when given); a
    /// non-zero exit is an Io error quoting its stderr on one line, a missing program Unsupported, naming the Debian
    /// <paramref name="package"/> when given.</summary>
    public static void Run(string program, IReadOnlyList<string> args, string? cwd = null, string? package = null)
    {
        int code = Run(program, args, why => StrataException.Unsupported(package is null ? $"cannot run {program}: {why}" : $"{program} is missing: install the Debian package {package}"), out var stderr, cwd);
        if (code != 0) throw new StrataException(ErrorKind.Io, $"{program} failed (exit {code}): {stderr.Trim().Replace('\n', ' ')}");
    }
}
