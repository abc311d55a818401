using System.Buffers;
using System.Text;
using Strata.Native;

namespace Strata.Archive.Tar;

/// <summary>
/// A streaming, validating tar reader (ustar, PAX and GNU long names). Every header's checksum and
/// numeric fields are checked; a stream that ends inside a header or inside an entry's data is
/// reported as truncated. Errors are <see cref="ErrorKind.Corrupt"/> <see cref="StrataException"/>s.
/// What a tar can make the reader hold is bounded: the extended headers before one member (their
/// number and bytes) and xattrs; input past a bound is refused, before it is
/// read, as <see cref="ErrorKind.InvalidArgument"/> naming the limit.
/// </summary>
public sealed class TarReader : IDisposable
{
    /// <summary>Largest member we accept (8 TiB); anything larger is a corrupt or hostile header.</summary>
    public const long MaxEntrySize = 1L << 43;
    /// <summary>Most data bytes of the extended headers (PAX 'x' and 'g', GNU 'L' and 'K') before one member, all
    /// together. Go's archive/tar caps one such header at 1 MiB (maxSpecialFileSize) and keeps only the last PAX
    /// header; this reader merges consecutive ones, so the cap is on the whole run.</summary>
    public const int MaxExtendedHeaderBytes = 1 << 20;
    /// <summary>Most extended headers before one member: writers put at most one of each kind there.</summary>
    public const int MaxExtendedHeaders = 16;
    /// <summary>Linux's xattr limits: a name (XATTR_NAME_MAX), a value (XATTR_SIZE_MAX), and a file's names together,
    /// each with its NUL (XATTR_LIST_MAX). setxattr refuses more, so a tar that carries more cannot be applied.</summary>
    public const int MaxXattrName = 255, MaxXattrValue = 1 << 16, MaxXattrNames = 1 << 16;
    /// <summary>Holds a whole extended header, which is parsed in place.</summary>
    const int BufferSize = MaxExtendedHeaderBytes;

    readonly Stream _stream;
    byte[] _buf;
    int _pos, _len;
    long _remaining, _padding, _consumed;
    bool _done;

    public TarReader(Stream stream)
    {
        _stream = stream;
        _buf = ArrayPool<byte>.Shared.Rent(BufferSize);
    }

    /// <summary>Offset in the stream of the next unread byte (for error messages).</summary>
    public long Position => _consumed;

    /// <summary>The next member, or null at the end of the archive. Unread data of the previous member is skipped.</summary>
    public TarEntry? Next()
    {
        if (_done) return null;
        SkipRest();
        string? longName = null, longLink = null;
        Dictionary<string, byte[]>? pax = null;
        int metaHeaders = 0;
        long metaBytes = 0;
        while (true)
        {
            long headerAt = _consumed;
            if (!Fill(TarFormat.BlockSize, allowCleanEof: true))
            {
                if (longName is not null || longLink is not null || pax is not null) throw Truncated();
                _done = true;
                return null;
            }
            var block = _buf.AsSpan(_pos, TarFormat.BlockSize);
            if (TarFormat.IsZeroBlock(block))
            {
                Advance(TarFormat.BlockSize);
                if (Fill(TarFormat.BlockSize, allowCleanEof: true) && !TarFormat.IsZeroBlock(_buf.AsSpan(_pos, TarFormat.BlockSize)))
                    throw Corrupt(headerAt, "data after the end-of-archive marker");
                _done = true;
                return null;
            }
            var entry = ParseHeader(block, headerAt, out byte type, out long dataSize);
            Advance(TarFormat.BlockSize);
            if (type is (byte)'x' or (byte)'g' or (byte)'L' or (byte)'K')
            {
                // bounded before the data is read: a run of extended headers is all held (or skipped) for one member
                if (++metaHeaders > MaxExtendedHeaders) throw Limit(headerAt, $"more than {MaxExtendedHeaders} extended headers before one member");
                metaBytes += dataSize;
                if (metaBytes > MaxExtendedHeaderBytes)
                    throw Limit(headerAt, $"extended headers before one member exceed the limit of 1 MiB ({metaBytes} bytes)");
                var data = type == 'g' ? default : ReadMeta((int)dataSize);
                switch (type)
                {
                    case (byte)'x':
                        ParsePax(data, pax ??= new Dictionary<string, byte[]>(StringComparer.Ordinal), headerAt);
                        break;
                    case (byte)'L':
                        longName = PathEncoding.Decode(TarFormat.UntilNul(data));
                        break;
                    case (byte)'K':
                        longLink = PathEncoding.Decode(TarFormat.UntilNul(data));
                        break;
                }
                Skip(type == 'g' ? dataSize + Pad(dataSize) : Pad(dataSize));
                continue;
            }
            if (longName is not null) entry.Name = longName;
            if (longLink is not null) entry.LinkName = longLink;
            if (pax is not null) ApplyPax(entry, pax, headerAt);
            // old tars mark directories with a trailing slash on a regular type; judged on the final name, since the
            // ustar name field of a PAX- or GNU-named member is only the name cut at 100 bytes and may end in '/'
            if (entry.Type == TarEntryType.Regular && type is 0 or (byte)'0' && entry.Name.EndsWith('/')) entry.Type = TarEntryType.Directory;
            // header-only types carry no data whatever their size field says (as Go and GNU tar read them)
            if (entry.Type is TarEntryType.Regular) dataSize = entry.Size;
            else entry.Size = dataSize = 0;
            if (entry.Name.Length == 0) throw Corrupt(headerAt, "member with an empty name");
            if (entry.Name.Contains('\0') || entry.LinkName.Contains('\0')) throw Corrupt(headerAt, "member name contains NUL");
            _remaining = dataSize;
            _padding = Pad(dataSize);
            return entry;
        }
    }

