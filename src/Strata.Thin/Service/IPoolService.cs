namespace Strata.Thin.Service;

/// <summary>
/// What the thin driver and the `strata pool` commands ask of a thin pool, wherever it is open: in this process
/// (<see cref="LocalPool"/>) or in the `strata pool serve` process that owns it (<see cref="RemotePool"/>, through the
/// pool's control socket; <see cref="PoolDispatcher"/> serves it there). Both give the same results and fail with the
/// same <see cref="StrataException"/> (kind and one-line message).
///
/// Vocabulary:
/// <list type="bullet">
/// <item><b>device</b>: a thin device of the pool, known by its name; its blocks are allocated on first write and
/// shared copy-on-write with its snapshots. A <b>snapshot</b> is a device made from another in O(1).</item>
/// <item><b>owner</b>: who holds a device (text the pool only compares: "layer ID" for a thin store's layer). A held
/// device is deleted only by its owner, or with force; null: nobody holds it.</item>
/// <item><b>deferred delete</b>: a delete asked with defer of a device that is open (a loop or nbd device of the kernel
/// still reads it): the device leaves the names at once and goes with its last close.</item>
/// <item><b>attached</b>: given to the kernel's nbd module by the server (/dev/nbdN); only a server attaches.</item>
/// </list>
/// Disposing lets go of what the service holds for its caller: a connection, or a pool opened for it (and its lock).
/// </summary>
public interface IPoolService : IDisposable
{
    /// <summary>Makes an empty device of <paramref name="size"/> bytes, held by <paramref name="owner"/>.</summary>
    ThinDeviceInfo Create(string name, long size, string? owner = null);

    /// <summary>Makes device <paramref name="name"/> a snapshot of <paramref name="source"/>, held by <paramref name="owner"/>.</summary>
    ThinDeviceInfo Snapshot(string source, string name, string? owner = null);

    /// <summary>Deletes a device: refused while it is open unless <paramref name="defer"/> (then it goes with its last
    /// close), and while someone other than <paramref name="owner"/> holds it unless <paramref name="force"/>. True:
    /// deleted now; false: deferred.</summary>
    bool Delete(string name, bool defer = false, string? owner = null, bool force = false);

    /// <summary>Makes device <paramref name="name"/> hold what <paramref name="snapshot"/> holds, in one commit (see
    /// <see cref="ThinPool.RollbackDevice"/>): refused while it is open, and under someone else's hold unless <paramref name="force"/>.</summary>
    ThinDeviceInfo Rollback(string name, string snapshot, string? owner = null, bool force = false);

    /// <summary>Grows a device to <paramref name="size"/> bytes (never shrinks).</summary>
    ThinDeviceInfo Resize(string name, long size);

    /// <summary>One device's size, id, origin and owner, without counting its blocks.</summary>
    ThinDeviceInfo Device(string name);

    /// <summary>The devices' names, by id, leaving out those whose deletion is deferred.</summary>
    IReadOnlyList<string> DeviceNames();

    /// <summary>Every device with its mapped, exclusive and shared blocks (thin_ls's figures; walks every tree).</summary>
    IReadOnlyList<ThinDeviceInfo> Devices();

    /// <summary>The pool's space and state, with what the process that has it open knows (deferred deletes, open files).</summary>
    PoolInfo Status();

    /// <summary>What is wrong with the superblocks, one line each (a damaged slot, a lost transaction); needs no more
    /// of the pool than its metadata store, so a pool too damaged to load still answers.</summary>
    IReadOnlyList<string> SuperblockProblems();

    /// <summary>Gives a device to the kernel's nbd module (one more hold if it has it already); the block device's path.</summary>
    string Attach(string name);

    /// <summary>Lets one hold of <see cref="Attach"/> go; the kernel device goes once nothing holds or has it open.</summary>
    void Detach(string name);

    /// <summary>The kernel block device a device is attached to (null: none), without taking a hold.</summary>
    string? Attached(string name);

    /// <summary>Copies <paramref name="length"/> bytes of a device from <paramref name="offset"/> to <paramref name="to"/>;
    /// a range outside the device is refused before anything is copied (<see cref="DeviceRange"/>).</summary>
    void Read(string name, long offset, long length, Stream to);

    /// <summary>Writes everything <paramref name="from"/> holds into a device at <paramref name="offset"/>, then flushes
    /// (commits); the number of bytes written. Input past the device's end fails the write.</summary>
    long Write(string name, long offset, Stream from);

    /// <summary>Checks the committed metadata (of the open pool, committed first; or of its stores when the pool is not loaded).</summary>
    PoolCheck Check();

    /// <summary>Writes the committed metadata as thin_dump's XML to <paramref name="to"/>.</summary>
    void Dump(Stream to);

    /// <summary>Changes a resilient pool's disks (add, remove, replace, fail); the space as it is after. A rebuild it
    /// starts runs in the background of a server; a pool opened for the call waits for it.</summary>
    Space.SpaceInfo ChangeDisks(DiskChange change);

    /// <summary>Reads and checks every copy of every allocated block of a resilient pool, rewriting what is wrong when
    /// <paramref name="repair"/>; progress shows in <see cref="Status"/> meanwhile.</summary>
    Space.ScrubReport Scrub(bool repair);

    /// <summary>The IO statistics of the devices named (null: all), with the pool's commits and space, as counted by the
    /// process that has the pool open since it opened it (<see cref="DeviceCounters"/>): a pool opened for the call has
    /// counted nothing.</summary>
    PoolStats Stats(IReadOnlyList<string>? names = null);
}

/// <summary>What <see cref="IPoolService.Status"/> reports: the pool's directory and layout (pool.json), its status, and
/// what the process that has it open counts: devices whose deletion waits for their last close, and device files
/// its exports have open (each attached device holds one); and a resilient pool's space (null: a pool on one data store).</summary>
public sealed record PoolInfo(string Directory, PoolLayout Layout, PoolStatus Status, int DeferredDeletes, int OpenFiles, Space.SpaceInfo? Space = null);

/// <summary>What <see cref="IPoolService.Check"/> found (see <see cref="CheckReport"/>): errors, the metadata is damaged;
/// leaks, data blocks counted as used that no device maps.</summary>
public sealed record PoolCheck(ulong Transaction, int Devices, ulong MappedBlocks, int MetadataBlocksUsed, IReadOnlyList<string> Errors, IReadOnlyList<string> Leaks)
{
    public bool Clean => Errors.Count == 0 && Leaks.Count == 0;

    public static PoolCheck From(CheckReport r) => new(r.Transaction, r.Devices, r.MappedBlocks, r.MetadataBlocksUsed, r.Errors, r.Leaks);
}

/// <summary>The one test of a byte range in a device, for every reader of one (same refusal, same words).</summary>
public static class DeviceRange
{
    public static void Require(string device, long size, long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > size || length > size - offset)
            throw StrataException.Invalid($"{length} bytes at {offset} are outside device {device} ({size} bytes)");
    }
}
