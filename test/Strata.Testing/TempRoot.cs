using Strata.Native;

namespace Strata.Testing;

/// <summary>A fresh directory under /tmp for one test, removed with everything under it on dispose —
/// mounts under it are unmounted first, even when the test failed.</summary>
public sealed class TempRoot : IDisposable
{
    public TempRoot(string? parent = null)
    {
        Path = Directory.CreateTempSubdirectory("strata-test-").FullName;
        if (parent is not null)
        {
            Directory.Delete(Path);
            Path = System.IO.Path.Combine(parent, System.IO.Path.GetFileName(Path));
            Directory.CreateDirectory(Path);
        }
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    /// <summary>A new empty directory inside the root.</summary>
    public string Dir(string name)
    {
        var p = Combine(name);
        Directory.CreateDirectory(p);
        return p;
    }

    public void Dispose()
    {
        PoolServers.Kill(Path);
        foreach (var mount in Mounts.Under(Path).OrderByDescending(m => m.Length)) Shell.Run("umount", "-l", mount);
        Shell.Run("rm", "-rf", "--one-file-system", Path);
    }
}

public static class Mounts
{
    /// <summary>Mount points at or under <paramref name="path"/>, from /proc/self/mountinfo.</summary>
    public static List<string> Under(string path) =>
        File.ReadAllLines("/proc/self/mountinfo")
            .Select(l => l.Split(' ')[4].Replace("\\040", " "))
            .Where(m => m == path || m.StartsWith(path + "/", StringComparison.Ordinal))
            .ToList();
}

public static class PoolServers
{
    /// <summary>Pids of `strata pool serve` processes serving a pool under <paramref name="path"/> (the thin driver starts them).</summary>
    public static List<int> Under(string path)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(System.IO.Path.GetFileName(dir), out int pid)) continue;
            string cmdline;
            try
            {
                cmdline = File.ReadAllText(System.IO.Path.Combine(dir, "cmdline"));
            }
            catch (IOException)
            {
                continue;
            }
            catch (UnauthorizedAccessException)
            {
                continue;
            }
            if (cmdline.Contains("pool\0serve\0", StringComparison.Ordinal) && cmdline.Contains(path + "/", StringComparison.Ordinal) && Posix.IsRunning(pid)) pids.Add(pid);
        }
        return pids;
    }

    /// <summary>Kills (SIGKILL) the pool servers under <paramref name="path"/> and waits for them to go.</summary>
    public static void Kill(string path)
    {
        var pids = Under(path);
        foreach (var pid in pids) Posix.TryKill(pid, Posix.SIGKILL);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (pids.Any(Posix.IsRunning) && DateTime.UtcNow < deadline) Thread.Sleep(5);
    }
}
