using System.Buffers;
using Strata.Native;

namespace Strata.Thin.Space;

/// <summary>
/// IO on slabs kept as stripes (parity, parity2; ResilientStore.cs says what the store promises). Each pool block is one
/// stripe: k data chunks of block/k bytes and one or two parity chunks (<see cref="ParityCode"/>), each on its own column;
/// the roles turn by one column per block so that parity writes spread over the disks. A chunk's 4 KiB rows line up
/// across the columns: row r of every chunk forms a stripe row, rebuilt on its own. A read goes to the data chunks; a
/// row that fails (IO error, checksum, disk out of use) is rebuilt from the other columns, checked against the data
/// checksums (which also tell a wrong parity chunk from a wrong data chunk), and every column found wrong is rewritten.
/// A write reads the rows it changes of the other data chunks, computes the parity rows and writes the changed chunks
/// and the parity; the stripe is a block no commit maps (the pool copies committed blocks), so a crash halfway leaves no
/// committed stripe inconsistent.
/// </summary>
public sealed partial class ResilientStore
{
    int K => _shape.DataColumns;
    int ColumnsPerSlab => _shape.Columns;
    long ChunkBytes => _blockSize / K;
    int RowsPerChunk => (int)(ChunkBytes / SectorSize);

    Column ColumnOf(int slab, long block, int role) => _slabs[slab]![(int)((role + block) % ColumnsPerSlab)];

    long RowOffset(long block, int row) => block * ChunkBytes + (long)row * SectorSize;

    /// <summary>The pool sector of row <paramref name="row"/> of data chunk <paramref name="role"/>.</summary>
    long SectorOf(int slab, long block, int role, int row) => (_slabBytes * slab + block * _blockSize + role * ChunkBytes) / SectorSize + row;

    void ReadParity(int slab, long inSlab, Span<byte> buffer)
    {
        for (int done = 0; done < buffer.Length;)
        {
            long pos = inSlab + done, block = pos / _blockSize, inBlock = pos % _blockSize;
            int role = (int)(inBlock / ChunkBytes);
            long inChunk = inBlock % ChunkBytes;
            int n = (int)Math.Min(ChunkBytes - inChunk, buffer.Length - done);
            int r0 = (int)(inChunk / SectorSize), r1 = (int)((inChunk + n + SectorSize - 1) / SectorSize);
            var part = buffer.Slice(done, n);
            if (inChunk % SectorSize == 0 && n % SectorSize == 0) ReadChunkRows(slab, block, role, r0, r1, part);
            else
            {
                var rented = ArrayPool<byte>.Shared.Rent((r1 - r0) * SectorSize);
                try
                {
                    var rows = rented.AsSpan(0, (r1 - r0) * SectorSize);
                    ReadChunkRows(slab, block, role, r0, r1, rows);
                    rows.Slice((int)(inChunk - (long)r0 * SectorSize), n).CopyTo(part);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(rented);
                }
            }
            done += n;
        }
    }

    /// <summary>Reads rows [r0, r1) of data chunk <paramref name="role"/> of a block, rebuilding the rows that fail.</summary>
    void ReadChunkRows(int slab, long block, int role, int r0, int r1, Span<byte> dest)
    {
        var column = ColumnOf(slab, block, role);
        var disk = _disks[column.Disk];
        bool all = !disk.InUse;
        if (!all)
            try
            {
                disk.Use().Read(DiskOffset(column, RowOffset(block, r0)), dest);
            }
            catch (Exception ex) when (ex is IOException or StrataException)
            {
                disk.CountReadError();
                all = true;
            }
        // a whole chunk gone (its disk out of use, or its read failed): rebuilt in one pass over the other columns, row by
        // row only where that does not check
        if (all && r1 - r0 > 1 && TryRebuildRows(slab, block, role, r0, r1, dest)) return;
        for (int r = r0; r < r1; r++)
        {
            var row = dest.Slice((r - r0) * SectorSize, SectorSize);
            if (!all)
            {
                if (_sums is null || ChecksumTable.Sum(row) == _sums.Get((ulong)SectorOf(slab, block, role, r))) continue;
                disk.CountChecksumError();
            }
            RebuildRow(slab, block, r, role, row);
        }
    }

