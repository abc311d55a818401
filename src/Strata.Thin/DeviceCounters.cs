using System.Diagnostics;

namespace Strata.Thin;

/// <summary>
/// The IO counters of one thin device, always on: every request through an open <see cref="ThinDevice"/> (NBD, FUSE,
/// the CLI's reads and writes) counts here, and the pool's write path adds the copy-on-write and allocation it did.
/// One per device, shared by every open of it, kept by the pool in memory from the pool's open until the device is
/// deleted: a restart of the process that has the pool open starts them at zero (as /proc/diskstats at boot).
/// Updated without locks (interlocked adds; the busy time as the kernel keeps its io_ticks: a stamp advanced by
/// compare-and-swap at each start and end, adding the time since the last stamp while requests were in flight), so a
/// snapshot taken during IO is a moment's view, each counter exact but not all at one instant.
/// </summary>
public sealed class DeviceCounters
{
#if STRATA_NO_IO_STATS
#pragma warning disable CS0649 // compiled out below: the counters stay 0
#endif
    long _reads, _readBytes, _readTicks;
    long _writes, _writeBytes, _writeTicks;
    long _flushes, _flushTicks;
    long _discards, _discardBytes, _discardTicks;
    long _inFlight, _busyTicks, _stamp;
    long _cowBlocks, _allocatedBlocks, _noSpace;
#if STRATA_NO_IO_STATS
#pragma warning restore CS0649
#endif

#if STRATA_NO_IO_STATS
    // compiled out (bench/io-stats.sh measures what counting costs): every update does nothing
    internal long Start() => 0;
    internal void EndRead(long start, long bytes) { }
    internal void EndWrite(long start, long bytes) { }
    internal void EndDiscard(long start, long bytes) { }
    internal void EndFlush(long start) { }
    internal void EndFailed(bool noSpace) { }
    internal void CopiedOnWrite(int blocks) { }
    internal void Allocated(int blocks) { }
#else
    /// <summary>A request starts: the timestamp its end is given.</summary>
    internal long Start()
    {
        long now = Stopwatch.GetTimestamp();
        Tick(now, end: false);
        Interlocked.Increment(ref _inFlight);
        return now;
    }

    internal void EndRead(long start, long bytes) => End(start, ref _reads, ref _readBytes, ref _readTicks, bytes);

    internal void EndWrite(long start, long bytes) => End(start, ref _writes, ref _writeBytes, ref _writeTicks, bytes);

    internal void EndDiscard(long start, long bytes) => End(start, ref _discards, ref _discardBytes, ref _discardTicks, bytes);

    internal void EndFlush(long start)
    {
        long unused = 0;
        End(start, ref _flushes, ref unused, ref _flushTicks, 0);
    }

    /// <summary>A request that failed: it leaves the queue, counted in no kind (and as a no-space failure when it was one).</summary>
    internal void EndFailed(bool noSpace)
    {
        Tick(Stopwatch.GetTimestamp(), end: true);
        Interlocked.Decrement(ref _inFlight);
        if (noSpace) Interlocked.Increment(ref _noSpace);
    }

    void End(long start, ref long count, ref long bytes, ref long ticks, long n)
    {
        long now = Stopwatch.GetTimestamp();
        Tick(now, end: true);
        Interlocked.Decrement(ref _inFlight);
        Interlocked.Increment(ref count);
        if (n != 0) Interlocked.Add(ref bytes, n);
        Interlocked.Add(ref ticks, now - start);
    }

    /// <summary>The kernel's update_io_ticks: the time since the last stamp counts as busy when a request was in flight
    /// through it (always at an end); only the thread that moves the stamp adds it.</summary>
    void Tick(long now, bool end)
    {
        long stamp = Volatile.Read(ref _stamp);
        if (now > stamp && Interlocked.CompareExchange(ref _stamp, now, stamp) == stamp && (end || Volatile.Read(ref _inFlight) > 0))
            Interlocked.Add(ref _busyTicks, now - stamp);
    }

