using Strata.Core;

namespace Strata.Daemon;

/// <summary>
/// The daemon's one store. Requests use it under a shared lock; dockerd's Init may reopen it with the driver
/// and driver options dockerd was given (`--storage-opt strata.driver=vfs`, `overlay.mount_program=...`)
/// under the exclusive lock, which the store allows only while it holds no layers. Reopening keeps the
/// store's file lock: another process never gets in between.
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
    /// nothing to do when they are the store's already (checked under the shared lock, so other calls go on);
    /// a reopen under the exclusive lock when the store holds no layers (<see cref="LayerStore.Reconfigure"/>,
    /// which leaves the store as it was when it fails); an error otherwise.</summary>
    public void Configure(string? driver, IReadOnlyDictionary<string, string> driverOptions)
    {
        bool done = Use(store =>
        {
            if (store.Uses(driver, driverOptions)) return true;
            if (store.List().Count > 0) store.RequireConfiguration(driver, driverOptions); // the store's error, without waiting
            return false;
        });
        if (done) return;
        // requests in flight (a long diff) hold the shared lock: wait for them a while, not for ever
        if (!_lock.TryEnterWriteLock(ConfigureWait))
            throw StrataException.InUse($"cannot switch store {Root} to driver '{driver ?? _store.Driver.Name}' now: requests in progress keep it busy; retry when they are done");
        try
        {
            _store = _store.Reconfigure(driver, driverOptions);
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    /// <summary>How long <see cref="Configure"/> waits for requests in progress.</summary>
    public TimeSpan ConfigureWait { get; init; } = TimeSpan.FromSeconds(30);

    public void Dispose()
    {
        _store.Dispose();
        _lock.Dispose();
    }
}
