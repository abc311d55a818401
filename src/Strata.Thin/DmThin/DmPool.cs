using System.Buffers.Binary;
using System.Collections.Immutable;
using Strata.Block;
using Strata.Native;

namespace Strata.Thin.DmThin;

/// <summary>
/// A dm-thin pool opened from its two devices (files or block devices), read-only: both are opened O_RDONLY, and
/// nothing here writes. Opening reads the superblock, the device details tree and every device's mapping (so that a
/// pool's sharing can be counted and its reads need no metadata IO); what is damaged is kept, per device and block
/// range, in <see cref="DmThinDevice.Unreadable"/>, and what is wrong with the pool as a whole in
/// <see cref="Problems"/>. The kernel's dm-thin and thin-provisioning-tools write this format; a pool the kernel still
/// has active may change under the reader, so open pools that are not in use (or a metadata snapshot's copy).
/// </summary>
public sealed class DmPool : IBlockExports, IDisposable
{
    const int DetailsSize = 24;
    const long MaxDeviceId = (1 << 24) - 1;

    readonly IBlockStore _data;
    readonly DmMetadata _metadata;
    readonly Dictionary<uint, DmThinDevice> _byId;

    DmPool(IBlockStore data, DmMetadata metadata, DmSuperblock superblock, IReadOnlyList<DmThinDevice> devices, IReadOnlyList<string> problems)
    {
        _data = data;
        _metadata = metadata;
        Superblock = superblock;
        Devices = devices;
        Problems = problems;
        _byId = devices.ToDictionary(d => d.Id);
    }

    public DmSuperblock Superblock { get; }

    /// <summary>The pool's devices, by id.</summary>
    public IReadOnlyList<DmThinDevice> Devices { get; }

    /// <summary>What is wrong with the pool as a whole, one line each (the devices' own damage is theirs).</summary>
    public IReadOnlyList<string> Problems { get; }

    public long BlockSize => Superblock.DataBlockSize;

    /// <summary>The block size the devices show their readers: <see cref="DmThinBlockDevice.ExportBlockSize"/>.</summary>
    public int ExportBlockSize => DmThinBlockDevice.ExportBlockSize(BlockSize);

    /// <summary>Bytes of the data file or device.</summary>
    public long DataLength => _data.Length;

    public string DataName => _data.Name;

    public string MetadataName => _metadata.Name;

    /// <summary>Opens the pool on files or block devices, read-only.</summary>
    public static DmPool Open(string dataPath, string metadataPath, IReadOnlyDictionary<uint, long>? sizes = null)
    {
        var metadata = FileBlockStore.OpenReadOnly(metadataPath);
        IBlockStore data;
        try
        {
            data = FileBlockStore.OpenReadOnly(dataPath);
        }
        catch
        {
            metadata.Dispose();
            throw;
        }
        return Open(data, metadata, sizes); // owns both from here, and disposes them when it fails
    }