    /// <summary>Reads the current member's data; 0 at its end. Throws when the stream ends early.</summary>
    public int ReadData(Span<byte> destination)
    {
        if (_remaining == 0 || destination.Length == 0) return 0;
        if (_pos == _len && !FillSome()) throw Truncated();
        int n = (int)Math.Min(Math.Min(destination.Length, _len - _pos), _remaining);
        _buf.AsSpan(_pos, n).CopyTo(destination);
        Advance(n);
        _remaining -= n;
        return n;
    }

    /// <summary>Hands out the current member's data in place, without copying; empty at its end.</summary>
    public ReadOnlySpan<byte> ReadDataInPlace(int max)
    {
        if (_remaining == 0) return default;
        if (_pos == _len && !FillSome()) throw Truncated();
        int n = (int)Math.Min(Math.Min(max, _len - _pos), _remaining);
        var span = _buf.AsSpan(_pos, n);
        Advance(n);
        _remaining -= n;
        return span;
    }

    void SkipRest()
    {
        Skip(_remaining + _padding);
        _remaining = _padding = 0;
    }

    void Skip(long count)
    {
        while (count > 0)
        {
            if (_pos == _len && !FillSome()) throw Truncated();
            int n = (int)Math.Min(count, _len - _pos);
            Advance(n);
            count -= n;
        }
    }

    /// <summary>Checks one header block's checksum (a zero block, the end marker, passes).</summary>
    public static void CheckHeaderBlock(ReadOnlySpan<byte> b, long at = 0)
    {
        if (TarFormat.IsZeroBlock(b)) return;
        if (!TarFormat.TryReadNumber(b.Slice(TarFormat.ChksumOff, 8), out long stored))
            throw NotATar(at, b) ?? Corrupt(at, "header checksum field is not a number");
        if (stored != TarFormat.ComputeChecksum(b, signed: false) && stored != TarFormat.ComputeChecksum(b, signed: true))
            throw NotATar(at, b) ?? Corrupt(at, "header checksum mismatch");
    }