    /// <summary>Blocks written to a fresh place because another device (a snapshot) or the last commit shared the old one.</summary>
    internal void CopiedOnWrite(int blocks) => Interlocked.Add(ref _cowBlocks, blocks);

    /// <summary>Fresh data blocks mapped by writes (copies on write included).</summary>
    internal void Allocated(int blocks) => Interlocked.Add(ref _allocatedBlocks, blocks);

#endif

    /// <summary>The counters of a device never opened since the pool was.</summary>
    public static DeviceStats Zero(string name, uint id) => new(name, id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);

    static long Ns(long ticks) => (long)(ticks * (1_000_000_000.0 / Stopwatch.Frequency));

    /// <summary>The counters now, for device <paramref name="name"/>.</summary>
    public DeviceStats Read(string name, uint id)
    {
        long busy = Interlocked.Read(ref _busyTicks);
        if (Interlocked.Read(ref _inFlight) > 0) busy += Math.Max(0, Stopwatch.GetTimestamp() - Interlocked.Read(ref _stamp)); // the busy time up to now
        return new DeviceStats(name, id,
            Interlocked.Read(ref _reads), Interlocked.Read(ref _readBytes), Ns(Interlocked.Read(ref _readTicks)),
            Interlocked.Read(ref _writes), Interlocked.Read(ref _writeBytes), Ns(Interlocked.Read(ref _writeTicks)),
            Interlocked.Read(ref _flushes), Ns(Interlocked.Read(ref _flushTicks)),
            Interlocked.Read(ref _discards), Interlocked.Read(ref _discardBytes), Ns(Interlocked.Read(ref _discardTicks)),
            Interlocked.Read(ref _inFlight), Ns(busy),
            Interlocked.Read(ref _cowBlocks), Interlocked.Read(ref _allocatedBlocks), Interlocked.Read(ref _noSpace));
    }
}

/// <summary>
/// One device's IO counters at one moment (see <see cref="DeviceCounters"/>), counted since the pool was opened by the
/// process that has it: requests and bytes per kind (discards include write-zeroes: both unmap), the time requests of
/// each kind took in total (ns, summed over requests, so it can pass the wall-clock time when they overlap), requests in
/// flight, the time at least one was in flight (BusyNs, the kernel's io_ticks: %util), blocks copied on write, blocks
/// allocated and writes failed for want of space.
/// </summary>
public sealed record DeviceStats(string Name, uint Id,
    long Reads, long ReadBytes, long ReadNs,
    long Writes, long WriteBytes, long WriteNs,
    long Flushes, long FlushNs,
    long Discards, long DiscardBytes, long DiscardNs,
    long InFlight, long BusyNs,
    long CowBlocks, long AllocatedBlocks, long NoSpaceErrors)
{
    /// <summary>The counters as "key value" lines, one per counter, in this order (the FUSE export's stats file; the
    /// keys as the kernel names a tape's: *_cnt for requests, *_byte_cnt, *_ns, in_flight, io_ns for the busy time).</summary>
    public string Text() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"read_cnt {Reads}\nread_byte_cnt {ReadBytes}\nread_ns {ReadNs}\nwrite_cnt {Writes}\nwrite_byte_cnt {WriteBytes}\nwrite_ns {WriteNs}\n" +
        $"flush_cnt {Flushes}\nflush_ns {FlushNs}\ndiscard_cnt {Discards}\ndiscard_byte_cnt {DiscardBytes}\ndiscard_ns {DiscardNs}\n" +
        $"in_flight {InFlight}\nio_ns {BusyNs}\ncow_blocks {CowBlocks}\nallocated_blocks {AllocatedBlocks}\nno_space_cnt {NoSpaceErrors}\n");
}

/// <summary>
/// A pool's IO statistics: when the counting started (the pool's open in the process that has it), the time they
/// were read, the commits done since and their total time, the space, and every device's counters.
/// </summary>
public sealed record PoolStats(DateTimeOffset Since, DateTimeOffset At, long Commits, long CommitNs, uint BlockSize,
    long DataBytes, long DataBytesUsed, long MetadataBytes, long MetadataBytesUsed, IReadOnlyList<DeviceStats> Devices);
