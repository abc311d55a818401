using Strata.Native;

namespace Strata.Core;

/// <summary>Who keeps a mount busy (what fuser -m shows): processes whose working directory, root,
/// executable or open files lie under a path. Used to name the holder in "busy" errors.</summary>
public static class Holders
{
    public static List<(int Pid, string Command)> Find(string path)
    {
        string prefix = path.TrimEnd('/') + "/";
        bool Under(string? p) => p is not null && (p == path || p.StartsWith(prefix, StringComparison.Ordinal));
        var found = new List<(int, string)>();
        foreach (var e in Posix.ReadDir("/proc"))
        {
            if (!int.TryParse(e.Name, out int pid)) continue;
            string proc = "/proc/" + e.Name;
            bool holds = Under(Link(proc + "/cwd")) || Under(Link(proc + "/root")) || Under(Link(proc + "/exe"));
            if (!holds)
            {
                try
                {
                    holds = Posix.ReadDir(proc + "/fd").Any(fd => Under(Link($"{proc}/fd/{fd.Name}")));
                }
                catch (StrataException)
                {
                    // the process ended, or its fds are not ours to see
                }
            }
            if (holds) found.Add((pid, Command(proc)));
        }
        return found;
    }

    /// <summary>"pid 123 (bash), pid 456 (sleep)", at most <paramref name="max"/> of them.</summary>
    public static string Describe(string path, int max = 5)
    {
        var holders = Find(path);
        string list = string.Join(", ", holders.Take(max).Select(h => $"pid {h.Pid} ({h.Command})"));
        return holders.Count > max ? $"{list} and {holders.Count - max} more" : list;
    }

    static string? Link(string path)
    {
        try
        {
            return Posix.ReadLinkAt(FileDescriptor.Cwd, path);
        }
        catch (StrataException)
        {
            return null;
        }
    }

    static string Command(string proc)
    {
        try
        {
            return File.ReadAllText(proc + "/comm").Trim();
        }
        catch (IOException)
        {
            return "?";
        }
    }
}
