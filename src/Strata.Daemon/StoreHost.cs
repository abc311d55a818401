using Strata.Core;

namespace Strata.Daemon;

/// <summary>
/// The daemon's one store. Requests use it under a shared lock; dockerd's Init may reopen it with the driver
/// and driver options dockerd was given (`--storage-opt strata.driver=vfs`, `overlay.mount_program=...`)
/// under the exclusive lock, which the store allows only while it holds no layers. Reopening keeps the
/// store's lock within this process: the file lock is released and taken again at once.
/// </summary>
public sealed class StoreHost : IDisposable
{
    readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.SupportsRecursion);
    readonly StoreOptions _options;
    LayerStore _store;

    public StoreHost(StoreOptions options)
    {
        _options = options;
        _store = LayerStore.Open(options);
    }

    public string Root => _store.Root;

    public T Use<T>(Func<LayerStore, T> work)
    {
        _lock.EnterReadLock();
        try
        {
            return work(_store);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public void Use(Action<LayerStore> work) => Use(s =>
    {
        work(s);
        return 0;
    });

    /// <summary>Makes the store use <paramref name="driver"/> (null: the current one) with <paramref name="driverOptions"/>:
    /// a no-op when they are the store's already, a reopen when the store is empty, an error otherwise.</summary>
    public void Configure(string? driver, IReadOnlyDictionary<string, string> driverOptions)
    {
        if ((driver is null || driver == _store.Driver.Name) && driverOptions.Count == 0) return;
        _lock.EnterWriteLock();
        try
        {
            string root = _store.Root;
            _store.Dispose();
            try
            {
                _store = LayerStore.Open(_options with { Root = root, Driver = driver, DriverOptions = driverOptions, ReconfigureIfEmpty = true });
            }
            catch
            {
                _store = LayerStore.Open(_options with { Root = root, Driver = null, DriverOptions = new Dictionary<string, string>() });
                throw;
            }
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    public void Dispose()
    {
        _store.Dispose();
        _lock.Dispose();
    }
}
