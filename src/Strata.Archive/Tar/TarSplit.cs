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
/// the file entry's payload is its crc64, not checked here: the caller checks the whole tar's digest). Positions
/// count from 0 without gaps. Read untrusted: each line at most 16 MiB, each name a relative path the caller opens
/// confined. <see cref="Open"/> reads the tar as a stream, pulling the files as it goes; <see cref="Length"/> says how
/// long it is without opening a file.
/// </summary>
public static class TarSplit
{
    /// <summary>The tar <paramref name="packed"/> describes, each file's bytes from <paramref name="open"/>(name) (null:
    /// the file is missing), opened as it is reached; reading it throws Corrupt for a malformed tar-split, a missing
    /// file, or a file shorter than the size recorded. Disposing it disposes <paramref name="packed"/>.</summary>
    public static Stream Open(Stream packed, Func<string, Stream?> open) => new Assembled(packed, open);

    /// <summary>The length of the tar <paramref name="packed"/> describes: its raw bytes and its files' sizes.</summary>
    public static long Length(Stream packed)
    {
        using var entries = new Entries(packed, leaveOpen: true);
        long n = 0;
        while (entries.Next() is { } e) n += e.Raw?.Length ?? e.Size;
        return n;
    }

    /// <summary>One entry: raw bytes, or a file's name and size.</summary>
    sealed record Entry(byte[]? Raw, string? Name, long Size);

    /// <summary>The entries of a tar-split, in order, each checked.</summary>
    sealed class Entries(Stream packed, bool leaveOpen) : IDisposable
    {
        const int MaxLine = 16 << 20;
        const int FileType = 1, SegmentType = 2;
        readonly BufferedStream _lines = new(new GZipStream(packed, CompressionMode.Decompress, leaveOpen), 1 << 16);
        readonly MemoryStream _line = new();
        long _position;

        public Entry? Next()
        {
            while (ReadLine())
            {
                if (_line.Length == 0) continue;
                var e = Parse();
                _position++;
                return e;
            }
            return null;
        }

        Entry Parse()
        {
            long position = _position;
            JsonElement e;
            try
            {
                using var doc = JsonDocument.Parse(_line.GetBuffer().AsMemory(0, (int)_line.Length));
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
                    if (!e.TryGetProperty("payload", out var payload) || payload.ValueKind == JsonValueKind.Null) return new Entry([], null, 0);
                    if (payload.ValueKind != JsonValueKind.String || !payload.TryGetBytesFromBase64(out var raw))
                        throw StrataException.Corrupt($"tar-split entry {position}: its payload is not base64");
                    return new Entry(raw, null, 0);
                case FileType:
                    long size = !e.TryGetProperty("size", out var s) ? 0
                        : s.TryGetInt64(out long n) && n >= 0 ? n : throw StrataException.Corrupt($"tar-split entry {position}: size is not a count of bytes");
                    if (e.TryGetProperty("name_raw", out var nameRaw) && nameRaw.ValueKind == JsonValueKind.String && nameRaw.TryGetBytesFromBase64(out var bytes))
                        return new Entry(null, Strata.Native.PathEncoding.Decode(bytes), size); // back to the same bytes when opened
                    if (e.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String) return new Entry(null, name.GetString()!, size);
                    throw StrataException.Corrupt($"tar-split entry {position} is a file without a name");
                default:
                    throw StrataException.Corrupt($"tar-split entry {position} has type {kind} (1: a file, 2: raw bytes)");
            }
        }

        /// <summary>The next line (without its newline) into _line; false at the end.</summary>
        bool ReadLine()
        {
            _line.SetLength(0);
            int b;
            while ((b = _lines.ReadByte()) >= 0)
            {
                if (b == '\n') return true;
                if (_line.Length == MaxLine) throw StrataException.Corrupt($"a tar-split entry is longer than {MaxLine} bytes");
                _line.WriteByte((byte)b);
            }
            return _line.Length > 0;
        }

        public void Dispose() => _lines.Dispose();
    }

    /// <summary>The tar, read entry by entry: a segment's bytes, then a file's, opened when reached.</summary>
    sealed class Assembled(Stream packed, Func<string, Stream?> open) : ReadOnlyStream
    {
        readonly Entries _entries = new(packed, leaveOpen: false);
        byte[] _raw = [];
        int _rawAt;
        Stream? _file;
        string _name = "";
        long _fileLeft, _fileSize;

        public override int Read(Span<byte> buffer)
        {
            while (true)
            {
                if (_rawAt < _raw.Length)
                {
                    int n = Math.Min(buffer.Length, _raw.Length - _rawAt);
                    _raw.AsSpan(_rawAt, n).CopyTo(buffer);
                    _rawAt += n;
                    return n;
                }
                if (_fileLeft > 0)
                {
                    int got = _file!.Read(buffer[..(int)Math.Min(buffer.Length, _fileLeft)]);
                    if (got == 0) throw StrataException.Corrupt($"{StrataException.OneLine(_name)} holds {_fileSize - _fileLeft} bytes where the layer's tar had {_fileSize}");
                    _fileLeft -= got;
                    return got;
                }
                _file?.Dispose();
                _file = null;
                if (buffer.IsEmpty || _entries.Next() is not { } e) return 0;
                if (e.Raw is not null)
                {
                    (_raw, _rawAt) = (e.Raw, 0);
                    continue;
                }
                if (e.Size == 0) continue; // directories, links and empty files have no bytes to read
                _name = e.Name!;
                _file = open(_name) ?? throw StrataException.Corrupt($"tar-split names {StrataException.OneLine(_name)}, which the layer does not have");
                (_fileLeft, _fileSize) = (e.Size, e.Size);
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _file?.Dispose();
                _entries.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