    TarEntry ParseHeader(ReadOnlySpan<byte> b, long at, out byte type, out long size)
    {
        CheckHeaderBlock(b, at);
        type = b[TarFormat.TypeOff];
        size = Number(b, TarFormat.SizeOff, 12, at, "size");
        if (size > MaxEntrySize) throw Corrupt(at, $"declared size {size} is larger than any member can be");
        var magic = b.Slice(TarFormat.MagicOff, 8);
        bool ustar = magic.SequenceEqual("ustar\u000000"u8);
        string name = TarFormat.ReadString(b.Slice(TarFormat.NameOff, TarFormat.NameLen));
        if (ustar)
        {
            string prefix = TarFormat.ReadString(b.Slice(TarFormat.PrefixOff, TarFormat.PrefixLen));
            if (prefix.Length > 0) name = prefix + "/" + name;
        }
        var entryType = type switch
        {
            0 or (byte)'0' or (byte)'7' => TarEntryType.Regular,
            (byte)'1' => TarEntryType.HardLink,
            (byte)'2' => TarEntryType.Symlink,
            (byte)'3' => TarEntryType.CharDevice,
            (byte)'4' => TarEntryType.BlockDevice,
            (byte)'5' => TarEntryType.Directory,
            (byte)'6' => TarEntryType.Fifo,
            (byte)'x' or (byte)'g' or (byte)'L' or (byte)'K' => TarEntryType.Regular,
            (byte)'S' => throw Unsupported(at, "GNU sparse members are not supported"),
            _ => throw Unsupported(at, $"member type '{(char)type}' is not supported"),
        };
        var entry = new TarEntry
        {
            Name = name,
            Type = entryType,
            LinkName = TarFormat.ReadString(b.Slice(TarFormat.LinkOff, 100)),
            Mode = (uint)(Number(b, TarFormat.ModeOff, 8, at, "mode") & 0xFFF),
            Uid = Id(Number(b, TarFormat.UidOff, 8, at, "uid"), at, "uid"),
            Gid = Id(Number(b, TarFormat.GidOff, 8, at, "gid"), at, "gid"),
            Size = size,
            Mtime = new UnixTime(Number(b, TarFormat.MtimeOff, 12, at, "mtime"), 0),
        };
        if (entryType is TarEntryType.CharDevice or TarEntryType.BlockDevice)
        {
            entry.DevMajor = Id(Number(b, TarFormat.DevMajorOff, 8, at, "devmajor"), at, "devmajor");
            entry.DevMinor = Id(Number(b, TarFormat.DevMinorOff, 8, at, "devminor"), at, "devminor");
        }
        return entry;
    }

    /// <summary>Layers travel compressed (OCI "tar+gzip", "tar+zstd"); a compressed stream handed over as
    /// is deserves a message that says so rather than a checksum error.</summary>
    static StrataException? NotATar(long at, ReadOnlySpan<byte> b)
    {
        if (at != 0) return null;
        if (b.StartsWith((ReadOnlySpan<byte>)[0x1f, 0x8b])) return Unsupported(at, "the archive is gzip-compressed; decompress it first");
        if (b.StartsWith((ReadOnlySpan<byte>)[0x28, 0xb5, 0x2f, 0xfd])) return Unsupported(at, "the archive is zstd-compressed; decompress it first");
        return null;
    }

    static long Number(ReadOnlySpan<byte> b, int off, int len, long at, string field) =>
        TarFormat.TryReadNumber(b.Slice(off, len), out long v) ? v : throw Corrupt(at, $"{field} field is not a number or is out of range");

    static uint Id(long v, long at, string field) => v is >= 0 and <= uint.MaxValue ? (uint)v : throw Corrupt(at, $"{field} {v} is out of range");

    /// <summary>An extended header's data, in place in the buffer (valid until the next read).</summary>
    ReadOnlySpan<byte> ReadMeta(int size)
    {
        Fill(size, allowCleanEof: false);
        var data = _buf.AsSpan(_pos, size);
        Advance(size);
        return data;
    }

    /// <summary>Folds PAX records into <paramref name="into"/> (a later record wins). Only the keywords this reader
    /// uses are kept, so what a header holds for the member is bounded by what the member can carry.</summary>
    static void ParsePax(ReadOnlySpan<byte> data, Dictionary<string, byte[]> into, long at)
    {
        while (data.Length > 0)
        {
            int sp = data.IndexOf((byte)' ');
            if (sp <= 0 || !int.TryParse(data[..sp], System.Globalization.NumberStyles.None, null, out int len) || len <= sp + 1 || len > data.Length || data[len - 1] != '\n')
                throw Corrupt(at, "malformed PAX record");
            var rec = data[(sp + 1)..(len - 1)];
            int eq = rec.IndexOf((byte)'=');
            if (eq <= 0) throw Corrupt(at, "malformed PAX record");
            var keyword = rec[..eq];
            if (keyword.StartsWith("GNU.sparse."u8)) throw Unsupported(at, "GNU sparse members are not supported");
            if (keyword.StartsWith(XattrPrefix) || keyword.SequenceEqual("path"u8) || keyword.SequenceEqual("linkpath"u8) || keyword.SequenceEqual("size"u8)
                || keyword.SequenceEqual("uid"u8) || keyword.SequenceEqual("gid"u8) || keyword.SequenceEqual("mtime"u8))
                into[PathEncoding.Decode(keyword)] = rec[(eq + 1)..].ToArray();
            data = data[len..];
        }
    }

    static ReadOnlySpan<byte> XattrPrefix => "SCHILY.xattr."u8;