    /// <summary>Opens the pool on two stores, which it owns from here (and disposes with itself, or now when opening
    /// fails). <paramref name="sizes"/>: the devices' sizes where the caller knows them (the device-mapper table's,
    /// or Docker's records); the others get what their mappings and filesystems need.</summary>
    public static DmPool Open(IBlockStore data, IBlockStore metadataStore, IReadOnlyDictionary<uint, long>? sizes = null)
    {
        var metadata = new DmMetadata(metadataStore);
        try
        {
            var sb = DmSuperblock.Read(metadata);
            var problems = new List<string>();
            if (sb.NeedsCheck)
                problems.Add($"{metadata.Name}: dm-thin marked this metadata needs_check (it found it inconsistent); read as it is");
            if (sb.MetadataBlocks > (ulong)metadata.Blocks)
                problems.Add($"{metadata.Name} holds {metadata.Blocks} blocks of the {sb.MetadataBlocks} the pool had (truncated?)");
            long need = checked((long)sb.DataBlocks * sb.DataBlockSize);
            if (data.Length < need)
                problems.Add($"{data.Name} is {data.Length} bytes where the pool's {sb.DataBlocks} blocks of {sb.DataBlockSize} need {need}: " +
                    $"blocks from {data.Length / sb.DataBlockSize} on cannot be read (truncated, or the data of another pool?)");

            var details = ReadDetails(metadata, sb, problems);
            var roots = ReadRoots(metadata, sb, problems, out var lost);
            var devices = new List<DmThinDevice>();
            foreach (uint id in details.Keys.Union(roots.Keys).Order())
            {
                var unreadable = new List<DmUnreadable>();
                var extents = ImmutableArray.CreateBuilder<DmExtent>();
                long mapped = 0;
                if (roots.TryGetValue(id, out ulong root))
                    mapped = ReadMapping(metadata, sb, root, extents, unreadable);
                else
                    unreadable.Add(new DmUnreadable(0, long.MaxValue, lost.FirstOrDefault(l => l.From <= id && id < l.To).Why
                        ?? "the mapping tree has no entry for it"));
                details.TryGetValue(id, out var d);
                if (d.Known && d.Mapped != (ulong)mapped && unreadable.Count == 0)
                    problems.Add($"device {id}: its details count {d.Mapped} mapped blocks, its mapping has {mapped}");
                devices.Add(new DmThinDevice
                {
                    Id = id,
                    RecordedMappedBlocks = d.Mapped,
                    TransactionId = d.Transaction,
                    CreationTime = d.Created,
                    SnapshotTime = d.Snapshotted,
                    Extents = extents.ToImmutable(),
                    Unreadable = unreadable,
                    MappedBlocks = mapped,
                });
            }
            var shared = DmSharing.SharedBlocks(devices);
            var sized = devices.Select((d, i) =>
            {
                d = d with { SharedBlocks = shared[i] };
                return d with { Size = sizes?.TryGetValue(d.Id, out long s) == true ? s : NeededSize(d, data, sb.DataBlockSize) };
            }).ToList();
            return new DmPool(data, metadata, sb, sized, problems);
        }
        catch
        {
            metadata.Dispose();
            data.Dispose();
            throw;
        }
    }

    /// <summary>What a user of the pool should be told, one line each: <see cref="Problems"/>, then each device's
    /// unreadable ranges.</summary>
    public IEnumerable<string> Warnings() =>
        Problems.Concat(Devices.SelectMany(d => d.Unreadable.Select(u => $"thin device {d.Id}: {u}")));

    public DmThinDevice Device(uint id) =>
        _byId.TryGetValue(id, out var d) ? d : throw StrataException.NotFound($"the dm-thin pool has no device {id}");

    /// <summary>A device's bytes, read-only, for as long as the pool is open.</summary>
    public IBlockDevice OpenDevice(uint id) => new DmThinBlockDevice(Device(id), _data, BlockSize);

    /// <summary>The devices by their thin ids, as an NBD server or the FUSE export names them.</summary>
    public IReadOnlyList<string> Names() => [.. Devices.Select(d => d.Id.ToString(System.Globalization.CultureInfo.InvariantCulture))];

    IBlockDevice? IBlockExports.Open(string name) =>
        uint.TryParse(name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out uint id) && _byId.ContainsKey(id)
            ? OpenDevice(id) : null;

    /// <summary>Every device: nothing of a dm-thin pool is ever written.</summary>
    public bool ReadOnly(string name) => true;

    /// <summary>The size a device needs when nobody says: its last mapped (or unreadable) block's end, or the size of
    /// the filesystem at its start (ext4 or xfs), whichever is larger.</summary>
    static long NeededSize(DmThinDevice device, IBlockStore data, long blockSize)
    {
        long end = device.Extents.Length > 0 ? device.Extents[^1].VirtualEnd : 0;
        foreach (var u in device.Unreadable)
            if (u.End != long.MaxValue) end = Math.Max(end, u.End);
        long size = end * blockSize;
        try
        {
            using var reader = new DmThinBlockDevice(device with { Size = Math.Max(size, FilesystemProbe.ProbeLength) }, data, blockSize);
            var head = new byte[FilesystemProbe.ProbeLength];
            reader.Read(0, head);
            size = Math.Max(size, FilesystemProbe.Size(head));
        }
        catch (StrataException ex) when (ex.Kind is ErrorKind.Io)
        {
            // the start is unreadable: its mappings decide
        }
        return size;
    }

