using System.Buffers.Binary;
using System.Net.Sockets;
using Strata.Testing;
using Strata.Thin;

namespace Strata.Nbd.Tests;

/// <summary>
/// The replies a structured-reply client gets, chunk by chunk (the real clients in the integration tests only
/// say whether the bytes came out right): reads as OFFSET_DATA and OFFSET_HOLE chunks that tile the range,
/// errors as ERROR chunks, and a burst of requests followed by DISC all answered before the server hangs up,
/// over a memory device ("mem"); and over a thin device ("vol"), FAST_ZERO refused where zeroing is slow,
/// ENOSPC at once when the pool is full, and no allocation per request on the whole path.
/// </summary>
[Collection(Alone.Name)]
public sealed class ProtocolTests : IAsyncLifetime
{
    const int BlockSize = 64 * 1024;
    readonly TempRoot _temp = new();
    readonly ThinPool _pool;
    readonly MemoryExports _memory = new();
    readonly NbdServer _server;

    public ProtocolTests()
    {
        // a small pool: 64 data blocks of 64 KiB, for the pool-full case
        _pool = ThinPool.Create(new MemoryBlockStore(64L * BlockSize), new MemoryBlockStore(8 << 20),
            options: new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 });
        _pool.CreateDevice("vol", 16 << 20);
        _memory.Add("mem", 16 << 20, BlockSize);
        _server = new NbdServer(new TestExports(_pool, _memory));
        _server.ListenUnix(_temp.Combine("nbd.sock"));
    }

    public Task InitializeAsync() => Task.CompletedTask;

    /// <summary>(xunit 2 calls IAsyncLifetime's, not IAsyncDisposable's: as an IAsyncDisposable this never ran, and every
    /// test left its temp directory and a listening socket behind.)</summary>
    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _pool.Dispose();
        _temp.Dispose();
    }

    sealed record Chunk(ushort Flags, ushort Type, ulong Cookie, byte[] Payload);

    /// <summary>A client that negotiated structured replies, then EXPORT_NAME <paramref name="export"/>.</summary>
    Socket Connect(string export = "vol")
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 20_000 };
        s.Connect(new UnixDomainSocketEndPoint(_temp.Combine("nbd.sock")));
        TestExports.ReadExactly(s, new byte[18]);
        s.Send([0, 0, 0, 3]);
        s.Send(Option(8, [])); // STRUCTURED_REPLY
        var reply = new byte[20];
        TestExports.ReadExactly(s, reply);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(12))); // ACK
        s.Send(Option(1, System.Text.Encoding.UTF8.GetBytes(export)));
        TestExports.ReadExactly(s, new byte[10]);
        return s;
    }

    static byte[] Option(uint option, byte[] data)
    {
        var o = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(o, 0x49484156454F5054);
        BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(12), (uint)data.Length);
        data.CopyTo(o, 16);
        return o;
    }

    static void Send(Socket s, ushort type, ushort flags, ulong cookie, long offset, uint length, byte[]? payload = null)
    {
        var r = new byte[28 + (payload?.Length ?? 0)];
        BinaryPrimitives.WriteUInt32BigEndian(r, 0x25609513);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(16), (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(24), length);
        payload?.CopyTo(r, 28);
        s.Send(r);
    }

    static Chunk ReadChunk(Socket s)
    {
        var h = new byte[20];
        TestExports.ReadExactly(s, h);
        Assert.Equal(0x668e33efu, BinaryPrimitives.ReadUInt32BigEndian(h));
        var payload = new byte[BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16))];
        TestExports.ReadExactly(s, payload);
        return new Chunk(BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(4)), BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(6)), BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8)), payload);
    }

    /// <summary>Every chunk of one request's reply, up to the one flagged DONE.</summary>
    static List<Chunk> ReadReply(Socket s, ulong cookie)
    {
        var chunks = new List<Chunk>();
        do
        {
            chunks.Add(ReadChunk(s));
            Assert.Equal(cookie, chunks[^1].Cookie);
        }
        while ((chunks[^1].Flags & 1) == 0);
        return chunks;
    }

    static uint Error(List<Chunk> reply) =>
        reply.Count == 1 && reply[0].Type == 0x8001 ? BinaryPrimitives.ReadUInt32BigEndian(reply[0].Payload) : 0;

    [Fact]
    public void AReadOverDataAndHolesComesAsDataAndHoleChunksThatTileIt()
    {
        using var s = Connect("mem");
        var pattern = new byte[BlockSize];
        new Random(3).NextBytes(pattern);
        Send(s, 1, 0, 1, BlockSize, BlockSize, pattern); // block 1
        Assert.Equal(0u, Error(ReadReply(s, 1)));
        Send(s, 1, 0, 2, 3L * BlockSize + 4096, 4096, pattern[..4096]); // part of block 3
        Assert.Equal(0u, Error(ReadReply(s, 2)));

        // [0, 5 blocks): hole, data, hole, data (block 3 all: its unwritten parts read as zeros), hole
        Send(s, 0, 0, 3, 0, 5 * BlockSize);
        var chunks = ReadReply(s, 3);
        var image = new byte[5 * BlockSize];
        var covered = new bool[5 * BlockSize];
        var kinds = new List<(ushort Type, long Offset)>();
        foreach (var c in chunks)
        {
            long offset = (long)BinaryPrimitives.ReadUInt64BigEndian(c.Payload);
            kinds.Add((c.Type, offset));
            int length = c.Type == 1 ? c.Payload.Length - 8 : (int)BinaryPrimitives.ReadUInt32BigEndian(c.Payload.AsSpan(8));
            Assert.True(c.Type is 1 or 2, $"chunk type {c.Type} in a read");
            for (long i = offset; i < offset + length; i++)
            {
                Assert.False(covered[i], $"byte {i} in two chunks");
                covered[i] = true;
            }
            if (c.Type == 1) c.Payload.AsSpan(8).CopyTo(image.AsSpan((int)offset));
        }
        Assert.All(covered, Assert.True);
        Assert.Equal([(2, 0L), (1, BlockSize), (2, 2L * BlockSize), (1, 3L * BlockSize), (2, 4L * BlockSize)], kinds);
        Assert.True(image.AsSpan(BlockSize, BlockSize).SequenceEqual(pattern));
        Assert.True(image.AsSpan(3 * BlockSize + 4096, 4096).SequenceEqual(pattern.AsSpan(0, 4096)));
        Assert.True(image.AsSpan(3 * BlockSize, 4096).IndexOfAnyExcept((byte)0) < 0 && image.AsSpan(3 * BlockSize + 8192).IndexOfAnyExcept((byte)0) < 0,
            "the unwritten parts of block 3 do not read as zeros");

        // a read wholly in a hole is one HOLE chunk; an out-of-range read is an ERROR chunk with EINVAL
        Send(s, 0, 0, 4, 8L * BlockSize, 4096);
        var hole = ReadReply(s, 4);
        Assert.Equal(2, Assert.Single(hole).Type);
        Send(s, 0, 0, 5, 16 << 20, 4096);
        Assert.Equal(22u, Error(ReadReply(s, 5)));
    }

    [Fact]
    public void FastZeroIsRefusedOnlyWhereZeroingWouldWrite()
    {
        using var s = Connect();
        const ushort noHole = 1 << 1, fastZero = 1 << 4;
        Send(s, 6, (ushort)(noHole | fastZero), 1, 0, BlockSize); // allocated zeros must be written: not fast
        Assert.Equal(95u, Error(ReadReply(s, 1)));
        Send(s, 6, fastZero, 2, 0, BlockSize); // unmapping is
        Assert.Equal(0u, Error(ReadReply(s, 2)));
        Send(s, 6, noHole, 3, 0, BlockSize);
        Assert.Equal(0u, Error(ReadReply(s, 3)));
        Assert.Equal(1UL, _pool.Devices().Single().Mapped);
    }

    [Fact]
    public void AWriteToAFullPoolFailsWithEnospcAtOnceAndTheConnectionGoesOn()
    {
        using var s = Connect();
        var block = new byte[BlockSize];
        ulong cookie = 0;
        uint error = 0;
        int written = 0;
        while (error == 0 && written < 100)
        {
            Send(s, 1, 0, ++cookie, (long)written * BlockSize, BlockSize, block);
            error = Error(ReadReply(s, cookie));
            if (error == 0) written++;
        }
        Assert.Equal(28u, error); // ENOSPC
        Assert.InRange(written, 60, 64);
        Send(s, 0, 0, ++cookie, 0, 4096);
        Assert.Equal(0u, Error(ReadReply(s, cookie))); // reads still work
        Send(s, 4, 0, ++cookie, 0, BlockSize); // trim frees a block (with the next commit)
        Assert.Equal(0u, Error(ReadReply(s, cookie)));
        Send(s, 1, 0, ++cookie, (long)written * BlockSize, BlockSize, block);
        Assert.Equal(0u, Error(ReadReply(s, cookie)));
    }

    [Fact]
    public void RequestsSentBeforeDiscAreAllAnswered()
    {
        using var s = Connect("mem");
        var data = new byte[4096];
        for (ulong i = 1; i <= 200; i++)
        {
            data[0] = (byte)i;
            Send(s, 1, 0, i, (long)(i % 64) * 4096, 4096, data);
        }
        Send(s, 2, 0, 0, 0, 0); // DISC
        var answered = new HashSet<ulong>();
        for (int i = 0; i < 200; i++)
        {
            var c = ReadChunk(s);
            Assert.Equal(0, c.Type); // NONE: done
            Assert.True(answered.Add(c.Cookie));
        }
        Assert.Equal(0, s.Receive(new byte[1])); // then the server hangs up
    }

    /// <summary>The read and write paths allocate nothing per request (requests, reply headers and buffers are
    /// pooled): 4 KiB reads and in-place writes, pipelined 16 deep, with a client that allocates nothing itself.
    /// Measured as bytes allocated by the whole process per request, after a warm-up.</summary>
    [Fact]
    public void ReadsAndWritesAllocateNothingPerRequest()
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 20_000 };
        s.Connect(new UnixDomainSocketEndPoint(_temp.Combine("nbd.sock")));
        TestExports.ReadExactly(s, new byte[18]);
        s.Send([0, 0, 0, 3]);
        s.Send(Option(1, "vol"u8.ToArray())); // EXPORT_NAME, simple replies
        TestExports.ReadExactly(s, new byte[10]);
        const int depth = 16;
        var writes = new byte[depth * (28 + 4096)];
        var reads = new byte[depth * 28];
        for (int i = 0; i < depth; i++)
        {
            var w = writes.AsSpan(i * (28 + 4096));
            BinaryPrimitives.WriteUInt32BigEndian(w, 0x25609513);
            BinaryPrimitives.WriteUInt16BigEndian(w[6..], 1);
            BinaryPrimitives.WriteUInt64BigEndian(w[8..], (ulong)i);
            BinaryPrimitives.WriteUInt64BigEndian(w[16..], (ulong)i * 4096);
            BinaryPrimitives.WriteUInt32BigEndian(w[24..], 4096);
            var r = reads.AsSpan(i * 28);
            BinaryPrimitives.WriteUInt32BigEndian(r, 0x25609513);
            BinaryPrimitives.WriteUInt64BigEndian(r[8..], (ulong)(depth + i));
            BinaryPrimitives.WriteUInt64BigEndian(r[16..], (ulong)i * 4096);
            BinaryPrimitives.WriteUInt32BigEndian(r[24..], 4096);
        }
        var replies = new byte[depth * (16 + 4096)];
        void Round()
        {
            s.Send(writes);
            TestExports.ReadExactly(s, replies.AsSpan(0, depth * 16));
            s.Send(reads);
            TestExports.ReadExactly(s, replies.AsSpan(0, depth * (16 + 4096)));
        }
        for (int i = 0; i < 200; i++) Round(); // warm-up: pools filled, blocks mapped, code compiled
        const int rounds = 1000;
        long before = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < rounds; i++) Round();
        long perRequest = (GC.GetTotalAllocatedBytes(precise: true) - before) / (rounds * 2L * depth);
        s.Send(new byte[28] { 0x25, 0x60, 0x95, 0x13, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }); // DISC
        s.Dispose();
        Assert.True(perRequest < 64, $"{perRequest} bytes allocated per request");
    }
}

/// <summary>Tests that count the whole process's allocations run after the others, alone.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class Alone
{
    public const string Name = "alone";
}
