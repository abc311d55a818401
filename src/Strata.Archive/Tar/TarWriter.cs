using System.Buffers;
using System.Text;
using Strata.Native;

namespace Strata.Archive.Tar;

/// <summary>
/// Writes ustar members, adding a PAX extended header only when a member needs one (long names,
/// xattrs, large ids or sizes, mtimes outside 1970..2242). Output is deterministic: no user or group
/// names, no atime/ctime, mtimes in whole seconds (as moby's archive package writes them).
/// </summary>
public sealed class TarWriter : IDisposable
{
    readonly Stream _stream;
    byte[] _buf;
    int _len;

    public TarWriter(Stream stream)
    {
        _stream = stream;
        _buf = ArrayPool<byte>.Shared.Rent(1 << 20);
    }

    /// <summary>Writes a member's header; a regular member's data must follow through <see cref="WriteData"/> or <see cref="WriteFileData"/>.</summary>
    public void WriteHeader(TarEntry e)
    {
        var pax = new List<byte>();
        byte[] name = PathEncoding.Encode(e.Name);
        byte[] link = PathEncoding.Encode(e.LinkName);
        bool longName = !TrySplitName(name, out int split), longLink = link.Length > 100;
        // POSIX: path values are UTF-8 unless hdrcharset says the bytes are taken as they are
        if ((longName && !System.Text.Unicode.Utf8.IsValid(name)) || (longLink && !System.Text.Unicode.Utf8.IsValid(link)))
            TarFormat.AppendPaxRecord(pax, "hdrcharset", "BINARY"u8);
        if (longName) TarFormat.AppendPaxRecord(pax, "path", name);
        if (longLink) TarFormat.AppendPaxRecord(pax, "linkpath", link);
        if (e.Uid > 0x1FFFFF) TarFormat.AppendPaxRecord(pax, "uid", Ascii(e.Uid));
        if (e.Gid > 0x1FFFFF) TarFormat.AppendPaxRecord(pax, "gid", Ascii(e.Gid));
        if (e.Size > 0x1FFFFFFFF) TarFormat.AppendPaxRecord(pax, "size", Ascii(e.Size));
        // before 1970 or after 2242 does not fit the octal field; without the record it would silently become 0
        if (e.Mtime.Seconds is < 0 or > 0x1FFFFFFFF) TarFormat.AppendPaxRecord(pax, "mtime", Ascii(e.Mtime.Seconds));
        if (e.Xattrs is not null)
            foreach (var (k, v) in e.Xattrs) TarFormat.AppendPaxRecord(pax, "SCHILY.xattr." + TarFormat.EncodeXattrName(k), v);
        if (pax.Count > 0)
        {
            var paxName = "PaxHeaders/" + Path.GetFileName(e.Name.TrimEnd('/'));
            byte[] pn = PathEncoding.Encode(paxName);
            if (pn.Length > 100) pn = pn[..100];
            var h = Block();
            pn.CopyTo(h);
            FillHeader(h, (byte)'x', 0x1A4, 0, 0, pax.Count, 0, []);
            Emit(h);
            WriteBytes(pax.ToArray());
            Pad(pax.Count);
        }
        var b = Block();
        if (split < 0) name.AsSpan(0, Math.Min(name.Length, 100)).CopyTo(b);
        else
        {
            name.AsSpan(split + 1).CopyTo(b);
            name.AsSpan(0, split).CopyTo(b[TarFormat.PrefixOff..]);
        }
        byte type = (byte)e.Type;
        FillHeader(b, type, e.Mode, Math.Min(e.Uid, 0x1FFFFF), Math.Min(e.Gid, 0x1FFFFF),
            e.Type == TarEntryType.Regular ? Math.Min(e.Size, 0x1FFFFFFFF) : 0, Math.Clamp(e.Mtime.Seconds, 0, 0x1FFFFFFFF),
            link.Length <= 100 ? link : link.AsSpan(0, 100));
        if (e.Type is TarEntryType.CharDevice or TarEntryType.BlockDevice)
        {
            TarFormat.TryWriteOctal(b.Slice(TarFormat.DevMajorOff, 8), e.DevMajor);
            TarFormat.TryWriteOctal(b.Slice(TarFormat.DevMinorOff, 8), e.DevMinor);
        }
        Emit(b);
    }

    Span<byte> Block()
    {
        EnsureSpace(TarFormat.BlockSize);
        var s = _buf.AsSpan(_len, TarFormat.BlockSize);
        s.Clear();
        return s;
    }

