using System.Collections.Concurrent;
using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;
using Strata.Block;
using Xunit.Abstractions;

namespace Strata.Thin.Tests;

/// <summary>
/// Each fault of <see cref="FaultyBlockStore"/> does what it says and nothing more: rot and overwrites show in reads
/// and survive every crash; a lost write reads the old bytes; a torn write leaves a prefix of whole sectors; a failing
/// range fails only the chosen operations touching it; a vanished disk fails everything and comes back as it was;
/// flushes fail from the chosen call; a crash keeps what a flush covered and any subset of the rest. Many threads at
/// once, with faults switched elsewhere, read exactly what they wrote. With faults off it is a block store like any
/// other (<see cref="FaultyBlockStoreConformance"/>). Each test prints its seed; STRATA_SEED=N replays one.
/// </summary>
public sealed class FaultyBlockStoreTests(ITestOutputHelper output)
{
    const int Length = 1 << 20;

    [Fact]
    public void AFlippedBitReadsBackFlippedAndSurvivesEveryCrash()
    {
        int seed = Seed();
        var random = new Random(seed);
        var (store, old) = Flushed(random);
        long offset = random.Next(Length - 10000);
        int length = random.Next(1, 10000), count = random.Next(1, Math.Min(20, length * 8) + 1);
        var bits = store.FlipBits(offset, length, count, random);
        Assert.Equal(count, bits.Count);
        Assert.All(bits, bit => Assert.InRange(bit / 8, offset, offset + length - 1));
        var read = ReadAll(store);
        Assert.True(count == BitsDiffering(old, read), $"seed {seed}: {BitsDiffering(old, read)} bits differ after flipping {count}");
        AssertSame(Flip(old, bits), read, $"seed {seed}: the read");
        for (int crash = 0; crash < 5; crash++)
            AssertSame(read, ReadAll(store.Crash(new Random(seed + crash))), $"seed {seed} crash {crash}");
        Assert.Equal(0, store.ReadErrors + store.WriteErrors);
    }

    [Fact]
    public void RotUnderAnUnflushedWriteSurvivesWhicheverWayTheCrashGoes()
    {
        int seed = Seed();
        var random = new Random(seed);
        var (store, old) = Flushed(random);
        var data = Bytes(random, 3000);
        store.Write(10_000, data);
        // over the write and beyond both of its ends
        var bits = store.FlipBits(9_500, 4_000, 24, random);
        var written = old.ToArray();
        data.CopyTo(written, 10_000);
        AssertSame(Flip(written, bits), ReadAll(store), $"seed {seed}: the read");
        for (int crash = 0; crash < 20; crash++)
        {
            var after = Flip(ReadAll(store.Crash(new Random(seed + crash))), bits);
            Assert.True(WholeLostOrTorn(after.AsSpan(10_000, data.Length), data, old.AsSpan(10_000, data.Length)),
                $"seed {seed} crash {crash}: with the flips undone, the write is neither whole, lost, nor torn at a sector");
            after.AsSpan(10_000, data.Length).Clear();
            var outside = old.ToArray();
            outside.AsSpan(10_000, data.Length).Clear();
            AssertSame(outside, after, $"seed {seed} crash {crash}: with the flips undone, outside the write");
        }
        store.Flush();
        var flushed = ReadAll(store);
        AssertSame(flushed, ReadAll(store.Crash(new Random(seed))), $"seed {seed}: a crash after the flush");
    }

    [Fact]
    public void CorruptOverwritesWhatReadsReturnAndEveryCrashKeepsIt()
    {
        int seed = Seed();
        var random = new Random(seed);
        var (store, old) = Flushed(random);
        store.Write(20_000, Bytes(random, 3000));
        var junk = Bytes(random, 2000);
        store.Corrupt(19_000, junk);
        AssertSame(junk, Read(store, 19_000, junk.Length), $"seed {seed}: the read");
        Assert.Equal(2, store.Writes);
        for (int crash = 0; crash < 10; crash++)
        {
            var after = ReadAll(store.Crash(new Random(seed + crash)));
            AssertSame(junk, after.AsSpan(19_000, junk.Length), $"seed {seed} crash {crash}: the corrupted bytes");
            AssertSame(old.AsSpan(0, 19_000), after.AsSpan(0, 19_000), $"seed {seed} crash {crash}: before them");
            AssertSame(old.AsSpan(23_000), after.AsSpan(23_000), $"seed {seed} crash {crash}: after the write");
        }
    }

