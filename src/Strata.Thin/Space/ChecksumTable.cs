using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
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
    static readonly uint[] AdvanceTable = MakeAdvanceTable(); // before ZeroSum: static fields start in this order
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
    /// <remarks>
    /// The function (the stored format): lanes a, b and c are the crc registers over the sector's first three quarters
    /// (a from ~0, b and c from 0); b and c are folded into a (<c>a = crc(a, b &lt;&lt; 32 | c)</c>: not the standard
    /// crc, a fixed function of the bytes all the same, as strong against corruption); a then goes on over the last
    /// quarter; the sum is ~a. The last quarter is computed as a fourth lane d from 0, at once with the others, and
    /// joined by the crc's linearity: going on from a over a quarter gives <see cref="Advance"/>(a) ^ d.
    /// crc32 has a 3-cycle latency and a 1-cycle throughput: four independent chains keep the unit busy.
    /// </remarks>
    public static uint Sum(ReadOnlySpan<byte> sector)
    {
        if (sector.Length != ResilientStore.SectorSize) return MetadataBlock.Crc32C(sector); // a piece that is not a whole sector: the plain crc32c
        const int Lane = ResilientStore.SectorSize / 4;
        ref byte p = ref MemoryMarshal.GetReference(sector);
        uint a = 0xFFFF_FFFF, b = 0, c = 0, d = 0;
        for (nint i = 0; i < Lane; i += 8)
        {
            a = BitOperations.Crc32C(a, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i)));
            b = BitOperations.Crc32C(b, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, Lane + i)));
            c = BitOperations.Crc32C(c, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, 2 * Lane + i)));
            d = BitOperations.Crc32C(d, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, 3 * Lane + i)));
        }
        a = BitOperations.Crc32C(a, ((ulong)b << 32) | c);
        return ~(Advance(a) ^ d);
    }

    /// <summary>The crc register after a quarter sector of zeros from <paramref name="state"/>: linear in the state, so
    /// one table per state byte.</summary>
    static uint Advance(uint state) =>
        AdvanceTable[state & 0xFF] ^ AdvanceTable[256 + (int)((state >> 8) & 0xFF)] ^
        AdvanceTable[512 + (int)((state >> 16) & 0xFF)] ^ AdvanceTable[768 + (int)(state >> 24)];

    static uint[] MakeAdvanceTable()
    {
        var table = new uint[4 * 256];
        for (int k = 0; k < 4; k++)
            for (uint v = 0; v < 256; v++)
            {
                uint state = v << (8 * k);
                for (int i = 0; i < ResilientStore.SectorSize / 4; i += 8) state = BitOperations.Crc32C(state, 0UL);
                table[k * 256 + (int)v] = state;
            }
        return table;
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
