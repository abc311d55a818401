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
