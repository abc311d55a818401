using System.Diagnostics;

namespace Strata.Thin;

/// <summary>
/// The IO counters of one thin device, always on: every request through an open <see cref="ThinDevice"/> (NBD, FUSE,
/// the CLI's reads and writes) counts here, and the pool's write path adds the copy-on-write and allocation it did.
/// One per device, shared by every open of it, kept by the pool in memory from the pool's open until the device is
/// deleted: a restart of the process that has the pool open starts them at zero (as /proc/diskstats at boot).
/// Updated without locks and, on the hot path, without sharing cache lines between CPUs where it can: a request's
/// counts, bytes and time go to the cell of the CPU it ends on (interlocked adds, uncontended), and a read sums the
/// cells. Requests in flight are one shared count; the busy time is kept as the kernel keeps its io_ticks, in coarse
/// units (2^20 Stopwatch ticks, about a millisecond, as the kernel's jiffies): a stamp advanced by compare-and-swap when a
/// start or end finds it a unit behind, adding the time since while requests were in flight. A snapshot taken during
/// IO is a moment's view, each counter exact but not all at one instant.
/// </summary>
public sealed class DeviceCounters
{
    const int Reads = 0, ReadBytes = 1, ReadTicks = 2, Writes = 3, WriteBytes = 4, WriteTicks = 5, Flushes = 6, FlushTicks = 7,
        Discards = 8, DiscardBytes = 9, DiscardTicks = 10, CowBlocks = 11, AllocatedBlocks = 12, NoSpace = 13;
    const int Fields = 16; // a cell is 128 bytes: two cache lines, so that no two CPUs' cells share one (nor the array's header: Pad)
    const int Pad = 16;
    const int BusyShift = 20;
    static readonly int s_cellMask = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Clamp(Environment.ProcessorCount, 1, 64)) - 1;

    readonly long[] _cells = new long[Pad + (s_cellMask + 1) * Fields];
#if STRATA_NO_IO_STATS
#pragma warning disable CS0649 // compiled out below: the counters stay 0
#endif
    long _inFlight, _busyUnits, _stamp;
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

    internal void EndRead(long start, long bytes) => End(start, Reads, bytes);

    internal void EndWrite(long start, long bytes) => End(start, Writes, bytes);

    internal void EndDiscard(long start, long bytes) => End(start, Discards, bytes);

    internal void EndFlush(long start) => End(start, Flushes, 0);

    /// <summary>A request that failed: it leaves the queue, counted in no kind (and as a no-space failure when it was one).</summary>
    internal void EndFailed(bool noSpace)
    {
        Tick(Stopwatch.GetTimestamp(), end: true);
        Interlocked.Decrement(ref _inFlight);
        if (noSpace) Interlocked.Increment(ref _cells[Cell() + NoSpace]);
    }

    /// <summary>Counts a request of the kind whose count is at <paramref name="kind"/> (its bytes follow it, then its time;
    /// a flush's time follows its count).</summary>
    void End(long start, int kind, long bytes)
    {
        long now = Stopwatch.GetTimestamp();
        Tick(now, end: true);
        Interlocked.Decrement(ref _inFlight);
        int cell = Cell() + kind;
        Interlocked.Increment(ref _cells[cell]);
        if (kind == Flushes) Interlocked.Add(ref _cells[cell + 1], now - start);
        else
        {
            if (bytes != 0) Interlocked.Add(ref _cells[cell + 1], bytes);
            Interlocked.Add(ref _cells[cell + 2], now - start);
        }
    }

    /// <summary>The start of this CPU's cell.</summary>
    int Cell() => Pad + (Thread.GetCurrentProcessorId() & s_cellMask) * Fields;

    /// <summary>The kernel's update_io_ticks: the time since the last stamp counts as busy when a request was in flight
    /// through it (always at an end); only the thread that moves the stamp adds it.</summary>
    void Tick(long now, bool end)
    {
        long unit = now >> BusyShift, stamp = Volatile.Read(ref _stamp);
        if (unit > stamp && Interlocked.CompareExchange(ref _stamp, unit, stamp) == stamp && (end || Volatile.Read(ref _inFlight) > 0))
            Interlocked.Add(ref _busyUnits, unit - stamp);
    }

    /// <summary>Blocks written to a fresh place because another device (a snapshot) or the last commit shared the old one.</summary>
    internal void CopiedOnWrite(int blocks)
    {
        if (blocks != 0) Interlocked.Add(ref _cells[Cell() + CowBlocks], blocks);
    }

    /// <summary>Fresh data blocks mapped by writes (copies on write included).</summary>
    internal void Allocated(int blocks) => Interlocked.Add(ref _cells[Cell() + AllocatedBlocks], blocks);

#endif

    /// <summary>The counters of a device never opened since the pool was.</summary>
    public static DeviceStats Zero(string name, uint id) => new(name, id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);

    static long Ns(long ticks) => (long)(ticks * (1_000_000_000.0 / Stopwatch.Frequency));

    long Sum(int field)
    {
        long total = 0;
        for (int c = Pad; c < _cells.Length; c += Fields) total += Interlocked.Read(ref _cells[c + field]);
        return total;
    }

    /// <summary>The counters now, for device <paramref name="name"/>.</summary>
    public DeviceStats Read(string name, uint id)
    {
        long busy = Interlocked.Read(ref _busyUnits);
        if (Interlocked.Read(ref _inFlight) > 0) busy += Math.Max(0, (Stopwatch.GetTimestamp() >> BusyShift) - Interlocked.Read(ref _stamp)); // the busy time up to now
        return new DeviceStats(name, id,
            Sum(Reads), Sum(ReadBytes), Ns(Sum(ReadTicks)),
            Sum(Writes), Sum(WriteBytes), Ns(Sum(WriteTicks)),
            Sum(Flushes), Ns(Sum(FlushTicks)),
            Sum(Discards), Sum(DiscardBytes), Ns(Sum(DiscardTicks)),
            Interlocked.Read(ref _inFlight), Ns(busy << BusyShift),
            Sum(CowBlocks), Sum(AllocatedBlocks), Sum(NoSpace));
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
