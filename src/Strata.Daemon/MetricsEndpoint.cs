// The /metrics endpoint: its own Kestrel on a unix socket or a TCP address, started and stopped beside a server's.
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Strata.Daemon;

/// <summary>
/// The /metrics endpoint of a server: a Kestrel of its own (so that nothing else the server hosts is reachable where the
/// metrics are), on a unix socket (0600, as every socket of ours) or, for an address IP:PORT, on TCP. Any other path is 404.
/// </summary>
public static class MetricsEndpoint
{
    /// <summary>The socket's name in a store's root or a pool's directory when --metrics names no address.</summary>
    public const string SocketName = "metrics.sock";

    /// <summary>Stops and disposes what <see cref="StartAsync"/> started (null: nothing), removing its socket.</summary>
    public static async Task StopAsync(WebApplication? app, string? address)
    {
        if (app is null) return;
        await app.StopAsync(CancellationToken.None);
        await app.DisposeAsync();
        if (address is not null && Parse(address).Socket is { } socket && File.Exists(socket)) File.Delete(socket);
    }

    /// <summary>Where the metrics go: a unix socket path, or a TCP endpoint (IP:PORT, [IPv6]:PORT).</summary>
    public static (string? Socket, System.Net.IPEndPoint? Tcp) Parse(string address)
    {
        if (!address.StartsWith('/') && address.Contains(':', StringComparison.Ordinal))
            return System.Net.IPEndPoint.TryParse(address, out var ip) ? (null, ip)
                : throw StrataException.Invalid($"--metrics '{StrataException.OneLine(address)}' is not IP:PORT (e.g. 127.0.0.1:9410)");
        if (!Path.IsPathRooted(address)) throw StrataException.Invalid($"--metrics '{StrataException.OneLine(address)}' is neither a unix socket path (absolute) nor IP:PORT (e.g. 127.0.0.1:9410)");
        return (address, null);
    }

    /// <summary>Starts serving <paramref name="metrics"/> at <paramref name="address"/> (see <see cref="Parse"/>); the
    /// caller stops and disposes it. Returns the app and what it listens on (a TCP port 0 becomes the one given).</summary>
    public static async Task<(WebApplication App, string Where)> StartAsync(ServerMetrics metrics, string address, CancellationToken stop)
    {
        var (socket, tcp) = Parse(address);
        if (socket is not null) StrataDaemon.PrepareSocket(socket, "metrics");
        var builder = Hosting.Builder(socket is null ? [] : [socket]);
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            if (tcp is not null) k.Listen(tcp);
            k.AllowSynchronousIO = false; // a scrape is a GET: no body to take, nothing to read synchronously
            k.Limits.MaxRequestBodySize = 0;
        });
        var app = builder.Build();
        app.MapGet("/metrics", async context =>
        {
            context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await metrics.WriteAsync(context.Response.Body, context.RequestAborted);
        });
        await Hosting.StartPrivateAsync(app, socket is null ? [] : [socket], stop);
        string where = socket ?? app.Urls.FirstOrDefault() ?? tcp!.ToString();
        return (app, where);
    }
}