    [Fact]
    public void AWriteTouchingALosingRangeIsAcknowledgedAndReadsTheOldBytes()
    {
        int seed = Seed();
        var random = new Random(seed);
        var (store, old) = Flushed(random);
        store.LoseWritesIn(100_000, 4096);
        var across = Bytes(random, 200);
        store.Write(100_000 - 100, across);
        AssertSame(old.AsSpan(100_000 - 100, 200), Read(store, 100_000 - 100, 200), $"seed {seed}: a write across the start of the range");
        var after = Bytes(random, 200);
        store.Write(100_000 + 4096, after);
        AssertSame(after, Read(store, 100_000 + 4096, 200), $"seed {seed}: a write just past the range");
        Assert.Equal(1, store.LostWrites);
        store.Flush();
        AssertSame(old.AsSpan(100_000 - 100, 200), ReadAll(store.Crash(random)).AsSpan(100_000 - 100, 200), $"seed {seed}: after a flush and a crash");
        store.StopLosingWrites();
        store.Write(100_000 - 100, across);
        AssertSame(across, Read(store, 100_000 - 100, 200), $"seed {seed}: after StopLosingWrites");
        Assert.Equal(0, store.WriteErrors);
    }

    [Fact]
    public void WritesAreLostAtTheChosenRateWholeOrNotAtAll()
    {
        int seed = Seed();
        var random = new Random(seed);
        var (store, old) = Flushed(random);
        const int Count = 64, Size = 4096;
        store.LoseWrites(0.5, new Random(seed));
        int lost = 0;
        for (int i = 0; i < Count; i++)
        {
            var data = Bytes(random, Size);
            store.Write(i * 8192L, data);
            var now = Read(store, i * 8192L, Size);
            if (now.AsSpan().SequenceEqual(old.AsSpan(i * 8192, Size))) lost++;
            else AssertSame(data, now, $"seed {seed}: write {i} is neither lost nor whole");
        }
        Assert.Equal(lost, store.LostWrites);
        Assert.True(lost is > 0 and < Count, $"seed {seed}: {lost} of {Count} writes lost at a rate of 0.5");
        store.LoseWrites(1, new Random(seed));
        store.Write(0, Bytes(random, Size));
        Assert.Equal(lost + 1, store.LostWrites);
        store.StopLosingWrites();
        var last = Bytes(random, Size);
        store.Write(0, last);
        AssertSame(last, Read(store, 0, Size), $"seed {seed}: after StopLosingWrites");
    }

    [Fact]
    public void ATornWriteLeavesAPrefixOfWholeSectors()
    {
        int seed = Seed();
        var random = new Random(seed);
        var (store, old) = Flushed(random);
        store.TearWrites(1, new Random(seed));
        int torn = 0;
        for (int i = 0; i < 30; i++)
        {
            long offset = i * 32768L + random.Next(1000);
            var data = Bytes(random, i < 3 ? 512 - i : random.Next(513, 20000));
            store.Write(offset, data);
            var now = Read(store, offset, data.Length);
            var before = old.AsSpan((int)offset, data.Length);
            if (data.Length <= 512) AssertSame(data, now, $"seed {seed}: a write of {data.Length} bytes (one sector or less) is whole");
            else
            {
                int prefix = now.AsSpan().CommonPrefixLength(data);
                prefix -= prefix % 512;
                Assert.True(prefix > 0 && prefix < data.Length && now.AsSpan(prefix).SequenceEqual(before[prefix..]),
                    $"seed {seed}: a torn write of {data.Length} bytes at {offset} is not a prefix of whole sectors followed by the old bytes");
                torn++;
            }
        }
        Assert.Equal(torn, store.TornWrites);
        store.Flush();
        AssertSame(ReadAll(store), ReadAll(store.Crash(random)), $"seed {seed}: torn writes, flushed, after a crash");
        store.TearWrites(0, random);
        var whole = Bytes(random, 5000);
        store.Write(0, whole);
        AssertSame(whole, Read(store, 0, whole.Length), $"seed {seed}: after tearing stopped");
    }

