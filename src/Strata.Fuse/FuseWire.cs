// The FUSE wire format (linux/fuse.h, protocol 7.28 to 7.31) as far as the export speaks it: the request header
// and the request bodies it reads, parsed with validation, and the replies it writes. All fields are in the host's
// byte order, little-endian on every machine Strata runs on. Sizes and offsets are checked against the kernel's
// headers by test/Strata.Native.Tests (AbiTests).
using System.Buffers.Binary;
using System.Text;

namespace Strata.Fuse;

/// <summary>The requests the export answers (linux/fuse.h, enum fuse_opcode).</summary>
enum FuseOpcode : uint
{
    Lookup = 1, Forget = 2, GetAttr = 3, SetAttr = 4, Open = 14, Read = 15, Write = 16, StatFs = 17, Release = 18,
    Fsync = 20, Flush = 25, Init = 26, OpenDir = 27, ReadDir = 28, ReleaseDir = 29, FsyncDir = 30, Interrupt = 36,
    Destroy = 38, BatchForget = 42, Fallocate = 43,
}

/// <summary>Sizes and flags of the protocol.</summary>
static class FuseWire
{
    public const ulong RootId = 1;
    public const int InHeaderSize = 40, OutHeaderSize = 16;
    public const int MaxWrite = 1 << 20;

    /// <summary>What one request or reply can take: the largest write plus its headers, rounded up to a page.</summary>
    public const int BufferSize = MaxWrite + 4096;

    // fuse_init_in/out flags
    public const uint AsyncRead = 1 << 0, BigWrites = 1 << 5, AsyncDio = 1 << 15, ParallelDirops = 1 << 18, MaxPages = 1 << 22;

    // fuse_open_out flags
    public const uint FopenDirectIo = 1 << 0, FopenParallelDirectWrites = 1 << 6;

    // fuse_setattr_in valid bits
    public const uint FattrSize = 1 << 3;

    public const uint MinMinor = 28, MaxMinor = 31;

    public const uint DirMode = 0x41C0, FileMode = 0x8180, ReadOnlyFileMode = 0x8100; // S_IFDIR | 0700, S_IFREG | 0600, S_IFREG | 0400
    public const uint DirentDir = 4, DirentFile = 8; // DT_DIR, DT_REG

    /// <summary>Writes fuse_out_header (len 4, error 4 as a negated errno, unique 8).</summary>
    public static void WriteOutHeader(Span<byte> reply, int bodyLength, int errno, ulong unique)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(reply, (uint)(OutHeaderSize + bodyLength));
        BinaryPrimitives.WriteInt32LittleEndian(reply[4..], -errno);
        BinaryPrimitives.WriteUInt64LittleEndian(reply[8..], unique);
    }
}

/// <summary>fuse_in_header: len 4, opcode 4, unique 8, nodeid 8, uid 4, gid 4, pid 4, padding 4 (40 bytes).</summary>
readonly record struct FuseInHeader(uint Length, FuseOpcode Opcode, ulong Unique, ulong Node)
{
    /// <summary>False when <paramref name="message"/> is too short to hold a header (then no reply can be addressed).</summary>
    public static bool TryRead(ReadOnlySpan<byte> message, out FuseInHeader header)
    {
        header = default;
        if (message.Length < FuseWire.InHeaderSize) return false;
        header = new FuseInHeader(BinaryPrimitives.ReadUInt32LittleEndian(message), (FuseOpcode)BinaryPrimitives.ReadUInt32LittleEndian(message[4..]),
            BinaryPrimitives.ReadUInt64LittleEndian(message[8..]), BinaryPrimitives.ReadUInt64LittleEndian(message[16..]));
        return true;
    }
}

