// FUSE requests as the kernel writes them and replies as it reads them, built byte by byte from linux/fuse.h for
// tests that talk to FuseFileSystem without a kernel (independent of the export's own codec).
using System.Buffers.Binary;
using System.Text;

namespace Strata.Fuse.Tests;

/// <summary>A reply: fuse_out_header (len, error as a negated errno, unique) and the body after it.</summary>
sealed record FuseAnswer(int Errno, ulong Unique, byte[] Body)
{
    public uint U32(int at) => BinaryPrimitives.ReadUInt32LittleEndian(Body.AsSpan(at));
    public ulong U64(int at) => BinaryPrimitives.ReadUInt64LittleEndian(Body.AsSpan(at));
}

/// <summary>Requests by opcode, with the body layouts of linux/fuse.h; and <see cref="Send"/>, which answers one.</summary>
sealed class FuseRequests(FuseFileSystem fileSystem)
{
    public const uint Lookup = 1, Forget = 2, GetAttr = 3, SetAttr = 4, Open = 14, Read = 15, Write = 16, StatFs = 17, Release = 18,
        Fsync = 20, Flush = 25, Init = 26, OpenDir = 27, ReadDir = 28, ReleaseDir = 29, FsyncDir = 30, Interrupt = 36, Destroy = 38,
        BatchForget = 42, Fallocate = 43;

    public const int ORdOnly = 0, OWrOnly = 1, ORdWr = 2;
    public const int KeepSize = 0x01, PunchHole = 0x02, CollapseRange = 0x08, ZeroRange = 0x10;
    public const ulong Root = 1;

    readonly byte[] _reply = new byte[FuseWire.BufferSize];
    ulong _unique = 100;

    /// <summary>The whole request: fuse_in_header (len 4, opcode 4, unique 8, nodeid 8, uid, gid, pid, padding) then
    /// <paramref name="body"/>; <paramref name="length"/> overrides the header's len.</summary>
    public static byte[] Message(uint opcode, ulong unique, ulong node, ReadOnlySpan<byte> body, uint? length = null)
    {
        var m = new byte[40 + body.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(m, length ?? (uint)m.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(4), opcode);
        BinaryPrimitives.WriteUInt64LittleEndian(m.AsSpan(8), unique);
        BinaryPrimitives.WriteUInt64LittleEndian(m.AsSpan(16), node);
        body.CopyTo(m.AsSpan(40));
        return m;
    }

    /// <summary>Answers <paramref name="message"/>; null when the request takes no reply. Checks the header's
    /// length against what came back.</summary>
    public FuseAnswer? SendRaw(ReadOnlySpan<byte> message)
    {
        int n = fileSystem.Answer(message, _reply);
        if (n == 0) return null;
        Assert.InRange(n, 16, _reply.Length);
        Assert.Equal((uint)n, BinaryPrimitives.ReadUInt32LittleEndian(_reply));
        int error = -BinaryPrimitives.ReadInt32LittleEndian(_reply.AsSpan(4));
        Assert.InRange(error, 0, 4095);
        if (error != 0) Assert.Equal(16, n); // an error carries no body
        return new FuseAnswer(error, BinaryPrimitives.ReadUInt64LittleEndian(_reply.AsSpan(8)), _reply.AsSpan(16, n - 16).ToArray());
    }

    public FuseAnswer? Send(uint opcode, ulong node, ReadOnlySpan<byte> body)
    {
        ulong unique = ++_unique;
        var answer = SendRaw(Message(opcode, unique, node, body));
        if (answer is not null) Assert.Equal(unique, answer.Unique);
        return answer;
    }

    public FuseAnswer Call(uint opcode, ulong node, ReadOnlySpan<byte> body) =>
        Send(opcode, node, body) ?? throw new Xunit.Sdk.XunitException($"opcode {opcode} got no reply");

    /// <summary>fuse_init_in, 64 bytes as kernels since 7.36 send it: major, minor, max_readahead, flags.</summary>
    public static byte[] InitIn(uint major, uint minor, uint flags = 0xFFFFFFFF, uint readahead = 128 * 1024)
    {
        var b = new byte[64];
        BinaryPrimitives.WriteUInt32LittleEndian(b, major);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), minor);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), readahead);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), flags);
        return b;
    }

    public static byte[] Name(string name) => [.. Encoding.UTF8.GetBytes(name), 0];

    /// <summary>fuse_open_in: flags, open_flags.</summary>
    public static byte[] OpenIn(int flags)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteInt32LittleEndian(b, flags);
        return b;
    }

    /// <summary>fuse_read_in: fh, offset, size, read_flags, lock_owner, flags, padding (40 bytes).</summary>
    public static byte[] ReadIn(ulong fh, ulong offset, uint size)
    {
        var b = new byte[40];
        BinaryPrimitives.WriteUInt64LittleEndian(b, fh);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), offset);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), size);
        return b;
    }

    /// <summary>fuse_write_in (40 bytes) and the data; <paramref name="size"/> overrides the announced size.</summary>
    public static byte[] WriteIn(ulong fh, ulong offset, ReadOnlySpan<byte> data, uint? size = null)
    {
        var b = new byte[40 + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(b, fh);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), offset);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), size ?? (uint)data.Length);
        data.CopyTo(b.AsSpan(40));
        return b;
    }

    /// <summary>fuse_fsync_in (16 bytes) or fuse_release_in (24 bytes): the handle first.</summary>
    public static byte[] HandleIn(ulong fh, int size)
    {
        var b = new byte[size];
        BinaryPrimitives.WriteUInt64LittleEndian(b, fh);
        return b;
    }

    /// <summary>fuse_fallocate_in: fh, offset, length, mode, padding (32 bytes).</summary>
    public static byte[] FallocateIn(ulong fh, ulong offset, ulong length, int mode)
    {
        var b = new byte[32];
        BinaryPrimitives.WriteUInt64LittleEndian(b, fh);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), offset);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), length);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(24), mode);
        return b;
    }

    /// <summary>fuse_setattr_in (88 bytes): valid first.</summary>
    public static byte[] SetAttrIn(uint valid, ulong size = 0)
    {
        var b = new byte[88];
        BinaryPrimitives.WriteUInt32LittleEndian(b, valid);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), size);
        return b;
    }

    // the usual sequences

    public FuseAnswer Initialize() => Call(Init, 0, InitIn(7, 31));

    /// <summary>The node id of <paramref name="name"/> (LOOKUP in the root).</summary>
    public ulong NodeOf(string name)
    {
        var a = Call(Lookup, Root, Name(name));
        Assert.Equal(0, a.Errno);
        return a.U64(0);
    }

    /// <summary>Opens <paramref name="name"/> with <paramref name="flags"/>; its handle.</summary>
    public ulong OpenFile(string name, int flags = ORdWr)
    {
        var a = Call(Open, NodeOf(name), OpenIn(flags));
        Assert.Equal(0, a.Errno);
        return a.U64(0);
    }

    public FuseAnswer ReadAt(ulong fh, ulong offset, uint size) => Call(Read, 2, ReadIn(fh, offset, size));

    public FuseAnswer WriteAt(ulong fh, ulong offset, ReadOnlySpan<byte> data) => Call(Write, 2, WriteIn(fh, offset, data));
}