    [Fact]
    public void AFailingRangeFailsOnlyTheChosenOperationsTouchingIt()
    {
        int seed = Seed();
        var random = new Random(seed);
        var (store, old) = Flushed(random);
        store.FailRange(100_000, 10_000, reads: true, writes: false);
        Read(store, 90_000, 10_000);
        Read(store, 110_000, 100);
        var error = Assert.Throws<IOException>(() => Read(store, 109_999, 2));
        Assert.Contains(store.Name, error.Message);
        Assert.Contains("109999", error.Message);
        Assert.DoesNotContain('\n', error.Message);
        Assert.Throws<IOException>(() => Read(store, 99_999, 2));
        Assert.Throws<IOException>(() => ReadAll(store));
        Assert.Equal(3, store.ReadErrors);
        var inside = Bytes(random, 1000);
        store.Write(105_000, inside);

        store.FailRange(200_000, 4096, reads: false, writes: true);
        error = Assert.Throws<IOException>(() => store.Write(200_000 + 4095, [1, 2]));
        Assert.Contains("204095", error.Message);
        Assert.Throws<IOException>(() => store.Discard(199_000, 2000));
        AssertSame(old.AsSpan(199_000, 6000), Read(store, 199_000, 6000), $"seed {seed}: failed writes changed nothing");
        store.Write(200_000 + 4096, [1, 2]);
        store.Discard(190_000, 10_000);
        Assert.Equal(2, store.WriteErrors);

        store.HealRange(100_000, 1);
        AssertSame(inside, Read(store, 105_000, inside.Length), $"seed {seed}: the write inside a range failing reads only");
        Assert.Throws<IOException>(() => store.Write(200_000, [1]));
        store.HealAll();
        store.Write(200_000, [7]);
        Assert.Equal(7, Read(store, 200_000, 1)[0]);
        Assert.Equal(3, store.ReadErrors);
        Assert.Equal(3, store.WriteErrors);
    }

    [Fact]
    public void AVanishedDiskFailsEverythingAndComesBackAsItWas()
    {
        int seed = Seed();
        var random = new Random(seed);
        var (store, _) = Flushed(random);
        store.Write(50_000, Bytes(random, 3000));
        var before = ReadAll(store);
        store.Vanish();
        Assert.Equal(Length, store.Length);
        Action[] operations =
        [
            () => Read(store, 0, 1), () => store.Write(0, [1]), store.Flush, () => store.Discard(0, 4096),
            () => store.IsHole(0, 4096), () => store.Grow(2 * Length),
        ];
        foreach (var operation in operations)
            Assert.Contains("disk is gone", Assert.Throws<IOException>(operation).Message);
        Assert.Equal(Length, store.Length);
        Assert.Equal(1, store.ReadErrors);
        Assert.Equal(2, store.WriteErrors);
        store.Return();
        AssertSame(before, ReadAll(store), $"seed {seed}: back, unflushed write included");
        store.Flush();
        AssertSame(before, ReadAll(store.Crash(random)), $"seed {seed}: back, flushed, after a crash");
    }

    [Fact]
    public void WritesAndFlushesFailFromTheChosenCall()
    {
        int seed = Seed();
        var random = new Random(seed);
        var store = new FaultyBlockStore(Length, "disk0");
        var first = Bytes(random, 4096);
        store.Write(0, first);
        store.FailWritesFrom = store.Writes + 1;
        Assert.Throws<IOException>(() => store.Write(4096, first));
        Assert.Throws<IOException>(() => store.Write(4096, first));
        Assert.True(store.IsHole(4096, 4096), "a failed write reached the disk");
        store.FailWritesFrom = null;
        store.Flush();

        store.Write(8192, first);
        store.FailFlushesFrom = store.Flushes + 1;
        Assert.Throws<IOException>(store.Flush);
        Assert.Throws<IOException>(store.Flush);
        var crashes = Enumerable.Range(0, 40).Select(c => ReadAll(store.Crash(new Random(seed + c)))).ToList();
        Assert.All(crashes, after => AssertSame(first, after.AsSpan(0, 4096), $"seed {seed}: the flushed write"));
        Assert.True(crashes.Any(after => after.AsSpan(8192, 4096).IndexOfAnyExcept((byte)0) < 0), $"seed {seed}: a write that failed flushes left pending was never lost");
        store.FailFlushesFrom = null;
        store.Flush();
        AssertSame(first, ReadAll(store.Crash(random)).AsSpan(8192, 4096), $"seed {seed}: flushed at last");
    }

