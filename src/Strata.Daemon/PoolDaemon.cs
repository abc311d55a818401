using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Strata.Native;
using Strata.Fuse;
using Strata.Nbd;
using Strata.Thin;
using Strata.Thin.Service;
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
    /// <summary>Serve Prometheus metrics here (a unix socket path or IP:PORT; null: do not).</summary>
    public string? Metrics { get; init; }
    /// <summary>Name of the control socket in the pool directory, where the pool's calls come in (<see cref="PoolWire"/>).</summary>
    public string ControlSocket { get; init; } = PoolWire.SocketName;
    /// <summary>Called once the pool is served, with the NBD addresses (a URI template with NAME for the device).</summary>
    public Action<PoolDirectory, string>? Started { get; init; }
    /// <summary>Where the server's one-line notices go (a connection dropped for garbage, a failed request).</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// `strata pool serve`: owns one thin pool (its lock, for as long as it runs), exports every device over NBD,
/// and takes the pool's calls (<see cref="IPoolService"/>, from the CLI and the thin driver) on the control socket
/// POOL/strata.sock (DESIGN decision 8), so that devices can be created, snapshotted, listed and removed while clients
/// use others, and given to the kernel's nbd module. On SIGTERM or SIGINT
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
        var metrics = options.Metrics is null ? null : new ServerMetrics(() => [(dir.Path, dir.Pool.Stats())], layers: null);
        metrics?.UseRequestMetrics(app);
        var exports = new PoolExports(dir.Pool);
        FuseExport? fuse = null;
        using var kernel = new KernelAttachments(exports, options.Log);
        var served = new ServedPool(new LocalPool(dir), kernel, () => (Volatile.Read(ref fuse)?.OpenFiles ?? 0) + kernel.Count);
        app.MapPost(PoolWire.Endpoint, async context =>
        {
            context.Response.ContentType = "application/octet-stream";
            try
            {
                var (call, failed) = await PoolDispatcher.ServeAsync(served, context.Request.Body, context.Response.Body, context.RequestAborted);
                if (call is not null) ServerMetrics.NameMethod(context, call);
                if (failed) ServerMetrics.MarkFailed(context);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // not a refused call (those are answered): a bug or a dropped connection; the client sees the connection fail
                options.Log?.Invoke(StrataException.OneLine($"a pool call failed: {ex.GetType().Name}: {ex.Message}"));
                throw;
            }
        });
        var server = new NbdServer(exports, m => options.Log?.Invoke("nbd: " + m));
        WebApplication? metricsApp = null;
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
            // first: starting an app sets the process's umask for a moment, which the main app's requests must not see
            if (metrics is not null)
            {
                (metricsApp, string at) = await MetricsEndpoint.StartAsync(metrics, options.Metrics!, stop);
                where += $", metrics on {at}";
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
                await MetricsEndpoint.StopAsync(metricsApp, options.Metrics);
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
    internal static void PrepareMountPoint(string dir)
    {
        if (MountTable.IsMountPoint(dir)) Posix.TryUnmount(dir, Posix.MNT_DETACH);
        Directory.CreateDirectory(dir);
        Posix.ChmodAt(FileDescriptor.Cwd, dir, Modes.OwnerOnly);
    }

    /// <summary>Exports every device of a pool by its name, including devices made while serving.</summary>
    sealed class PoolExports(ThinPool pool) : IBlockExports, IBlockExportStats
    {
        public string? StatsText(string name)
        {
            try
            {
                return pool.Stats([name]).Devices[0].Text();
            }
            catch (StrataException ex) when (ex.Kind == ErrorKind.NotFound)
            {
                return null;
            }
        }

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

    /// <summary>The server's pool service: the pool it has open, with its kernel attachments and the device files its
    /// exports have open (each attached device holds one).</summary>
    sealed class ServedPool(LocalPool pool, KernelAttachments kernel, Func<int> openFiles) : IPoolService
    {
        public ThinDeviceInfo Create(string name, long size, string? owner = null) => pool.Create(name, size, owner);
        public ThinDeviceInfo Snapshot(string source, string name, string? owner = null) => pool.Snapshot(source, name, owner);
        public bool Delete(string name, bool defer = false, string? owner = null, bool force = false) => pool.Delete(name, defer, owner, force);
        public ThinDeviceInfo Resize(string name, long size) => pool.Resize(name, size);
        public ThinDeviceInfo Rollback(string name, string snapshot, string? owner = null, bool force = false) => pool.Rollback(name, snapshot, owner, force);
        public ThinDeviceInfo Device(string name) => pool.Device(name);
        public IReadOnlyList<string> DeviceNames() => pool.DeviceNames();
        public IReadOnlyList<ThinDeviceInfo> Devices() => pool.Devices();
        public PoolInfo Status() => pool.Status() with { OpenFiles = openFiles() };
        public IReadOnlyList<string> SuperblockProblems() => pool.SuperblockProblems();
        public string Attach(string name) => kernel.Attach(name);
        public void Detach(string name) => kernel.Detach(name);
        public string? Attached(string name) => kernel.Attached(name);
        public void Read(string name, long offset, long length, Stream to) => pool.Read(name, offset, length, to);
        public long Write(string name, long offset, Stream from) => pool.Write(name, offset, from);
        public PoolCheck Check() => pool.Check();
        public void Dump(Stream to) => pool.Dump(to);
        public Strata.Thin.Space.SpaceInfo ChangeDisks(DiskChange change) => pool.ChangeDisks(change);
        public Strata.Thin.Space.ScrubReport Scrub(bool repair) => pool.Scrub(repair);
        public PoolStats Stats(IReadOnlyList<string>? names = null) => pool.Stats(names);
        public void Dispose() { }
    }
}
