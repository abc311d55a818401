// Opening a store: where it lives and how it is opened (StoreOptions), taking ownership, choosing its driver,
// recovering, and reopening it with another driver while it is empty.
using Strata.Core.Drivers;
using Strata.Native;

namespace Strata.Core;

/// <summary>Where a store lives and how to open it.</summary>
public sealed record StoreOptions
{
    public static string DefaultRoot =>
        Environment.GetEnvironmentVariable("STRATA_ROOT") is { Length: > 0 } r ? r : "/var/lib/strata";

    public string Root { get; init; } = DefaultRoot;
    /// <summary>Driver name; null picks the store's recorded driver, or probes for a new store.</summary>
    public string? Driver { get; init; }
    /// <summary>Driver options (Docker's --storage-opt for the daemon), e.g. overlay.mount_program.</summary>
    public IReadOnlyDictionary<string, string> DriverOptions { get; init; } = new Dictionary<string, string>();
    /// <summary>Perform overlay mounts with mount(2) even where the new mount API is available (what kernels
    /// before 6.8 get; the tests use it to cover that path here).</summary>
    internal bool LegacyMounts { get; init; }
    /// <summary>A store that holds no layers yet takes the requested driver and driver options even if it was
    /// made with others (how dockerd's storage options pick the driver of `strata serve`'s store).</summary>
    public bool ReconfigureIfEmpty { get; init; }
    /// <summary>How long to wait for another process to release the store.</summary>
    public TimeSpan LockWait { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Told at once when another process holds the store, with who it is (a CLI prints it while it waits).</summary>
    public Action<string>? Waiting { get; init; }
}

public sealed partial class LayerStore
{
    public static LayerStore Open(StoreOptions options)
    {
        string root = Path.GetFullPath(options.Root);
        MakeDir(root, 0x1C9 /* 0711: others may traverse to a mounted tree, not list the store */);
        // the kernel names mount points by their real path: a root reached through a symlink must match it
        root = Posix.RealPath(root);
        var lockFd = StoreLock.Acquire(root, options.LockWait, options.Waiting);
        try
        {
            return OpenLocked(root, lockFd, options);
        }
        catch
        {
            lockFd.Dispose();
            throw;
        }
    }

    /// <summary>Opens the store at <paramref name="root"/> whose lock <paramref name="lockFd"/> holds; the store owns
    /// the lock once this returns (on failure the caller still does).</summary>
    static LayerStore OpenLocked(string root, FileDescriptor lockFd, StoreOptions options)
    {
        var records = new LayerRecords(Path.Combine(root, "layers"));
        var counts = new MountCounts(Path.Combine(root, "mounts"));
        MakeDir(records.Directory, Modes.OwnerOnly);
        MakeDir(Path.Combine(root, "tmp"), Modes.OwnerOnly);
        MakeDir(counts.Directory, Modes.OwnerOnly);
        var (driverName, driverOptions, isNew) = DriverChoice.Choose(root, records, options.Driver, options.DriverOptions, options.ReconfigureIfEmpty);
        var driver = DriverRegistry.Create(driverName, root, driverOptions);
        try
        {
            var swept = new List<string>();
            var layers = StoreRecovery.Run(root, driver, records, counts, swept);
            if (isNew) DriverChoice.Record(root, driverName, driverOptions); // only once the driver took its options and the store opened
            return new LayerStore(root, lockFd, driver, driverOptions, records, counts, swept, layers, options.LegacyMounts);
        }
        catch
        {
            driver.Dispose();
            throw;
        }
    }

    /// <summary>
    /// This store with <paramref name="driver"/> (null: the current one) and <paramref name="driverOptions"/>
    /// (dockerd's storage options picking the driver of `strata serve`'s store): this very store when it
    /// uses them already; a new store taking over this one's lock (never released in between) when this
    /// one holds no layers, after which this one is closed; otherwise the error opening it with them
    /// would give. When it fails, this store is as it was.
    /// </summary>
    public LayerStore Reconfigure(string? driver, IReadOnlyDictionary<string, string> driverOptions)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (DriverChoice.Mismatch(Root, Driver.Name, DriverOptions, driver, driverOptions) is not { } mismatch) return this;
        lock (_lock)
            if (_layers.Count > 0 || _held.Count > 0) throw StrataException.Invalid(mismatch);
        var next = OpenLocked(Root, _lockFd, new StoreOptions { Root = Root, Driver = driver, DriverOptions = driverOptions, ReconfigureIfEmpty = true, LegacyMounts = _legacyMounts });
        _disposed = true; // the lock is the new store's now
        Driver.Dispose();
        return next;
    }

    /// <summary>Whether the store uses <paramref name="driver"/> (null: any) with <paramref name="driverOptions"/> among its options.</summary>
    public bool Uses(string? driver, IReadOnlyDictionary<string, string> driverOptions) =>
        DriverChoice.Mismatch(Root, Driver.Name, DriverOptions, driver, driverOptions) is null;

    /// <summary>Refuses a request for another driver or other driver options than this store's, as opening it
    /// with them would (a request may repeat some of the recorded options, not change them).</summary>
    public void RequireConfiguration(string? driver, IReadOnlyDictionary<string, string> driverOptions)
    {
        if (DriverChoice.Mismatch(Root, Driver.Name, DriverOptions, driver, driverOptions) is { } mismatch) throw StrataException.Invalid(mismatch);
    }

    /// <summary>Creates a directory with <paramref name="mode"/> if it is missing (an existing one is left as it is).</summary>
    internal static void MakeDir(string path, uint mode)
    {
        int err = Posix.TryMkdirAt(FileDescriptor.Cwd, path, mode);
        if (err == Errno.ENOENT)
        {
            MakeDir(Path.GetDirectoryName(path)!, 0x1ED /* 0755 */);
            err = Posix.TryMkdirAt(FileDescriptor.Cwd, path, mode);
        }
        if (err == Errno.EEXIST && Posix.TryLstat(path, out var st) && st.IsDirectory) return;
        if (err == 0) Posix.ChmodAt(FileDescriptor.Cwd, path, mode); // past the umask
        else throw new ErrnoException(err, "mkdir", path);
    }

    /// <summary>Releases the driver, then the store's lock.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            Driver.Dispose();
        }
        finally
        {
            _lockFd.Dispose();
        }
    }
}