    [Fact]
    public void ACrashKeepsWhatAFlushCoveredAndAnySubsetOfTheRestWithNoFaultsArmed()
    {
        int seed = Seed();
        var random = new Random(seed);
        var (store, old) = Flushed(random);
        // writes that do not overlap, some shorter than a sector, most at offsets inside one
        var writes = Enumerable.Range(0, 16).Select(i => ((long)i * 60000 + random.Next(0, 1000), Bytes(random, random.Next(1, 5000)))).ToList();
        foreach (var (offset, data) in writes) store.Write(offset, data);
        store.LoseWrites(1, new Random(seed));
        store.FailRange(0, Length);
        var seenWhole = new bool[writes.Count];
        var seenLost = new bool[writes.Count];
        for (int crash = 0; crash < 40; crash++)
        {
            var crashed = store.Crash(new Random(seed + crash));
            var after = ReadAll(crashed);
            var outside = after.ToArray();
            var expected = old.ToArray();
            int torn = 0;
            for (int w = 0; w < writes.Count; w++)
            {
                var (offset, data) = writes[w];
                var now = after.AsSpan((int)offset, data.Length);
                var before = old.AsSpan((int)offset, data.Length);
                Assert.True(WholeLostOrTorn(now, data, before), $"seed {seed} crash {crash}: write {w} ({data.Length} bytes at {offset}) is neither whole, lost, nor torn at a sector");
                if (now.SequenceEqual(data)) seenWhole[w] = true;
                else if (now.SequenceEqual(before)) seenLost[w] = true;
                else torn++;
                outside.AsSpan((int)offset, data.Length).Clear();
                expected.AsSpan((int)offset, data.Length).Clear();
            }
            Assert.True(torn <= 1, $"seed {seed} crash {crash}: {torn} writes torn");
            AssertSame(expected, outside, $"seed {seed} crash {crash}: bytes no write touched");
            // the crashed disk has no faults, and all it holds is durable
            var data2 = Bytes(random, 4096);
            crashed.Write(0, data2);
            AssertSame(data2, Read(crashed, 0, 4096), $"seed {seed} crash {crash}: a write to the crashed disk");
            Assert.Equal(0, crashed.LostWrites);
            crashed.Discard(0, 4096);
            crashed.Flush();
            var image = ReadAll(crashed);
            AssertSame(image, ReadAll(crashed.Crash(random)), $"seed {seed} crash {crash}: the crashed disk crashed again");
        }
        Assert.True(seenWhole.All(s => s) && seenLost.All(s => s), $"seed {seed}: over 40 crashes every write was sometimes kept and sometimes lost");
    }

