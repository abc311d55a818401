using Strata.Native;
using Strata.Thin.DmThin;

namespace Strata.Daemon;

/// <summary>How `strata dm docker mount` runs.</summary>
public sealed record DmMountOptions
{
    /// <summary>The pool, opened by the caller, who disposes of it after the run.</summary>
    public required DmPool Pool { get; init; }
    public required uint Device { get; init; }
    /// <summary>The directory of the device's filesystem to show (Docker keeps a layer's tree under rootfs/); null: all.</summary>
    public string? Subdirectory { get; init; }
    public required string Target { get; init; }
    /// <summary>Called once mounted.</summary>
    public Action? Mounted { get; init; }
    public Action<string>? Log { get; init; }
}

/// <summary>
/// `strata dm docker mount`: one thin device of a dm-thin pool mounted read-only for as long as this process runs (as
/// nbdfuse or squashfuse -f serve their mounts): its filesystem mounted by <see cref="DmDeviceTrees"/>, the
/// subdirectory asked for bound on the target. On SIGTERM or SIGINT everything is undone in the reverse order; so it
/// is when any step fails.
/// </summary>
public static class DmMount
{
    public static async Task<int> RunAsync(DmMountOptions options, CancellationToken stop = default)
    {
        if (!Directory.Exists(options.Target)) throw StrataException.NotFound($"{options.Target} is not a directory");
        if (MountTable.IsMountPoint(options.Target)) throw StrataException.InUse($"{options.Target} is a mount point already");
        var pool = options.Pool;
        pool.Device(options.Device); // one that does not exist is refused before anything is made
        foreach (var problem in pool.Problems) options.Log?.Invoke($"warning: {problem}");
        foreach (var u in pool.Device(options.Device).Unreadable) options.Log?.Invoke($"warning: thin device {options.Device}: {u}");
        using var trees = new DmDeviceTrees(pool, options.Log);
        using var tree = trees.Mount(options.Device);
        string shown = options.Subdirectory is { } sub ? Path.Combine(tree.Path, sub) : tree.Path;
        if (!Directory.Exists(shown)) throw StrataException.NotFound($"thin device {options.Device}'s filesystem has no {options.Subdirectory}/");
        Errno.Check(Posix.TryMount(shown, options.Target, null, Posix.MS_BIND, null), "mount --bind", options.Target);
        try
        {
            using var stopped = new StopSignal(stop);
            options.Mounted?.Invoke();
            await stopped.Task;
        }
        finally
        {
            if (Posix.TryUnmount(options.Target, 0) != 0) Posix.TryUnmount(options.Target, Posix.MNT_DETACH);
        }
        return 0;
    }
}
