using System.Buffers;
using System.Diagnostics;

namespace Strata.Thin.Space;

/// <summary>What a scrub found on one disk: bytes it read there, reads that failed, sectors (or parity rows) that were
/// wrong, and how many of them it rewrote.</summary>
public sealed record ScrubDisk(int Slot, string Path, long BytesRead, long ReadErrors, long Errors, long Repaired);

/// <summary>A scrub's result: the allocated blocks it checked, what was wrong, what it repaired, what nothing could
/// repair (no good copy, a stripe with too many bad columns), per disk, and how long it took.</summary>
public sealed record ScrubReport(bool Repair, long Blocks, long Bytes, long Errors, long Repaired, long Unrecoverable, double Seconds, IReadOnlyList<ScrubDisk> Disks)
{
    public bool Clean => Errors == 0 && Unrecoverable == 0;
}

/// <summary>
/// Scrub: reads every copy (or every column) of every allocated block, block by block under its lock while the pool
/// serves, and checks it: each sector against its checksum, copies against each other without checksums, parity against
/// the data it was computed from. With repair, what is wrong is rewritten from what is right; without, nothing is
/// written. Progress is in <see cref="ScrubProgress"/>.
/// </summary>
public sealed partial class ResilientStore
{
    readonly object _scrubLock = new();
    long _scrubDone, _scrubTotal;
    bool _scrubbing;

    public (bool Running, long Done, long Total) ScrubProgress
    {
        get
        {
            lock (_scrubLock) return (_scrubbing, Interlocked.Read(ref _scrubDone), _scrubTotal);
        }
    }

    sealed class Tally(int disks)
    {
        public readonly long[] Read = new long[disks], ReadErrors = new long[disks], Errors = new long[disks], Repaired = new long[disks];
        public long Unrecoverable;
    }

