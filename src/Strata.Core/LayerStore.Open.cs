// Opening a store: where it lives and how it is opened (StoreOptions), taking ownership (or a reader's share),
// choosing its driver, recovering, and reopening it with another driver while it is empty.
using System.Globalization;
using System.Text;
using Strata.Archive;
using Strata.Core.Drivers;
using Strata.Native;

namespace Strata.Core;

/// <summary>How a store is opened.</summary>
public enum StoreMode
{
    /// <summary>As its owner, making the store when the root has none (what writes do).</summary>
    Create,
    /// <summary>As its owner, only when the root has a store (reads that mount layers, or stage in tmp/).</summary>
    Existing,
    /// <summary>As a reader, only when the root has a store: the lock is shared with other readers, nothing is
    /// written (no directory made, no recovery, no driver recorded), every write is refused; so a read-only
    /// store (no write permission, a read-only mount) can be read too. What recovery would remove is hidden
    /// (half-made layers) or shown as it is (counts of mounts gone with a reboot) until a writer opens it.</summary>
    ReadOnly,
}

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
    /// <summary>Made if missing (the default), opened only if it exists, or read without changing it.</summary>
    public StoreMode Mode { get; init; } = StoreMode.Create;
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
    bool _readOnly;

    /// <summary>Whether this store was opened read-only (<see cref="StoreMode.ReadOnly"/>): it refuses every write.</summary>
    public bool ReadOnly => _readOnly;

    /// <summary>
    /// Opens the store at <see cref="StoreOptions.Root"/> as <see cref="StoreOptions.Mode"/> says. A root is a store
    /// once its <c>driver</c> file is there (written when the first open completes); a read of a root without one
    /// fails with NotFound and leaves it as it was. A first open that fails removes what it made (the root itself
    /// when it made it). Permission errors (EACCES, EPERM) while opening say that Strata needs root.
    /// </summary>
    public static LayerStore Open(StoreOptions options)
    {
        string root = Path.GetFullPath(options.Root);
        try
        {
            return options.Mode switch
            {
                StoreMode.ReadOnly => OpenReadOnly(root, options),
                StoreMode.Existing => IsStore(root) ? OpenOwned(root, options) : throw NoStore(root),
                _ => OpenOwned(root, options),
            };
        }
        catch (StrataException ex) when (ex.Kind == ErrorKind.PermissionDenied)
        {
            throw NeedsRoot(root, ex);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw NeedsRoot(root, ex);
        }
    }

    static StrataException NoStore(string root) =>
        StrataException.NotFound($"no store at {root} (`strata init`, or any command that writes, creates one)");

    /// <summary>"strata needs root to use the store at /var/lib/strata (open strata.lock: Permission denied); ...":
    /// paths inside the root are named relative to it.</summary>
    static StrataException NeedsRoot(string root, Exception ex)
    {
        string why = ex is ErrnoException e && e.Path is { } path
            ? $"{e.Operation} {(path.StartsWith(root + "/", StringComparison.Ordinal) ? path[(root.Length + 1)..] : path)}: {ErrnoException.Describe(e.Errno)}"
            : ex.Message;
        return new StrataException(ErrorKind.PermissionDenied,
            $"strata needs root to use the store at {root} ({why}); run it as root or pass --root DIR", ex);
    }

    /// <summary>Whether <paramref name="root"/> holds a store (its driver file), without opening it; a root Strata may
    /// not look into is an error that says Strata needs root.</summary>
    public static bool ExistsAt(string storeRoot)
    {
        string root = Path.GetFullPath(storeRoot);
        try
        {
            return IsStore(root);
        }
        catch (StrataException ex) when (ex.Kind == ErrorKind.PermissionDenied)
        {
            throw NeedsRoot(root, ex);
        }
    }

    static bool IsStore(string root)
    {
        string file = Path.Combine(root, "driver");
        int err = Posix.TryStat(file, out _);
        if (err is 0) return true;
        if (err is Errno.ENOENT or Errno.ENOTDIR) return false;
        throw new ErrnoException(err, "stat", file);
    }

    /// <summary>Opens the store as its owner, making it when the root has none; a first open that fails removes what it
    /// made. Starts over when the lock it waited for was removed with a half-made store (another first open failed).</summary>
    static LayerStore OpenOwned(string root, StoreOptions options)
    {
        while (true)
        {
            var made = Made.Before(root);
            MakeDir(root, 0x1C9 /* 0711: others may traverse to a mounted tree, not list the store */);
            // the kernel names mount points by their real path: a root reached through a symlink must match it
            string real = Posix.RealPath(root);
            // nothing is undone before the lock is held: another first open may be using what this one would remove
            var lockFd = StoreLock.Acquire(real, options.LockWait, options.Waiting);
            if (lockFd is null) continue;
            made.Locked();
            bool isNew = !IsStore(real);
            try
            {
                return OpenLocked(real, lockFd, options);
            }
            catch
            {
                if (isNew) made.Undo(); // under the lock: no other process can have begun to use what is removed
                lockFd.Dispose();
                throw;
            }
        }
    }

    /// <summary>Opens the store for reading: the lock shared, nothing written. See <see cref="StoreMode.ReadOnly"/>.</summary>
    static LayerStore OpenReadOnly(string root, StoreOptions options)
    {
        if (!IsStore(root)) throw NoStore(root);
        root = Posix.RealPath(root);
        var lockFd = StoreLock.Acquire(root, options.LockWait, options.Waiting, shared: true) ?? throw NoStore(root);
        try
        {
            var records = new LayerRecords(Path.Combine(root, "layers"));
            var counts = new MountCounts(Path.Combine(root, "mounts"));
            var (driverName, driverOptions, _) = DriverChoice.Choose(root, records, options.Driver, options.DriverOptions, reconfigureIfEmpty: false);
            // a driver makes its directories only when they are missing, which they are not in a store it opened before
            var driver = DriverRegistry.Create(driverName, root, driverOptions);
            try
            {
                var layers = ReadLayers(records, counts);
                return new LayerStore(root, lockFd, driver, driverOptions, records, counts, [], layers, options.LegacyMounts) { _readOnly = true };
            }
            catch
            {
                driver.Dispose();
                throw;
            }
        }
        catch
        {
            lockFd.Dispose();
            throw;
        }
    }

    /// <summary>The layers as persisted, with their mount counts, for a reader: what recovery would fix is left as it is
    /// (temp records skipped, an unreadable count read as 0, a count an older record carries taken from it).</summary>
    static List<Layer> ReadLayers(LayerRecords records, MountCounts counts)
    {
        if (!Directory.Exists(records.Directory)) return [];
        var layers = records.ReadAll([]);
        var present = Directory.Exists(counts.Directory) ? counts.Names().ToHashSet(StringComparer.Ordinal) : [];
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            if (!present.Contains(layer.Id)) continue;
            string text = Encoding.UTF8.GetString(Posix.ReadFile(Path.Combine(counts.Directory, layer.Id))).Trim();
            layers[i] = layer with { Mounts = int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : 0 };
        }
        return layers;
    }

    /// <summary>The driver's status; a driver probes what it can do in scratch space under tmp/ (overlay, reflinks), which a
    /// store on a read-only filesystem does not give it: then the status says so instead of failing the listing.</summary>
    IReadOnlyList<StatusField> DriverStatus()
    {
        try
        {
            return Driver.Status();
        }
        catch (Exception ex) when (_readOnly && ex is StrataException or IOException or UnauthorizedAccessException)
        {
            return [StatusField.Unknown("Driver Status", $"unknown: the driver probes in {Path.Combine(Root, "tmp")}, which this reader cannot write ({StrataException.OneLine(ex.Message)})")];
        }
    }

    /// <summary>Refuses a write to a store opened read-only, naming what was asked.</summary>
    void ThrowIfReadOnly()
    {
        if (_readOnly)
            throw new StrataException(ErrorKind.ReadOnly, $"store {Root} is open for reading only (a listing); this command cannot change it");
    }

    /// <summary>What a first open made at a root, to remove if it fails: the root itself with the directories above it
    /// that were missing, or else the entries of the root that were not there before.</summary>
    sealed class Made
    {
        string? _top;
        string _root = "";
        HashSet<string>? _entries, _atLock;

        public static Made Before(string root)
        {
            var made = new Made { _root = root };
            string? dir = root;
            string? top = null;
            while (dir is not null && !Posix.TryLstat(dir, out _))
            {
                top = dir;
                dir = Path.GetDirectoryName(dir);
            }
            made._top = top;
            if (top is null && Directory.Exists(root))
            {
                try
                {
                    made._entries = Posix.ReadDir(root).Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
                }
                catch (StrataException)
                {
                    // a root we cannot list we cannot open either: nothing to undo
                }
            }
            return made;
        }

        /// <summary>Notes the root's entries once the lock is held: what appeared while this open waited for it is someone
        /// else's (a file saved in an existing directory meanwhile) and stays; only the lock file is this open's.</summary>
        public void Locked()
        {
            if (_entries is null) return;
            try
            {
                _atLock = Posix.ReadDir(_root).Select(e => e.Name).Where(n => n != StoreLock.FileName).ToHashSet(StringComparer.Ordinal);
            }
            catch (StrataException)
            {
                _entries = null; // cannot tell what is ours: undo nothing
            }
        }

        /// <summary>Removes what was made; what cannot be removed stays (the open's own error is the one to report).</summary>
        public void Undo()
        {
            try
            {
                if (_top is not null) FileTree.Remove(_top);
                else if (_entries is not null)
                    foreach (var e in Posix.ReadDir(_root))
                        if (!_entries.Contains(e.Name) && _atLock?.Contains(e.Name) != true) FileTree.Remove(Path.Combine(_root, e.Name));
            }
            catch (StrataException)
            {
            }
            catch (IOException)
            {
            }
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
        ThrowIfReadOnly();
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
