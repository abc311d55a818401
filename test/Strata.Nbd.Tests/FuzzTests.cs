using System.Buffers.Binary;
using System.Net.Sockets;
using Strata.Testing;
using Strata.Thin;

namespace Strata.Nbd.Tests;

/// <summary>
/// Thousands of malformed handshakes and requests against an in-process server over a pool in memory: each
/// may close its own connection, none may take the server down or disturb a well-behaved client working on
/// another connection meanwhile. Seeds are fixed.
/// </summary>
public sealed class FuzzTests : IAsyncLifetime
{
    readonly TempRoot _temp = new();
    readonly ThinPool _pool;
    readonly MemoryBlockStore _metadata = new(8 << 20);
    readonly NbdServer _server;

    public FuzzTests()
    {
        _pool = ThinPool.Create(new MemoryBlockStore(256L << 20), _metadata, options: new PoolOptions { CommitInterval = TimeSpan.Zero, AutoextendThreshold = 100 });
        _pool.CreateDevice("vol", 16 << 20);
        _server = new NbdServer(new TestExports(_pool));
        _server.ListenUnix(Socket);
    }

    string Socket => _temp.Combine("nbd.sock");

    public Task InitializeAsync() => Task.CompletedTask;

    /// <summary>(xunit 2 calls IAsyncLifetime's, not IAsyncDisposable's: as an IAsyncDisposable this never ran, and every
    /// test left its temp directory and a listening socket behind.)</summary>
    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _pool.Dispose();
        _temp.Dispose();
    }

    Socket Connect()
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000, SendTimeout = 10_000 };
        s.Connect(new UnixDomainSocketEndPoint(Socket));
        return s;
    }

    /// <summary>A well-behaved client: handshake with EXPORT_NAME, then a write and a read-back.</summary>
    void GoodClient(int round)
    {
        using var s = Connect();
        var hello = new byte[18];
        TestExports.ReadExactly(s, hello);
        Assert.Equal(0x4e42444d41474943UL, BinaryPrimitives.ReadUInt64BigEndian(hello));
        s.Send([0, 0, 0, 3]);
        var name = "vol"u8.ToArray();
        var opt = new byte[16 + name.Length];
        BinaryPrimitives.WriteUInt64BigEndian(opt, 0x49484156454F5054);
        BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(8), 1); // EXPORT_NAME
        BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(12), (uint)name.Length);
        name.CopyTo(opt, 16);
        s.Send(opt);
        var export = new byte[10];
        TestExports.ReadExactly(s, export);
        Assert.Equal(16UL << 20, BinaryPrimitives.ReadUInt64BigEndian(export));
        var payload = BitConverter.GetBytes((long)round);
        s.Send(Request(1, (ulong)round, 4096, (uint)payload.Length, payload));
        var reply = new byte[16];
        TestExports.ReadExactly(s, reply);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)));
        s.Send(Request(0, (ulong)round + 1, 4096, 8, null));
        TestExports.ReadExactly(s, reply);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)));
        var back = new byte[8];
        TestExports.ReadExactly(s, back);
        Assert.Equal(round, BitConverter.ToInt64(back));
        s.Send(Request(2, 0, 0, 0, null)); // DISC
    }

    static byte[] Request(ushort type, ulong cookie, ulong offset, uint length, byte[]? payload)
    {
        var r = new byte[28 + (payload?.Length ?? 0)];
        BinaryPrimitives.WriteUInt32BigEndian(r, 0x25609513);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(24), length);
        payload?.CopyTo(r, 28);
        return r;
    }

    /// <summary>One hostile connection: a valid start, then random damage somewhere.</summary>
    void BadClient(Random random)
    {
        using var s = Connect();
        try
        {
            var hello = new byte[18];
            TestExports.ReadExactly(s, hello);
            int where = random.Next(4);
            if (where == 3)
            {
                // a proper handshake, then requests with random fields (some with a broken magic, some
                // out of range, some of unknown types), writes with their payloads
                s.Send([0, 0, 0, 3]);
                var name = "vol"u8.ToArray();
                var opt = new byte[16 + name.Length];
                BinaryPrimitives.WriteUInt64BigEndian(opt, 0x49484156454F5054);
                BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(8), 1);
                BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(12), (uint)name.Length);
                name.CopyTo(opt, 16);
                s.Send(opt);
                TestExports.ReadExactly(s, new byte[10]);
                for (int i = 0; i < 8; i++)
                {
                    ushort type = (ushort)random.Next(0, 10);
                    if (type == 2) type = 0; // not DISC: keep going
                    uint length = (uint)(random.Next(3) == 0 ? random.Next() : random.Next(0, 8192));
                    ulong offset = random.Next(3) == 0 ? (ulong)random.NextInt64() : (ulong)random.Next(0, 16 << 20);
                    byte[]? payload = type == 1 && length <= 8192 ? new byte[length] : null;
                    if (type == 1 && payload is null) length = 5; // a write: its payload follows, or the server waits for it
                    var req = Request(type, (ulong)random.NextInt64(), offset, length, type == 1 ? payload ?? new byte[5] : null);
                    if (random.Next(10) == 0) req[random.Next(4)] ^= 0xFF; // a broken magic: the server hangs up
                    s.Send(req);
                }
            }
            else if (where == 0)
            {
                var junk = new byte[random.Next(1, 64)];
                random.NextBytes(junk);
                s.Send(junk); // garbage instead of the client flags
            }
            else
            {
                s.Send([0, 0, 0, 3]);
                var opt = new byte[16];
                BinaryPrimitives.WriteUInt64BigEndian(opt, where == 1 ? (ulong)random.NextInt64() : 0x49484156454F5054);
                BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(8), (uint)random.Next(0, 20));
                BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(12), random.Next(3) == 0 ? (uint)random.Next() : (uint)random.Next(0, 40));
                s.Send(opt);
                var body = new byte[random.Next(0, 40)];
                random.NextBytes(body);
                s.Send(body);
            }
            s.Shutdown(SocketShutdown.Send);
            var sink = new byte[4096];
            while (s.Receive(sink) > 0) { }
        }
        catch (SocketException)
        {
            // the server hung up on us: fine
        }
        catch (EndOfStreamException)
        {
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task MalformedClientsCloseOnlyTheirOwnConnection(int seed)
    {
        var random = new Random(seed);
        var good = Task.Run(() =>
        {
            for (int round = 0; round < 200; round++) GoodClient(round);
        });
        for (int i = 0; i < 1500; i++) BadClient(random);
        await good.WaitAsync(TimeSpan.FromMinutes(2));
        GoodClient(9999); // and it still serves afterwards
        _pool.Commit();
        var report = PoolChecker.Check(_metadata);
        Assert.True(report.Clean, string.Join("; ", report.Errors));
    }
}
