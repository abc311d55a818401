namespace Strata.Thin.Tests;

/// <summary>
/// What <see cref="CrashingBlockStore"/> promises about a power loss, beyond the <see cref="Strata.Block.IBlockStore"/>
/// contract (<see cref="CrashingBlockStoreConformance"/>): a write that a flush covered survives every crash; a write
/// not flushed is, after a crash, there whole, not there at all, or torn (a whole number of 512-byte sectors of it
/// there, the rest not), at most one torn per crash, and over many crashes each is sometimes lost; failed writes and
/// flushes change nothing a crash would keep.
/// </summary>
public sealed class CrashingBlockStoreTests
{
    const int Length = 1 << 20;

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void WhatAFlushCoveredSurvivesEveryCrash(int seed)
    {
        var random = new Random(seed);
        var store = new CrashingBlockStore(Length, "crashing");
        for (int i = 0; i < 40; i++)
        {
            long offset = random.NextInt64(Length - 10000);
            if (random.Next(6) == 0) store.Discard(offset, random.Next(1, 10000));
            else store.Write(offset, Bytes(random, random.Next(1, 10000)));
        }
        store.Grow(Length + 4096);
        store.Flush();
        var expected = ReadAll(store);
        for (int crash = 0; crash < 20; crash++)
            Assert.True(expected.AsSpan().SequenceEqual(ReadAll(store.Crash(new Random(seed * 100 + crash)))), $"seed {seed} crash {crash}");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void AnUnflushedWriteIsWholeAbsentOrTornAtASector(int seed)
    {
        var random = new Random(seed);
        var store = new CrashingBlockStore(Length, "crashing");
        var old = Bytes(random, Length);
        store.Write(0, old);
        store.Flush();
        // writes that do not overlap, of lengths around a sector, most of them at offsets inside a sector
        var writes = Enumerable.Range(0, 16).Select(i => ((long)i * 60000 + random.Next(0, 1000), Bytes(random, random.Next(1, 5000)))).ToList();
        foreach (var (offset, data) in writes) store.Write(offset, data);
        var seenWhole = new bool[writes.Count];
        var seenLost = new bool[writes.Count];
        for (int crash = 0; crash < 40; crash++)
        {
            var after = ReadAll(store.Crash(new Random(seed * 100 + crash)));
            int torn = 0;
            for (int w = 0; w < writes.Count; w++)
            {
                var (offset, data) = writes[w];
                var now = after.AsSpan((int)offset, data.Length).ToArray();
                var before = old.AsSpan((int)offset, data.Length).ToArray();
                if (now.AsSpan().SequenceEqual(data)) seenWhole[w] = true;
                else if (now.AsSpan().SequenceEqual(before)) seenLost[w] = true;
                else
                {
                    bool tornAtASector = Enumerable.Range(1, (data.Length - 1) / 512).Any(sectors =>
                        now.AsSpan(0, sectors * 512).SequenceEqual(data.AsSpan(0, sectors * 512)) && now.AsSpan(sectors * 512).SequenceEqual(before.AsSpan(sectors * 512)));
                    Assert.True(tornAtASector, $"seed {seed} crash {crash}: write {w} ({data.Length} bytes at {offset}) is neither whole, lost, nor torn at a sector");
                    torn++;
                }
            }
            Assert.True(torn <= 1, $"seed {seed} crash {crash}: {torn} writes torn");
            // outside the writes: the flushed bytes
            var outside = after.ToArray();
            var expected = old.ToArray();
            foreach (var (offset, data) in writes)
            {
                outside.AsSpan((int)offset, data.Length).Clear();
                expected.AsSpan((int)offset, data.Length).Clear();
            }
            Assert.True(expected.AsSpan().SequenceEqual(outside), $"seed {seed} crash {crash}: bytes no write touched changed");
        }
        Assert.True(seenWhole.All(s => s) && seenLost.All(s => s), $"seed {seed}: over 40 crashes every write was sometimes kept and sometimes lost");
    }

    [Fact]
    public void FailedWritesAndFlushesChangeNothingACrashKeeps()
    {
        var store = new CrashingBlockStore(Length, "crashing");
        var first = Bytes(new Random(1), 4096);
        store.Write(0, first);
        store.FailWritesFrom = 2;
        Assert.Throws<IOException>(() => store.Write(4096, first));
        store.Flush();
        var after = ReadAll(store.Crash(new Random(1)));
        Assert.True(after.AsSpan(0, 4096).SequenceEqual(first));
        Assert.True(after.AsSpan(4096).IndexOfAnyExcept((byte)0) < 0, "a failed write reached the disk");

        store.FailWritesFrom = null;
        store.Write(8192, first);
        store.FailFlushesFrom = store.Flushes + 1;
        Assert.Throws<IOException>(store.Flush);
        bool lost = Enumerable.Range(0, 20).Any(seed => ReadAll(store.Crash(new Random(seed))).AsSpan(8192, 4096).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(lost, "a write that a failed flush left pending was never lost");
    }

    static byte[] ReadAll(Strata.Block.IBlockStore store)
    {
        var all = new byte[store.Length];
        store.Read(0, all);
        return all;
    }

    static byte[] Bytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        for (int i = 0; i < length; i++) bytes[i] |= (byte)(bytes[i] == 0 ? 1 : 0);
        return bytes;
    }
}
