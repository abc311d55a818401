using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Strata.Native;

namespace Strata.Daemon;

/// <summary>What `strata serve` and `strata pool serve` host their unix-socket endpoints (Docker's plugin protocol,
/// the control socket) with: one slim Kestrel set up alike, and sockets that are private from their first moment.</summary>
static class Hosting
{
    /// <summary>A slim web host listening on <paramref name="sockets"/>. The content root is the program's own
    /// directory, and configuration is not watched for changes: by default both are the working directory (/ under
    /// systemd), watched recursively, and the watcher then walks into freshly mounted layers and keeps their
    /// unmounts busy. Requests in flight get 60 s to finish at shutdown; tars stream through synchronous readers
    /// and writers, with no body size limit. <paramref name="grpcSockets"/> speak HTTP/2 alone (gRPC's cleartext
    /// prior knowledge: a unix socket has no TLS to negotiate it).</summary>
    public static WebApplicationBuilder Builder(IEnumerable<string> sockets, IEnumerable<string>? grpcSockets = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ContentRootPath = AppContext.BaseDirectory,
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(60));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AllowSynchronousIO = true;
            k.Limits.MaxRequestBodySize = null;
            foreach (var s in sockets) k.ListenUnixSocket(s);
            foreach (var s in grpcSockets ?? []) k.ListenUnixSocket(s, o => o.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http2);
        });
        return builder;
    }

    /// <summary>Starts <paramref name="app"/>; its sockets are born under umask 077 and made 0600.</summary>
    public static async Task StartPrivateAsync(WebApplication app, IEnumerable<string> sockets, CancellationToken stop)
    {
        uint umask = Posix.SetUmask(0x3F /* 077 */);
        try
        {
            await app.StartAsync(stop);
        }
        finally
        {
            Posix.SetUmask(umask);
        }
        foreach (var s in sockets) Posix.ChmodAt(FileDescriptor.Cwd, s, 0x180 /* 0600 */);
    }
}