    public ScrubReport Scrub(bool repair)
    {
        lock (_scrubLock)
        {
            if (_scrubbing) throw StrataException.InUse("a scrub of the pool is running already");
            _scrubbing = true;
        }
        var clock = Stopwatch.StartNew();
        var disks = _disks;
        var tally = new Tally(4096); // by slot: a disk added while the scrub runs has its place too
        long blocks = 0;
        try
        {
            var slabs = _slabs;
            long perSlab = _slabBytes / _blockSize;
            var todo = new List<long>();
            for (int s = 0; s < slabs.Length; s++)
            {
                if (slabs[s] is null) continue;
                for (long b = 0; b < perSlab; b++)
                    if (Allocated is not { } allocated || allocated(s * perSlab + b)) todo.Add(s * perSlab + b);
            }
            lock (_scrubLock) (_scrubDone, _scrubTotal) = (0, todo.Count * (long)_blockSize);
            var buffer = ArrayPool<byte>.Shared.Rent((int)(_blockSize * (_shape.Columns + 1)));
            try
            {
                foreach (long block in todo)
                {
                    int slab = (int)(block / perSlab);
                    var taken = LockRange(block * _blockSize, _blockSize);
                    try
                    {
                        if (_shape.IsParity) ScrubStripe(slab, block % perSlab, repair, tally, buffer);
                        else ScrubCopies(slab, block % perSlab * _blockSize, repair, tally, buffer);
                    }
                    finally
                    {
                        Unlock(taken);
                    }
                    blocks++;
                    Interlocked.Add(ref _scrubDone, _blockSize);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        finally
        {
            lock (_scrubLock) _scrubbing = false;
        }
        var perDisk = _disks.Select(d => new ScrubDisk(d.Slot, d.Path, tally.Read[d.Slot], tally.ReadErrors[d.Slot], tally.Errors[d.Slot], tally.Repaired[d.Slot])).ToList();
        return new ScrubReport(repair, blocks, blocks * _blockSize, tally.Errors.Sum() + tally.ReadErrors.Sum(), tally.Repaired.Sum(), tally.Unrecoverable, clock.Elapsed.TotalSeconds, perDisk);
    }

    /// <summary>Reads a column's range; false (counted) when the disk is out of use or the read fails.</summary>
    bool TryReadColumn(Column c, long inColumn, Span<byte> into, Tally tally)
    {
        var disk = _disks[c.Disk];
        if (!disk.InUse) return false;
        try
        {
            // what the disk holds, not what the page cache kept of it
            disk.Use().DropCache(DiskOffset(c, inColumn), into.Length);
            disk.Use().Read(DiskOffset(c, inColumn), into);
            tally.Read[c.Disk] += into.Length;
            return true;
        }
        catch (Exception ex) when (ex is IOException or StrataException)
        {
            disk.CountReadError();
            tally.ReadErrors[c.Disk]++;
            return false;
        }
    }

    void ScrubRewrite(Column c, long inColumn, ReadOnlySpan<byte> good, Tally tally)
    {
        long before = _disks[c.Disk].Repaired;
        Rewrite(c, inColumn, good, Math.Max(1, good.Length / SectorSize));
        if (_disks[c.Disk].Repaired > before) tally.Repaired[c.Disk]++;
    }

    void ScrubCopies(int slab, long inSlab, bool repair, Tally tally, byte[] buffer)
    {
        var columns = _slabs[slab]!;
        int n = (int)_blockSize, copies = columns.Length;
        var ok = new bool[copies];
        for (int i = 0; i < copies; i++) ok[i] = TryReadColumn(columns[i], inSlab, buffer.AsSpan(i * n, n), tally);
        var good = buffer.AsSpan(copies * n, n);
        long firstSector = (_slabBytes * slab + inSlab) / SectorSize;
        for (int s = 0; s < n / SectorSize; s++)
        {
            int at = s * SectorSize, source = -1;
            if (_sums is not null)
            {
                uint want = _sums.Get((ulong)(firstSector + s));
                for (int i = 0; i < copies; i++)
                {
                    if (!ok[i]) continue;
                    if (ChecksumTable.Sum(buffer.AsSpan(i * n + at, SectorSize)) == want) source = source < 0 ? i : source;
                    else
                    {
                        _disks[columns[i].Disk].CountChecksumError();
                        tally.Errors[columns[i].Disk]++;
                    }
                }
            }
            else
            {
                // no checksums: the first readable copy is taken as right, as md's repair does
                source = Array.IndexOf(ok, true);
                for (int i = 0; i < copies && source >= 0; i++)
                    if (ok[i] && i != source && !buffer.AsSpan(i * n + at, SectorSize).SequenceEqual(buffer.AsSpan(source * n + at, SectorSize)))
                        tally.Errors[columns[i].Disk]++;
            }
            if (source < 0)
            {
                tally.Unrecoverable++;
                continue;
            }
            if (!repair) continue;
            buffer.AsSpan(source * n + at, SectorSize).CopyTo(good[at..]);
            for (int i = 0; i < copies; i++)
            {
                if (i == source || !_disks[columns[i].Disk].InUse) continue;
                if (ok[i] && buffer.AsSpan(i * n + at, SectorSize).SequenceEqual(good.Slice(at, SectorSize))) continue;
                ScrubRewrite(columns[i], inSlab + at, good.Slice(at, SectorSize), tally);
            }
        }
    }

    void ScrubStripe(int slab, long block, bool repair, Tally tally, byte[] buffer)
    {
        int k = K, p = _shape.ParityColumns, cb = (int)ChunkBytes, rows = RowsPerChunk;
        var ok = new bool[k + p];
        for (int role = 0; role < k + p; role++) ok[role] = TryReadColumn(ColumnOf(slab, block, role), RowOffset(block, 0), buffer.AsSpan(role * cb, cb), tally);
        var row = new byte[(k + 2) * SectorSize];
        for (int r = 0; r < rows; r++)
        {
            var bad = new List<int>();
            for (int role = 0; role < k + p; role++)
            {
                if (!ok[role]) { bad.Add(role); continue; }
                if (role >= k || _sums is null) continue;
                if (ChecksumTable.Sum(buffer.AsSpan(role * cb + r * SectorSize, SectorSize)) != _sums.Get((ulong)SectorOf(slab, block, role, r)))
                {
                    _disks[ColumnOf(slab, block, role).Disk].CountChecksumError();
                    tally.Errors[ColumnOf(slab, block, role).Disk]++;
                    bad.Add(role);
                }
            }
            if (!bad.Any(b => b < k))
            {
                // the data is right: the parity must be what it gives
                for (int j = 0; j < k; j++) buffer.AsSpan(j * cb + r * SectorSize, SectorSize).CopyTo(row.AsSpan(j * SectorSize));
                var pRow = row.AsSpan(k * SectorSize, SectorSize);
                var qRow = p > 1 ? row.AsSpan((k + 1) * SectorSize, SectorSize) : Span<byte>.Empty;
                ParityCode.Encode(row.AsSpan(0, k * SectorSize), k, pRow, qRow);
                for (int role = k; role < k + p; role++)
                {
                    var want = role == k ? pRow : qRow;
                    if (ok[role] && buffer.AsSpan(role * cb + r * SectorSize, SectorSize).SequenceEqual(want)) continue;
                    if (ok[role])
                    {
                        _disks[ColumnOf(slab, block, role).Disk].CountChecksumError();
                        tally.Errors[ColumnOf(slab, block, role).Disk]++;
                    }
                    if (repair) ScrubRewrite(ColumnOf(slab, block, role), RowOffset(block, r), want, tally);
                }
                continue;
            }
            if (bad.Count > p) { tally.Unrecoverable++; continue; }
            if (!repair) continue;
            try
            {
                var before = _disks.Select(d => d.Repaired).ToArray();
                RebuildRow(slab, block, r, bad.First(b => b < k), Span<byte>.Empty);
                foreach (var d in _disks)
                    if (d.Repaired > before[d.Slot]) tally.Repaired[d.Slot]++;
            }
            catch (StrataException)
            {
                tally.Unrecoverable++;
            }
        }
    }
}
