using System.Diagnostics;
using System.Globalization;
using Strata.Thin.Space;
using Xunit.Abstractions;
using Simd = Strata.Thin.Space.ParityCode.Simd;

namespace Strata.Thin.Tests;

/// <summary>
/// The parity code against the math: P and Q equal a slow reference (GF(2^8) multiplication by
/// shift and xor, independent of the code's tables), every single and double erasure rebuilds the
/// exact bytes, at every vector width this machine has. Stripes are random; each test prints its
/// seed, and STRATA_SEED=N replays it. A stripe here is one buffer: data chunks 0..k-1, then P, then Q.
/// </summary>
public sealed class ParityCodeTests(ITestOutputHelper output)
{
    static readonly int[] ChunkSizes = [64, 192, 4096];

    public static TheoryData<int> DataChunkCounts => [1, 2, 3, 4, 8, 16];

    static IEnumerable<Simd> Widths => Enum.GetValues<Simd>().Where(s => s <= ParityCode.Best);

    [Theory]
    [MemberData(nameof(DataChunkCounts))]
    public void PAndQEqualTheReference(int k)
    {
        var rng = new Random(Seed());
        foreach (int chunk in ChunkSizes)
        {
            var data = RandomBytes(rng, k * chunk);
            var (p, q) = Reference(data, k, chunk);
            foreach (var simd in Widths)
            {
                var stripe = Stripe(data, k, chunk, dual: true);
                ParityCode.Encode(Data(stripe, k, chunk), k, Chunk(stripe, k, chunk), Chunk(stripe, k + 1, chunk), simd);
                Assert.True(p.AsSpan().SequenceEqual(Chunk(stripe, k, chunk)), $"P differs (k={k}, chunk={chunk}, {simd})");
                Assert.True(q.AsSpan().SequenceEqual(Chunk(stripe, k + 1, chunk)), $"Q differs (k={k}, chunk={chunk}, {simd})");

                var single = Stripe(data, k, chunk, dual: false);
                ParityCode.Encode(Data(single, k, chunk), k, Chunk(single, k, chunk), default, simd);
                Assert.True(p.AsSpan().SequenceEqual(Chunk(single, k, chunk)), $"P alone differs (k={k}, chunk={chunk}, {simd})");
            }
        }
    }

