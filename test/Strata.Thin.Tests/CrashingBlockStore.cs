using Strata.Block;

namespace Strata.Thin.Tests;

/// <summary>
/// A block store that simulates power loss. It keeps what was durable at the last flush and the writes made
/// since, in order; <see cref="Crash"/> returns a new store holding the durable image plus, at random, some of
/// the unflushed writes (any subset: a disk cache may write back in any order), one of them possibly torn at a
/// 512-byte sector boundary. Writes and flushes can also be made to fail from the Nth call on, as a dying disk
/// would (or as power failing at that moment looks to the writer).
/// </summary>
sealed class CrashingBlockStore(long length, string name) : IBlockStore
{
    readonly MemoryBlockStore _durable = new(length, name + " (durable)");
    readonly MemoryBlockStore _current = new(length, name);
    readonly List<(long Offset, byte[] Data)> _pending = [];
    readonly object _lock = new();

    public string Name => name;
    public long Length => _current.Length;
    public int Writes { get; private set; }
    public int Flushes { get; private set; }

    /// <summary>Every write from this call number on fails with an IO error (null: never).</summary>
    public int? FailWritesFrom { get; set; }

    /// <summary>Every flush from this call number on fails, leaving its writes pending (null: never).</summary>
    public int? FailFlushesFrom { get; set; }

    public void Read(long offset, Span<byte> buffer) => _current.Read(offset, buffer);

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            Writes++;
            if (Writes >= FailWritesFrom) throw new IOException($"{name}: simulated write failure (write {Writes})");
            _current.Write(offset, data);
            _pending.Add((offset, data.ToArray()));
        }
    }

    public void Flush()
    {
        lock (_lock)
        {
            Flushes++;
            if (Flushes >= FailFlushesFrom) throw new IOException($"{name}: simulated flush failure (flush {Flushes})");
            foreach (var (offset, data) in _pending) _durable.Write(offset, data);
            _pending.Clear();
        }
    }

    public bool Discard(long offset, long length)
    {
        // a discard is a write of zeros as far as a crash is concerned
        lock (_lock)
        {
            _current.Discard(offset, length);
            for (long pos = offset; pos < offset + length; pos += 1 << 20)
                _pending.Add((pos, new byte[Math.Min(1 << 20, offset + length - pos)]));
        }
        return true;
    }

    public bool IsHole(long offset, long length) => _current.IsHole(offset, length);

    public void Grow(long length)
    {
        lock (_lock)
        {
            _current.Grow(length);
            _durable.Grow(length);
        }
    }

    /// <summary>The store as a power loss now could leave it.</summary>
    public MemoryBlockStore Crash(Random random)
    {
        lock (_lock)
        {
            var after = new MemoryBlockStore(_durable.Length, name);
            var copy = new byte[1 << 20];
            for (long pos = 0; pos < _durable.Length; pos += copy.Length)
            {
                int n = (int)Math.Min(copy.Length, _durable.Length - pos);
                _durable.Read(pos, copy.AsSpan(0, n));
                if (copy.AsSpan(0, n).IndexOfAnyExcept((byte)0) >= 0) after.Write(pos, copy.AsSpan(0, n));
            }
            int torn = _pending.Count == 0 ? -1 : random.Next(_pending.Count);
            for (int i = 0; i < _pending.Count; i++)
            {
                var (offset, data) = _pending[i];
                if (random.Next(2) == 0) continue; // this one never reached the disk
                if (i == torn && data.Length > 512)
                {
                    int sectors = random.Next(1, data.Length / 512);
                    after.Write(offset, data.AsSpan(0, sectors * 512));
                }
                else after.Write(offset, data);
            }
            return after;
        }
    }

    public void Dispose() { }
}
