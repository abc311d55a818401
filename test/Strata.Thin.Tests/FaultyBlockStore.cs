using Strata.Block;

namespace Strata.Thin.Tests;

/// <summary>
/// One disk of a multi-disk pool, in memory, that tests make fail the ways disks do, switching each fault on and off
/// at any time from any thread while others do IO: bits that rot, bytes overwritten behind the pool's back, writes
/// acknowledged but lost or torn, IO errors on a range, flushes or writes that fail from the Nth call on, the whole
/// disk gone and back, and power loss (<see cref="Crash"/>, as <see cref="CrashingBlockStore"/> does it).
/// It keeps two images: what reads return, and what was durable at the last flush, with the writes made since in
/// order (a crash keeps any subset of them, one possibly torn at a 512-byte sector). Rot and overwrites change both
/// images and every pending write over their bytes, so every crash keeps them; a lost write reaches neither image
/// (nothing of it is on the medium), a torn one only its prefix. One lock orders every call, so faults switched
/// from one thread take effect between whole operations of the others.
/// </summary>
sealed class FaultyBlockStore(long length, string name) : IBlockStore
{
    const int Sector = 512;
    readonly MemoryBlockStore _durable = new(length, name + " (durable)");
    readonly MemoryBlockStore _current = new(length, name);
    readonly List<(long Offset, byte[] Data)> _pending = [];
    readonly List<(long Offset, long Length, bool Reads, bool Writes)> _failing = [];
    readonly List<(long Offset, long Length)> _losing = [];
    readonly object _lock = new();
    double _loseProbability, _tearProbability;
    Random? _loseRandom, _tearRandom;
    int? _failWritesFrom, _failFlushesFrom;
    bool _gone;

    public string Name => name;
    public long Length => _current.Length;

    // calls and what the faults did to them, for assertions (failed calls count in Reads, Writes and Flushes too)
    public int Reads { get { lock (_lock) return field; } private set; }
    public int Writes { get { lock (_lock) return field; } private set; }
    public int Flushes { get { lock (_lock) return field; } private set; }
    public int ReadErrors { get { lock (_lock) return field; } private set; }
    public int WriteErrors { get { lock (_lock) return field; } private set; }
    public int LostWrites { get { lock (_lock) return field; } private set; }
    public int TornWrites { get { lock (_lock) return field; } private set; }

    /// <summary>Every write from this call number on (see <see cref="Writes"/>) fails with an IO error and changes
    /// nothing (null: never).</summary>
    public int? FailWritesFrom
    {
        get { lock (_lock) return _failWritesFrom; }
        set { lock (_lock) _failWritesFrom = value; }
    }

    /// <summary>Every flush from this call number on (see <see cref="Flushes"/>) fails, leaving its writes pending
    /// (null: never).</summary>
    public int? FailFlushesFrom
    {
        get { lock (_lock) return _failFlushesFrom; }
        set { lock (_lock) _failFlushesFrom = value; }
    }

    public void Read(long offset, Span<byte> buffer)
    {
        lock (_lock)
        {
            Reads++;
            if (_gone) throw ReadError(Gone());
            CheckRange(offset, buffer.Length);
            if (FailingAt(offset, buffer.Length, reads: true) is { } range) throw ReadError(RangeError("reading", offset, buffer.Length, range));
            _current.Read(offset, buffer);
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            Writes++;
            if (_gone) throw WriteError(Gone());
            CheckRange(offset, data.Length);
            if (Writes >= _failWritesFrom) throw WriteError(new IOException($"{name}: simulated write failure at {offset} (write {Writes})"));
            if (FailingAt(offset, data.Length, reads: false) is { } range) throw WriteError(RangeError("writing", offset, data.Length, range));
            if (data.IsEmpty) return;
            if (LosingAt(offset, data.Length) || Draw(_loseProbability, _loseRandom))
            {
                LostWrites++;
                return;
            }
            if (data.Length > Sector && Draw(_tearProbability, _tearRandom))
            {
                data = data[..(Sector * _tearRandom!.Next(1, (data.Length + Sector - 1) / Sector))];
                TornWrites++;
            }
            _current.Write(offset, data);
            _pending.Add((offset, data.ToArray()));
        }
    }

    public void Flush()
    {
        lock (_lock)
        {
            Flushes++;
            if (_gone) throw Gone();
            if (Flushes >= _failFlushesFrom) throw new IOException($"{name}: simulated flush failure (flush {Flushes})");
            foreach (var (offset, data) in _pending) _durable.Write(offset, data);
            _pending.Clear();
        }
    }