    static void ApplyPax(TarEntry e, Dictionary<string, byte[]> pax, long at)
    {
        int xattrNames = 0;
        foreach (var (key, value) in pax)
        {
            switch (key)
            {
                case "path": e.Name = PathEncoding.Decode(value); break;
                case "linkpath": e.LinkName = PathEncoding.Decode(value); break;
                case "size":
                    e.Size = PaxLong(value, at, key);
                    if (e.Size > MaxEntrySize) throw Corrupt(at, $"declared size {e.Size} is larger than any member can be");
                    break;
                case "uid": e.Uid = Id(PaxLong(value, at, key), at, key); break;
                case "gid": e.Gid = Id(PaxLong(value, at, key), at, key); break;
                case "mtime": e.Mtime = PaxTime(value, at); break;
                default:
                    string name = TarFormat.DecodeXattrName(key[XattrPrefix.Length..]);
                    int nameBytes = PathEncoding.GetByteCount(name);
                    if (nameBytes == 0) throw Limit(at, "xattr with an empty name");
                    if (nameBytes > MaxXattrName)
                        throw Limit(at, $"xattr name of {nameBytes} bytes exceeds the limit of {MaxXattrName} bytes (Linux's XATTR_NAME_MAX)");
                    if (value.Length > MaxXattrValue)
                        throw Limit(at, $"xattr '{name}' of {value.Length} bytes exceeds the limit of 64 KiB (Linux's XATTR_SIZE_MAX)");
                    xattrNames += nameBytes + 1;
                    (e.Xattrs ??= []).Add(new(name, value));
                    break;
            }
        }
        if (xattrNames > MaxXattrNames)
            throw Limit(at, $"xattr names of {xattrNames} bytes exceed the limit of 64 KiB (Linux's XATTR_LIST_MAX)");
        e.Xattrs?.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
    }

    static long PaxLong(byte[] v, long at, string key) =>
        long.TryParse(v, System.Globalization.NumberStyles.None, null, out long r) ? r : throw Corrupt(at, $"PAX {key} is not a number");

    static UnixTime PaxTime(byte[] v, long at)
    {
        var s = Encoding.ASCII.GetString(v);
        int dot = s.IndexOf('.');
        string secPart = dot < 0 ? s : s[..dot];
        if (!long.TryParse(secPart, System.Globalization.NumberStyles.AllowLeadingSign, null, out long sec))
            throw Corrupt(at, "PAX mtime is not a number");
        uint ns = 0;
        if (dot >= 0)
        {
            string frac = (s[(dot + 1)..] + "000000000")[..9];
            if (!uint.TryParse(frac, System.Globalization.NumberStyles.None, null, out ns)) throw Corrupt(at, "PAX mtime is not a number");
            // "-1.5" is 1.5 s before the epoch: the fraction counts towards zero, a timespec's nanoseconds count up
            if (s.StartsWith('-') && ns > 0)
            {
                sec--;
                ns = 1_000_000_000 - ns;
            }
        }
        return new UnixTime(sec, ns);
    }

    static long Pad(long size) => (TarFormat.BlockSize - size % TarFormat.BlockSize) % TarFormat.BlockSize;

    void Advance(int n)
    {
        _pos += n;
        _consumed += n;
    }

    /// <summary>Makes <paramref name="count"/> contiguous bytes available; false on a clean EOF before any byte.</summary>
    bool Fill(int count, bool allowCleanEof)
    {
        if (_len - _pos >= count) return true;
        if (_pos > 0)
        {
            Buffer.BlockCopy(_buf, _pos, _buf, 0, _len - _pos);
            _len -= _pos;
            _pos = 0;
        }
        while (_len < count)
        {
            int n = _stream.Read(_buf, _len, _buf.Length - _len);
            if (n == 0)
            {
                if (_len == 0 && allowCleanEof) return false;
                throw Truncated();
            }
            _len += n;
        }
        return true;
    }

    bool FillSome()
    {
        _pos = _len = 0;
        int n = _stream.Read(_buf, 0, _buf.Length);
        _len = n;
        return n > 0;
    }

    StrataException Truncated() =>
        (_consumed == 0 ? NotATar(0, _buf.AsSpan(_pos, _len - _pos)) : null) ?? StrataException.Corrupt($"tar: archive is truncated at byte {_consumed}");

    static StrataException Corrupt(long at, string what) => StrataException.Corrupt($"tar: {what} (header at byte {at})");

    static StrataException Limit(long at, string what) => StrataException.Invalid($"tar: {what} (header at byte {at})");

    static StrataException Unsupported(long at, string what) => StrataException.Unsupported($"tar: {what} (header at byte {at})");

    public void Dispose()
    {
        if (_buf.Length > 0) ArrayPool<byte>.Shared.Return(_buf);
        _buf = [];
    }
}
