using Strata.Native;

namespace Strata.Core.Containers;

/// <summary>Why a container's command cannot start: docker's exit codes tell these apart (127 not found, 126 not
/// executable).</summary>
public enum ExecutableProblem
{
    None,
    NotFound,
    NotExecutable,
}

/// <summary>
/// Finds a container's command before runc is started, as runc will look for it (Go's exec.LookPath inside the
/// container): a name with a `/` is that path (relative to the working directory), any other name is looked for in
/// each directory of the process's PATH and must be a file with an execute bit there. Paths resolve in the container's
/// tree (symlinks within it), or in the host source of a bind mount they lie under. Paths under /proc, /dev and /sys,
/// which runc mounts itself, are left to runc. So `strata run` can say in one line what docker says with 127 or 126,
/// instead of runc's log line, and leave no container behind.
/// </summary>
public static class ExecutableLookup
{
    static readonly string[] RuntimeMounts = ["/proc", "/dev", "/sys"];

    /// <summary>Looks for <paramref name="process"/>'s command in the tree at <paramref name="rootfs"/> with
    /// <paramref name="mounts"/> bound into it.</summary>
    public static (ExecutableProblem Problem, string Message) Check(string rootfs, BundleProcess process, IReadOnlyList<BindMount> mounts)
    {
        using var root = Posix.Open(rootfs, Posix.O_RDONLY | Posix.O_DIRECTORY);
        return Check(process, path => Stat(root, mounts, path));
    }

    /// <summary>Looks for <paramref name="process"/>'s command with <paramref name="stat"/>, which stats an absolute path
    /// in the container (null: it does not exist; <see cref="FileKind"/> 0: unknown here, left to runc).</summary>
    public static (ExecutableProblem Problem, string Message) Check(BundleProcess process, Func<string, FileStat?> stat)
    {
        string name = process.Args[0];
        if (name.Length == 0) return (ExecutableProblem.NotFound, "the command is an empty string");
        string quoted = Quote(name);
        if (name.Contains('/'))
        {
            var found = stat(InContainer(process.Cwd, name));
            return found switch
            {
                null => (ExecutableProblem.NotFound, $"{quoted}: no such file in the container"),
                { Kind: 0 } => (ExecutableProblem.None, ""),
                { IsDirectory: true } => (ExecutableProblem.NotExecutable, $"{quoted} is a directory in the container, not an executable"),
                { Permissions: var p } when (p & 0x49) == 0 => (ExecutableProblem.NotExecutable, $"{quoted} is not executable in the container (permission denied)"),
                _ => (ExecutableProblem.None, ""),
            };
        }
        string path = process.Env.LastOrDefault(e => e.StartsWith("PATH=", StringComparison.Ordinal))?[5..] ?? "";
        foreach (var dir in path.Split(':'))
        {
            var found = stat(InContainer(process.Cwd, (dir.Length == 0 ? "." : dir) + "/" + name));
            if (found is { Kind: 0 } || found is { IsDirectory: false } f && (f.Permissions & 0x49) != 0) return (ExecutableProblem.None, "");
        }
        return (ExecutableProblem.NotFound, $"{quoted}: executable file not found in the container's $PATH");
    }

    /// <summary>The absolute path of <paramref name="path"/> in the container, without empty or `.` parts (`..` stays:
    /// the kernel resolves it within the container's tree).</summary>
    static string InContainer(string cwd, string path) =>
        "/" + string.Join('/', (path.StartsWith('/') ? path : cwd + "/" + path).Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != "."));

    static FileStat? Stat(FileDescriptor root, IReadOnlyList<BindMount> mounts, string path)
    {
        if (RuntimeMounts.Any(m => Under(path, m))) return default(FileStat);
        if (mounts.Where(m => Under(path, m.Destination)).MaxBy(m => m.Destination.Length) is { } mount)
            return Posix.TryStat(mount.Source + path[mount.Destination.Length..], out var host) == 0 ? host : null;
        if (Posix.TryOpenAt2(root, path.TrimStart('/'), Posix.O_PATH, Posix.RESOLVE_IN_ROOT | Posix.RESOLVE_NO_MAGICLINKS, out var fd) != 0) return null;
        using (fd) return Posix.Fstat(fd!);
    }

    static bool Under(string path, string dir) => path == dir || path.StartsWith(dir + "/", StringComparison.Ordinal);

    static string Quote(string s) => "\"" + s + "\"";
}