    /// <summary>Never lost nor torn; fails as a write would on a failing range.</summary>
    public bool Discard(long offset, long length)
    {
        lock (_lock)
        {
            if (_gone) throw WriteError(Gone());
            CheckRange(offset, length);
            if (FailingAt(offset, length, reads: false) is { } range) throw WriteError(RangeError("discarding", offset, length, range));
            _current.Discard(offset, length);
            // a discard is a write of zeros as far as a crash is concerned
            for (long pos = offset; pos < offset + length; pos += 1 << 20)
                _pending.Add((pos, new byte[Math.Min(1 << 20, offset + length - pos)]));
        }
        return true;
    }

    public bool IsHole(long offset, long length)
    {
        lock (_lock)
        {
            if (_gone) throw Gone();
            return _current.IsHole(offset, length);
        }
    }

    public void Grow(long length)
    {
        lock (_lock)
        {
            if (_gone) throw Gone();
            _current.Grow(length);
            _durable.Grow(length);
        }
    }

    /// <summary>Bit rot: flips <paramref name="count"/> distinct bits chosen at random in the range, in what reads
    /// return and on the medium (every crash keeps them). Returns the bits flipped, as byte offset * 8 + bit.</summary>
    public IReadOnlyList<long> FlipBits(long offset, long length, int count, Random rng)
    {
        lock (_lock)
        {
            CheckRange(offset, length);
            if (count < 0 || count > length * 8)
                throw new ArgumentOutOfRangeException(nameof(count), $"{name}: cannot flip {count} bits in {length} bytes");
            var bits = new SortedSet<long>();
            while (bits.Count < count) bits.Add(offset * 8 + rng.NextInt64(length * 8));
            foreach (long bit in bits) Xor(bit / 8, (byte)(1 << (int)(bit % 8)));
            return [.. bits];
        }
    }

    /// <summary>Overwrites bytes behind the writer's back (dd onto the disk): in what reads return and on the
    /// medium (every crash keeps them).</summary>
    public void Corrupt(long offset, byte[] bytes)
    {
        lock (_lock)
        {
            CheckRange(offset, bytes.Length);
            _current.Write(offset, bytes);
            _durable.Write(offset, bytes);
            foreach (var (at, data) in _pending)
            {
                long from = Math.Max(at, offset), to = Math.Min(at + data.Length, offset + bytes.Length);
                if (from < to) bytes.AsSpan((int)(from - offset), (int)(to - from)).CopyTo(data.AsSpan((int)(from - at)));
            }
        }
    }

    /// <summary>From now on each write is lost with this probability (drawn from <paramref name="rng"/>, which the
    /// store uses under its lock: give it one no other thread uses). 0 stops.</summary>
    public void LoseWrites(double probability, Random rng)
    {
        lock (_lock) (_loseProbability, _loseRandom) = (probability, rng);
    }

    /// <summary>From now on every write that touches the range is lost, whole (with any other ranges given).</summary>
    public void LoseWritesIn(long offset, long length)
    {
        lock (_lock) _losing.Add((offset, length));
    }

    /// <summary>Ends both kinds of lost writes.</summary>
    public void StopLosingWrites()
    {
        lock (_lock)
        {
            _losing.Clear();
            (_loseProbability, _loseRandom) = (0, null);
        }
    }

    /// <summary>From now on each write longer than a sector is torn with this probability: only a prefix of it, a
    /// whole number of sectors (at least one, not all), reaches the disk. Draws from <paramref name="rng"/> as
    /// <see cref="LoseWrites"/> does. 0 stops.</summary>
    public void TearWrites(double probability, Random rng)
    {
        lock (_lock) (_tearProbability, _tearRandom) = (probability, rng);
    }

    /// <summary>From now on reads and/or writes (and discards) that touch the range fail with an IO error and change
    /// nothing.</summary>
    public void FailRange(long offset, long length, bool reads = true, bool writes = true)
    {
        lock (_lock) _failing.Add((offset, length, reads, writes));
    }

    /// <summary>Ends the failures of every range given to <see cref="FailRange"/> that overlaps this one.</summary>
    public void HealRange(long offset, long length)
    {
        lock (_lock) _failing.RemoveAll(r => Overlap(r.Offset, r.Length, offset, length));
    }

