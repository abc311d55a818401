using System.Buffers;
using Strata.Native;

namespace Strata.Thin.Space;

/// <summary>
/// IO on slabs kept as copies (simple, mirror, mirror3; ResilientStore.cs says what the store promises). A read goes to
/// one copy (they take turns by block, to spread reads over the disks); a sector that fails its checksum there, or a
/// copy that fails the read, is read from the others, and the copies that were wrong are rewritten with the good bytes.
/// A write goes to every copy in use; a copy whose write fails takes its disk out of use. Writes of parts of sectors
/// read the rest of the sector first (verified), so every sector's checksum covers what the disks hold.
/// </summary>
public sealed partial class ResilientStore
{
    void ReadMirror(int slab, long inSlab, Span<byte> buffer)
    {
        long start = inSlab / SectorSize * SectorSize, end = (inSlab + buffer.Length + SectorSize - 1) / SectorSize * SectorSize;
        if (start == inSlab && end == inSlab + buffer.Length)
        {
            ReadCopies(slab, inSlab, buffer);
            return;
        }
        var rented = ArrayPool<byte>.Shared.Rent((int)(end - start));
        try
        {
            var whole = rented.AsSpan(0, (int)(end - start));
            ReadCopies(slab, start, whole);
            whole.Slice((int)(inSlab - start), buffer.Length).CopyTo(buffer);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Reads whole sectors of a slab (or any range, without checksums), repairing what it can.</summary>
    void ReadCopies(int slab, long inSlab, Span<byte> buffer)
    {
        var columns = _slabs[slab]!;
        int copies = columns.Length, first = (int)((long)slab * 7 + inSlab / _blockSize) % copies;
        long firstSector = (_slabBytes * slab + inSlab) / SectorSize;
        var unreadable = new List<int>(); // copies whose read failed: rewritten once good bytes are in hand
        string? lastError = null;
        for (int t = 0; t < copies; t++)
        {
            int copy = (first + t) % copies;
            var disk = _disks[columns[copy].Disk];
            if (!disk.InUse) continue;
            try
            {
                disk.Use().Read(DiskOffset(columns[copy], inSlab), buffer);
            }
            catch (Exception ex) when (ex is IOException or StrataException)
            {
                disk.CountReadError();
                unreadable.Add(copy);
                lastError = ex.Message;
                continue;
            }
            if (_sums is not null) RepairSectors(slab, inSlab, buffer, copy, firstSector);
            foreach (int bad in unreadable) Rewrite(columns[bad], inSlab, buffer, buffer.Length / SectorSize);
            return;
        }
        Interlocked.Add(ref _unrecoverable, Math.Max(1, buffer.Length / SectorSize));
        throw new StrataException(ErrorKind.Io, lastError is null
            ? $"{buffer.Length} bytes at {_slabBytes * slab + inSlab} of the pool's data have no copy on a disk in use"
            : $"no copy of {buffer.Length} bytes at {_slabBytes * slab + inSlab} of the pool's data reads ({lastError})");
    }

    /// <summary>Checks each sector read from <paramref name="copy"/>; one that fails is taken from another copy that
    /// passes, and every copy found wrong is rewritten. No good copy: an IO error (never wrong bytes).</summary>
    void RepairSectors(int slab, long inSlab, Span<byte> buffer, int copy, long firstSector)
    {
        var columns = _slabs[slab]!;
        byte[]? rented = null;
        try
        {
            for (int i = 0; i < buffer.Length / SectorSize; i++)
            {
                var sector = buffer.Slice(i * SectorSize, SectorSize);
                uint want = _sums!.Get((ulong)(firstSector + i));
                if (ChecksumTable.Sum(sector) == want) continue;
                _disks[columns[copy].Disk].CountChecksumError();
                var wrong = new List<int> { copy };
                bool found = false;
                rented ??= ArrayPool<byte>.Shared.Rent(SectorSize);
                var candidate = rented.AsSpan(0, SectorSize);
                for (int o = 0; o < columns.Length && !found; o++)
                {
                    if (o == copy || !_disks[columns[o].Disk].InUse) continue;
                    var disk = _disks[columns[o].Disk];
                    try
                    {
                        disk.Use().Read(DiskOffset(columns[o], inSlab + (long)i * SectorSize), candidate);
                    }
                    catch (Exception ex) when (ex is IOException or StrataException)
                    {
                        disk.CountReadError();
                        wrong.Add(o);
                        continue;
                    }
                    if (ChecksumTable.Sum(candidate) == want) found = true;
                    else
                    {
                        disk.CountChecksumError();
                        wrong.Add(o);
                    }
                }
                if (!found)
                {
                    Interlocked.Increment(ref _unrecoverable);
                    throw new StrataException(ErrorKind.Io, $"sector {firstSector + i} of the pool's data fails its checksum on every copy");
                }
                candidate.CopyTo(sector);
                foreach (int w in wrong) Rewrite(columns[w], inSlab + (long)i * SectorSize, sector, 1);
            }
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Writes good bytes over a copy found wrong (a failing write takes the disk out of use).</summary>
    void Rewrite(Column column, long inColumn, ReadOnlySpan<byte> good, long sectors)
    {
        var disk = _disks[column.Disk];
        if (!disk.InUse) return;
        try
        {
            disk.Use().Write(DiskOffset(column, inColumn), good);
            disk.CountRepaired(sectors);
        }
        catch (Exception ex) when (ex is IOException or StrataException)
        {
            disk.Fail($"a repair write failed ({ex.Message})");
        }
    }

    void WriteMirror(int slab, long inSlab, ReadOnlySpan<byte> data)
    {
        if (_sums is null)
        {
            WriteCopies(slab, inSlab, data);
            return;
        }
        long start = inSlab / SectorSize * SectorSize, end = (inSlab + data.Length + SectorSize - 1) / SectorSize * SectorSize;
        byte[]? rented = null;
        try
        {
            var whole = data;
            if (start != inSlab || end != inSlab + data.Length)
            {
                rented = ArrayPool<byte>.Shared.Rent((int)(end - start));
                var merged = rented.AsSpan(0, (int)(end - start));
                // the sectors the write covers only in part: their other bytes as they are
                ReadCopies(slab, start, merged[..SectorSize]);
                if (end - start > SectorSize) ReadCopies(slab, end - SectorSize, merged[^SectorSize..]);
                data.CopyTo(merged[(int)(inSlab - start)..]);
                whole = merged;
            }
            var sums = SumsOf(whole);
            WriteCopies(slab, start, whole);
            _sums.Set((ulong)((_slabBytes * slab + start) / SectorSize), sums);
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    static uint[] SumsOf(ReadOnlySpan<byte> sectors)
    {
        var sums = new uint[sectors.Length / SectorSize];
        for (int i = 0; i < sums.Length; i++) sums[i] = ChecksumTable.Sum(sectors.Slice(i * SectorSize, SectorSize));
        return sums;
    }

    /// <summary>Writes to every copy in use, one after another (in the calling thread: the pool's IO threads are what
    /// runs writes at once; handing copies to the thread pool starved it under load, 1 MiB writes at 5-30 MiB/s); a copy
    /// whose write fails takes its disk out of use; no copy written is an IO error.</summary>
    void WriteCopies(int slab, long inSlab, ReadOnlySpan<byte> data)
    {
        var columns = _slabs[slab]!;
        int written = 0;
        string? lastError = null;
        for (int i = 0; i < columns.Length; i++)
        {
            WriteThrough(slab, i, inSlab, data);
            var disk = _disks[columns[i].Disk];
            if (!disk.InUse) continue;
            try
            {
                disk.Use().Write(DiskOffset(columns[i], inSlab), data);
                written++;
            }
            catch (Exception ex) when (ex is IOException or StrataException)
            {
                lastError = ex.Message;
                disk.Fail($"a write failed ({ex.Message})");
            }
        }
        if (written == 0)
            throw new StrataException(ErrorKind.Io, $"no copy of {data.Length} bytes at {_slabBytes * slab + inSlab} of the pool's data could be written{(lastError is null ? ": no disk of the slab is in use" : $" ({lastError})")}");
    }
}
