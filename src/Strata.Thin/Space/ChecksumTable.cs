using System.Buffers.Binary;
using System.Numerics;
using Strata.Thin.Metadata;

namespace Strata.Thin.Space;

/// <summary>
/// The crc32c of every 4 KiB sector of a resilient pool's data, by sector number, as the current transaction sees it:
/// held in memory (4 bytes per 4 KiB: 0.1% of the data), and stored at each commit in a <see cref="RadixArray"/> of
/// metadata blocks, so the checksums commit with the mappings and a crash finds them as the last commit left them.
/// Stored and held as crc xor <see cref="ZeroSum"/>: a sector never written (zeros, on a fresh disk) has the value 0, so
/// the radix of a fresh pool is empty and only leaves with data take metadata.
/// </summary>
sealed class ChecksumTable
{
    const int Levels = 3;
    public static readonly uint ZeroSum = Sum(new byte[ResilientStore.SectorSize]);

    uint[]?[] _leaves;
    readonly HashSet<int> _dirty = [];
    readonly object _lock = new();
    RadixArray? _radix;

    public ChecksumTable(ulong sectors)
    {
        Sectors = sectors;
        _leaves = new uint[RadixArray.Leaves(sectors)][];
    }

    public ulong Sectors { get; private set; }

    /// <summary>Makes room for <paramref name="sectors"/> sectors (a pool that grew).</summary>
    public void Grow(ulong sectors)
    {
        lock (_lock)
        {
            if (sectors <= Sectors) return;
            Array.Resize(ref _leaves, RadixArray.Leaves(sectors));
            _radix?.Resize(sectors);
            Sectors = sectors;
        }
    }

    /// <summary>The crc32c of a sector's 4096 bytes.</summary>
    public static uint Sum(ReadOnlySpan<byte> sector)
    {
        // three independent chains: crc32 has a 3-cycle latency and a 1-cycle throughput
        const int Lane = ResilientStore.SectorSize / 4;
        uint a = 0xFFFF_FFFF, b = 0, c = 0;
        int i = 0;
        if (sector.Length == ResilientStore.SectorSize)
        {
            for (; i < Lane; i += 8)
            {
                a = BitOperations.Crc32C(a, BinaryPrimitives.ReadUInt64LittleEndian(sector[i..]));
                b = BitOperations.Crc32C(b, BinaryPrimitives.ReadUInt64LittleEndian(sector[(Lane + i)..]));
                c = BitOperations.Crc32C(c, BinaryPrimitives.ReadUInt64LittleEndian(sector[(2 * Lane + i)..]));
            }
            // chains b and c are combined by running their values through a's: not the standard crc, a fixed
            // function of the bytes all the same, as strong against corruption
            a = BitOperations.Crc32C(a, ((ulong)b << 32) | c);
            i = 3 * Lane;
        }
        for (; i + 8 <= sector.Length; i += 8) a = BitOperations.Crc32C(a, BinaryPrimitives.ReadUInt64LittleEndian(sector[i..]));
        for (; i < sector.Length; i++) a = BitOperations.Crc32C(a, sector[i]);
        return ~a;
    }

    public uint Get(ulong sector)
    {
        var leaf = Volatile.Read(ref _leaves[(int)(sector / RadixArray.PerLeaf)]);
        return (leaf is null ? 0 : Volatile.Read(ref leaf[(int)(sector % RadixArray.PerLeaf)])) ^ ZeroSum;
    }

    /// <summary>Records the sums of <paramref name="sums"/>.Length sectors from <paramref name="first"/> on.</summary>
    public void Set(ulong first, ReadOnlySpan<uint> sums)
    {
        lock (_lock)
            for (int i = 0; i < sums.Length; i++)
            {
                ulong sector = first + (ulong)i;
                int l = (int)(sector / RadixArray.PerLeaf);
                var leaf = _leaves[l];
                if (leaf is null)
                {
                    if (sums[i] == ZeroSum) continue;
                    Volatile.Write(ref _leaves[l], leaf = new uint[RadixArray.PerLeaf]);
                }
                Volatile.Write(ref leaf[(int)(sector % RadixArray.PerLeaf)], sums[i] ^ ZeroSum);
                _dirty.Add(l);
            }
    }

    /// <summary>Marks <paramref name="count"/> sectors from <paramref name="first"/> as zeros (discarded).</summary>
    public void SetZero(ulong first, ulong count)
    {
        lock (_lock)
            for (ulong s = first; s < first + count; s++)
            {
                int l = (int)(s / RadixArray.PerLeaf);
                if (_leaves[l] is not { } leaf) continue;
                leaf[(int)(s % RadixArray.PerLeaf)] = 0;
                _dirty.Add(l);
            }
    }

    /// <summary>Reads the committed sums at <paramref name="top"/> (its blocks counted as used).</summary>
    public void Load(MetadataSpace meta, ulong top)
    {
        _radix = new RadixArray(meta, BlockKind.Sums, BlockKind.SumIndex, Levels);
        _radix.Resize(Sectors);
        _radix.Load(top, (l, values, count) =>
        {
            if (l >= _leaves.Length) throw StrataException.Corrupt($"data checksums for sectors past the pool's {Sectors}");
            var leaf = _leaves[l] = new uint[RadixArray.PerLeaf];
            for (int i = 0; i < count; i++) leaf[i] = BinaryPrimitives.ReadUInt32LittleEndian(values[(i * 4)..]);
        });
    }

    /// <summary>The metadata blocks the committed sums take (for check).</summary>
    public IEnumerable<ulong> Blocks() => _radix?.Blocks() ?? [];

    /// <summary>Writes the leaves changed since the last commit; returns the new top.</summary>
    public ulong Persist(ulong transaction)
    {
        lock (_lock)
        {
            var top = _radix!.Persist(transaction, _dirty, (l, payload) =>
            {
                var leaf = _leaves[l];
                if (leaf is null || leaf.AsSpan().IndexOfAnyExcept(0u) < 0)
                {
                    _leaves[l] = null;
                    return 0;
                }
                int count = (int)Math.Min(RadixArray.PerLeaf, Sectors - (ulong)l * RadixArray.PerLeaf);
                for (int i = 0; i < count; i++) BinaryPrimitives.WriteUInt32LittleEndian(payload[(i * 4)..], leaf[i]);
                return count;
            });
            _dirty.Clear();
            return top;
        }
    }
}
