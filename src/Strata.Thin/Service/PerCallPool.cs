namespace Strata.Thin.Service;

/// <summary>
/// <see cref="IPoolService"/> on the pool in a directory, wherever it is open at the moment of each call: through the
/// server that owns it when one answers on its control socket (<see cref="Server"/>), else on the pool opened in this
/// process for that one call (and closed, committing, after it), which is cheaper than starting a server to create or
/// remove a device. The pool's lock alone does not tell which: a process forked elsewhere in this one holds a copy of
/// its descriptors (and so of the lock) until it execs, and a server holds it a moment before its socket answers; so a
/// locked pool is tried again until either the lock or an answering socket shows up, for up to <see cref="LockWait"/>.
/// A server that goes away between two calls (the thin driver stops its idle server) costs nothing: the next call runs
/// here. <paramref name="callTimeout"/>: how long a server may take for a short call (null: as long as it takes).
/// </summary>
public sealed class PerCallPool(string dir, TimeSpan? callTimeout) : IPoolService
{
    static readonly TimeSpan LockWait = TimeSpan.FromSeconds(30);

    /// <summary>The pool's server, when one runs.</summary>
    public RemotePool Server { get; } = RemotePool.ForPool(dir, callTimeout);

    T Call<T>(Func<IPoolService, T> call)
    {
        var deadline = DateTime.UtcNow + LockWait;
        while (true)
        {
            if (File.Exists(Server.Socket))
            {
                try
                {
                    return call(Server);
                }
                catch (PoolUnreachableException)
                {
                    // a socket left by a server that is gone: nothing ran, the call may go to the pool opened here
                }
            }
            LocalPool local;
            try
            {
                local = LocalPool.Open(dir, commitInterval: TimeSpan.Zero);
            }
            catch (StrataException ex) when (ex.Kind == ErrorKind.InUse && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(2);
                continue;
            }
            using (local) return call(local);
        }
    }

    void Call(Action<IPoolService> call) => Call(p =>
    {
        call(p);
        return true;
    });

    public ThinDeviceInfo Create(string name, long size, string? owner = null) => Call(p => p.Create(name, size, owner));

    public ThinDeviceInfo Snapshot(string source, string name, string? owner = null) => Call(p => p.Snapshot(source, name, owner));

    public bool Delete(string name, bool defer = false, string? owner = null, bool force = false) => Call(p => p.Delete(name, defer, owner, force));

    public ThinDeviceInfo Resize(string name, long size) => Call(p => p.Resize(name, size));

    public ThinDeviceInfo Rollback(string name, string snapshot, string? owner = null, bool force = false) => Call(p => p.Rollback(name, snapshot, owner, force));

    public ThinDeviceInfo Device(string name) => Call(p => p.Device(name));

    public IReadOnlyList<string> DeviceNames() => Call(p => p.DeviceNames());

    public IReadOnlyList<ThinDeviceInfo> Devices() => Call(p => p.Devices());

    public PoolInfo Status() => Call(p => p.Status());

    public IReadOnlyList<string> SuperblockProblems() => Call(p => p.SuperblockProblems());

    public string Attach(string name) => Call(p => p.Attach(name));

    public void Detach(string name) => Call(p => p.Detach(name));

    public string? Attached(string name) => Call(p => p.Attached(name));

    public void Read(string name, long offset, long length, Stream to) => Call(p => p.Read(name, offset, length, to));

    public long Write(string name, long offset, Stream from) => Call(p => p.Write(name, offset, from));

    public PoolCheck Check() => Call(p => p.Check());

    public void Dump(Stream to) => Call(p => p.Dump(to));

    public Space.SpaceInfo ChangeDisks(DiskChange change) => Call(p => p.ChangeDisks(change));

    public Space.ScrubReport Scrub(bool repair) => Call(p => p.Scrub(repair));

    public PoolStats Stats(IReadOnlyList<string>? names = null) => Call(p => p.Stats(names));

    public void Dispose() => Server.Dispose();
}