    readonly record struct Details(bool Known, ulong Mapped, ulong Transaction, uint Created, uint Snapshotted);

    static Dictionary<uint, Details> ReadDetails(DmMetadata metadata, DmSuperblock sb, List<string> problems)
    {
        var details = new Dictionary<uint, Details>();
        DmBtree.Walk(metadata, sb.DetailsRoot, DetailsSize, (key, v) =>
        {
            if (key > MaxDeviceId)
            {
                problems.Add($"the device details tree has device id {key}, past dm-thin's 24 bits");
                return;
            }
            details[(uint)key] = new Details(true, BinaryPrimitives.ReadUInt64LittleEndian(v), BinaryPrimitives.ReadUInt64LittleEndian(v[8..]),
                BinaryPrimitives.ReadUInt32LittleEndian(v[16..]), BinaryPrimitives.ReadUInt32LittleEndian(v[20..]));
        }, (from, to, why) => problems.Add($"the details of devices {Ids(from, to)} are unreadable: {why}"));
        return details;
    }

    /// <summary>The mapping tree's top level: each device's own tree.</summary>
    static Dictionary<uint, ulong> ReadRoots(DmMetadata metadata, DmSuperblock sb, List<string> problems, out List<(ulong From, ulong To, string Why)> lost)
    {
        var roots = new Dictionary<uint, ulong>();
        var lostIds = new List<(ulong, ulong, string)>();
        DmBtree.Walk(metadata, sb.MappingRoot, 8, (key, v) =>
        {
            if (key > MaxDeviceId) problems.Add($"the mapping tree has device id {key}, past dm-thin's 24 bits");
            else roots[(uint)key] = BinaryPrimitives.ReadUInt64LittleEndian(v);
        }, (from, to, why) =>
        {
            problems.Add($"the mappings of devices {Ids(from, to)} are unreadable: {why}");
            lostIds.Add((from, to, $"its mapping is unreadable: {why}"));
        });
        lost = lostIds;
        return roots;
    }

    /// <summary>Reads one device's tree into extents (merging runs as thin_dump does); returns the blocks mapped.</summary>
    static long ReadMapping(DmMetadata metadata, DmSuperblock sb, ulong root, ImmutableArray<DmExtent>.Builder extents, List<DmUnreadable> unreadable)
    {
        long mapped = 0;
        DmBtree.Walk(metadata, root, 8, (key, v) =>
        {
            ulong value = BinaryPrimitives.ReadUInt64LittleEndian(v);
            long data = (long)(value >> 24), block = (long)key;
            uint time = (uint)(value & 0xFF_FFFF);
            if (key >= long.MaxValue / (ulong)sb.DataBlockSize)
            {
                unreadable.Add(new DmUnreadable(block, 1, $"virtual block {key} is past any device size"));
                return;
            }
            if ((ulong)data >= sb.DataBlocks)
            {
                unreadable.Add(new DmUnreadable(block, 1, $"it maps to data block {data}, past the pool's {sb.DataBlocks}"));
                return;
            }
            mapped++;
            if (extents.Count > 0 && extents[^1] is var last && last.VirtualEnd == block && last.Data + last.Length == data && last.Time == time)
                extents[^1] = last with { Length = last.Length + 1 };
            else
                extents.Add(new DmExtent(block, data, 1, time));
        }, (from, to, why) =>
        {
            long first = (long)Math.Min(from, long.MaxValue), end = (long)Math.Min(to, long.MaxValue);
            unreadable.Add(new DmUnreadable(first, end - first, why));
        });
        return mapped;
    }

    static string Ids(ulong from, ulong to) => to == ulong.MaxValue ? $"from {from} on" : $"{from} to {to - 1}";

    public void Dispose()
    {
        _data.Dispose();
        _metadata.Dispose();
    }
}
