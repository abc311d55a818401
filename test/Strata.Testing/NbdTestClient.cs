using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Strata.Testing;

/// <summary>A minimal NBD client for tests that must know exactly which requests completed when (the real
/// clients do not say): fixed newstyle, EXPORT_NAME, simple replies, one request at a time.</summary>
public sealed class NbdTestClient : IDisposable
{
    const ulong NbdMagic = 0x4e42444d41474943, IHaveOpt = 0x49484156454F5054;
    const uint RequestMagic = 0x25609513, SimpleReplyMagic = 0x67446698;
    readonly Socket _socket;
    ulong _cookie;

    public long Size { get; }

    public NbdTestClient(string socketPath, string export)
    {
        _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 60_000, SendTimeout = 60_000 };
        try
        {
            _socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            var hello = new byte[18];
            ReadExactly(hello);
            if (BinaryPrimitives.ReadUInt64BigEndian(hello) != NbdMagic || BinaryPrimitives.ReadUInt64BigEndian(hello.AsSpan(8)) != IHaveOpt)
                throw new InvalidDataException("not an NBD newstyle server");
            _socket.Send([0, 0, 0, 3]); // FIXED_NEWSTYLE | NO_ZEROES
            var name = Encoding.UTF8.GetBytes(export);
            var option = new byte[16 + name.Length];
            BinaryPrimitives.WriteUInt64BigEndian(option, IHaveOpt);
            BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(8), 1); // EXPORT_NAME
            BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(12), (uint)name.Length);
            name.CopyTo(option, 16);
            _socket.Send(option);
            var reply = new byte[10];
            ReadExactly(reply);
            Size = (long)BinaryPrimitives.ReadUInt64BigEndian(reply);
        }
        catch
        {
            _socket.Dispose();
            throw;
        }
    }

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>; returns the NBD error (0: done).</summary>
    public uint Write(long offset, ReadOnlySpan<byte> data, bool fua = false)
    {
        Send(1, fua ? (ushort)1 : (ushort)0, offset, (uint)data.Length, data);
        return Reply(default);
    }

    public uint Read(long offset, Span<byte> data)
    {
        Send(0, 0, offset, (uint)data.Length, default);
        return Reply(data);
    }

    public uint Flush()
    {
        Send(3, 0, 0, 0, default);
        return Reply(default);
    }

    public uint Trim(long offset, uint length)
    {
        Send(4, 0, offset, length, default);
        return Reply(default);
    }

    void Send(ushort type, ushort flags, long offset, uint length, ReadOnlySpan<byte> payload)
    {
        var request = new byte[28 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(request, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), ++_cookie);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), length);
        payload.CopyTo(request.AsSpan(28));
        for (int sent = 0; sent < request.Length;) sent += _socket.Send(request, sent, request.Length - sent, SocketFlags.None);
    }

    uint Reply(Span<byte> data)
    {
        var reply = new byte[16];
        ReadExactly(reply);
        if (BinaryPrimitives.ReadUInt32BigEndian(reply) != SimpleReplyMagic) throw new InvalidDataException("not a simple reply");
        if (BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)) != _cookie) throw new InvalidDataException("a reply to another request");
        uint error = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4));
        if (error == 0) ReadExactly(data);
        return error;
    }

    void ReadExactly(Span<byte> buffer)
    {
        for (int done = 0; done < buffer.Length;)
        {
            int n = _socket.Receive(buffer[done..]);
            if (n == 0) throw new EndOfStreamException("the NBD server closed the connection");
            done += n;
        }
    }

    public void Dispose()
    {
        try
        {
            Send(2, 0, 0, 0, default); // DISC
        }
        catch (SocketException)
        {
        }
        _socket.Dispose();
    }
}
