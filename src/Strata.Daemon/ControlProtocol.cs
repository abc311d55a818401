using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Strata.Daemon;

/// <summary>
/// The wire format of the control socket (DESIGN decision 8), shared by its server (<see cref="ControlServer"/>)
/// and its client (the CLI). One HTTP POST to <see cref="Path"/> per command, on &lt;root&gt;/strata.sock.
/// Request body: the arguments, as a JSON array of strings prefixed by their length (4 bytes, big-endian, 1 to
/// <see cref="MaxArgs"/>), then the command's input (stdin, or the file of -i, which the client opens).
/// Request headers: <see cref="CwdHeader"/> (the client's working directory), <see cref="WidthHeader"/> (the
/// terminal's width, only when stdout is a terminal), <see cref="FilesHeader"/>: <c>client</c> (the client reads
/// -i and writes -o itself), <see cref="ErrTtyHeader"/>: <c>1</c> (stderr is a terminal).
/// Response body: frames, each one byte of channel (<see cref="Stdout"/>, <see cref="Stderr"/>, <see cref="Exit"/>),
/// four of length (big-endian; at most <see cref="MaxFrame"/>), then that many bytes; the last frame is
/// <see cref="Exit"/> with the exit code (4 bytes, big-endian). A malformed request gets status 400 and no frames.
/// </summary>
public static class ControlProtocol
{
    public const string Path = "/v1/command";
    public const string CwdHeader = "Strata-Cwd", WidthHeader = "Strata-Width", FilesHeader = "Strata-Files", ErrTtyHeader = "Strata-Err-Tty";
    public const byte Stdout = 1, Stderr = 2, Exit = 3;
    /// <summary>The most bytes of arguments a request may carry.</summary>
    public const int MaxArgs = 1 << 20;
    /// <summary>The most bytes one frame carries (longer writes are cut into several).</summary>
    public const int MaxFrame = 1 << 20;
    const int HeaderSize = 5;

    /// <summary>The start of a request body: the arguments with their length.</summary>
    public static byte[] RequestHead(string[] args)
    {
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(args, ControlJson.Default.StringArray);
        if (json.Length > MaxArgs) throw StrataException.Invalid($"the command line is too long for the daemon ({json.Length} bytes of arguments; at most {MaxArgs})");
        var head = new byte[4 + json.Length];
        BinaryPrimitives.WriteInt32BigEndian(head, json.Length);
        json.CopyTo(head, 4);
        return head;
    }

    /// <summary>Reads the arguments from the start of a request body; null when they are missing, too long, not a
    /// JSON array of strings, or hold a null (JSON's null is a valid string element to the parser, but no argument).</summary>
    public static async Task<string[]?> ReadRequestHeadAsync(Stream input)
    {
        var length = new byte[4];
        if (!await ReadExactlyAsync(input, length) || BinaryPrimitives.ReadInt32BigEndian(length) is not (> 0 and <= MaxArgs and var n)) return null;
        var json = new byte[n];
        string[]? args = null;
        try
        {
            if (await ReadExactlyAsync(input, json)) args = JsonSerializer.Deserialize(json, ControlJson.Default.StringArray);
        }
        catch (JsonException)
        {
        }
        return args is null || Array.IndexOf(args, null) >= 0 ? null : args;
    }

    /// <summary>The last frame of a reply.</summary>
    public static byte[] ExitFrame(int code)
    {
        var exit = new byte[HeaderSize + 4];
        exit[0] = Exit;
        BinaryPrimitives.WriteInt32BigEndian(exit.AsSpan(1), 4);
        BinaryPrimitives.WriteInt32BigEndian(exit.AsSpan(HeaderSize), code);
        return exit;
    }

    /// <summary>Copies a reply's frames to <paramref name="stdout"/> and <paramref name="stderr"/> until the exit
    /// code, which it returns; <paramref name="socket"/> names the daemon in errors.</summary>
    public static int ReadReply(Stream frames, string socket, Stream stdout, Stream stderr)
    {
        var header = new byte[HeaderSize];
        var buffer = new byte[1 << 16];
        while (true)
        {
            if (!ReadFull(frames, header)) throw new StrataException(ErrorKind.Io, $"the daemon at {socket} ended the command without an exit code");
            int length = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1));
            if (header[0] == Exit)
            {
                if (length != 4 || !ReadFull(frames, buffer.AsSpan(0, 4))) throw new StrataException(ErrorKind.Io, "malformed reply from the daemon");
                return BinaryPrimitives.ReadInt32BigEndian(buffer);
            }
            var target = header[0] == Stderr ? stderr : stdout;
            while (length > 0)
            {
                int n = frames.Read(buffer, 0, Math.Min(length, buffer.Length));
                if (n == 0) throw new StrataException(ErrorKind.Io, "the daemon's reply was cut short");
                target.Write(buffer, 0, n);
                length -= n;
            }
            target.Flush();
        }
    }

    static async Task<bool> ReadExactlyAsync(Stream s, Memory<byte> buffer)
    {
        try
        {
            await s.ReadExactlyAsync(buffer);
            return true;
        }
        catch (EndOfStreamException)
        {
            return false;
        }
    }

    /// <summary>Whether the stream filled the whole buffer before it ended.</summary>
    static bool ReadFull(Stream s, Span<byte> buffer) => s.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false) == buffer.Length;

    /// <summary>Writes everything given to it as frames of one channel on a reply body. It never closes the body:
    /// disposing it ends nothing, and it may be written again after.</summary>
    public sealed class FrameStream(Stream body, byte channel) : WriteOnlyStream
    {
        public override void Write(ReadOnlySpan<byte> data)
        {
            Span<byte> header = stackalloc byte[HeaderSize];
            while (data.Length > 0)
            {
                int n = Math.Min(data.Length, MaxFrame);
                header[0] = channel;
                BinaryPrimitives.WriteInt32BigEndian(header[1..], n);
                body.Write(header);
                body.Write(data[..n]);
                data = data[n..];
            }
        }

        public override void Flush() => body.Flush();
    }
}

/// <summary>The arguments' JSON, indented as the CLI has always sent it.</summary>
[JsonSourceGenerationOptions(WriteIndented = true)]
[JsonSerializable(typeof(string[]))]
sealed partial class ControlJson : JsonSerializerContext;
