using Strata.Block;
using Strata.Testing;

namespace Strata.Thin.Tests;

/// <summary>
/// The <see cref="IBlockStore"/> contract, run over every store (one class per store at the end of this file, a few
/// lines each): bytes written at any offset within <see cref="IBlockStore.Length"/> read back, across sector, page and
/// pool-block boundaries; a read, write or discard past the end is refused and changes nothing; a discard zeroes its
/// range and nothing else, or returns false and changed nothing; <see cref="IBlockStore.IsHole"/> never claims a range
/// that holds data; a grown store keeps its data and its new part reads as zeros; many threads at once (writes side by
/// side in one page, reads, flushes, discards, a grow) lose nothing. The stores are sized to end inside a page, and the
/// random tests take fixed seeds, named in every failure.
/// </summary>
public abstract class BlockStoreConformance : IDisposable
{
    const int PoolBlock = (int)ThinPool.MinBlockSize;
    const long Size = 5L * PoolBlock + 1000;
    readonly List<IBlockStore> _stores = [];

    /// <summary>A new store of <paramref name="length"/> bytes.</summary>
    protected abstract IBlockStore NewStore(long length);

    IBlockStore Store(long length = Size)
    {
        var store = NewStore(length);
        _stores.Add(store);
        return store;
    }

    public virtual void Dispose()
    {
        foreach (var store in _stores) store.Dispose();
    }

