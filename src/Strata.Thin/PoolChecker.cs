using Strata.Native;
using Strata.Thin.Metadata;
using Strata.Block;

namespace Strata.Thin;

/// <summary>What <see cref="PoolChecker"/> found: errors (the metadata is damaged) and leaks (data blocks counted
/// as used that no device maps: space lost, nothing damaged; repair reclaims them).</summary>
public sealed record CheckReport(ulong Transaction, int Devices, ulong MappedBlocks, IReadOnlyList<string> Errors, IReadOnlyList<string> Leaks)
{
    public bool Clean => Errors.Count == 0 && Leaks.Count == 0;

    /// <summary>The metadata blocks the committed transaction uses (superblocks aside).</summary>
    public int MetadataBlocksUsed => Referenced.Count;

    internal IReadOnlyCollection<ulong> Referenced { get; init; } = [];

    /// <summary>The errors that <see cref="ThinPool.Repair"/> does not fix (it refuses while there are any).</summary>
    internal IReadOnlyList<string> Unrepairable { get; init; } = [];
}

/// <summary>
/// Walks a pool's committed metadata from its superblock without trusting any of it: the superblock slots (see
/// <see cref="SuperblockSlots"/>); that the stores hold the pool the superblock describes (the same test open makes,
/// <see cref="ThinPool.StoreProblems"/>); every block's checksum, kind and number; every tree's key order, key
/// bounds and leaf depth; that no metadata block serves two roles (a node shared between trees is fine, a node that
/// is also a count block is not); each device's mapped count; and that the stored data reference counts equal the
/// references the trees hold. It reads what open reads with the same code (superblock choice, device table, node
/// and count decoding), so what open refuses, check reports; it never throws for what it finds, and reads no
/// block past the end of a store cut short.
/// </summary>
public static class PoolChecker
{
    const int MaxReported = 100;

    /// <summary>Checks the pool on <paramref name="data"/> and <paramref name="metadata"/>.</summary>
    public static CheckReport Check(IBlockStore data, IBlockStore metadata) => Run(data, metadata);

    /// <summary>Checks the metadata alone: everything but whether the data store is as large as the pool.</summary>
    public static CheckReport Check(IBlockStore metadata) => Run(null, metadata);

