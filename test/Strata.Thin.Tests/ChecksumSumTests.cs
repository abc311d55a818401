using System.Text;
using Strata.Thin.Space;
using Xunit.Abstractions;

namespace Strata.Thin.Tests;

/// <summary>
/// The sector checksum against its definition (the stored format, so it must never change): a bit-by-bit crc32c
/// register, independent of the code's hardware instruction, lanes and tables, over random sectors (seed printed),
/// zeros and ones; other lengths are the plain crc32c (its published check value).
/// </summary>
public sealed class ChecksumSumTests(ITestOutputHelper output)
{
    const int Sector = ResilientStore.SectorSize;

    /// <summary>The crc32c register (reflected polynomial 0x82F63B78, no inversion) after <paramref name="bytes"/>.</summary>
    static uint Register(uint state, ReadOnlySpan<byte> bytes)
    {
        foreach (byte x in bytes)
        {
            state ^= x;
            for (int bit = 0; bit < 8; bit++) state = (state >> 1) ^ (0x82F63B78u & (0u - (state & 1)));
        }
        return state;
    }

    /// <summary>The documented function: lanes a (from ~0), b, c (from 0) over the first three quarters, b and c folded
    /// into a as the 8 little-endian bytes of b &lt;&lt; 32 | c, a on over the last quarter, inverted.</summary>
    static uint Reference(ReadOnlySpan<byte> sector)
    {
        const int Lane = Sector / 4;
        uint a = Register(0xFFFF_FFFF, sector[..Lane]);
        uint b = Register(0, sector.Slice(Lane, Lane));
        uint c = Register(0, sector.Slice(2 * Lane, Lane));
        a = Register(a, BitConverter.GetBytes(((ulong)b << 32) | c));
        return ~Register(a, sector[(3 * Lane)..]);
    }

    [Fact]
    public void ASectorsSumIsItsDefinition()
    {
        int seed = Environment.GetEnvironmentVariable("STRATA_SEED") is { } s ? int.Parse(s) : Random.Shared.Next();
        output.WriteLine($"seed {seed} (STRATA_SEED={seed} repeats it)");
        var random = new Random(seed);
        var sector = new byte[Sector];
        Assert.Equal(Reference(sector), ChecksumTable.Sum(sector));
        Assert.Equal(Reference(sector), ChecksumTable.ZeroSum);
        Array.Fill(sector, (byte)0xFF);
        Assert.Equal(Reference(sector), ChecksumTable.Sum(sector));
        for (int i = 0; i < 200; i++)
        {
            random.NextBytes(sector);
            Assert.Equal(Reference(sector), ChecksumTable.Sum(sector));
            // one flipped bit anywhere changes the sum
            int at = random.Next(Sector);
            uint before = ChecksumTable.Sum(sector);
            sector[at] ^= (byte)(1 << random.Next(8));
            Assert.NotEqual(before, ChecksumTable.Sum(sector));
        }
    }

    [Fact]
    public void OtherLengthsArePlainCrc32c()
    {
        // the published check value of crc32c (Castagnoli)
        Assert.Equal(0xE3069283u, ChecksumTable.Sum(Encoding.ASCII.GetBytes("123456789")));
        var bytes = new byte[Sector - 3];
        new Random(7).NextBytes(bytes);
        Assert.Equal(~Register(0xFFFF_FFFF, bytes), ChecksumTable.Sum(bytes));
    }
}
