using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using Strata.Archive;
using Strata.Core;
using Strata.Daemon;

namespace Strata.Cli;

/// <summary>
/// The CLI's two ends of the control socket (DESIGN decision 8; wire format: <see cref="ControlProtocol"/>): while
/// `strata serve` owns a store, each `strata` command on that root is sent to it (<see cref="TryForward"/>) and runs
/// there (<see cref="Run"/>), in the same command tree, on the daemon's open store — same commands, same output,
/// same exit codes. The client writes the file of -o itself from stdout's frames. Tars stream both ways. A client
/// that hangs up stops its command at its next write.
/// </summary>
static class Control
{
    public const string SocketName = "strata.sock";

    /// <summary>Runs one command that came in on the control socket, with <see cref="Io"/> made from the call, on the
    /// daemon's <paramref name="store"/>; <paramref name="snapshotterSocket"/> is where the daemon serves containerd's
    /// snapshotter, if it does (`strata info` names it).</summary>
    public static int Run(ControlCall call, LayerStore store, string? snapshotterSocket)
    {
        bool tty = call.Width is not null;
        using var outw = new StreamWriter(call.Stdout, new UTF8Encoding(false), 1 << 16) { AutoFlush = false };
        using var errw = new StreamWriter(call.Stderr, new UTF8Encoding(false), 1 << 12) { AutoFlush = true };
        Io.Current = new Io
        {
            Out = outw,
            Err = errw,
            BinaryOut = () => tty && !call.FilesAtClient ? null : call.Stdout, // never a tar to a terminal
            In = () => call.Input,
            Cwd = call.Cwd,
            Store = store,
            SnapshotterSocket = snapshotterSocket,
            OutIsTerminal = tty,
            Width = call.Width,
            FilesAtClient = call.FilesAtClient,
            ErrIsTerminal = call.ErrIsTerminal,
        };
        var parsed = Commands.Build().Parse(call.Args);
        call.Command = parsed.Errors.Count == 0 ? CommandPath(parsed) : "invalid";
        int result = Runner.Run(parsed);
        outw.Flush();
        errw.Flush();
        return result;
    }

    /// <summary>"image ls" for `strata image ls ...`: the command's names below the root.</summary>
    static string CommandPath(System.CommandLine.ParseResult parsed)
    {
        var names = new List<string>();
        for (var c = parsed.CommandResult; c?.Parent is System.CommandLine.Parsing.CommandResult parent; c = parent) names.Insert(0, c.Command.Name);
        return names.Count == 0 ? "strata" : string.Join(' ', names);
    }

    /// <summary>Sends a command to the daemon that owns the store <paramref name="route"/> names; null when none answers
    /// there (then the command runs in this process, which takes the store's lock itself).</summary>
    public static int? TryForward(Route route, string[] args, Stream? stdout = null, Stream? stderr = null)
    {
        string socket = route.Socket;
        if (!File.Exists(socket)) return null;
        using var handler = Strata.Native.UnixSocketHttp.Handler(socket);
        using var http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        byte[] head = ControlProtocol.RequestHead(args);
        using var input = !route.ReadsInput ? null
            : route.InputFile is { } file ? Commands.OpenFile(Path.GetFullPath(file))
            : Console.OpenStandardInput(1 << 20);
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://strata" + ControlProtocol.Path)
        {
            Content = new StreamContent(input is null ? new MemoryStream(head) : new PrefixedStream(head, input), 1 << 20),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        request.Headers.Add(ControlProtocol.CwdHeader, Environment.CurrentDirectory);
        request.Headers.Add(ControlProtocol.FilesHeader, "client");
        if (stdout is null && !Console.IsOutputRedirected) request.Headers.Add(ControlProtocol.WidthHeader, TerminalWidth().ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (stderr is null && !Console.IsErrorRedirected) request.Headers.Add(ControlProtocol.ErrTtyHeader, "1");
        HttpResponseMessage response;
        try
        {
            response = http.Send(request, HttpCompletionOption.ResponseHeadersRead);
        }
        catch (HttpRequestException ex) when (ex.InnerException is SocketException { SocketErrorCode: SocketError.AccessDenied })
        {
            throw new StrataException(ErrorKind.PermissionDenied, $"permission denied on {socket}: the daemon that owns {route.Owner} takes commands from root only");
        }
        catch (HttpRequestException ex) when (ex.InnerException is SocketException)
        {
            return null; // a socket left by a daemon that is gone
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode) throw new StrataException(ErrorKind.Io, $"the daemon at {socket} refused the command ({(int)response.StatusCode})");
            using var frames = response.Content.ReadAsStream();
            if (route.OutputFile is { } path)
                return OutputFile.Write(path, file => Receive(frames, socket, file, stderr), code => code == 0); // no file from a failed command
            if (stdout is not null) return Receive(frames, socket, stdout, stderr);
            using var console = Console.OpenStandardOutput();
            return Receive(frames, socket, console, stderr);
        }
    }

    static int TerminalWidth()
    {
        try
        {
            return Console.WindowWidth;
        }
        catch (IOException)
        {
            return 80;
        }
    }

    /// <summary>Copies the reply's frames to <paramref name="stdout"/> and stderr (this process's, when null) until the exit code.</summary>
    static int Receive(Stream frames, string socket, Stream stdout, Stream? errors)
    {
        using var console = errors is null ? Console.OpenStandardError() : null;
        return ControlProtocol.ReadReply(frames, socket, stdout, errors ?? console!);
    }

    /// <summary>The arguments' bytes, then the command's input.</summary>
    sealed class PrefixedStream(byte[] head, Stream rest) : ReadOnlyStream
    {
        int _done;

        public override int Read(Span<byte> buffer)
        {
            if (_done == head.Length) return rest.Read(buffer);
            int n = Math.Min(buffer.Length, head.Length - _done);
            head.AsSpan(_done, n).CopyTo(buffer);
            _done += n;
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
        {
            if (_done == head.Length) return await rest.ReadAsync(buffer, ct);
            return Read(buffer.Span);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();
    }
}