    [Fact]
    public void ItHasANameAndTheLengthItWasMadeWith()
    {
        var store = Store();
        Assert.False(string.IsNullOrWhiteSpace(store.Name));
        Assert.Equal(Size, store.Length);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void WritesReadBackAtAnyOffset(int seed)
    {
        var store = Store();
        var model = ReadAll(store);
        var random = new Random(seed);
        int[] lengths = [1, 7, 511, 512, 513, 4095, 4096, 4097, PoolBlock - 1, PoolBlock + 3, 2 * PoolBlock + 4099];
        for (int step = 0; step < 300; step++)
        {
            long offset = random.NextInt64(Size);
            int length = (int)Math.Min(random.Next(4) == 0 ? random.Next(1, 3 * PoolBlock) : lengths[random.Next(lengths.Length)], Size - offset);
            // zeros too, written over data and over space never written
            var data = random.Next(5) == 0 ? new byte[length] : Bytes(random, length);
            store.Write(offset, data);
            data.CopyTo(model, offset);
            long at = random.NextInt64(Size);
            int n = (int)Math.Min(random.Next(1, 2 * PoolBlock), Size - at);
            var read = Read(store, at, n);
            AssertSame(model.AsSpan((int)at, n), read, $"seed {seed} step {step}: {n} bytes at {at}, after {length} written at {offset}");
        }
        AssertSame(model, ReadAll(store), $"seed {seed}: the whole store");
    }

    [Fact]
    public void TheLastBytesAndEmptyRangesAtTheEndCanBeUsed()
    {
        var store = Store();
        store.Write(Size - 3, [1, 2, 3]);
        Assert.Equal(3, Read(store, Size - 1, 1)[0]);
        store.Write(Size, []);
        store.Read(Size, []);
        Assert.Equal(new byte[] { 1, 2, 3 }, Read(store, Size - 3, 3));
    }

    [Fact]
    public void ReadsWritesAndDiscardsPastTheEndAreRefusedAndChangeNothing()
    {
        var store = Store();
        store.Write(Size - 4096, Bytes(new Random(1), 4096));
        var before = ReadAll(store);
        Assert.ThrowsAny<Exception>(() => store.Write(Size - 2, [1, 2, 3, 4]));
        Assert.ThrowsAny<Exception>(() => store.Write(Size, [1]));
        Assert.ThrowsAny<Exception>(() => store.Write(-1, [1]));
        Assert.ThrowsAny<Exception>(() => store.Read(Size - 1, new byte[2]));
        Assert.ThrowsAny<Exception>(() => store.Read(Size + 4096, new byte[1]));
        Assert.ThrowsAny<Exception>(() => store.Read(-1, new byte[1]));
        Assert.ThrowsAny<Exception>(() => store.Discard(Size - 10, 20));
        Assert.ThrowsAny<Exception>(() => store.Discard(-1, 10));
        Assert.Equal(Size, store.Length);
        AssertSame(before, ReadAll(store), "after refused calls");
    }

    [Fact]
    public void AFlushKeepsWhatWasWritten()
    {
        var store = Store();
        store.Flush();
        var data = Bytes(new Random(2), 3 * 4096 + 5);
        store.Write(PoolBlock - 4096, data);
        store.Flush();
        AssertSame(data, Read(store, PoolBlock - 4096, data.Length), "after a flush");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ADiscardZeroesItsRangeAndNothingElseOrSaysItCannot(int seed)
    {
        var store = Store();
        var random = new Random(seed);
        var model = Bytes(random, (int)Size);
        store.Write(0, model);
        store.Flush();
        (long Offset, long Length)[] ranges =
        [
            (PoolBlock, PoolBlock), // one pool block, as a commit discards what it freed
            (4096, 4096), (4096 * 3 + 100, 7), (2 * PoolBlock - 1000, 9000), (3 * PoolBlock + 513, PoolBlock + 1111),
            (Size - 700, 700), (0, 1), (5000, 0),
        ];
        foreach (var (offset, length) in ranges)
        {
            bool discarded = store.Discard(offset, length);
            if (discarded) model.AsSpan((int)offset, (int)length).Clear();
            AssertSame(model, ReadAll(store), $"seed {seed}: after {(discarded ? "discarding" : "failing to discard")} {length} bytes at {offset}");
        }
        // a discarded range takes writes again
        var again = Bytes(random, PoolBlock + 100);
        store.Write(PoolBlock - 50, again);
        again.CopyTo(model, PoolBlock - 50);
        AssertSame(model, ReadAll(store), $"seed {seed}: a write over discarded ranges");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void IsHoleNeverClaimsARangeThatHoldsData(int seed)
    {
        var store = Store();
        var random = new Random(seed);
        var written = new List<(long Offset, int Length)>();
        for (int i = 0; i < 12; i++)
        {
            long offset = random.NextInt64(Size);
            int length = (int)Math.Min(random.Next(1, 3 * 4096), Size - offset);
            store.Write(offset, Bytes(random, length));
            written.Add((offset, length));
        }
        store.Discard(2 * PoolBlock, PoolBlock);
        var model = ReadAll(store);
        foreach (var (offset, length) in written)
            if (model.AsSpan((int)offset, length).IndexOfAnyExcept((byte)0) >= 0)
                Assert.False(store.IsHole(offset, length), $"seed {seed}: IsHole({offset}, {length}) over data written there");
        for (int i = 0; i < 500; i++)
        {
            long offset = random.NextInt64(Size);
            long length = Math.Min(random.Next(1, 2 * PoolBlock), Size - offset);
            if (store.IsHole(offset, length))
                Assert.True(model.AsSpan((int)offset, (int)length).IndexOfAnyExcept((byte)0) < 0, $"seed {seed}: IsHole({offset}, {length}) but the range holds data");
        }
        store.Write(PoolBlock + 12345, [9]);
        Assert.False(store.IsHole(PoolBlock, PoolBlock), $"seed {seed}: IsHole over one byte of data");
    }

    [Fact]
    public void AGrownStoreKeepsItsDataAndItsNewPartReadsAsZeros()
    {
        var store = Store();
        var random = new Random(3);
        var model = new byte[Size + 3 * PoolBlock + 123];
        Bytes(random, (int)Size).CopyTo(model, 0);
        store.Write(0, model.AsSpan(0, (int)Size));
        store.Grow(Size + PoolBlock);
        Assert.Equal(Size + PoolBlock, store.Length);
        store.Grow(model.Length);
        Assert.Equal(model.Length, store.Length);
        AssertSame(model, ReadAll(store), "after growing");
        var end = Bytes(random, 5000);
        store.Write(model.Length - end.Length, end);
        end.CopyTo(model, model.Length - end.Length);
        AssertSame(model, ReadAll(store), "after writing at the new end");
        Assert.ThrowsAny<Exception>(() => store.Write(model.Length - 1, [1, 2]));
    }

    [Fact]
    public void ManyThreadsAtOnceLoseNothing()
    {
        const int Threads = 8, Region = 700, Rounds = 300;
        const long Grown = Size + 8 * 4096;
        var store = Store();
        int regions = (int)(Size / Region);
        var last = new byte[regions][];
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var workers = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                // thread t owns regions t, t + Threads, ...: its neighbours' writes share its pages
                var random = new Random(t);
                var mine = Enumerable.Range(0, regions).Where(r => r % Threads == t).ToList();
                var read = new byte[Region];
                read.AsSpan().Fill(0xEE);
                for (int round = 0; round < Rounds; round++)
                {
                    int r = mine[random.Next(mine.Count)];
                    long offset = (long)r * Region;
                    var data = Bytes(random, Region);
                    if (round % 50 == 49 && store.Discard(offset, Region)) Array.Clear(data);
                    else store.Write(offset, data);
                    last[r] = data;
                    store.Read(offset, read);
                    if (!read.AsSpan().SequenceEqual(data)) errors.Enqueue($"thread {t} round {round}: region {r} at {offset} did not read back what was just written");
                    if (round % 25 == 0) store.Flush();
                    if (round % 10 == 0 && store.IsHole(offset, Region) && data.AsSpan().IndexOfAnyExcept((byte)0) >= 0)
                        errors.Enqueue($"thread {t} round {round}: IsHole over region {r}, which holds data");
                }
            }
            catch (Exception ex)
            {
                errors.Enqueue($"thread {t}: {ex}");
            }
        })).ToList();
        var grower = new Thread(() =>
        {
            try
            {
                for (long length = Size + 4096; length <= Grown; length += 4096)
                {
                    store.Grow(length);
                    Thread.Sleep(1);
                }
            }
            catch (Exception ex)
            {
                errors.Enqueue($"grow: {ex}");
            }
        });
        workers.Add(grower);
        foreach (var thread in workers) thread.Start();
        foreach (var thread in workers) thread.Join();
        Assert.True(errors.IsEmpty, string.Join("\n", errors.Take(10)));
        Assert.Equal(Grown, store.Length);
        var all = ReadAll(store);
        for (int r = 0; r < regions; r++)
            AssertSame(last[r] ?? new byte[Region], all.AsSpan(r * Region, Region), $"region {r} at the end");
        Assert.True(all.AsSpan((int)Size).IndexOfAnyExcept((byte)0) < 0, "the grown part reads as zeros");
    }

    static byte[] ReadAll(IBlockStore store) => Read(store, 0, (int)store.Length);

    /// <summary>Reads into a buffer that held other bytes before (as a pooled one does), so that a read that leaves
    /// part of it as it was shows.</summary>
    static byte[] Read(IBlockStore store, long offset, int length)
    {
        var buffer = new byte[length];
        buffer.AsSpan().Fill(0xEE);
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

public sealed class FileBlockStoreConformance : BlockStoreConformance
{
    readonly TempRoot _root = new();
    int _stores;

    protected override IBlockStore NewStore(long length) => FileBlockStore.Create(_root.Combine($"store{++_stores}"), length);

    public override void Dispose()
    {
        base.Dispose();
        _root.Dispose();
    }
}

public sealed class MemoryBlockStoreConformance : BlockStoreConformance
{
    protected override IBlockStore NewStore(long length) => new MemoryBlockStore(length);
}

/// <summary>The crash twin before any crash; <see cref="CrashingBlockStoreTests"/> holds what it promises about one.</summary>
public sealed class CrashingBlockStoreConformance : BlockStoreConformance
{
    protected override IBlockStore NewStore(long length) => new CrashingBlockStore(length, "crashing");
}