    [Fact]
    public void ThreadsOnRangesOfTheirOwnReadExactlyWhatTheyWroteWhileFaultsComeAndGoElsewhere()
    {
        int seed = Seed();
        const int Threads = 4, Region = 128 << 10, Rounds = 400;
        const long Spare = (long)Threads * Region;
        var store = new FaultyBlockStore(Length, "disk0");
        var models = new byte[Threads][];
        var writes = new int[Threads];
        var reads = new int[Threads];
        var errors = new ConcurrentQueue<string>();
        var workers = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                var random = new Random(seed + t);
                var model = models[t] = new byte[Region];
                long start = (long)t * Region;
                for (int round = 0; round < Rounds; round++)
                {
                    int offset = random.Next(Region - 1), length = random.Next(1, Math.Min(3 * 4096, Region - offset));
                    if (round % 40 == 39)
                    {
                        store.Discard(start + offset, length);
                        model.AsSpan(offset, length).Clear();
                    }
                    else
                    {
                        var data = Bytes(random, length);
                        store.Write(start + offset, data);
                        writes[t]++;
                        data.CopyTo(model, offset);
                    }
                    offset = random.Next(Region - 1);
                    length = random.Next(1, Region - offset);
                    var read = Read(store, start + offset, length);
                    reads[t]++;
                    if (!read.AsSpan().SequenceEqual(model.AsSpan(offset, length)))
                        errors.Enqueue($"seed {seed} thread {t} round {round}: {length} bytes at {start + offset} differ from what it wrote");
                    if (round % 25 == 0) store.Flush();
                }
            }
            catch (Exception ex)
            {
                errors.Enqueue($"seed {seed} thread {t}: {ex}");
            }
        })).ToList();
        workers.Add(new Thread(() =>
        {
            try
            {
                var random = new Random(seed - 1);
                for (int round = 0; round < 200; round++)
                {
                    long offset = Spare + random.NextInt64(Length - Spare - 4096);
                    switch (round % 5)
                    {
                        case 0: store.FlipBits(offset, 4096, 3, random); break;
                        case 1: store.Corrupt(offset, Bytes(random, 100)); break;
                        case 2: store.FailRange(offset, 4096); break;
                        case 3: store.LoseWritesIn(offset, 4096); break;
                        case 4: store.Crash(random); store.HealRange(offset, 4096); break;
                    }
                    if (round % 20 == 19)
                    {
                        store.HealAll();
                        store.StopLosingWrites();
                    }
                }
            }
            catch (Exception ex)
            {
                errors.Enqueue($"seed {seed} faults: {ex}");
            }
        }));
        foreach (var thread in workers) thread.Start();
        foreach (var thread in workers) thread.Join();
        Assert.True(errors.IsEmpty, string.Join("\n", errors.Take(10)));
        for (int t = 0; t < Threads; t++)
            AssertSame(models[t], Read(store, (long)t * Region, Region), $"seed {seed}: thread {t}'s region at the end");
        Assert.Equal(writes.Sum(), store.Writes);
        Assert.Equal(reads.Sum() + Threads, store.Reads);
        Assert.Equal(0, store.LostWrites + store.TornWrites + store.ReadErrors + store.WriteErrors);
    }

    /// <summary>The seed of a test, printed; STRATA_SEED replays one.</summary>
    int Seed([CallerMemberName] string test = "")
    {
        int seed = Environment.GetEnvironmentVariable("STRATA_SEED") is { Length: > 0 } one
            ? int.Parse(one, CultureInfo.InvariantCulture)
            : Random.Shared.Next();
        output.WriteLine($"{test}: seed {seed} (replay with STRATA_SEED={seed})");
        return seed;
    }

    /// <summary>A disk full of random bytes, flushed.</summary>
    static (FaultyBlockStore Store, byte[] Old) Flushed(Random random)
    {
        var store = new FaultyBlockStore(Length, "disk0");
        var old = Bytes(random, Length);
        store.Write(0, old);
        store.Flush();
        return (store, old);
    }

    /// <summary>Whether a write's range holds the write, the bytes before it, or a prefix of it in whole sectors (at
    /// least one, not all) followed by the bytes before it.</summary>
    static bool WholeLostOrTorn(ReadOnlySpan<byte> now, ReadOnlySpan<byte> data, ReadOnlySpan<byte> before)
    {
        if (now.SequenceEqual(data) || now.SequenceEqual(before)) return true;
        for (int prefix = 512; prefix < data.Length; prefix += 512)
            if (now[..prefix].SequenceEqual(data[..prefix]) && now[prefix..].SequenceEqual(before[prefix..])) return true;
        return false;
    }

    static byte[] Flip(byte[] bytes, IReadOnlyList<long> bits)
    {
        var flipped = bytes.ToArray();
        foreach (long bit in bits) flipped[bit / 8] ^= (byte)(1 << (int)(bit % 8));
        return flipped;
    }

    static int BitsDiffering(byte[] a, byte[] b)
    {
        int bits = 0;
        for (int i = 0; i < a.Length; i++) bits += BitOperations.PopCount((uint)(a[i] ^ b[i]));
        return bits;
    }

    static byte[] ReadAll(IBlockStore store) => Read(store, 0, (int)store.Length);

    static byte[] Read(IBlockStore store, long offset, int length)
    {
        var buffer = new byte[length];
        store.Read(offset, buffer);
        return buffer;
    }

    /// <summary>Random bytes, none of them zero (so that a byte lost to zeros shows).</summary>
    static byte[] Bytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        for (int i = 0; i < length; i++) bytes[i] |= (byte)(bytes[i] == 0 ? 1 : 0);
        return bytes;
    }

    static void AssertSame(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        int first = expected.CommonPrefixLength(actual);
        if (first < expected.Length)
            Assert.Fail($"{what}: byte {first} is {actual[first]}, not {expected[first]}");
    }
}

/// <summary>The faulty disk with no fault armed is a block store like any other.</summary>
public sealed class FaultyBlockStoreConformance : BlockStoreConformance
{
    protected override IBlockStore NewStore(long length) => new FaultyBlockStore(length, "faulty");
}
