using Strata.Thin.Metadata;

namespace Strata.Thin;

/// <summary>
/// A data store that keeps state of its own in the pool's transactions (a resilient pool's slab table and data
/// checksums, <see cref="Space.ResilientStore"/>): the pool loads it with each committed transaction it opens, has it
/// persist with each commit (after the data flush, before the superblock), and copies blocks a commit maps instead of
/// writing them in place, so that what the store keeps of a committed block never changes until the next commit.
/// </summary>
interface IPoolData
{
    bool CopiesCommittedBlocks { get; }

    /// <summary>Whether the store's own state changed since the last commit (the pool commits it then).</summary>
    bool Dirty { get; }

    /// <summary>The pool is open (after each load): <paramref name="allocated"/> says whether a data block is in use.</summary>
    void Opened(Func<long, bool> allocated);

    /// <summary>The pool closes: background work (a rebuild) stops before its last commit.</summary>
    void Close();

    /// <summary>Loads the state the committed transaction records (its blocks counted as used in <paramref name="meta"/>).</summary>
    void Load(MetadataSpace meta, ulong table, ulong sums, uint blockSize);

    /// <summary>Writes what changed since the last commit to new metadata blocks; the roots the superblock records.</summary>
    (ulong Table, ulong Sums) Persist(MetadataSpace meta, ulong transaction);
}