    static CheckReport Run(IBlockStore? data, IBlockStore metadata)
    {
        var errors = new List<string>();
        var leaks = new List<string>();
        var unrepairable = new List<string>();
        void Error(string e, bool repairable = false)
        {
            if (!repairable && unrepairable.Count < MaxReported) unrepairable.Add(e);
            if (errors.Count < MaxReported) errors.Add(e);
            else if (errors.Count == MaxReported) errors.Add("(more errors not listed)");
        }
        // the superblocks as open reads them: a damaged slot and a lost transaction are repair's to acknowledge
        SuperblockSlots slots;
        try
        {
            slots = SuperblockSlots.Read(metadata);
        }
        catch (StrataException ex)
        {
            Error(ex.Message);
            return new CheckReport(0, 0, 0, errors, leaks) { Unrepairable = unrepairable };
        }
        var sb = slots.Current;
        foreach (var problem in slots.Problems()) Error(problem, repairable: true);
        // a resilient pool's data store has the length its space table gives it (checked below), not one of its own
        foreach (var problem in ThinPool.StoreProblems(sb, data is IPoolData ? null : data, metadata)) Error(problem);
        // a metadata store cut short: the blocks past its end are reported where something points at them, never read
        ulong readable = Math.Min(sb.MetadataBlocks, (ulong)metadata.Length / MetadataBlock.Size);
        var roles = new Dictionary<ulong, string>();
        bool Claim(ulong block, string role)
        {
            if (block < 2 || block >= sb.MetadataBlocks)
            {
                Error($"{role} is metadata block {block}, outside the metadata (2..{sb.MetadataBlocks - 1})", repairable: role == "data reference counts");
                return false;
            }
            if (block >= readable)
            {
                Error($"{role} is metadata block {block}, past the end of {metadata.Name}");
                return false;
            }
            if (roles.TryGetValue(block, out var other) && other != role)
            {
                Error($"metadata block {block} is both {other} and {role}");
                return false;
            }
            roles[block] = role;
            return true;
        }

        if (sb.SpaceTable != 0)
            try
            {
                var scratch = new MetadataSpace(metadata, sb.MetadataBlocks);
                var (record, tableBlocks) = Space.SpaceTable.Load(scratch, sb.SpaceTable, sb.DataBlockSize);
                foreach (ulong b in tableBlocks) Claim(b, "space table");
                long bytes = record.Slabs.Count * record.Shape.DataBytes(record.SlabSize);
                if ((ulong)(bytes / sb.DataBlockSize) < sb.DataBlocks)
                    Error($"the space table's {record.Slabs.Count} slabs hold {bytes / sb.DataBlockSize} data blocks, fewer than the pool's {sb.DataBlocks}");
                if (sb.Sums != 0)
                {
                    if (!record.Checksums) Error("the pool has data checksums but its space table says it keeps none");
                    var sums = new Space.ChecksumTable((ulong)(bytes / Space.ResilientStore.SectorSize));
                    sums.Load(scratch, sb.Sums);
                    foreach (ulong b in sums.Blocks()) Claim(b, "data checksums");
                }
            }
            catch (StrataException ex)
            {
                Error($"space table: {ex.Message}");
            }

        List<DeviceRecord> devices = [];
        try
        {
            (devices, var tableBlocks) = DeviceTable.Load(new MetadataSpace(metadata, sb.MetadataBlocks), sb.DeviceTable, sb.Format);
            foreach (ulong b in tableBlocks) Claim(b, "device table");
        }
        catch (StrataException ex)
        {
            Error($"device table: {ex.Message}");
        }

        // the trees: each node read once however many trees share it
        var actualRefs = new Dictionary<ulong, uint>();
        var visited = new HashSet<ulong>();
        ulong mappedTotal = 0;
        var buffer = new byte[MetadataBlock.Size];
        foreach (var d in devices)
        {
            ulong mapped = 0, lastKey = 0;
            if (d.Root != 0) mapped = WalkTree(d, d.Root, 0, ulong.MaxValue, ref lastKey, out _);
            if (mapped != d.Mapped) Error($"device {d.Name} records {d.Mapped} mapped blocks; its tree maps {mapped}");
            if (mapped > 0 && lastKey * sb.DataBlockSize >= d.Size)
                Error($"device {d.Name} maps blocks past its size of {d.Size} bytes");
            mappedTotal += mapped;
        }

        // returns the entries the subtree maps (counting shared subtrees in full, as each device sees them); lastKey
        // becomes the highest key it maps
        ulong WalkTree(DeviceRecord d, ulong block, ulong low, ulong high, ref ulong lastKey, out int depth)
        {
            depth = 0;
            if (!Claim(block, "mapping tree node")) return 0;
            Node node;
            try
            {
                metadata.Read((long)block * MetadataBlock.Size, buffer);
                node = Node.Decode(buffer, block);
            }
            catch (StrataException ex)
            {
                Error($"device {d.Name}: {ex.Message}");
                return 0;
            }
            bool first = visited.Add(block);
            ulong count = 0;
            for (int i = 0; i < node.Count; i++)
            {
                ulong key = node.Keys[i], next = i + 1 < node.Count ? node.Keys[i + 1] : high;
                if (key < low || key >= high) Error($"device {d.Name}: node {block} holds key {key} outside its range [{low}, {high})");
                if (node.Leaf)
                {
                    count++;
                    lastKey = Math.Max(lastKey, key);
                    if (!first) continue;
                    ulong data = node.Values[i];
                    if (data >= sb.DataBlocks) Error($"device {d.Name}: block {key} maps to data block {data}, past the pool's {sb.DataBlocks}");
                    else actualRefs[data] = actualRefs.GetValueOrDefault(data) + 1;
                }
                else
                {
                    count += WalkTree(d, node.Values[i], i == 0 ? low : key, next, ref lastKey, out int childDepth);
                    if (i == 0) depth = childDepth + 1;
                    else if (childDepth + 1 != depth) Error($"device {d.Name}: node {block} has children of different depths");
                }
            }
            return count;
        }

        // stored counts, and their blocks' roles; counts that cannot be read are reported once, not compared
        var stored = new DataSpace(new MetadataSpace(metadata, sb.MetadataBlocks), sb.DataBlocks);
        bool countsRead = false;
        try
        {
            stored.Load(sb.RefIndex);
            ClaimRefBlocks(sb.RefIndex);
            countsRead = true;
        }
        catch (StrataException ex)
        {
            Error($"data reference counts: {ex.Message}", repairable: true);
        }

        void ClaimRefBlocks(ulong top)
        {
            if (top == 0 || !Claim(top, "data reference index")) return;
            metadata.Read((long)top * MetadataBlock.Size, buffer);
            var indexes = Pointers(buffer);
            foreach (ulong index in indexes.Where(p => p != 0))
            {
                if (!Claim(index, "data reference index")) continue;
                metadata.Read((long)index * MetadataBlock.Size, buffer);
                foreach (ulong counts in Pointers(buffer).Where(p => p != 0)) Claim(counts, "data reference counts");
            }
        }

        for (ulong b = 0; countsRead && b < sb.DataBlocks; b++)
        {
            uint have = stored.Refs(b), want = actualRefs.GetValueOrDefault(b);
            if (have == want) continue;
            if (have > want && want == 0)
            {
                if (leaks.Count < MaxReported) leaks.Add($"data block {b} is counted {have} times but no device maps it");
            }
            else Error($"data block {b} is counted {have} times but mapped {want} times", repairable: true);
        }
        return new CheckReport(sb.Transaction, devices.Count, mappedTotal, errors, leaks) { Referenced = roles.Keys.ToList(), Unrepairable = unrepairable };
    }

    static ulong[] Pointers(ReadOnlySpan<byte> block)
    {
        int count = Math.Min(MetadataBlock.Count(block), DataSpace.PointersPerBlock);
        var result = new ulong[count];
        for (int i = 0; i < count; i++) result[i] = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(block[(MetadataBlock.HeaderSize + i * 8)..]);
        return result;
    }
}