    void Emit(Span<byte> block)
    {
        TarFormat.WriteChecksum(block);
        _len += TarFormat.BlockSize;
    }

    static void FillHeader(Span<byte> b, byte type, uint mode, long uid, long gid, long size, long mtime, ReadOnlySpan<byte> link)
    {
        TarFormat.TryWriteOctal(b.Slice(TarFormat.ModeOff, 8), mode & 0xFFF);
        TarFormat.TryWriteOctal(b.Slice(TarFormat.UidOff, 8), uid);
        TarFormat.TryWriteOctal(b.Slice(TarFormat.GidOff, 8), gid);
        TarFormat.TryWriteOctal(b.Slice(TarFormat.SizeOff, 12), size);
        TarFormat.TryWriteOctal(b.Slice(TarFormat.MtimeOff, 12), mtime);
        b[TarFormat.TypeOff] = type;
        link.CopyTo(b.Slice(TarFormat.LinkOff, 100));
        "ustar\u000000"u8.CopyTo(b[TarFormat.MagicOff..]);
        TarFormat.TryWriteOctal(b.Slice(TarFormat.DevMajorOff, 8), 0);
        TarFormat.TryWriteOctal(b.Slice(TarFormat.DevMinorOff, 8), 0);
    }

    /// <summary>Finds where to split a long name into prefix (≤155) and name (≤100): -1 if it fits whole,
    /// false if it needs a PAX path record.</summary>
    static bool TrySplitName(byte[] name, out int split)
    {
        split = -1;
        if (name.Length <= 100) return true;
        if (name.Length > 256) return false;
        for (int i = Math.Min(name.Length - 1, 155); i > 0; i--)
        {
            if (name[i] != '/') continue;
            int rest = name.Length - i - 1;
            if (rest == 0) continue;
            if (rest > 100) return false;
            split = i;
            return true;
        }
        return false;
    }

    static byte[] Ascii(long v) => Encoding.ASCII.GetBytes(v.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public void WriteData(ReadOnlySpan<byte> data) => WriteBytes(data);

    /// <summary>Copies exactly <paramref name="size"/> bytes of an open file, then pads to a block. A file that
    /// shrank since its size was taken (something wrote to the tree during the diff) fails the archive, as
    /// Go's archive/tar does: zeros in its place would be a layer that silently differs from the tree.
    /// Growth past <paramref name="size"/> is not read.</summary>
    public void WriteFileData(FileDescriptor fd, long size, string pathForErrors)
    {
        long done = 0;
        while (done < size)
        {
            if (_len == _buf.Length) FlushBuffer();
            int want = (int)Math.Min(size - done, _buf.Length - _len);
            int n = Posix.Read(fd, _buf.AsSpan(_len, want), pathForErrors);
            if (n == 0) throw new StrataException(ErrorKind.Io, $"{pathForErrors} shrank from {size} to {done} bytes while it was being archived; the tree changed during the diff (stop what writes to it and retry)");
            _len += n;
            done += n;
        }
        Pad(size);
    }

    public void Pad(long size)
    {
        int pad = (int)((TarFormat.BlockSize - size % TarFormat.BlockSize) % TarFormat.BlockSize);
        if (pad == 0) return;
        EnsureSpace(pad);
        _buf.AsSpan(_len, pad).Clear();
        _len += pad;
    }

    void WriteBytes(ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            if (_len == _buf.Length) FlushBuffer();
            int n = Math.Min(data.Length, _buf.Length - _len);
            data[..n].CopyTo(_buf.AsSpan(_len));
            _len += n;
            data = data[n..];
        }
    }

    void EnsureSpace(int n)
    {
        if (_buf.Length - _len < n) FlushBuffer();
    }

    void FlushBuffer()
    {
        _stream.Write(_buf, 0, _len);
        _len = 0;
    }

    /// <summary>Writes the end-of-archive marker (two zero blocks) and flushes.</summary>
    public void Finish()
    {
        EnsureSpace(2 * TarFormat.BlockSize);
        _buf.AsSpan(_len, 2 * TarFormat.BlockSize).Clear();
        _len += 2 * TarFormat.BlockSize;
        FlushBuffer();
        _stream.Flush();
    }

    public void Dispose()
    {
        if (_buf.Length > 0) ArrayPool<byte>.Shared.Return(_buf);
        _buf = [];
    }
}
