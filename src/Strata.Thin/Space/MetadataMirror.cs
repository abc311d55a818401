using Strata.Block;
using Strata.Native;
using Strata.Thin.Metadata;

namespace Strata.Thin.Space;

/// <summary>
/// A resilient pool's metadata store: a copy on every disk in use (the metadata region after its label). Writes go to
/// every copy; a copy whose write or flush fails takes its disk out of use. A read reads each 4 KiB block from every
/// copy and keeps the one that is whole (<see cref="MetadataBlock.SelfConsistent"/>) and newest (highest transaction):
/// a bit flipped on a disk, or a write a disk lost, reads from the other copies, and the copies that differ are
/// rewritten with it.
/// </summary>
public sealed class MetadataMirror(Func<IReadOnlyList<Disk>> allDisks, long regionStart, long regionLength) : IBlockStore
{
    IReadOnlyList<Disk> disks => allDisks(); // the data store's: a disk added later holds a copy too

    public long RegionStart => regionStart;

    public string Name => "the pool's metadata (a copy on each disk)";

    public long Length => regionLength;

    public void Read(long offset, Span<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        var copies = disks.Where(d => d.InUse).ToList();
        if (copies.Count == 0) throw new StrataException(ErrorKind.Io, "no disk of the pool holding its metadata is in use");
        var reads = new byte[copies.Count][];
        var ok = new bool[copies.Count];
        for (int i = 0; i < copies.Count; i++)
        {
            reads[i] = new byte[buffer.Length];
            try
            {
                copies[i].Use().Read(regionStart + offset, reads[i]);
                ok[i] = true;
            }
            catch (Exception ex) when (ex is IOException or StrataException)
            {
                copies[i].CountReadError();
            }
        }
        if (!ok.Any(x => x)) throw new StrataException(ErrorKind.Io, $"no copy of the pool's metadata at {offset} reads");
        // block by block: a whole range is rarely read, but a block is the unit a commit writes
        int first = Array.IndexOf(ok, true);
        for (int at = 0; at < buffer.Length; at += MetadataBlock.Size)
        {
            int n = Math.Min(MetadataBlock.Size, buffer.Length - at);
            int best = -1;
            ulong bestTransaction = 0;
            for (int i = 0; i < copies.Count; i++)
            {
                if (!ok[i] || n != MetadataBlock.Size || !MetadataBlock.SelfConsistent(reads[i].AsSpan(at, n), out ulong t)) continue;
                if (best < 0 || t > bestTransaction) (best, bestTransaction) = (i, t);
            }
            var chosen = reads[best < 0 ? first : best].AsSpan(at, n);
            chosen.CopyTo(buffer.Slice(at, n));
            if (best < 0) continue; // no copy is whole: the reader reports the damage
            for (int i = 0; i < copies.Count; i++)
            {
                if (ok[i] && reads[i].AsSpan(at, n).SequenceEqual(chosen)) continue;
                if (ok[i]) copies[i].CountChecksumError();
                try
                {
                    copies[i].Use().Write(regionStart + offset + at, chosen);
                    copies[i].CountRepaired(1);
                }
                catch (Exception ex) when (ex is IOException or StrataException)
                {
                    copies[i].Fail($"a metadata repair write failed ({ex.Message})");
                }
            }
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        CheckRange(offset, data.Length);
        int written = 0;
        string? lastError = null;
        foreach (var d in disks)
        {
            if (!d.InUse) continue;
            try
            {
                d.Use().Write(regionStart + offset, data);
                written++;
            }
            catch (Exception ex) when (ex is IOException or StrataException)
            {
                lastError = ex.Message;
                d.Fail($"a metadata write failed ({ex.Message})");
            }
        }
        if (written == 0) throw new IOException($"no copy of the pool's metadata could be written{(lastError is null ? "" : $" ({lastError})")}");
    }

    public void Flush()
    {
        int flushed = 0;
        string? lastError = null;
        foreach (var d in disks)
        {
            if (!d.InUse) continue;
            try
            {
                d.Use().Flush();
                flushed++;
            }
            catch (Exception ex) when (ex is IOException or StrataException)
            {
                lastError = ex.Message;
                d.Fail($"a flush failed ({ex.Message})");
            }
        }
        if (flushed == 0) throw new IOException($"no copy of the pool's metadata could be flushed{(lastError is null ? "" : $" ({lastError})")}");
    }

    public bool Discard(long offset, long length) => false;

    public bool IsHole(long offset, long length) => false;

    public void Grow(long length)
    {
        if (length > regionLength) throw StrataException.Unsupported("a resilient pool's metadata has the size it was made with");
    }

    void CheckRange(long offset, long count)
    {
        if (offset < 0 || count < 0 || offset + count > regionLength)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{Name}: {count} bytes at {offset} are outside its {regionLength} bytes");
    }

    public void Dispose()
    {
        // the disks belong to the data store, which closes them
    }
}
