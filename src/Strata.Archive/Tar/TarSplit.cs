using System.IO.Compression;
using System.Text.Json;

namespace Strata.Archive.Tar;

/// <summary>
/// Docker's tar-split (the layer store's tar-split.json.gz, from github.com/vbatts/tar-split): every byte of a layer
/// tar except the files' contents, so that the tar can be written again, byte for byte, from the files, and its
/// sha256 is the layer's diff id again. A gzip of JSON objects, one per line, in the tar's order:
/// <code>
/// {"type":2,"payload":"BASE64","position":N}                                   raw bytes: headers, padding, the end
/// {"type":1,"name":"PATH","name_raw":"BASE64","size":S,"payload":"BASE64","position":N}   S bytes of the file PATH
/// </code>
/// (name_raw, when present, is the name's bytes where they are not UTF-8, given to the caller in PathEncoding's form;
/// the file entry's payload is its crc64,
/// not checked here: the caller checks the whole tar's digest). Positions count from 0 without gaps. Read
/// untrusted: each line at most 16 MiB, each name a relative path the caller opens confined.
/// </summary>
public static class TarSplit
{
    const int MaxLine = 16 << 20;
    const int FileType = 1, SegmentType = 2;

    /// <summary>Writes the tar <paramref name="packed"/> (tar-split.json.gz) describes into <paramref name="output"/>,
    /// each file's bytes from <paramref name="open"/>(name) (null: the file is missing); returns the bytes written.
    /// Throws Corrupt for a malformed tar-split, a missing file, or a file shorter than the size recorded.</summary>
    public static long Assemble(Stream packed, Func<string, Stream?> open, Stream output)
    {
        using var gzip = new GZipStream(packed, CompressionMode.Decompress, leaveOpen: true);
        using var lines = new BufferedStream(gzip, 1 << 16);
        long written = 0, position = 0;
        var buffer = new byte[1 << 16];
        var line = new MemoryStream();
        while (ReadLine(lines, line))
        {
            if (line.Length == 0) continue;
            JsonElement e;
            try
            {
                using var doc = JsonDocument.Parse(line.GetBuffer().AsMemory(0, (int)line.Length));
                e = doc.RootElement.Clone();
            }
            catch (JsonException ex)
            {
                throw StrataException.Corrupt($"tar-split entry {position} is not JSON: {StrataException.OneLine(ex.Message)}");
            }
            if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty("type", out var type) || !type.TryGetInt32(out int kind))
                throw StrataException.Corrupt($"tar-split entry {position} has no type");
            if (e.TryGetProperty("position", out var pos) && (!pos.TryGetInt64(out long p) || p != position))
                throw StrataException.Corrupt($"tar-split entry {position} says it is entry {pos}");
            switch (kind)
            {
                case SegmentType:
                    if (e.TryGetProperty("payload", out var payload) && payload.ValueKind != JsonValueKind.Null)
                    {
                        if (payload.ValueKind != JsonValueKind.String || !payload.TryGetBytesFromBase64(out var raw))
                            throw StrataException.Corrupt($"tar-split entry {position}: its payload is not base64");
                        output.Write(raw);
                        written += raw.Length;
                    }
                    break;
                case FileType:
                    long size = e.TryGetProperty("size", out var s) ? (s.TryGetInt64(out long n) && n >= 0 ? n : throw StrataException.Corrupt($"tar-split entry {position}: size is not a count of bytes")) : 0;
                    string name = Name(e, position);
                    if (size == 0) break;
                    using (var file = open(name) ?? throw StrataException.Corrupt($"tar-split names {StrataException.OneLine(name)}, which the layer does not have"))
                    {
                        long left = size;
                        while (left > 0)
                        {
                            int got = file.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
                            if (got == 0) throw StrataException.Corrupt($"{StrataException.OneLine(name)} holds {size - left} bytes where the layer's tar had {size}");
                            output.Write(buffer, 0, got);
                            left -= got;
                        }
                    }
                    written += size;
                    break;
                default:
                    throw StrataException.Corrupt($"tar-split entry {position} has type {kind} (1: a file, 2: raw bytes)");
            }
            position++;
        }
        return written;
    }

    static string Name(JsonElement e, long position)
    {
        if (e.TryGetProperty("name_raw", out var raw) && raw.ValueKind == JsonValueKind.String && raw.TryGetBytesFromBase64(out var bytes))
            return Strata.Native.PathEncoding.Decode(bytes); // back to the same bytes when opened
        if (e.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String) return name.GetString()!;
        throw StrataException.Corrupt($"tar-split entry {position} is a file without a name");
    }

    /// <summary>The next line (without its newline) into <paramref name="line"/>; false at the end.</summary>
    static bool ReadLine(Stream input, MemoryStream line)
    {
        line.SetLength(0);
        int b;
        while ((b = input.ReadByte()) >= 0)
        {
            if (b == '\n') return true;
            if (line.Length == MaxLine) throw StrataException.Corrupt($"a tar-split entry is longer than {MaxLine} bytes");
            line.WriteByte((byte)b);
        }
        return line.Length > 0;
    }
}
