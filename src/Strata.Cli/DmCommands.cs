using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Strata.Thin.DmThin;

namespace Strata.Cli;

/// <summary>`strata dm ...`: dm-thin pools (LVM's, Docker's devicemapper) opened from their data and metadata files
/// or devices, read-only, without the kernel: list their devices, serve them over NBD and FUSE. Nothing here writes
/// to either; nothing uses a Strata store.</summary>
public static partial class Commands
{
    static Command DmCommand()
    {
        var dm = new Command("dm", "dm-thin pools (LVM thin, Docker's devicemapper), read-only and without the kernel's device-mapper");
        var data = new Option<string>("--data") { Description = "The pool's data file or device", HelpName = "FILE|DEVICE", Required = true };
        var metadata = new Option<string>("--metadata") { Description = "The pool's metadata file or device", HelpName = "FILE|DEVICE", Required = true };

        var lsOptions = new Output.ListOptions("device");
        var mappings = new Option<bool>("--mappings") { Description = "With --format json: each device's mappings too (runs of virtual blocks on consecutive data blocks, with their time)" };
        var ls = new Command("ls", "List the pool's thin devices: mapped, exclusive and shared blocks (like thin_ls), and what is unreadable") { data, metadata, mappings };
        lsOptions.AddTo(ls);
        ls.SetAction(r =>
        {
            lsOptions.Filters(r);
            using var pool = OpenDm(r, data, metadata);
            long bs = pool.BlockSize;
            bool withMappings = r.GetValue(mappings);
            return Output.List(r, lsOptions, pool.Devices, d => Id(d), d =>
            {
                var o = new JsonObject
                {
                    ["Id"] = (long)d.Id, ["Size"] = d.Size, ["BlockSize"] = bs, ["MappedBlocks"] = d.MappedBlocks, ["ExclusiveBlocks"] = d.ExclusiveBlocks,
                    ["SharedBlocks"] = d.SharedBlocks, ["Transaction"] = (long)d.TransactionId, ["CreationTime"] = (long)d.CreationTime,
                    ["SnapshotTime"] = (long)d.SnapshotTime,
                    ["Unreadable"] = new JsonArray([.. d.Unreadable.Select(u => (JsonNode)new JsonObject
                    {
                        ["First"] = u.First, ["Count"] = u.End == long.MaxValue ? null : u.Count, ["Why"] = u.Why,
                    })]),
                };
                if (withMappings)
                    o["Mappings"] = new JsonArray([.. d.Extents.Select(e => (JsonNode)new JsonObject
                    {
                        ["Virtual"] = e.Virtual, ["Data"] = e.Data, ["Length"] = e.Length, ["Time"] = (long)e.Time,
                    })]);
                return o;
            }, ["ID", "SIZE", "MAPPED", "EXCLUSIVE", "SHARED", "TRANSACTION", "CREATED", "SNAPSHOT", "UNREADABLE"], (d, _) =>
            [[
                Id(d), Bytes(d.Size), Bytes(d.MappedBlocks * bs), Bytes(d.ExclusiveBlocks * bs), Bytes(d.SharedBlocks * bs),
                d.TransactionId.ToString(CultureInfo.InvariantCulture), d.CreationTime.ToString(CultureInfo.InvariantCulture),
                d.SnapshotTime.ToString(CultureInfo.InvariantCulture), Unreadable(d),
            ]]);
        });
        dm.Subcommands.Add(ls);

        var socketPath = new Option<string>("--socket") { Description = "Unix socket to serve NBD on (mode 0600)", HelpName = "PATH", DefaultValueFactory = _ => "/run/strata/dm-nbd.sock" };
        var tcp = new Option<string?>("--tcp") { Description = "Also serve NBD on this TCP address (e.g. 127.0.0.1:10809)", HelpName = "ADDRESS:PORT" };
        var fuse = new Option<string?>("--fuse") { Description = "Also show every device as a read-only file in this directory (a FUSE mount; losetup -r attaches one)", HelpName = "DIR" };
        var serve = new Command("serve", "Serve every thin device read-only over NBD (export name: the thin id) until SIGTERM/SIGINT") { data, metadata, socketPath, tcp, fuse };
        serve.SetAction(r =>
        {
            var endpoint = ParseTcp(r.GetValue(tcp));
            var io = Io.Current;
            if (r.GetValue(fuse) is not null) Strata.Native.Posix.TrySetIoFlusher();
            return Strata.Daemon.DmServer.RunAsync(new Strata.Daemon.DmServeOptions
            {
                Data = io.FullPath(r.GetValue(data)!),
                Metadata = io.FullPath(r.GetValue(metadata)!),
                NbdSocket = io.FullPath(r.GetValue(socketPath)!),
                NbdTcp = endpoint,
                Fuse = r.GetValue(fuse) is { } f ? io.FullPath(f) : null,
                Started = (pool, where) =>
                {
                    io.Out.WriteLine($"serving {pool.Devices.Count} thin devices of {pool.MetadataName} read-only on {where}");
                    io.Out.Flush();
                },
                Log = m => { lock (io.Err) io.Err.WriteLine($"strata: {m}"); },
            }).GetAwaiter().GetResult();
        });
        dm.Subcommands.Add(serve);
        return dm;
    }

    /// <summary>Whether a parsed command is one of `strata dm ...` (which run where they are typed: they use no store).</summary>
    internal static bool IsDmCommand(ParseResult r) => IsUnder(r, "dm");

    static string Id(DmThinDevice d) => d.Id.ToString(CultureInfo.InvariantCulture);

    static string Unreadable(DmThinDevice d) => d.Unreadable.Count switch
    {
        0 => "-",
        _ => string.Join(",", d.Unreadable.Select(u => u.End == long.MaxValue ? $"{u.First}-" : u.Count == 1 ? $"{u.First}" : $"{u.First}-{u.End - 1}")),
    };

    /// <summary>The pool, with what is wrong with it on stderr first.</summary>
    static DmPool OpenDm(ParseResult r, Option<string> data, Option<string> metadata)
    {
        var pool = DmPool.Open(Io.Current.FullPath(r.GetValue(data)!), Io.Current.FullPath(r.GetValue(metadata)!));
        Warn(pool.Problems);
        foreach (var d in pool.Devices)
            foreach (var u in d.Unreadable)
                Warn([$"thin device {d.Id}: blocks {u.First} to {(u.End == long.MaxValue ? "the end" : (u.End - 1).ToString(CultureInfo.InvariantCulture))} are unreadable: {u.Why}"]);
        return pool;
    }

    static System.Net.IPEndPoint? ParseTcp(string? tcp)
    {
        System.Net.IPEndPoint? endpoint = null;
        if (tcp is not null && (!System.Net.IPEndPoint.TryParse(tcp, out endpoint) || endpoint.Port == 0))
            throw StrataException.Invalid($"--tcp '{tcp}' is not ADDRESS:PORT (e.g. 127.0.0.1:10809)");
        return endpoint;
    }
}
