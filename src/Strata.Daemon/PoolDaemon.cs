using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Strata.Native;
using Strata.Fuse;
using Strata.Nbd;
using Strata.Thin;
using Strata.Block;

namespace Strata.Daemon;

/// <summary>How `strata pool serve` runs.</summary>
public sealed record PoolDaemonOptions
{
    /// <summary>The pool's directory.</summary>
    public required string Pool { get; init; }
    /// <summary>Unix socket for NBD clients (0600).</summary>
    public required string NbdSocket { get; init; }
    /// <summary>Also serve NBD on this TCP endpoint (null: do not).</summary>
    public IPEndPoint? NbdTcp { get; init; }
    /// <summary>Also show every device as a file in this directory, a FUSE mount of the server's own (null: do not).</summary>
    public string? Fuse { get; init; }
    /// <summary>Name of the control socket in the pool directory, where the CLI sends its pool commands.</summary>
    public string ControlSocket { get; init; } = "strata.sock";
    /// <summary>Maps the control socket's endpoints (the CLI's command tree lives in the CLI).</summary>
    public Action<WebApplication, PoolDirectory>? Control { get; init; }
    /// <summary>Called once the pool is served, with the NBD addresses (a URI template with NAME for the device).</summary>
    public Action<PoolDirectory, string>? Started { get; init; }
    /// <summary>Where the server's one-line notices go (a connection dropped for garbage, a failed request).</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// `strata pool serve`: owns one thin pool (its lock, for as long as it runs), exports every device over NBD,
/// and takes the CLI's pool commands on the control socket POOL/strata.sock (DESIGN decision 8), so that
/// devices can be created, snapshotted, listed and removed while clients use others. On SIGTERM or SIGINT
/// it stops taking commands, closes the NBD connections (finishing the requests in flight), commits the
/// pool and removes its sockets.
/// </summary>
public static class PoolDaemon
{
    public static async Task<int> RunAsync(PoolDaemonOptions options, CancellationToken stop = default)
    {
        using var dir = PoolDirectory.Open(options.Pool);
        foreach (var problem in dir.Pool.SuperblockProblems()) options.Log?.Invoke($"warning: {problem}");
        string control = Path.Combine(dir.Path, options.ControlSocket);
        StrataDaemon.PrepareSocket(control, "the pool's control socket");
        StrataDaemon.PrepareSocket(options.NbdSocket, "NBD");
        var builder = Hosting.Builder([control]);
        builder.Logging.ClearProviders();
        await using var app = builder.Build();
        options.Control?.Invoke(app, dir);
        var exports = new PoolExports(dir.Pool);
        FuseExport? fuse = null;
        using var kernel = new KernelAttachments(exports, options.Log);
        app.MapPost("/v1/pool", async context =>
        {
            PoolReply reply;
            try
            {
                // a malformed call is answered like any refused one: a reply with the error, kind and one line
                var request = await RequestBody.ReadJsonAsync(context.Request.Body, PoolWireJson.Default.PoolRequest, context.RequestAborted)
                    ?? throw RequestBody.Malformed("the body holds no call");
                if (request.Op is null) throw RequestBody.Malformed("Op is null");
                string Name() => request.Name ?? throw StrataException.Invalid($"pool call '{request.Op}' needs a name");
                reply = await Task.Run(() => request.Op switch
                {
                    "attach" => new PoolReply { Path = kernel.Attach(Name()) },
                    "detach" => Detached(Name()),
                    "attached" => new PoolReply { Path = kernel.Attached(Name()) },
                    _ => PoolClient.Execute(dir.Pool, request, (Volatile.Read(ref fuse)?.OpenFiles ?? 0) + kernel.Count),
                });
                PoolReply Detached(string name)
                {
                    kernel.Detach(name);
                    return new PoolReply();
                }
            }
            catch (StrataException ex)
            {
                reply = new PoolReply { Error = ex.Message, Kind = ex.Kind };
            }
            // errors quote the call's strings ("unknown pool call 'x'"), which may hold line breaks
            if (reply.Error is { } error) reply = reply with { Error = error.ReplaceLineEndings(" ") };
            context.Response.ContentType = "application/json";
            await JsonSerializer.SerializeAsync(context.Response.Body, reply, PoolWireJson.Default.PoolReply, context.RequestAborted);
        });
        var server = new NbdServer(exports, m => options.Log?.Invoke("nbd: " + m));
        try
        {
            server.ListenUnix(options.NbdSocket);
            string where = $"nbd+unix:///NAME?socket={options.NbdSocket}";
            if (options.NbdTcp is { } tcp) where += $" and nbd://{server.ListenTcp(tcp)}/NAME";
            if (options.Fuse is { } fuseDir)
            {
                PrepareMountPoint(fuseDir);
                fuse = FuseExport.Mount(fuseDir, exports, dir.Pool.BlockSize, m => options.Log?.Invoke(m));
                where += $" and files in {fuseDir}";
            }
            await Hosting.StartPrivateAsync(app, [control], stop);
            options.Started?.Invoke(dir, where);
            Systemd.Notify("READY=1");
            await app.WaitForShutdownAsync(stop);
        }
        finally
        {
            Systemd.Notify("STOPPING=1");
            try
            {
                await app.StopAsync(CancellationToken.None); // commands in flight finish first
            }
            finally
            {
                kernel.Dispose(); // devices given to the kernel let go of the pool before its last commit
                fuse?.Dispose();
                await server.DisposeAsync();
                if (File.Exists(options.NbdSocket)) File.Delete(options.NbdSocket);
                if (File.Exists(control)) File.Delete(control);
            }
        }
        dir.Pool.Commit();
        return 0;
    }

    /// <summary>Makes the FUSE export's directory (0700), first detaching a mount a killed server left there: the pool's
    /// lock, which this process holds, says no live server serves it.</summary>
    static void PrepareMountPoint(string dir)
    {
        if (MountTable.IsMountPoint(dir)) Posix.TryUnmount(dir, Posix.MNT_DETACH);
        Directory.CreateDirectory(dir);
        Posix.ChmodAt(FileDescriptor.Cwd, dir, 0x1C0);
    }

    /// <summary>Exports every device of a pool by its name, including devices made while serving.</summary>
    sealed class PoolExports(ThinPool pool) : IBlockExports
    {
        public IReadOnlyList<string> Names() => pool.DeviceNames();

        public IBlockDevice? Open(string name)
        {
            try
            {
                return pool.OpenDevice(name);
            }
            catch (StrataException ex) when (ex.Kind == ErrorKind.NotFound)
            {
                return null;
            }
        }

        /// <summary>Devices have no read-only mark of their own yet; a pool that went read-only (metadata full, a
        /// failed commit, needs_check) exports every device read-only, so clients see it at connect.</summary>
        public bool ReadOnly(string name) => pool.ReadOnlyReason is not null;
    }
}
