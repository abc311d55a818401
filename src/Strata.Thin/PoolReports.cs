using Strata.Thin.Metadata;

namespace Strata.Thin;

// What the pool reports about itself and its devices: plain values, copied out under the pool's lock.

/// <summary>A thin device as <see cref="ThinPool.Devices"/> lists it (counts in pool blocks); <see cref="Owner"/>: who
/// holds it (null: nobody; see <see cref="ThinPool.DeleteDevice"/>).</summary>
public sealed record ThinDeviceInfo(string Name, uint Id, long Size, ulong Mapped, ulong Exclusive, ulong Shared, uint Origin, DateTimeOffset Created,
    string? Owner = null);

/// <summary>What <see cref="ThinPool.Status"/> reports: the fields Docker's devicemapper printed.</summary>
public sealed record PoolStatus(
    uint BlockSize, ulong DataBlocks, ulong DataBlocksUsed, ulong DataBlocksFree, long DataBytesAvailable,
    ulong MetadataBlocks, ulong MetadataBlocksUsed, int Devices, ulong Transaction, bool NeedsCheck, string? ReadOnlyReason,
    ulong LostTransaction = 0, IReadOnlyList<string>? SuperblockProblems = null)
{
    public long DataBytes => (long)DataBlocks * BlockSize;
    public long DataBytesUsed => (long)DataBlocksUsed * BlockSize;
    public long MetadataBytes => (long)MetadataBlocks * MetadataBlock.Size;
    public long MetadataBytesUsed => (long)MetadataBlocksUsed * MetadataBlock.Size;
}
