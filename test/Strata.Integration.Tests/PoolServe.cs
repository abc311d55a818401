using System.Diagnostics;
using Strata.Testing;
using System.Text;

namespace Strata.Integration.Tests;

/// <summary>`strata pool serve` as the tests start and stop it: stdin closed, stderr drained (into a log when one is given:
/// a full pipe would stall the server), ready once it prints its first line ("serving pool ..."); stopped by SIGTERM.</summary>
static class PoolServe
{
    /// <summary>Starts `strata pool serve ARGS` and waits for its first line, which it returns with the process.</summary>
    public static (Process Process, string Started) Start(Cli cli, StringBuilder? log, params string[] args)
    {
        var p = cli.Start(["pool", "serve", .. args]);
        p.StandardInput.Close();
        p.ErrorDataReceived += (_, e) =>
        {
            if (log is not null) lock (log) log.AppendLine(e.Data);
        };
        p.BeginErrorReadLine();
        var line = p.StandardOutput.ReadLineAsync();
        Assert.True(line.Wait(TimeSpan.FromSeconds(30)), "strata pool serve did not start");
        Assert.StartsWith("serving pool ", line.Result);
        return (p, line.Result!);
    }

    /// <summary>SIGTERM, and the server must be gone within 30 s (with exit code 0 when <paramref name="clean"/>).</summary>
    public static void Stop(Process p, bool clean = true)
    {
        Shell.Run("kill", "-TERM", p.Id.ToString());
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)), "strata pool serve did not stop on SIGTERM");
        if (clean) Assert.Equal(0, p.ExitCode);
    }
}