    /// <summary>Ends the failures of every range given to <see cref="FailRange"/>.</summary>
    public void HealAll()
    {
        lock (_lock) _failing.Clear();
    }

    /// <summary>The disk is unplugged: every operation but <see cref="Length"/> fails with an IO error.</summary>
    public void Vanish()
    {
        lock (_lock) _gone = true;
    }

    /// <summary>The disk is plugged back, holding what it held, unflushed writes included (to lose those as a pulled
    /// disk's cache might, use <see cref="Crash"/> instead).</summary>
    public void Return()
    {
        lock (_lock) _gone = false;
    }

    /// <summary>Ends every fault: lost and torn writes, failing ranges, failing writes and flushes, a vanished disk.
    /// Rot and overwrites already done stay.</summary>
    public void Disarm()
    {
        lock (_lock)
        {
            StopLosingWrites();
            (_tearProbability, _tearRandom) = (0, null);
            _failing.Clear();
            (_failWritesFrom, _failFlushesFrom, _gone) = (null, null, false);
        }
    }

    /// <summary>The disk as a power loss now could leave it, as a new store with no faults armed and all of it
    /// durable: the image of the last flush plus a random subset of the writes made since, one of them possibly
    /// torn at a sector. This store is unchanged (crash it again for another outcome).</summary>
    public FaultyBlockStore Crash(Random rng)
    {
        lock (_lock)
        {
            var after = new FaultyBlockStore(_durable.Length, name);
            var copy = new byte[1 << 20];
            for (long pos = 0; pos < _durable.Length; pos += copy.Length)
            {
                int n = (int)Math.Min(copy.Length, _durable.Length - pos);
                if (_durable.IsHole(pos, n)) continue;
                _durable.Read(pos, copy.AsSpan(0, n));
                after.Settle(pos, copy.AsSpan(0, n));
            }
            int torn = _pending.Count == 0 ? -1 : rng.Next(_pending.Count);
            for (int i = 0; i < _pending.Count; i++)
            {
                var (offset, data) = _pending[i];
                if (rng.Next(2) == 0) continue; // this one never left the disk's cache
                if (i == torn && data.Length > Sector) after.Settle(offset, data.AsSpan(0, Sector * rng.Next(1, (data.Length + Sector - 1) / Sector)));
                else after.Settle(offset, data);
            }
            return after;
        }
    }

    public void Dispose() { }

    /// <summary>Puts bytes on the medium and in what reads return, as a flushed write would.</summary>
    void Settle(long offset, ReadOnlySpan<byte> data)
    {
        _current.Write(offset, data);
        _durable.Write(offset, data);
    }

    /// <summary>Flips bits of one byte in both images and in every pending write over it, so that whichever of
    /// them a crash keeps, the byte reads flipped.</summary>
    void Xor(long at, byte mask)
    {
        Span<byte> one = stackalloc byte[1];
        foreach (var image in (MemoryBlockStore[])[_current, _durable])
        {
            image.Read(at, one);
            one[0] ^= mask;
            image.Write(at, one);
        }
        foreach (var (offset, data) in _pending)
            if (at >= offset && at < offset + data.Length) data[at - offset] ^= mask;
    }

    bool LosingAt(long offset, long length) => _losing.Exists(r => Overlap(r.Offset, r.Length, offset, length));

    bool Draw(double probability, Random? rng) => probability > 0 && rng!.NextDouble() < probability;

    (long Offset, long Length)? FailingAt(long offset, long length, bool reads)
    {
        foreach (var r in _failing)
            if ((reads ? r.Reads : r.Writes) && Overlap(r.Offset, r.Length, offset, length)) return (r.Offset, r.Length);
        return null;
    }

    static bool Overlap(long a, long aLength, long b, long bLength) => a < b + bLength && b < a + aLength && aLength > 0 && bLength > 0;

    IOException RangeError(string doing, long offset, long length, (long Offset, long Length) range) =>
        new($"{name}: simulated IO error {doing} {length} bytes at {offset} (failing range {range.Offset}+{range.Length})");

    IOException Gone() => new($"{name}: disk is gone");

    IOException ReadError(IOException error)
    {
        ReadErrors++;
        return error;
    }

    IOException WriteError(IOException error)
    {
        WriteErrors++;
        return error;
    }

    void CheckRange(long offset, long count)
    {
        if (offset < 0 || count < 0 || offset + count > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{name}: {count} bytes at {offset} are outside its {Length} bytes");
    }
}
