using Strata.Native;
using Xunit.Abstractions;

namespace Strata.Thin.Tests;

/// <summary>
/// Random sequences of device creates, snapshots, deletes, resizes, writes, discards, write-zeroes, reads,
/// commits and reopens against a model that keeps every device's bytes in an array: every read must match the
/// model, and the pool's check must be clean after every commit. Seeds are fixed and printed; a failure names
/// the seed and the step.
/// </summary>
public sealed class ModelTests(ITestOutputHelper output)
{
    const int Bs = (int)ThinPool.MinBlockSize;

    /// <summary>A device's bytes, by block; a block's array is never changed once stored (a write stores a new
    /// one), so a snapshot is a copy of the dictionary.</summary>
    sealed class Bytes(long length)
    {
        public long Length = length;
        public Dictionary<long, byte[]> Blocks = [];

        public Bytes Clone() => new(Length) { Blocks = new(Blocks) };

        public void Write(long offset, ReadOnlySpan<byte> data)
        {
            for (int done = 0; done < data.Length;)
            {
                long block = (offset + done) / Bs;
                int at = (int)((offset + done) % Bs), n = Math.Min(Bs - at, data.Length - done);
                var next = Blocks.TryGetValue(block, out var old) ? (byte[])old.Clone() : new byte[Bs];
                data.Slice(done, n).CopyTo(next.AsSpan(at));
                if (next.AsSpan().IndexOfAnyExcept((byte)0) < 0) Blocks.Remove(block);
                else Blocks[block] = next;
                done += n;
            }
        }

        public void Read(long offset, Span<byte> buffer)
        {
            for (int done = 0; done < buffer.Length;)
            {
                long block = (offset + done) / Bs;
                int at = (int)((offset + done) % Bs), n = Math.Min(Bs - at, buffer.Length - done);
                if (Blocks.TryGetValue(block, out var bytes)) bytes.AsSpan(at, n).CopyTo(buffer.Slice(done, n));
                else buffer.Slice(done, n).Clear();
                done += n;
            }
        }

        public bool ZeroIn(long offset, long length)
        {
            var buffer = new byte[length];
            Read(offset, buffer);
            return buffer.AsSpan().IndexOfAnyExcept((byte)0) < 0;
        }
    }

    sealed class Model
    {
        public readonly Dictionary<string, Bytes> Devices = [];
    }

