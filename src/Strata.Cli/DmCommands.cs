using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Strata.Thin.DmThin;

namespace Strata.Cli;

/// <summary>`strata dm ...`: dm-thin pools (LVM's, Docker's devicemapper) opened from their data and metadata files
/// or devices, read-only, without the kernel: list their devices, serve them over NBD and FUSE; Docker's devicemapper
/// storage listed, mounted and migrated. Nothing here writes to a pool or to Docker's files; only `dm docker migrate`
/// writes, into the Strata store of --root.</summary>
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
        dm.Subcommands.Add(DmDockerCommand());
        return dm;
    }

    static Command DmDockerCommand()
    {
        var dockerRoot = new Argument<string>("DOCKER_ROOT") { Description = "dockerd's root (its --data-root)", DefaultValueFactory = _ => "/var/lib/docker" };
        var data = new Option<string?>("--data") { Description = "The pool's data file or device (default: the loop file under DOCKER_ROOT; give the LVM volume of a direct-lvm pool)", HelpName = "FILE|DEVICE" };
        var metadata = new Option<string?>("--metadata") { Description = "The pool's metadata file or device (default: the loop file under DOCKER_ROOT)", HelpName = "FILE|DEVICE" };
        var format = FormatOption();
        var docker = new Command("docker", "Docker's devicemapper storage (loop-lvm or direct-lvm): its images and containers with their thin devices, read-only") { dockerRoot, data, metadata, format };
        // Docker's store at ROOT and its pool: the files --data and --metadata name, or the loop files under ROOT
        (Strata.Core.Devicemapper.DockerStore Store, DmPool Pool) Open(ParseResult r, string root)
        {
            var store = Strata.Core.Devicemapper.DockerStore.Open(Io.Current.FullPath(root));
            return (store, DmPool.Open(Io.Current.FullPath(r.GetValue(data) ?? store.DataFile), Io.Current.FullPath(r.GetValue(metadata) ?? store.MetadataFile), store.DeviceSizes()));
        }
        docker.SetAction(r =>
        {
            var (store, pool) = Open(r, r.GetValue(dockerRoot)!);
            using var _ = pool;
            Warn(pool.Problems);
            string State(Strata.Core.Devicemapper.DockerDevice? d) => Strata.Core.Devicemapper.DockerStore.StateIn(pool, d);
            string Thin(Strata.Core.Devicemapper.DockerDevice? d) => d?.DeviceId.ToString(CultureInfo.InvariantCulture) ?? "-";
            string ImageName(Strata.Core.Images.Digest id) =>
                store.Images.FirstOrDefault(i => i.Id == id) is { Names.Count: > 0 } i ? i.Names[0] : id.Hex[..12];
            return Output.Document(r.GetValue(format), () => new JsonObject
            {
                ["Root"] = store.Root, ["Data"] = pool.DataName, ["Metadata"] = pool.MetadataName, ["Filesystem"] = store.Filesystem, ["BlockSize"] = pool.BlockSize,
                ["Images"] = new JsonArray([.. store.Images.Select(i => (JsonNode)new JsonObject
                {
                    ["Id"] = i.Id.ToString(), ["Names"] = new JsonArray([.. i.Names.Select(n => (JsonNode)n)]),
                    ["Layers"] = new JsonArray([.. i.Layers.Select(l => (JsonNode)new JsonObject
                    {
                        ["DiffId"] = l.DiffId.ToString(), ["ChainId"] = l.ChainId.ToString(), ["CacheId"] = l.CacheId, ["Size"] = l.Size,
                        ["ThinId"] = l.Device is { } d ? d.DeviceId : null, ["State"] = State(l.Device),
                    })]),
                })]),
                ["Containers"] = new JsonArray([.. store.Containers.Select(c => (JsonNode)new JsonObject
                {
                    ["Id"] = c.Id, ["Name"] = c.Name, ["Image"] = c.ImageId.ToString(), ["MountId"] = c.MountId,
                    ["ThinId"] = c.Device is { } d ? d.DeviceId : null, ["InitThinId"] = c.InitDevice is { } init ? init.DeviceId : null, ["State"] = State(c.Device),
                })]),
            }, () =>
            {
                var o = Io.Current.Out;
                o.WriteLine($"Docker root: {store.Root} (devicemapper, {store.Filesystem ?? "filesystem not recorded"}, blocks of {Bytes(pool.BlockSize)})");
                o.WriteLine($"Pool: {pool.DataName}, {pool.MetadataName}");
                o.WriteLine();
                Output.WriteTable(["IMAGE", "ID", "LAYERS", "THIN IDS", "STATE"], store.Images.Select(i => new[]
                {
                    i.Names.Count > 0 ? string.Join(",", i.Names) : "<none>", i.Id.Hex[..12], i.Layers.Count.ToString(CultureInfo.InvariantCulture),
                    string.Join(",", i.Layers.Select(l => Thin(l.Device))), i.Layers.Select(l => State(l.Device)).FirstOrDefault(s => s != "ok") ?? "ok",
                }).Select(row => new[] { row }));
                o.WriteLine();
                Output.WriteTable(["CONTAINER", "ID", "IMAGE", "THIN ID", "INIT THIN ID", "STATE"], store.Containers.Select(c => new[]
                {
                    c.Name, c.Id[..12], ImageName(c.ImageId), Thin(c.Device), Thin(c.InitDevice), State(c.Device),
                }).Select(row => new[] { row }));
            });
        });
        var what = new Argument<string>("NAME") { Description = "A container (name or id), an image (NAME:TAG or id: its top layer) or a layer (diff, chain or cache id)" };
        var target = new Argument<string>("DIR") { Description = "Where to mount it (an existing directory)" };
        var mount = new Command("mount", "Mount a container's or a layer's filesystem read-only at DIR until SIGTERM/SIGINT (ext4 with noload, xfs with norecovery)") { what, target, data, metadata };
        mount.SetAction(r =>
        {
            var (store, pool) = Open(r, r.GetValue(dockerRoot)!); // the parent's argument
            using var _ = pool;
            var (description, device) = store.Resolve(r.GetValue(what)!);
            var io = Io.Current;
            string dir = io.FullPath(r.GetValue(target)!);
            return Strata.Daemon.DmMount.RunAsync(new Strata.Daemon.DmMountOptions
            {
                Pool = pool,
                Device = device.DeviceId,
                Subdirectory = "rootfs",
                Target = dir,
                Mounted = () =>
                {
                    io.Out.WriteLine($"mounted {description} (thin device {device.DeviceId}) read-only at {dir}; SIGTERM or Ctrl-C unmounts it");
                    io.Out.Flush();
                },
                Log = m => { lock (io.Err) io.Err.WriteLine($"strata: {m}"); },
            }).GetAwaiter().GetResult();
        });
        docker.Subcommands.Add(mount);

        // the root may follow `migrate` too (`strata dm docker migrate /var/lib/docker --root S`), but be given once
        var migrateRoot = new Argument<string?>("DATA_ROOT") { Description = "dockerd's root (DOCKER_ROOT), given after `migrate` instead of before it", Arity = ArgumentArity.ZeroOrOne };
        var migrate = new Command("migrate", "Import Docker's devicemapper images (same ids and names, each layer checked against its diff id) and containers (same names, their changes) into the Strata store (--root); Docker's files are only read. Run again to finish one that stopped") { migrateRoot, data, metadata };
        migrate.SetAction(r =>
        {
            string root = r.GetValue(migrateRoot) is { } after
                ? r.GetResult(dockerRoot) is { Implicit: false } ? throw StrataException.Invalid("dockerd's root is given twice (before and after `migrate`): give it once") : after
                : r.GetValue(dockerRoot)!;
            var (store, pool) = Open(r, root);
            using var _ = pool;
            Warn(pool.Warnings());
            using var lease = OpenStore(r);
            var io = Io.Current;
            using var trees = new Strata.Daemon.DmDeviceTrees(pool, m => { lock (io.Err) io.Err.WriteLine($"strata: {m}"); });
            var migration = new Strata.Core.Devicemapper.DockerMigration(store, Catalog(lease), trees);
            int failed = 0;
            foreach (var m in migration.Images().Concat(migration.Containers()))
            {
                if (m.Failed)
                {
                    failed++;
                    io.Err.WriteLine($"strata: {m.What}: {m.Outcome}");
                }
                else io.Out.WriteLine($"{m.What}: {m.Outcome}");
            }
            return failed == 0 ? 0 : ExitCodes.Failure;
        });
        docker.Subcommands.Add(migrate);
        return docker;
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
        Warn(pool.Warnings());
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
