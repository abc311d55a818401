using System.Diagnostics;
using Strata.Archive.Tar;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>A `strata` process killed with SIGKILL in the middle of an apply leaves no visible half
/// layer, and the next process to open the store cleans up after it.</summary>
public sealed class CrashTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;
    string Store => _temp.Combine("store");

    public CrashTests() => _cli = new Cli(Store);

    /// <summary>Where a driver keeps the tree of layer <paramref name="id"/>.</summary>
    string TreeOf(string driver, string id) => driver == "overlay" ? Path.Combine(Store, "overlay", id, "diff") : Path.Combine(Store, driver, id);

    public void Dispose() => _temp.Dispose();

    /// <summary>The first part of a tar: a directory and a 64 MiB file of which only 1 MiB follows.</summary>
    static byte[] PartialTar()
    {
        var ms = new MemoryStream();
        using var w = new TarWriter(ms);
        w.WriteHeader(new TarEntry { Name = "data/", Type = TarEntryType.Directory, Mode = 0x1ED });
        w.WriteHeader(new TarEntry { Name = "data/big", Type = TarEntryType.Regular, Mode = 0x1A4, Size = 64 << 20 });
        w.WriteData(Enumerable.Repeat((byte)7, 1 << 20).ToArray());
        w.Finish(); // flushes; the end marker is data of 'big' as far as the reader can tell
        return ms.ToArray();
    }

    Process StartStuckApply(string driver, string id, params string[] extra)
    {
        var p = _cli.Start(["--driver", driver, "layer", "apply", id, .. extra]);
        p.StandardInput.BaseStream.Write(PartialTar());
        p.StandardInput.BaseStream.Flush();
        // wait until the partial file is on disk: the process is now blocked mid-apply reading stdin
        string big = Path.Combine(TreeOf(driver, id), "data", "big");
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!(File.Exists(big) && new FileInfo(big).Length >= 1 << 20))
        {
            if (p.HasExited) throw new InvalidOperationException($"apply exited early: {p.StandardError.ReadToEnd()}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException("apply never started writing");
            Thread.Sleep(20);
        }
        return p;
    }

    static void KillHard(Process p)
    {
        Shell.Run("kill", "-KILL", p.Id.ToString());
        p.WaitForExit();
        Assert.Equal(137, p.ExitCode);
    }

    [Theory]
    [InlineData("vfs")]
    [InlineData("overlay")]
    public void SigkillDuringApplyOfANewLayer(string driver)
    {
        _cli.Ok("--driver", driver, "layer", "create", "base");
        using var p = StartStuckApply(driver, "half", "--parent", "base");
        // a second command waits for the store's owner instead of failing...
        using var ls = _cli.Start("layer", "ls", "--format", "json");
        Thread.Sleep(300);
        Assert.False(ls.HasExited);
        KillHard(p);
        // ...and once the owner is dead it reads the store and sees no half layer
        string listing = ls.StandardOutput.ReadToEnd();
        ls.WaitForExit();
        Assert.Equal(0, ls.ExitCode);
        Assert.DoesNotContain("half", listing);
        Assert.Contains("base", listing);
        // a listing sweeps nothing (it changes no store); the next command that writes does
        Assert.True(Directory.Exists(Path.Combine(Store, driver, "half")));
        _cli.Ok("init");
        Assert.Equal(["base"], Directory.GetDirectories(Path.Combine(Store, driver)).Select(Path.GetFileName).Where(n => n != "l"));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Store, "tmp")));
        Assert.Equal(["base.json"], Directory.GetFiles(Path.Combine(Store, "layers")).Select(Path.GetFileName));
        _cli.Ok("layer", "rm", "base"); // no half child pins it
    }

    [Theory]
    [InlineData("vfs")]
    [InlineData("overlay")]
    public void SigkillDuringApplyOntoAnExistingLayer(string driver)
    {
        _cli.Ok("--driver", driver, "layer", "create", "target");
        using var p = StartStuckApply(driver, "target");
        KillHard(p);
        Assert.True(File.Exists(Path.Combine(Store, "layers", "target.json")));
        Assert.DoesNotContain("target", _cli.Ok("layer", "ls", "--format", "json")); // hidden from a reader...
        Assert.True(File.Exists(Path.Combine(Store, "layers", "target.json")));
        _cli.Ok("init"); // ...and swept by the next writer
        Assert.False(Directory.Exists(Path.Combine(Store, driver, "target")));
        Assert.False(File.Exists(Path.Combine(Store, "layers", "target.json")));
    }
}
