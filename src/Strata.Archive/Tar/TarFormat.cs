using System.Buffers.Text;
using System.Text;
using Strata.Native;

namespace Strata.Archive.Tar;

/// <summary>
/// The ustar header block (POSIX.1-1988) as read and written here. 512 bytes, all fields ASCII:
/// name[100]@0 mode[8]@100 uid[8]@108 gid[8]@116 size[12]@124 mtime[12]@136 chksum[8]@148
/// typeflag[1]@156 linkname[100]@157 magic[6]@257 version[2]@263 uname[32]@265 gname[32]@297
/// devmajor[8]@329 devminor[8]@337 prefix[155]@345. Numbers are octal, NUL- or space-terminated;
/// GNU base-256 (high bit of the first byte set) is accepted on read for large values.
/// The checksum is the sum of all header bytes with the checksum field taken as spaces.
/// </summary>
internal static class TarFormat
{
    public const int BlockSize = 512;
    public const int NameOff = 0, NameLen = 100, ModeOff = 100, UidOff = 108, GidOff = 116, SizeOff = 124,
        MtimeOff = 136, ChksumOff = 148, TypeOff = 156, LinkOff = 157, MagicOff = 257, VersionOff = 263,
        UnameOff = 265, GnameOff = 297, DevMajorOff = 329, DevMinorOff = 337, PrefixOff = 345, PrefixLen = 155;

    public static bool IsZeroBlock(ReadOnlySpan<byte> block) => !block.ContainsAnyExcept((byte)0);

    public static int ComputeChecksum(ReadOnlySpan<byte> block, bool signed)
    {
        int sum = 0;
        for (int i = 0; i < BlockSize; i++)
        {
            if (i >= ChksumOff && i < ChksumOff + 8) sum += ' ';
            else sum += signed ? (sbyte)block[i] : block[i];
        }
        return sum;
    }

    public static string ReadString(ReadOnlySpan<byte> field) => PathEncoding.Decode(UntilNul(field));

    /// <summary>A NUL-terminated field's bytes before the NUL (all of them when there is none).</summary>
    public static ReadOnlySpan<byte> UntilNul(ReadOnlySpan<byte> field)
    {
        int nul = field.IndexOf((byte)0);
        return nul >= 0 ? field[..nul] : field;
    }

    /// <summary>Parses an octal or base-256 numeric field; false when it is neither.</summary>
    public static bool TryReadNumber(ReadOnlySpan<byte> field, out long value)
    {
        value = 0;
        if (field.Length > 0 && (field[0] & 0x80) != 0)
        {
            if ((field[0] & 0x40) != 0) return false; // negative base-256: never valid here
            long v = field[0] & 0x3f;
            for (int i = 1; i < field.Length; i++)
            {
                if (v > (long.MaxValue >> 8)) return false;
                v = (v << 8) | field[i];
            }
            value = v;
            return true;
        }
        int start = 0;
        while (start < field.Length && (field[start] == ' ' || field[start] == 0)) start++;
        int end = start;
        while (end < field.Length && field[end] >= '0' && field[end] <= '7') end++;
        for (int i = end; i < field.Length; i++)
            if (field[i] != ' ' && field[i] != 0) return false;
        for (int i = start; i < end; i++)
        {
            if (value > (long.MaxValue >> 3)) return false;
            value = (value << 3) | (uint)(field[i] - '0');
        }
        return true;
    }

    /// <summary>Writes an octal field (zero-padded, NUL-terminated); false when it does not fit.</summary>
    public static bool TryWriteOctal(Span<byte> field, long value)
    {
        if (value < 0) return false;
        int digits = field.Length - 1;
        if (digits < 21 && value >= 1L << (3 * digits)) return false;
        for (int i = digits - 1; i >= 0; i--)
        {
            field[i] = (byte)('0' + (value & 7));
            value >>= 3;
        }
        field[digits] = 0;
        return true;
    }

    public static void WriteChecksum(Span<byte> block)
    {
        int sum = ComputeChecksum(block, signed: false);
        var f = block.Slice(ChksumOff, 8);
        TryWriteOctal(f[..7], sum);
        f[7] = (byte)' ';
    }

    /// <summary>Appends one PAX record "LEN key=value\n" where LEN counts the whole record.</summary>
    public static void AppendPaxRecord(List<byte> buffer, string key, ReadOnlySpan<byte> value)
    {
        int keyLen = PathEncoding.GetByteCount(key);
        int body = 1 + keyLen + 1 + value.Length + 1; // ' ' key '=' value '\n'
        int len = body + Digits(body);
        if (Digits(len) != Digits(body)) len = body + Digits(len);
        Span<byte> num = stackalloc byte[20];
        Utf8Formatter.TryFormat(len, num, out int n);
        buffer.AddRange(num[..n]);
        buffer.Add((byte)' ');
        buffer.AddRange(PathEncoding.Encode(key));
        buffer.Add((byte)'=');
        buffer.AddRange(value);
        buffer.Add((byte)'\n');
    }

    /// <summary>An xattr name as a PAX keyword suffix. A PAX record ends its keyword at the first '=', and
    /// xattr names may contain one, so GNU tar writes '%' as "%25" and '=' as "%3D"; so do we.</summary>
    public static string EncodeXattrName(string name) => name.Replace("%", "%25").Replace("=", "%3D");

    /// <summary>Undoes <see cref="EncodeXattrName"/> in one left-to-right pass (as GNU tar decodes it).</summary>
    public static string DecodeXattrName(string keyword)
    {
        if (!keyword.Contains('%')) return keyword;
        var sb = new StringBuilder(keyword.Length);
        for (int i = 0; i < keyword.Length; i++)
        {
            bool escape = keyword[i] == '%' && i + 2 < keyword.Length;
            if (escape && keyword[i + 1] == '3' && keyword[i + 2] == 'D') sb.Append('=');
            else if (escape && keyword[i + 1] == '2' && keyword[i + 2] == '5') sb.Append('%');
            else
            {
                sb.Append(keyword[i]);
                continue;
            }
            i += 2;
        }
        return sb.ToString();
    }

    static int Digits(int v) => v.ToString(System.Globalization.CultureInfo.InvariantCulture).Length;
}