    /// <summary>Q's coefficients are the powers of 2 modulo 0x11d, as in Linux md's RAID-6: chunk j's byte j is 1, so Q's byte j is g^j.</summary>
    [Fact]
    public void QWeighsChunkJByTwoToTheJ()
    {
        byte[] powers = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1d, 0x3a, 0x74, 0xe8, 0xcd, 0x87, 0x13, 0x26];
        const int k = 16, chunk = 64;
        foreach (var simd in Widths)
        {
            var stripe = new byte[(k + 2) * chunk];
            for (int j = 0; j < k; j++) stripe[j * chunk + j] = 1;
            ParityCode.Encode(Data(stripe, k, chunk), k, Chunk(stripe, k, chunk), Chunk(stripe, k + 1, chunk), simd);
            Assert.Equal(powers, Chunk(stripe, k + 1, chunk)[..k].ToArray());
            Assert.All(Chunk(stripe, k, chunk)[..k].ToArray(), b => Assert.Equal(1, b));
        }
    }

    [Theory]
    [MemberData(nameof(DataChunkCounts))]
    public void DualParityRebuildsEveryOneOrTwoLostChunks(int k)
    {
        var rng = new Random(Seed());
        var sets = new List<int[]> { Array.Empty<int>() };
        for (int a = 0; a < k + 2; a++)
        {
            sets.Add([a]);
            for (int b = a + 1; b < k + 2; b++) sets.Add(rng.Next(2) == 0 ? [a, b] : [b, a]);
        }
        RebuildAll(rng, k, dual: true, sets);
    }

    [Theory]
    [MemberData(nameof(DataChunkCounts))]
    public void SingleParityRebuildsEveryLostChunk(int k)
    {
        var rng = new Random(Seed());
        var sets = new List<int[]> { Array.Empty<int>() };
        for (int a = 0; a < k + 1; a++) sets.Add([a]);
        RebuildAll(rng, k, dual: false, sets);
    }

    /// <summary>For each chunk size and width: encodes a random stripe, then for each set garbles those chunks, rebuilds them and compares the whole stripe.</summary>
    void RebuildAll(Random rng, int k, bool dual, List<int[]> sets)
    {
        foreach (int chunk in ChunkSizes)
            foreach (var simd in Widths)
            {
                var good = Stripe(RandomBytes(rng, k * chunk), k, chunk, dual);
                ParityCode.Encode(Data(good, k, chunk), k, Chunk(good, k, chunk), dual ? Chunk(good, k + 1, chunk) : default, simd);
                var stripe = new byte[good.Length];
                foreach (var missing in sets)
                {
                    good.CopyTo(stripe, 0);
                    foreach (int m in missing) rng.NextBytes(Chunk(stripe, m, chunk));
                    ParityCode.Reconstruct(stripe.AsSpan(0, k * chunk), k, Chunk(stripe, k, chunk),
                        dual ? Chunk(stripe, k + 1, chunk) : default, missing, simd);
                    for (int m = 0; m < stripe.Length / chunk; m++)
                        Assert.True(Chunk(good, m, chunk).SequenceEqual(Chunk(stripe, m, chunk)),
                            $"chunk {m} is wrong after rebuilding [{string.Join(", ", missing)}] (k={k}, chunk={chunk}, {simd}, {(dual ? "P+Q" : "P")})");
                }
            }
    }

    [Fact]
    public void LosingMoreThanTheParityCoversThrowsAndWritesNothing()
    {
        var rng = new Random(Seed());
        const int k = 4, chunk = 128;
        var stripe = Stripe(RandomBytes(rng, k * chunk), k, chunk, dual: true);
        ParityCode.Encode(Data(stripe, k, chunk), k, Chunk(stripe, k, chunk), Chunk(stripe, k + 1, chunk));
        var before = stripe.ToArray();

        Assert.Throws<InvalidOperationException>(() =>
            ParityCode.Reconstruct(stripe.AsSpan(0, k * chunk), k, Chunk(stripe, k, chunk), default, [0, 1]));
        Assert.Throws<InvalidOperationException>(() =>
            ParityCode.Reconstruct(stripe.AsSpan(0, k * chunk), k, Chunk(stripe, k, chunk), default, [2, k]));
        Assert.Throws<InvalidOperationException>(() =>
            ParityCode.Reconstruct(stripe.AsSpan(0, k * chunk), k, Chunk(stripe, k, chunk), Chunk(stripe, k + 1, chunk), [0, 1, 2]));
        Assert.Throws<InvalidOperationException>(() =>
            ParityCode.Reconstruct(stripe.AsSpan(0, k * chunk), k, Chunk(stripe, k, chunk), Chunk(stripe, k + 1, chunk), [3, k, k + 1]));
        Assert.Equal(before, stripe);
    }

    [Fact]
    public void WrongShapesAreArgumentErrors()
    {
        const int chunk = 64;
        void Encode(int dataLength, int k, int pLength, int qLength) =>
            ParityCode.Encode(new byte[dataLength], k, new byte[pLength], new byte[qLength]);
        void Rebuild(int k, bool dual, params int[] missing) =>
            ParityCode.Reconstruct(new byte[k * chunk], k, new byte[chunk], dual ? new byte[chunk] : default, missing);

        Assert.ThrowsAny<ArgumentException>(() => Encode(0, 0, chunk, chunk));
        Assert.ThrowsAny<ArgumentException>(() => Encode(17 * chunk, 17, chunk, chunk));
        Assert.ThrowsAny<ArgumentException>(() => Encode(0, 1, 0, 0));
        Assert.ThrowsAny<ArgumentException>(() => Encode(2 * chunk, 3, chunk, chunk));
        Assert.ThrowsAny<ArgumentException>(() => Encode(2 * 100, 2, 100, 100));
        Assert.ThrowsAny<ArgumentException>(() => Encode(2 * chunk, 2, chunk / 2, chunk));
        Assert.ThrowsAny<ArgumentException>(() => Encode(2 * chunk, 2, chunk, chunk * 2));
        Assert.ThrowsAny<ArgumentException>(() =>
        {
            var buffer = new byte[3 * chunk];
            ParityCode.Encode(buffer.AsSpan(0, 2 * chunk), 2, buffer.AsSpan(chunk, chunk), default);
        });
        Assert.ThrowsAny<ArgumentException>(() =>
        {
            var buffer = new byte[3 * chunk];
            ParityCode.Encode(buffer.AsSpan(0, chunk), 1, buffer.AsSpan(chunk, chunk), buffer.AsSpan(chunk, chunk));
        });
        Assert.ThrowsAny<ArgumentException>(() => Rebuild(2, dual: true, -1));
        Assert.ThrowsAny<ArgumentException>(() => Rebuild(2, dual: true, 4));
        Assert.ThrowsAny<ArgumentException>(() => Rebuild(2, dual: false, 3));
        Assert.ThrowsAny<ArgumentException>(() => Rebuild(2, dual: true, 1, 1));

        Encode(chunk, 1, chunk, 0);
        Encode(16 * chunk, 16, chunk, chunk);
        Rebuild(2, dual: false, 2);
    }

    /// <summary>
    /// Not a check: prints the speed (data bytes per second) of encoding 64 KiB stripes at the best
    /// width, and of the rarer rebuild of two data chunks, for the report and bench notes. Everything
    /// is warmed up first so the numbers are of optimized code, not of the JIT's first tier.
    /// </summary>
    [Fact]
    public void EncodeThroughput()
    {
        const int stripeBytes = 64 * 1024;
        var runs = new List<(string Name, Action Run)>();
        foreach (int k in new[] { 2, 4 })
        {
            int chunk = stripeBytes / k;
            var data = RandomBytes(new Random(k), stripeBytes);
            var p = new byte[chunk];
            var q = new byte[chunk];
            runs.Add(($"k={k} P  ", () => ParityCode.Encode(data, k, p, default)));
            runs.Add(($"k={k} P+Q", () => ParityCode.Encode(data, k, p, q)));
            runs.Add(($"k={k} rebuild of 2 data chunks", () => ParityCode.Reconstruct(data, k, p, q, [0, 1])));
        }
        var warm = Stopwatch.StartNew();
        while (warm.ElapsedMilliseconds < 500)
            foreach (var (_, run) in runs) run();
        output.WriteLine($"{stripeBytes / 1024} KiB stripes, cache-hot, {ParityCode.Best}; MB/s of data (best of 3):");
        foreach (var (name, run) in runs)
            output.WriteLine($"  {name}: {Enumerable.Range(0, 3).Max(_ => Rate(stripeBytes, run)),7:F0}");
    }

    static double Rate(int bytes, Action run)
    {
        var clock = Stopwatch.StartNew();
        long runs = 0;
        while (clock.ElapsedMilliseconds < 50)
        {
            for (int i = 0; i < 16; i++) run();
            runs += 16;
        }
        return runs * (double)bytes / clock.Elapsed.TotalSeconds / 1e6;
    }

    int Seed()
    {
        int seed = Environment.GetEnvironmentVariable("STRATA_SEED") is { Length: > 0 } one
            ? int.Parse(one, CultureInfo.InvariantCulture)
            : Random.Shared.Next();
        output.WriteLine($"seed {seed} (replay with STRATA_SEED={seed})");
        return seed;
    }

    static byte[] RandomBytes(Random rng, int length)
    {
        var bytes = new byte[length];
        rng.NextBytes(bytes);
        return bytes;
    }

    /// <summary>A buffer holding the data, then room for P (and Q).</summary>
    static byte[] Stripe(byte[] data, int k, int chunk, bool dual)
    {
        var stripe = new byte[(k + (dual ? 2 : 1)) * chunk];
        data.CopyTo(stripe, 0);
        return stripe;
    }

    static Span<byte> Data(byte[] stripe, int k, int chunk) => stripe.AsSpan(0, k * chunk);

    static Span<byte> Chunk(byte[] stripe, int index, int chunk) => stripe.AsSpan(index * chunk, chunk);

    /// <summary>P and Q byte by byte, with multiplication done bit by bit so it shares nothing with the code's log tables.</summary>
    static (byte[] P, byte[] Q) Reference(byte[] data, int k, int chunk)
    {
        var p = new byte[chunk];
        var q = new byte[chunk];
        byte weight = 1;
        for (int j = 0; j < k; j++, weight = Multiply(weight, 2))
            for (int i = 0; i < chunk; i++)
            {
                p[i] ^= data[j * chunk + i];
                q[i] ^= Multiply(weight, data[j * chunk + i]);
            }
        return (p, q);
    }

    static byte Multiply(byte a, byte b)
    {
        int product = 0, shifted = a;
        for (int bits = b; bits != 0; bits >>= 1)
        {
            if ((bits & 1) != 0) product ^= shifted;
            shifted <<= 1;
            if ((shifted & 0x100) != 0) shifted ^= 0x11d;
        }
        return (byte)product;
    }
}
