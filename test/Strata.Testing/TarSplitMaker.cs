using System.IO.Compression;
using System.Text;
using System.Text.Json;

namespace Strata.Testing;

/// <summary>Makes Docker's tar-split of a tar, as github.com/vbatts/tar-split does, for tests: the bytes before each
/// entry's contents (its headers, PAX and GNU long-name records included, and the padding of the entry before) are a
/// raw segment, the contents of a regular file a file entry, the rest of the tar a last segment.</summary>
public static class TarSplitMaker
{
    /// <summary>The tar-split.json.gz of <paramref name="tar"/>, whose entries (not counting PAX records) are named
    /// <paramref name="names"/> in order; <paramref name="replace"/> may swap the JSON line at a position.</summary>
    public static byte[] Split(byte[] tar, IReadOnlyList<string> names, Func<int, string?>? replace = null)
    {
        var lines = new List<string>();
        long segment = 0, o = 0;
        int entry = 0;
        void Segment(long from, long to) =>
            lines.Add(JsonSerializer.Serialize(new { type = 2, payload = Convert.ToBase64String(tar, (int)from, (int)(to - from)), position = lines.Count }));
        while (o + 512 <= tar.Length && tar.AsSpan((int)o, 512).IndexOfAnyExcept((byte)0) >= 0)
        {
            char type = (char)tar[o + 156];
            long size = Convert.ToInt64(Encoding.ASCII.GetString(tar, (int)o + 124, 12).Trim('\0', ' '), 8);
            long next = o + 512 + (size + 511) / 512 * 512;
            if (type is 'x' or 'g' or 'L' or 'K')
            {
                o = next;
                continue;
            }
            Segment(segment, o + 512);
            long contents = type is '0' or '\0' ? size : 0;
            lines.Add(replace?.Invoke(lines.Count) ?? JsonSerializer.Serialize(new { type = 1, name = names[entry++], size = contents, payload = "AAAAAAAAAAA=", position = lines.Count }));
            segment = o + 512 + contents;
            o = next;
        }
        Segment(segment, tar.Length);
        var packed = new MemoryStream();
        using (var gz = new GZipStream(packed, CompressionLevel.Fastest, leaveOpen: true))
            gz.Write(Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n"));
        return packed.ToArray();
    }
}
