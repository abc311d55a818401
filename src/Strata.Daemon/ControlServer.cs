using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;

namespace Strata.Daemon;

/// <summary>
/// One command that came in on the control socket, as its frontend needs it to run the command as if it had been
/// typed here: the arguments, the client's working directory, its input, and where output goes. What the command
/// writes to <see cref="Stdout"/> and <see cref="Stderr"/> goes back to the client in frames as it is written
/// (neither stream closes the reply: dispose them freely); a client that hangs up makes the next write throw
/// <see cref="OperationCanceledException"/>, which stops the command.
/// </summary>
public sealed class ControlCall
{
    public required string[] Args { get; init; }
    /// <summary>The client's working directory (an absolute path; / when the client sent none).</summary>
    public required string Cwd { get; init; }
    /// <summary>The command's input: the rest of the request body (the client's stdin, or the file of -i).</summary>
    public required Stream Input { get; init; }
    public required Stream Stdout { get; init; }
    public required Stream Stderr { get; init; }
    /// <summary>The width of the client's terminal when its stdout is one; null when it is not.</summary>
    public int? Width { get; init; }
    /// <summary>The command's path ("image ls"), set by whoever runs it once it is parsed (the request metrics' method).</summary>
    public string? Command { get; set; }
    /// <summary>Whether the client's stderr is a terminal.</summary>
    public bool ErrIsTerminal { get; init; }
    /// <summary>The client reads the file of -i and writes the file of -o itself: the command reads
    /// <see cref="Input"/> and writes <see cref="Stdout"/> for them.</summary>
    public bool FilesAtClient { get; init; }
}

/// <summary>
/// The server side of the control socket (wire format: <see cref="ControlProtocol"/>): each POST is parsed into a
/// <see cref="ControlCall"/>, run on a thread of the pool by the frontend's delegate (the command tree lives in the
/// CLI), and answered with the command's output and exit code. A malformed request gets 400 before anything runs.
/// </summary>
public static class ControlServer
{
    /// <summary>Maps the control endpoint on <paramref name="app"/>; <paramref name="run"/> runs one command and
    /// returns its exit code (synchronously: commands stream tars through synchronous readers and writers).</summary>
    public static void Map(IEndpointRouteBuilder app, Func<ControlCall, int> run) =>
        app.MapPost(ControlProtocol.Path, async context =>
        {
            var input = context.Request.Body;
            if (await ControlProtocol.ReadRequestHeadAsync(input) is not { } args)
            {
                context.Response.StatusCode = 400;
                return;
            }
            var headers = context.Request.Headers;
            string cwd = headers[ControlProtocol.CwdHeader].ToString() is { Length: > 0 } c && Path.IsPathRooted(c) ? c : "/";
            int? width = int.TryParse(headers[ControlProtocol.WidthHeader].ToString(), out int w) ? w : null;
            context.Response.ContentType = "application/octet-stream";
            var body = new ClientStream(context.Response.Body, context.RequestAborted);
            var call = new ControlCall
            {
                Args = args,
                Cwd = cwd,
                Input = input,
                Stdout = new ControlProtocol.FrameStream(body, ControlProtocol.Stdout),
                Stderr = new ControlProtocol.FrameStream(body, ControlProtocol.Stderr),
                Width = width,
                FilesAtClient = headers[ControlProtocol.FilesHeader] == "client",
                ErrIsTerminal = headers[ControlProtocol.ErrTtyHeader] == "1",
            };
            int code;
            try
            {
                code = await Task.Run(() => run(call));
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                return; // the client hung up: its command stopped at its next write
            }
            if (call.Command is { } command) ServerMetrics.NameMethod(context, command);
            if (code != 0) ServerMetrics.MarkFailed(context);
            await body.WriteAsync(ControlProtocol.ExitFrame(code));
        });
}
