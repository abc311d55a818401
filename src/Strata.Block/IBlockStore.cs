namespace Strata.Block;

/// <summary>
/// What a pool keeps its data or its metadata on: a file (sparse by default), a block device, or memory.
/// Bytes are read and written at any offset within <see cref="Length"/> from many threads at once; they are
/// durable only after <see cref="Flush"/> returns (a write not yet flushed may be lost, or torn, by a crash).
/// </summary>
public interface IBlockStore : IDisposable
{
    /// <summary>Where it is, for messages.</summary>
    string Name { get; }

    long Length { get; }

    void Read(long offset, Span<byte> buffer);

    void Write(long offset, ReadOnlySpan<byte> data);

    /// <summary>Makes every write that returned before this call durable.</summary>
    void Flush();

    /// <summary>Gives the range's space back to whatever is below (a hole in a sparse file); afterwards it reads as
    /// zeros. False when the store cannot, and then nothing changed.</summary>
    bool Discard(long offset, long length);

    /// <summary>Whether the range is known to read as zeros without holding any data (a hole of a sparse file):
    /// then a partial write needs no zeros written around it. False when unknown.</summary>
    bool IsHole(long offset, long length);

    /// <summary>Grows the store to <paramref name="length"/> bytes (the new part reads as zeros).</summary>
    void Grow(long length);

    /// <summary>Lets go of what a cache above the medium holds of the range (the page cache of a file or block device),
    /// so that the next read of it reaches the medium: a scrub must see what the disk holds. Best effort.</summary>
    void DropCache(long offset, long length) { }

    /// <summary>Says the range will be read soon, so that a cache above the medium can start reading it now (the page
    /// cache's readahead: reads of several disks then overlap). Best effort.</summary>
    void Prefetch(long offset, long length) { }
}
