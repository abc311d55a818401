// Issue 21: a command that waits for the store says at once for whom.
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>A command started while another process owns the store (here a `layer apply` waiting for its tar on stdin)
/// says at once which command and pid it waits for, then runs when the store is let go.</summary>
public sealed class LockWaitTests : IDisposable
{
    readonly TempRoot _temp = new();

    [Fact]
    public void ACommandWaitingForTheStoreSaysWhoHoldsIt()
    {
        string root = _temp.Combine("store");
        var cli = new Cli(root);
        cli.Ok("--driver", "vfs", "layer", "create", "base");
        using var holder = cli.Start("layer", "apply", "x");
        try
        {
            // the holder owns the store once its pid is in strata.lock (read with cat: .NET would take a flock of its own)
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (Shell.Run("cat", Path.Combine(root, "strata.lock")).Stdout.Trim() != holder.Id.ToString())
            {
                Assert.True(DateTime.UtcNow < deadline, "the holder did not take the store");
                Thread.Sleep(50);
            }
            using var waiter = cli.Start("layer", "ls");
            string? first = waiter.StandardError.ReadLine();
            Assert.Equal($"waiting for strata layer apply x (pid {holder.Id}) to release the store {root}", first);
            holder.StandardInput.Close(); // an empty tar: the holder fails and lets go
            Assert.True(waiter.WaitForExit(TimeSpan.FromSeconds(30)), "the waiting command did not run once the store was free");
            Assert.Equal(0, waiter.ExitCode);
            Assert.Contains("base", waiter.StandardOutput.ReadToEnd());
        }
        finally
        {
            if (!holder.HasExited) holder.Kill();
            holder.WaitForExit();
        }
    }

    public void Dispose() => _temp.Dispose();
}