    /// <summary>Small devices (trees of one leaf, much sharing) and large ones (trees of several levels: a leaf
    /// holds 254 mappings) with sparse writes across them.</summary>
    [Theory]
    [InlineData(1, 1500, 24)]
    [InlineData(2, 1500, 24)]
    [InlineData(3, 1500, 24)]
    [InlineData(4, 1500, 24)]
    [InlineData(5, 1500, 24)]
    [InlineData(6, 1500, 24)]
    [InlineData(11, 1500, 4000)]
    [InlineData(12, 1500, 4000)]
    [InlineData(13, 1500, 70000)]
    public void RandomOperationsMatchTheModel(int seed, int steps, int maxBlocks)
    {
        output.WriteLine($"seed {seed}, {steps} steps, devices of up to {maxBlocks} blocks");
        var random = new Random(seed);
        var data = new MemoryBlockStore(Math.Max(2048L, maxBlocks * 4L) * Bs, "data");
        var metadata = new MemoryBlockStore(8L << 20, "metadata");
        var pool = ThinPool.Create(data, metadata, options: new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 });
        var model = new Model();
        int step = 0;
        string last = "";
        try
        {
            for (step = 0; step < steps; step++)
            {
                int op = random.Next(100);
                var names = model.Devices.Keys.Order(StringComparer.Ordinal).ToList();
                string? some = names.Count == 0 ? null : names[random.Next(names.Count)];
                if (op < 6 || some is null)
                {
                    if (model.Devices.Count >= 10) continue;
                    string name = "d" + step;
                    long size = random.Next(1, maxBlocks) * (long)Bs + (random.Next(3) == 0 ? random.Next(1, Bs) : 0);
                    last = $"create {name} {size}";
                    pool.CreateDevice(name, size);
                    model.Devices[name] = new Bytes(size);
                }
                else if (op < 12)
                {
                    if (model.Devices.Count >= 10) continue;
                    string name = "s" + step;
                    last = $"snapshot {some} {name}";
                    pool.Snapshot(some, name);
                    model.Devices[name] = model.Devices[some].Clone();
                }
                else if (op < 15)
                {
                    last = $"delete {some}";
                    pool.DeleteDevice(some);
                    model.Devices.Remove(some);
                }
                else if (op < 17)
                {
                    var bytes = model.Devices[some];
                    long size = bytes.Length + random.Next(0, 3 * Bs);
                    last = $"resize {some} {size}";
                    pool.ResizeDevice(some, size);
                    bytes.Length = size;
                }
                else if (op < 55)
                {
                    var bytes = model.Devices[some];
                    var (offset, length) = Range(random, bytes.Length);
                    var payload = new byte[length];
                    random.NextBytes(payload);
                    bool fua = random.Next(20) == 0;
                    last = $"write {some} {offset}+{length}{(fua ? " fua" : "")}";
                    using (var dev = pool.OpenDevice(some)) dev.Write(offset, payload, fua);
                    bytes.Write(offset, payload);
                }
                else if (op < 62)
                {
                    var bytes = model.Devices[some];
                    var (offset, length) = Range(random, bytes.Length);
                    bool zeroes = random.Next(2) == 0;
                    last = $"{(zeroes ? "write-zeroes" : "discard")} {some} {offset}+{length}";
                    using (var dev = pool.OpenDevice(some))
                        if (zeroes) dev.WriteZeroes(offset, length);
                        else dev.Discard(offset, length);
                    bytes.Write(offset, new byte[length]);
                }
                else if (op < 90)
                {
                    var bytes = model.Devices[some];
                    var (offset, length) = Range(random, bytes.Length);
                    last = $"read {some} {offset}+{length}";
                    var got = new byte[length];
                    using (var dev = pool.OpenDevice(some)) dev.Read(offset, got);
                    var want = new byte[length];
                    bytes.Read(offset, want);
                    int diff = got.AsSpan().CommonPrefixLength(want);
                    Assert.True(diff == length, $"seed {seed} step {step} ({last}): byte {offset + diff} differs from the model");
                    using (var dev = pool.OpenDevice(some))
                    {
                        // every byte outside the allocated ranges must read as zero
                        long at = offset;
                        foreach (var (o, l) in dev.Allocated(offset, length))
                        {
                            Assert.True(o >= at, $"seed {seed} step {step}: allocated ranges out of order");
                            Assert.True(bytes.ZeroIn(at, o - at), $"seed {seed} step {step}: data outside the allocated ranges");
                            at = o + l;
                        }
                        Assert.True(bytes.ZeroIn(at, offset + length - at), $"seed {seed} step {step}: data past the allocated ranges");
                    }
                }
                else if (op < 96)
                {
                    last = "commit + check";
                    pool.Commit();
                    AssertClean(PoolChecker.Check(metadata), seed, step);
                    CheckCounts(pool, model, seed, step);
                }
                else
                {
                    last = "reopen";
                    pool.Dispose();
                    pool = ThinPool.Open(data, metadata, new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 });
                    Assert.Equal(model.Devices.Keys.Order(StringComparer.Ordinal), pool.Devices().Select(d => d.Name).Order(StringComparer.Ordinal));
                }
            }
            pool.Commit();
            AssertClean(PoolChecker.Check(metadata), seed, step);
            // everything reads back after a final reopen
            pool.Dispose();
            pool = ThinPool.Open(data, metadata, new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 });
            foreach (var (name, bytes) in model.Devices)
            {
                using var dev = pool.OpenDevice(name);
                Assert.Equal(bytes.Length, dev.Size);
                var got = new byte[Bs];
                var want = new byte[Bs];
                for (long at = 0; at < bytes.Length; at += Bs)
                {
                    int n = (int)Math.Min(Bs, bytes.Length - at);
                    dev.Read(at, got.AsSpan(0, n));
                    bytes.Read(at, want.AsSpan(0, n));
                    Assert.True(got.AsSpan(0, n).SequenceEqual(want.AsSpan(0, n)), $"seed {seed}: device {name} differs from the model at {at} after reopening");
                }
            }
            output.WriteLine($"devices at the end: {string.Join(", ", pool.Devices().Select(d => $"{d.Name} mapped {d.Mapped} excl {d.Exclusive}"))}; {pool.Status()}");
        }
        catch (Exception ex) when (ex is StrataException or InvalidOperationException or ArgumentException or NullReferenceException or IndexOutOfRangeException)
        {
            throw new Exception($"seed {seed} step {step} ({last}): {ex.Message}", ex);
        }
        finally
        {
            pool.Dispose();
        }
    }

    static (long Offset, int Length) Range(Random random, long size)
    {
        // mostly small pieces near block edges, sometimes whole blocks, sometimes several blocks
        int length = random.Next(4) switch
        {
            0 => random.Next(1, 4097),
            1 => Bs,
            2 => random.Next(1, 3 * Bs),
            _ => random.Next(1, 512),
        };
        length = (int)Math.Min(length, size);
        long offset = random.Next(3) == 0 ? random.NextInt64(0, size / Bs + 1) * Bs : random.NextInt64(0, size);
        if (offset + length > size) offset = size - length;
        return (offset, length);
    }

    static void AssertClean(CheckReport report, int seed, int step) =>
        Assert.True(report.Clean, $"seed {seed} step {step}: check found {string.Join("; ", report.Errors.Concat(report.Leaks).Take(5))}");

    /// <summary>Each device maps exactly the blocks whose model bytes are not all zero, or more (a block written
    /// with zeros stays mapped): never fewer.</summary>
    static void CheckCounts(ThinPool pool, Model model, int seed, int step)
    {
        foreach (var d in pool.Devices())
        {
            ulong nonZero = (ulong)model.Devices[d.Name].Blocks.Count;
            Assert.True(d.Mapped >= nonZero, $"seed {seed} step {step}: {d.Name} maps {d.Mapped} blocks, fewer than the {nonZero} that hold data");
            Assert.Equal(d.Mapped, d.Exclusive + d.Shared);
        }
    }
}