    /// <summary>Rebuilds row <paramref name="row"/> of a block's stripe with <paramref name="suspect"/> known bad, puts
    /// that role's sector in <paramref name="into"/> (when given), and rewrites the columns found wrong.</summary>
    void RebuildRow(int slab, long block, int row, int suspect, Span<byte> into)
    {
        int k = K, p = _shape.ParityColumns, columns = ColumnsPerSlab;
        var rented = ArrayPool<byte>.Shared.Rent(columns * SectorSize * 2);
        try
        {
            var read = rented.AsSpan(0, columns * SectorSize);           // role r's sector at r * SectorSize
            var work = rented.AsSpan(columns * SectorSize, columns * SectorSize);
            var bad = new List<int>();
            if (suspect >= 0) bad.Add(suspect);
            for (int r = 0; r < columns; r++)
            {
                if (r == suspect) continue;
                var c = ColumnOf(slab, block, r);
                var disk = _disks[c.Disk];
                var sector = read.Slice(r * SectorSize, SectorSize);
                if (!disk.InUse) { bad.Add(r); continue; }
                try
                {
                    disk.Use().Read(DiskOffset(c, RowOffset(block, row)), sector);
                }
                catch (Exception ex) when (ex is IOException or StrataException)
                {
                    disk.CountReadError();
                    bad.Add(r);
                    continue;
                }
                if (r < k && _sums is not null && ChecksumTable.Sum(sector) != _sums.Get((ulong)SectorOf(slab, block, r, row)))
                {
                    disk.CountChecksumError();
                    bad.Add(r);
                }
            }
            // the known-bad roles must be rebuilt; a parity chunk may be wrong without a checksum to say so, so each
            // choice of extra parity roles to leave out is tried until the data checks
            foreach (var missing in Candidates(bad, k, p))
            {
                read.CopyTo(work);
                var data = work[..(k * SectorSize)];
                var parity = work.Slice(k * SectorSize, SectorSize);
                var q = p > 1 ? work.Slice((k + 1) * SectorSize, SectorSize) : Span<byte>.Empty;
                ParityCode.Reconstruct(data, k, parity, q, missing.ToArray());
                bool good = true;
                for (int r = 0; r < k && good && _sums is not null; r++)
                    good = ChecksumTable.Sum(data.Slice(r * SectorSize, SectorSize)) == _sums.Get((ulong)SectorOf(slab, block, r, row));
                if (!good) continue;
                if (suspect >= 0 && suspect < k && !into.IsEmpty) work.Slice(suspect * SectorSize, SectorSize).CopyTo(into);
                foreach (int r in missing)
                {
                    var c = ColumnOf(slab, block, r);
                    if (r != suspect && !bad.Contains(r)) _disks[c.Disk].CountChecksumError(); // a wrong parity chunk
                    Rewrite(c, RowOffset(block, row), work.Slice(r * SectorSize, SectorSize), 1);
                }
                return;
            }
            Interlocked.Increment(ref _unrecoverable);
            throw new StrataException(ErrorKind.Io, $"row {row} of block {(_slabBytes * slab) / _blockSize + block} of the pool's data cannot be rebuilt: {bad.Count} of its {columns} columns are bad{(_sums is null ? "" : " or the rest fail their checksums")}");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Rebuilds rows [r0, r1) of data chunk <paramref name="role"/> from the other columns read whole; false (nothing
    /// rewritten) when one of them does not read or the result fails the data checksums.</summary>
    bool TryRebuildRows(int slab, long block, int role, int r0, int r1, Span<byte> dest)
    {
        int k = K, p = _shape.ParityColumns, bytes = (r1 - r0) * SectorSize;
        var rented = ArrayPool<byte>.Shared.Rent((k + 2) * bytes);
        try
        {
            var all = rented.AsSpan(0, (k + 2) * bytes);
            for (int x = 0; x < k + p; x++)
            {
                if (x == role) continue;
                var c = ColumnOf(slab, block, x);
                var disk = _disks[c.Disk];
                if (!disk.InUse) return false;
                try
                {
                    disk.Use().Read(DiskOffset(c, RowOffset(block, r0)), all.Slice(x * bytes, bytes));
                }
                catch (Exception ex) when (ex is IOException or StrataException)
                {
                    disk.CountReadError();
                    return false;
                }
            }
            var q = p > 1 ? all.Slice((k + 1) * bytes, bytes) : Span<byte>.Empty;
            ParityCode.Reconstruct(all[..(k * bytes)], k, all.Slice(k * bytes, bytes), q, [role]);
            if (_sums is not null)
                for (int x = 0; x < k; x++)
                    for (int r = r0; r < r1; r++)
                        if (ChecksumTable.Sum(all.Slice(x * bytes + (r - r0) * SectorSize, SectorSize)) != _sums.Get((ulong)SectorOf(slab, block, x, r))) return false;
            all.Slice(role * bytes, bytes).CopyTo(dest);
            return true;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>The sets of roles to rebuild: the bad ones, then the bad ones with parity roles added (a parity chunk
    /// that is silently wrong), never more than the code can rebuild.</summary>
    static IEnumerable<List<int>> Candidates(List<int> bad, int k, int p)
    {
        if (bad.Count > p) yield break;
        yield return bad;
        var parities = Enumerable.Range(k, p).Where(r => !bad.Contains(r)).ToList();
        if (bad.Count + 1 <= p)
            foreach (int x in parities) yield return [.. bad, x];
    }

    void WriteParity(int slab, long inSlab, ReadOnlySpan<byte> data)
    {
        for (int done = 0; done < data.Length;)
        {
            long pos = inSlab + done, block = pos / _blockSize, inBlock = pos % _blockSize;
            int n = (int)Math.Min(_blockSize - inBlock, data.Length - done);
            WriteStripe(slab, block, inBlock, data.Slice(done, n));
            done += n;
        }
    }

    /// <summary>Writes [inBlock, inBlock+data.Length) of a block's stripe: the rows it touches, in every data chunk it
    /// touches, and those rows of the parity.</summary>
    void WriteStripe(int slab, long block, long inBlock, ReadOnlySpan<byte> data)
    {
        int k = K, p = _shape.ParityColumns;
        long cb = ChunkBytes;
        int j0 = (int)(inBlock / cb), j1 = (int)((inBlock + data.Length - 1) / cb);
        int r0 = j1 > j0 ? 0 : (int)(inBlock % cb / SectorSize);
        int r1 = j1 > j0 ? RowsPerChunk : (int)((inBlock % cb + data.Length + SectorSize - 1) / SectorSize);
        int rowBytes = (r1 - r0) * SectorSize;
        var rented = ArrayPool<byte>.Shared.Rent((k + 2) * rowBytes);
        try
        {
            var stripe = rented.AsSpan(0, k * rowBytes);
            var parity = rented.AsSpan(k * rowBytes, rowBytes);
            var q = p > 1 ? rented.AsSpan((k + 1) * rowBytes, rowBytes) : Span<byte>.Empty;
            bool whole = inBlock == 0 && data.Length == _blockSize;
            if (!whole)
                for (int j = 0; j < k; j++) ReadChunkRows(slab, block, j, r0, r1, stripe.Slice(j * rowBytes, rowBytes));
            for (int j = j0; j <= j1; j++)
            {
                long from = Math.Max(inBlock, j * cb), to = Math.Min(inBlock + data.Length, (j + 1) * cb);
                data.Slice((int)(from - inBlock), (int)(to - from)).CopyTo(stripe[(int)(j * rowBytes + (from - j * cb) - (long)r0 * SectorSize)..]);
            }
            ParityCode.Encode(stripe, k, parity, q);
            int unwritten = 0;
            string? lastError = null;
            void Put(int role, ReadOnlySpan<byte> rows)
            {
                WriteThrough(slab, (int)((role + block) % ColumnsPerSlab), RowOffset(block, r0), rows);
                var c = ColumnOf(slab, block, role);
                var disk = _disks[c.Disk];
                if (!disk.InUse) { unwritten++; return; }
                try
                {
                    disk.Use().Write(DiskOffset(c, RowOffset(block, r0)), rows);
                }
                catch (Exception ex) when (ex is IOException or StrataException)
                {
                    unwritten++;
                    lastError = ex.Message;
                    disk.Fail($"a write failed ({ex.Message})");
                }
            }
            for (int j = j0; j <= j1; j++) Put(j, stripe.Slice(j * rowBytes, rowBytes));
            Put(k, parity);
            if (p > 1) Put(k + 1, q);
            // columns out of use that this write did not touch count too: the stripe must stay rebuildable
            for (int r = 0; r < k; r++)
                if ((r < j0 || r > j1) && !_disks[ColumnOf(slab, block, r).Disk].InUse) unwritten++;
            if (unwritten > p)
                throw new StrataException(ErrorKind.Io, $"block {(_slabBytes * slab) / _blockSize + block} of the pool's data could not be written: {unwritten} of its {ColumnsPerSlab} columns are out of use{(lastError is null ? "" : $" ({lastError})")}");
            if (_sums is not null)
                for (int j = j0; j <= j1; j++) _sums.Set((ulong)SectorOf(slab, block, j, r0), SumsOf(stripe.Slice(j * rowBytes, rowBytes)));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }
}
