using System.Buffers.Binary;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Strata.Core;

namespace Strata.Cli;

/// <summary>
/// The control socket (DESIGN decision 8): while `strata serve` owns a store, each `strata` command on that
/// root is sent to it and runs there, in the same command tree, on the daemon's open store — same
/// commands, same output, same exit codes. One POST per command to &lt;root&gt;/strata.sock: the arguments
/// and working directory in headers, the command's stdin (only `layer apply` without -i reads it) as the
/// request body, and stdout, stderr and the exit code as frames of the response body: one byte of
/// channel, four of length (big-endian), then the bytes. Tars stream both ways.
/// </summary>
static class Control
{
    public const string SocketName = "strata.sock";
    const byte Stdout = 1, Stderr = 2, Exit = 3;

    public static void Map(WebApplication app, Strata.Daemon.StoreHost host) =>
        app.MapPost("/v1/command", async context =>
        {
            string[] args;
            try
            {
                args = JsonSerializer.Deserialize<string[]>(Convert.FromBase64String(context.Request.Headers["Strata-Args"].ToString()), CliJson.Options) ?? [];
            }
            catch (Exception ex) when (ex is FormatException or JsonException)
            {
                context.Response.StatusCode = 400;
                return;
            }
            string cwd = context.Request.Headers["Strata-Cwd"].ToString() is { Length: > 0 } c && Path.IsPathRooted(c) ? c : "/";
            bool tty = context.Request.Headers["Strata-Tty"] == "1";
            context.Response.ContentType = "application/octet-stream";
            var body = context.Response.Body;
            int code = await Task.Run(() => host.Use(store =>
            {
                using var outw = new StreamWriter(new FrameStream(body, Stdout), new UTF8Encoding(false), 1 << 16) { AutoFlush = false };
                using var errw = new StreamWriter(new FrameStream(body, Stderr), new UTF8Encoding(false), 1 << 12) { AutoFlush = true };
                Io.Current = new Io
                {
                    Out = outw,
                    Err = errw,
                    BinaryOut = () => tty ? null : new FrameStream(body, Stdout), // never a tar to a terminal
                    In = () => context.Request.Body,
                    Cwd = cwd,
                    Store = store,
                    OutIsTerminal = tty,
                };
                int result = Runner.Run(Commands.Build().Parse(args));
                outw.Flush();
                errw.Flush();
                return result;
            }));
            var exit = new byte[9];
            exit[0] = Exit;
            BinaryPrimitives.WriteInt32BigEndian(exit.AsSpan(1), 4);
            BinaryPrimitives.WriteInt32BigEndian(exit.AsSpan(5), code);
            await body.WriteAsync(exit);
        });

    /// <summary>Sends a command to the daemon that owns <paramref name="root"/>; null when none answers there
    /// (then the command runs in this process, which takes the store's lock itself).</summary>
    public static int? TryForward(string root, string[] args, bool readsStdin)
    {
        string socket = Path.Combine(root, SocketName);
        if (!File.Exists(socket)) return null;
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
        };
        using var http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://strata/v1/command")
        {
            Content = readsStdin ? new StreamContent(Console.OpenStandardInput(1 << 20), 1 << 20) : new ByteArrayContent([]),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        request.Headers.Add("Strata-Args", Convert.ToBase64String(JsonSerializer.SerializeToUtf8Bytes(args, CliJson.Options)));
        request.Headers.Add("Strata-Cwd", Environment.CurrentDirectory);
        if (!Console.IsOutputRedirected) request.Headers.Add("Strata-Tty", "1");
        HttpResponseMessage response;
        try
        {
            response = http.Send(request, HttpCompletionOption.ResponseHeadersRead);
        }
        catch (HttpRequestException ex) when (ex.InnerException is SocketException)
        {
            return null; // a socket left by a daemon that is gone
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode) throw new StrataException(ErrorKind.Io, $"the daemon at {socket} refused the command ({(int)response.StatusCode})");
            using var frames = response.Content.ReadAsStream();
            using var stdout = Console.OpenStandardOutput();
            using var stderr = Console.OpenStandardError();
            var header = new byte[5];
            var buffer = new byte[1 << 16];
            while (true)
            {
                if (!ReadExactly(frames, header)) throw new StrataException(ErrorKind.Io, $"the daemon at {socket} ended the command without an exit code");
                int length = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1));
                if (header[0] == Exit)
                {
                    if (length != 4 || !ReadExactly(frames, buffer.AsSpan(0, 4))) throw new StrataException(ErrorKind.Io, "malformed reply from the daemon");
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
    }

    static bool ReadExactly(Stream s, Span<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = s.Read(buffer[done..]);
            if (n == 0) return false;
            done += n;
        }
        return true;
    }

    /// <summary>Writes everything given to it as frames of one channel; never closes the response.</summary>
    sealed class FrameStream(Stream body, byte channel) : Stream
    {
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> data)
        {
            Span<byte> header = stackalloc byte[5];
            while (data.Length > 0)
            {
                int n = Math.Min(data.Length, 1 << 20);
                header[0] = channel;
                BinaryPrimitives.WriteInt32BigEndian(header[1..], n);
                body.Write(header);
                body.Write(data[..n]);
                data = data[n..];
            }
        }

        public override void Flush() => body.Flush();
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
