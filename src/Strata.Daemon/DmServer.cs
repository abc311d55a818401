using System.Net;
using Strata.Fuse;
using Strata.Nbd;
using Strata.Thin.DmThin;

namespace Strata.Daemon;

/// <summary>How `strata dm serve` runs.</summary>
public sealed record DmServeOptions
{
    public required string Data { get; init; }
    public required string Metadata { get; init; }
    /// <summary>Unix socket for NBD clients (0600).</summary>
    public required string NbdSocket { get; init; }
    /// <summary>Also serve NBD on this TCP endpoint (null: do not).</summary>
    public IPEndPoint? NbdTcp { get; init; }
    /// <summary>Also show every device as a file in this directory, a FUSE mount of the server's own (null: do not).</summary>
    public string? Fuse { get; init; }
    /// <summary>Called once the pool is served, with its NBD addresses (a URI template with NAME for the thin id).</summary>
    public Action<DmPool, string>? Started { get; init; }
    /// <summary>Where warnings (damage found when opening) and the server's one-line notices go.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// `strata dm serve`: a dm-thin pool opened read-only (<see cref="DmPool"/>), every thin device exported over NBD
/// by its thin id and, with a directory, as a read-only file of a FUSE mount, exactly as `strata pool serve` exports
/// Strata's own devices; until SIGTERM or SIGINT, then the sockets and the mount are removed.
/// </summary>
public static class DmServer
{
    public static async Task<int> RunAsync(DmServeOptions options, CancellationToken stop = default)
    {
        using var pool = DmPool.Open(options.Data, options.Metadata);
        foreach (var warning in pool.Warnings()) options.Log?.Invoke($"warning: {warning}");
        StrataDaemon.PrepareSocket(options.NbdSocket, "NBD");
        using var stopped = new StopSignal(stop);
        FuseExport? fuse = null;
        var server = new NbdServer(pool, m => options.Log?.Invoke("nbd: " + m));
        try
        {
            server.ListenUnix(options.NbdSocket);
            string where = $"nbd+unix:///NAME?socket={options.NbdSocket}";
            if (options.NbdTcp is { } tcp) where += $" and nbd://{server.ListenTcp(tcp)}/NAME";
            if (options.Fuse is { } fuseDir)
            {
                PoolDaemon.PrepareMountPoint(fuseDir);
                fuse = FuseExport.Mount(fuseDir, pool, (uint)pool.ExportBlockSize, m => options.Log?.Invoke(m));
                where += $" and files in {fuseDir}";
            }
            options.Started?.Invoke(pool, where);
            Systemd.Notify("READY=1");
            await stopped.Task;
        }
        finally
        {
            Systemd.Notify("STOPPING=1");
            fuse?.Dispose();
            await server.DisposeAsync();
            if (File.Exists(options.NbdSocket)) File.Delete(options.NbdSocket);
        }
        return 0;
    }
}