/// <summary>fuse_init_in: major 4, minor 4, max_readahead 4, flags 4 (16 bytes; 7.36 and later send 64, the rest unused here).</summary>
readonly record struct FuseInitIn(uint Major, uint Minor, uint MaxReadahead, uint Flags)
{
    public static bool TryRead(ReadOnlySpan<byte> body, out FuseInitIn init)
    {
        init = default;
        if (body.Length < 16) return false;
        init = new FuseInitIn(BinaryPrimitives.ReadUInt32LittleEndian(body), BinaryPrimitives.ReadUInt32LittleEndian(body[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(body[8..]), BinaryPrimitives.ReadUInt32LittleEndian(body[12..]));
        return true;
    }
}

/// <summary>fuse_open_in: flags 4 (the open(2) flags), open_flags 4 (8 bytes).</summary>
readonly record struct FuseOpenIn(uint Flags)
{
    /// <summary>O_WRONLY or O_RDWR.</summary>
    public bool Writing => (Flags & 3) != 0;

    public static bool TryRead(ReadOnlySpan<byte> body, out FuseOpenIn open)
    {
        open = default;
        if (body.Length < 8) return false;
        open = new FuseOpenIn(BinaryPrimitives.ReadUInt32LittleEndian(body));
        return true;
    }
}

/// <summary>fuse_read_in (also READDIR's): fh 8, offset 8, size 4, read_flags 4, lock_owner 8, flags 4, padding 4 (40 bytes).</summary>
readonly record struct FuseReadIn(ulong Handle, ulong Offset, uint Size)
{
    public static bool TryRead(ReadOnlySpan<byte> body, out FuseReadIn read)
    {
        read = default;
        if (body.Length < 40) return false;
        read = new FuseReadIn(BinaryPrimitives.ReadUInt64LittleEndian(body), BinaryPrimitives.ReadUInt64LittleEndian(body[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(body[16..]));
        return true;
    }
}

/// <summary>fuse_write_in: fh 8, offset 8, size 4, write_flags 4, lock_owner 8, flags 4, padding 4 (40 bytes), then size
/// bytes of data.</summary>
readonly record struct FuseWriteIn(ulong Handle, ulong Offset, uint Size)
{
    /// <summary>False when the body is shorter than the header, or than the data it announces.</summary>
    public static bool TryRead(ReadOnlySpan<byte> body, out FuseWriteIn write, out ReadOnlySpan<byte> data)
    {
        write = default;
        data = default;
        if (body.Length < 40) return false;
        write = new FuseWriteIn(BinaryPrimitives.ReadUInt64LittleEndian(body), BinaryPrimitives.ReadUInt64LittleEndian(body[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(body[16..]));
        if (write.Size > (uint)(body.Length - 40)) return false;
        data = body.Slice(40, (int)write.Size);
        return true;
    }
}

/// <summary>The handle that starts fuse_release_in (fh 8, flags 4, release_flags 4, lock_owner 8: 24 bytes) and
/// fuse_fsync_in (fh 8, fsync_flags 4, padding 4: 16 bytes).</summary>
readonly record struct FuseHandleIn(ulong Handle)
{
    public static bool TryRead(ReadOnlySpan<byte> body, int structSize, out FuseHandleIn handle)
    {
        handle = default;
        if (body.Length < structSize) return false;
        handle = new FuseHandleIn(BinaryPrimitives.ReadUInt64LittleEndian(body));
        return true;
    }
}

/// <summary>fuse_fallocate_in: fh 8, offset 8, length 8, mode 4, padding 4 (32 bytes).</summary>
readonly record struct FuseFallocateIn(ulong Handle, ulong Offset, ulong Length, int Mode)
{
    public static bool TryRead(ReadOnlySpan<byte> body, out FuseFallocateIn fallocate)
    {
        fallocate = default;
        if (body.Length < 32) return false;
        fallocate = new FuseFallocateIn(BinaryPrimitives.ReadUInt64LittleEndian(body), BinaryPrimitives.ReadUInt64LittleEndian(body[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(body[16..]), BinaryPrimitives.ReadInt32LittleEndian(body[24..]));
        return true;
    }
}

/// <summary>fuse_setattr_in: valid 4, padding 4, fh 8, size 8, ... (88 bytes); only <c>valid</c> matters here.</summary>
readonly record struct FuseSetAttrIn(uint Valid)
{
    public static bool TryRead(ReadOnlySpan<byte> body, out FuseSetAttrIn setAttr)
    {
        setAttr = default;
        if (body.Length < 88) return false;
        setAttr = new FuseSetAttrIn(BinaryPrimitives.ReadUInt32LittleEndian(body));
        return true;
    }
}

/// <summary>LOOKUP's body: a NUL-terminated name.</summary>
static class FuseName
{
    /// <summary>False when the name has no terminating NUL or is not UTF-8.</summary>
    public static bool TryRead(ReadOnlySpan<byte> body, out string name)
    {
        name = "";
        int end = body.IndexOf((byte)0);
        if (end < 0) return false;
        try
        {
            name = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(body[..end]);
            return true;
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
    }
}

/// <summary>fuse_attr (88 bytes): ino 8, size 8, blocks 8, atime/mtime/ctime 8 each, their nsec 4 each, mode 4 (at 60),
/// nlink 4 (64), uid 4, gid 4, rdev 4, blksize 4 (80), flags 4. Times and owners are zero.</summary>
readonly record struct FuseAttr(ulong Node, ulong Size, ulong Blocks, uint Mode, uint Links, uint BlockSize)
{
    public const int WireSize = 88;

    public void Write(Span<byte> attr)
    {
        attr[..WireSize].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(attr, Node);
        BinaryPrimitives.WriteUInt64LittleEndian(attr[8..], Size);
        BinaryPrimitives.WriteUInt64LittleEndian(attr[16..], Blocks);
        BinaryPrimitives.WriteUInt32LittleEndian(attr[60..], Mode);
        BinaryPrimitives.WriteUInt32LittleEndian(attr[64..], Links);
        BinaryPrimitives.WriteUInt32LittleEndian(attr[80..], BlockSize);
    }
}

/// <summary>The reply bodies, each written at the start of <c>output</c> (after the out header); each returns its length.</summary>
static class FuseReply
{
    /// <summary>fuse_entry_out (128 bytes): nodeid 8, generation 8, entry_valid 8, attr_valid 8, their nsec 4 each, attr at 40.
    /// The validities stay 0: the kernel caches nothing.</summary>
    public static int Entry(Span<byte> output, FuseAttr attr)
    {
        output[..128].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(output, attr.Node);
        BinaryPrimitives.WriteUInt64LittleEndian(output[8..], 1); // generation
        attr.Write(output[40..]);
        return 128;
    }

    /// <summary>fuse_attr_out (104 bytes): attr_valid 8, attr_valid_nsec 4, dummy 4, attr at 16.</summary>
    public static int Attr(Span<byte> output, FuseAttr attr)
    {
        output[..16].Clear();
        attr.Write(output[16..]);
        return 104;
    }

    /// <summary>fuse_open_out (16 bytes): fh 8, open_flags 4, padding 4.</summary>
    public static int Open(Span<byte> output, ulong handle, uint flags)
    {
        output[..16].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(output, handle);
        BinaryPrimitives.WriteUInt32LittleEndian(output[8..], flags);
        return 16;
    }

    /// <summary>fuse_write_out (8 bytes): size 4, padding 4.</summary>
    public static int Written(Span<byte> output, uint size)
    {
        output[..8].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(output, size);
        return 8;
    }

    /// <summary>fuse_init_out (64 bytes): major 4, minor 4, max_readahead 4, flags 4, max_background 2, congestion_threshold 2,
    /// max_write 4 (at 20), time_gran 4, max_pages 2 (at 28), the rest 0. A reply with only the major says "not this
    /// protocol".</summary>
    public static int Init(Span<byte> output, uint major, uint minor = 0, uint maxReadahead = 0, uint flags = 0)
    {
        output[..64].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(output, major);
        if (minor == 0) return 64;
        BinaryPrimitives.WriteUInt32LittleEndian(output[4..], minor);
        BinaryPrimitives.WriteUInt32LittleEndian(output[8..], maxReadahead);
        BinaryPrimitives.WriteUInt32LittleEndian(output[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(output[16..], 64); // max_background
        BinaryPrimitives.WriteUInt16LittleEndian(output[18..], 48); // congestion_threshold
        BinaryPrimitives.WriteUInt32LittleEndian(output[20..], FuseWire.MaxWrite);
        BinaryPrimitives.WriteUInt32LittleEndian(output[24..], 1); // time_gran
        BinaryPrimitives.WriteUInt16LittleEndian(output[28..], FuseWire.MaxWrite / 4096); // max_pages
        return 64;
    }

    /// <summary>fuse_kstatfs (80 bytes): blocks, bfree, bavail, files (at 24), ffree 8 each, bsize 4 (at 40), namelen 4,
    /// frsize 4 (at 48), padding, spare. The block counts stay 0: the devices are not this filesystem's space.</summary>
    public static int StatFs(Span<byte> output, ulong files, uint blockSize)
    {
        output[..80].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(output[24..], files);
        BinaryPrimitives.WriteUInt32LittleEndian(output[40..], blockSize);
        BinaryPrimitives.WriteUInt32LittleEndian(output[44..], 255); // namelen
        BinaryPrimitives.WriteUInt32LittleEndian(output[48..], blockSize);
        return 80;
    }

    /// <summary>One fuse_dirent (ino 8, off 8, namelen 4, type 4, name, padded to 8 bytes) at the start of
    /// <paramref name="output"/>; 0 when it does not fit.</summary>
    public static int DirEntry(Span<byte> output, ulong node, ulong next, uint type, string name)
    {
        int nameLength = Encoding.UTF8.GetByteCount(name);
        int size = (24 + nameLength + 7) & ~7;
        if (size > output.Length) return 0;
        var e = output[..size];
        e.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(e, node);
        BinaryPrimitives.WriteUInt64LittleEndian(e[8..], next);
        BinaryPrimitives.WriteUInt32LittleEndian(e[16..], (uint)nameLength);
        BinaryPrimitives.WriteUInt32LittleEndian(e[20..], type);
        Encoding.UTF8.GetBytes(name, e[24..]);
        return size;
    }
}
