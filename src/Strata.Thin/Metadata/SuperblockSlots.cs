using Strata.Native;
using Strata.Block;

namespace Strata.Thin.Metadata;

/// <summary>
/// Which superblock a pool opens at, and what the other slot says about it.
///
/// Commits alternate between the slots, so from the first commit on both hold a valid superblock: the current
/// transaction C and C-1 (before it, slot 0 holds the zeros <see cref="ThinPool.Create"/> wrote). The pool opens at
/// the valid slot with the higher transaction. The other slot, when damaged, held one of two things:
/// <list type="bullet">
/// <item>C-1: nothing is lost; the pool has one good superblock until the next commit rewrites that slot.</item>
/// <item>C+1: a later commit, which the pool has fallen back from: what it did (devices made or removed,
/// snapshots, flushed writes) is gone. That is recorded in the superblock (<see cref="Superblock.LostTransaction"/>,
/// carried by every commit) and reported by open, status and check until a repair acknowledges it.</item>
/// </list>
/// The header of the damaged block tells the two apart when it says C-1 or C+1; when it says anything else it
/// cannot be trusted, and the loss is assumed (a false alarm costs a `strata pool repair`; a missed one loses data
/// silently).
///
/// A torn superblock write (power lost mid-commit) is reported as a lost transaction too, although that commit had
/// not returned, so nobody was told it was durable: from the slot alone a torn write and a committed superblock
/// damaged later look alike. All of a superblock lies in its first sector, so a disk that writes sectors
/// atomically never tears one: a damaged slot is, in practice, damage after the write (which does lose a commit
/// that was acknowledged). Power lost between the writes of a commit leaves both slots valid and raises nothing.
/// </summary>
sealed record SuperblockSlots(Superblock Current, string? Damage, ulong Lost)
{
    public static SuperblockSlots Read(IBlockStore metadata)
    {
        if (metadata.Length < 2 * MetadataBlock.Size)
            throw StrataException.Corrupt($"{metadata.Name} is {metadata.Length} bytes, too small to hold a pool's superblocks");
        var blocks = new byte[2][];
        var read = new Superblock?[2];
        var problems = new string?[2];
        for (int slot = 0; slot < 2; slot++)
        {
            blocks[slot] = new byte[MetadataBlock.Size];
            metadata.Read((long)slot * MetadataBlock.Size, blocks[slot]);
            read[slot] = Superblock.TryRead(blocks[slot], (ulong)slot, out problems[slot]);
            if (read[slot] is null && Superblock.NewerFormat(blocks[slot], (ulong)slot) is > 0 and var newer)
                throw StrataException.Unsupported($"{metadata.Name} was written by a newer Strata (superblock format {newer}; this one reads 1 to {Superblock.Version}): refusing to open it at an older transaction");
        }
        var current = read[0] is { } s0 && (read[1] is null || s0.Transaction > read[1]!.Transaction) ? s0
            : read[1] ?? throw StrataException.Corrupt($"{metadata.Name} holds no valid pool superblock ({problems[0]}; {problems[1]})");
        ulong c = current.Transaction;
        int other = 1 - (int)current.Slot;
        if (read[other] is not null) return new(current, null, 0);
        var block = blocks[other];
        if (c == 1 && block.AsSpan().IndexOfAnyExcept((byte)0) < 0) return new(current, null, 0); // as Create left it
        ulong said = MetadataBlock.Transaction(block);
        string damage = $"superblock slot {other} is damaged ({problems[other]})";
        if (said == c - 1)
            return new(current, c == 1
                ? $"{damage}; it held nothing yet (the pool has not committed since it was made): nothing is lost"
                : $"{damage}; it held transaction {said}, before the current {c}: nothing is lost, and the next commit rewrites it", 0);
        return new(current, said == c + 1
            ? $"{damage}; it held transaction {said}, after the current {c}"
            : $"{damage}; its header says transaction {said}, which cannot be right (it held {c - 1} or {c + 1}): counted as a loss of {c + 1}", c + 1);
    }

    /// <summary>What is wrong, one line each: the damaged slot, a transaction the current superblock records as lost,
    /// and one lost now.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        if (Damage is not null) problems.Add(Damage);
        if (Current.LostTransaction != 0) problems.Add(LostMessage(Current.LostTransaction));
        if (Lost != 0 && Lost != Current.LostTransaction) problems.Add(LostMessage(Lost));
        return problems;
    }

    /// <summary>The one line that reports a lost transaction.</summary>
    public static string LostMessage(ulong lost) =>
        $"transaction {lost} was lost: a damaged superblock made the pool fall back to transaction {lost - 1}, and what {lost} did (devices made or removed, snapshots, flushed writes) is gone; `strata pool repair` acknowledges the loss";
}
