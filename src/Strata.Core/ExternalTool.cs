using System.Diagnostics;

namespace Strata.Core;

/// <summary>Runs a helper program from the distribution (mount, mkfs, resize2fs, ...) to completion.</summary>
static class ExternalTool
{
    /// <summary>Runs <paramref name="program"/> with <paramref name="args"/> (in <paramref name="cwd"/> when given); a
    /// non-zero exit is an Io error quoting its stderr on one line, a missing program Unsupported, naming the Debian
    /// <paramref name="package"/> when given.</summary>
    public static void Run(string program, IReadOnlyList<string> args, string? cwd = null, string? package = null)
    {
        var psi = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        if (cwd is not null) psi.WorkingDirectory = cwd;
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw StrataException.Unsupported(package is null ? $"cannot run {program}: {ex.Message}" : $"{program} is missing: install the Debian package {package}");
        }
        using (p)
        {
            p.StandardInput.Close();
            var stderr = p.StandardError.ReadToEndAsync();
            p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0)
                throw new StrataException(ErrorKind.Io, $"{program} failed (exit {p.ExitCode}): {stderr.Result.Trim().Replace('\n', ' ')}");
        }
    }
}
