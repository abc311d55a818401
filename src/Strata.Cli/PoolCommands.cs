using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Strata.Core;
using Strata.Thin;
using Strata.Thin.Service;
using Strata.Thin.Space;

namespace Strata.Cli;

/// <summary>`strata pool ...`: thin pools and their devices. A pool lives in a directory (--pool, default
/// ROOT/thin); each command makes its calls on the pool's <see cref="IPoolService"/>: the server's while `strata pool
/// serve` owns the pool (through POOL/strata.sock), else the pool opened here for the command, under its lock, and
/// closed (committing) after it.</summary>
public static partial class Commands
{
    static readonly Option<string?> PoolOption = new("--pool")
    {
        Description = "Pool directory (default: ROOT/thin)",
        HelpName = "DIR",
        Recursive = true,
    };

    static string PoolDir(ParseResult r) =>
        Io.Current.FullPath(r.GetValue(PoolOption) ?? Path.Combine(r.GetValue(RootOption)!, "thin"));

    /// <summary>Whether a parsed command is one of `strata pool ...` (which reach a pool's server through its service,
    /// never as command lines).</summary>
    internal static bool IsPoolCommand(ParseResult r) => IsUnder(r, "pool");

    /// <summary>Whether a parsed command is the top-level command <paramref name="top"/> or one of its subcommands.</summary>
    static bool IsUnder(ParseResult r, string top)
    {
        for (var c = r.CommandResult; c is not null; c = c.Parent as System.CommandLine.Parsing.CommandResult)
            if (c.Command.Name == top && c.Parent is System.CommandLine.Parsing.CommandResult { Command: RootCommand }) return true;
        return false;
    }

    /// <summary>Whether a server that owns the pool answers on its control socket.</summary>
    static bool Served(ParseResult r)
    {
        using var server = RemotePool.ForPool(PoolDir(r));
        return server.Answers();
    }

    /// <summary>The pool a command works on: its server's (each call through the server while it answers, else on the
    /// pool opened for that call: a server that stops meanwhile, as the thin driver's idle one does, fails nothing), or
    /// opened for this command. A command waits for its server as long as it takes. What is wrong with its superblocks
    /// (a transaction lost to a damaged one) goes to stderr first, every time. <paramref name="load"/>: false leaves a
    /// pool opened here unloaded until a call needs it (check and dump must work on a pool too damaged to load), and
    /// prints nothing.</summary>
    static IPoolService OpenPool(ParseResult r, TimeSpan? commitInterval = null, bool load = true)
    {
        IPoolService pool = Served(r) ? new PerCallPool(PoolDir(r), callTimeout: null) : LocalPool.Open(PoolDir(r), commitInterval, load);
        if (load)
            try
            {
                Warn(pool.SuperblockProblems());
            }
            catch
            {
                pool.Dispose();
                throw;
            }
        return pool;
    }

    static void Warn(IEnumerable<string> problems)
    {
        foreach (var problem in problems) Io.Current.Err.WriteLine($"strata: warning: {problem}");
    }

    /// <summary>Refuses a change of the stores that needs the pool closed (repair, restore) while a server owns it.</summary>
    static void RequireNotServed(ParseResult r, string what)
    {
        if (Served(r))
            throw StrataException.InUse($"cannot {what} pool {PoolDir(r)} while `strata pool serve` owns it: stop the server (SIGTERM) first");
    }

    static Command PoolCommand()
    {
        var pool = new Command("pool", "Thin pools: block devices allocated on write, with O(1) snapshots") { PoolOption };

        var dataPath = new Option<string?>("--data") { Description = "Data store: a file (made sparse) or a block device (default: POOL/data)", HelpName = "FILE|DEVICE" };
        var metaPath = new Option<string?>("--metadata") { Description = "Metadata store: a file (made sparse) or a block device (default: POOL/metadata)", HelpName = "FILE|DEVICE" };
        var dataSize = new Option<string>("--data-size") { Description = "Size of a data file (sparse: it takes space as blocks are written)", HelpName = "SIZE", DefaultValueFactory = _ => "100G" };
        var metaSize = new Option<string?>("--metadata-size") { Description = "Size of a metadata file (sparse; default 2G), or of the metadata copy on each disk (default: 1/64 of the smallest disk, 1M to 256M)", HelpName = "SIZE" };
        var blockSize = new Option<string>("--block-size") { Description = "Block size: a power of two from 64K to 1G (fixed at creation)", HelpName = "SIZE", DefaultValueFactory = _ => "64K" };
        var threshold = new Option<int>("--autoextend-threshold") { Description = "Grow a store file by --autoextend-percent when this percent of it is used (100: never)", HelpName = "PERCENT", DefaultValueFactory = _ => 80 };
        var percent = new Option<int>("--autoextend-percent") { Description = "How much to grow a store file by, in percent of its size", HelpName = "PERCENT", DefaultValueFactory = _ => 20 };
        var maxData = new Option<string?>("--max-data-size") { Description = "The largest the data file may grow to (default: as far as the disk has room)", HelpName = "SIZE" };
        var maxMeta = new Option<string?>("--max-metadata-size") { Description = "The largest the metadata file may grow to (default: as far as the disk has room)", HelpName = "SIZE" };
        var noSpace = new Option<int>("--no-space-timeout") { Description = "Seconds a write waits for space when the pool is full before it fails (0: fail at once)", HelpName = "SECONDS", DefaultValueFactory = _ => 0 };
        var disks = new Option<string[]>("--disk") { Description = "A disk of a resilient pool (repeat it): a file (made sparse when it does not exist: give its size) or a block device", HelpName = "PATH[,size=SIZE]" };
        var resiliency = new Option<string?>("--resiliency") { Description = "How the disks keep each block: simple, mirror, mirror3, parity, parity2 (default: mirror on 2 disks or more, simple on one)", HelpName = "KIND" };
        var slabSize = new Option<string?>("--slab-size") { Description = "The unit the disks are given out in, a multiple of 1M and of the block size (default: 1/32 of the smallest disk, a power of two from 1M to 256M)", HelpName = "SIZE" };
        var checksum = new Option<string>("--checksum") { Description = "Data checksums of a resilient pool, verified on every read: crc32c or none", HelpName = "KIND", DefaultValueFactory = _ => "crc32c" };
        var create = new Command("create", "Create a pool: on a data and a metadata store, or resilient over disks (--disk ...)") { dataPath, metaPath, dataSize, metaSize, blockSize, threshold, percent, maxData, maxMeta, noSpace, disks, resiliency, slabSize, checksum };
        create.SetAction(r =>
        {
            if (Served(r)) throw StrataException.Exists($"{PoolDir(r)} already holds a pool");
            long bs = ByteSize.ParseWithUnit(r.GetValue(blockSize)!, "--block-size");
            if (bs is < ThinPool.MinBlockSize or > ThinPool.MaxBlockSize || !long.IsPow2(bs))
                throw StrataException.Invalid($"block size {r.GetValue(blockSize)} must be a power of two from 64K to 1G");
            if (r.GetValue(disks) is { Length: > 0 } diskArgs)
                return CreateResilient(r, diskArgs, (uint)bs, r.GetValue(resiliency), r.GetValue(slabSize), r.GetValue(checksum)!, r.GetValue(metaSize), r.GetValue(noSpace),
                    [dataPath, metaPath, dataSize, threshold, percent, maxData, maxMeta]);
            foreach (var o in new Option[] { resiliency, checksum, slabSize })
                if (r.GetResult(o) is { Implicit: false }) throw StrataException.Invalid($"{o.Name} is for a pool over disks (--disk PATH ...)");
            var options = new PoolOptions
            {
                CommitInterval = TimeSpan.Zero,
                AutoextendThreshold = r.GetValue(threshold),
                AutoextendPercent = r.GetValue(percent),
                MaxDataSize = r.GetValue(maxData) is { } md ? ByteSize.ParseWithUnit(md, "--max-data-size") : 0,
                MaxMetadataSize = r.GetValue(maxMeta) is { } mm ? ByteSize.ParseWithUnit(mm, "--max-metadata-size") : 0,
                NoSpaceTimeout = r.GetValue(noSpace) is >= 0 and <= 3600 and var t ? TimeSpan.FromSeconds(t) : throw StrataException.Invalid("--no-space-timeout must be from 0 to 3600 seconds"),
            };
            using var dir = PoolDirectory.Create(PoolDir(r), ByteSize.ParseWithUnit(r.GetValue(dataSize)!, "--data-size"), ByteSize.ParseWithUnit(r.GetValue(metaSize) ?? "2G", "--metadata-size"),
                (uint)bs, r.GetValue(dataPath) is { } d ? Io.Current.FullPath(d) : null, r.GetValue(metaPath) is { } m ? Io.Current.FullPath(m) : null, options);
            Io.Current.Out.WriteLine(dir.Path);
            return 0;
        });
        pool.Subcommands.Add(create);

        var format = FormatOption();
        var info = new Command("info", "Show the pool's space (like `docker info` for devicemapper); exit 1 while a lost transaction is unacknowledged") { format };
        info.SetAction(r =>
        {
            using var service = OpenPool(r, commitInterval: TimeSpan.Zero);
            var lines = PoolStatusLines(service.Status(), out var status);
            Output.Document(r.GetValue(format), () => Output.Status(lines), () =>
            {
                foreach (var f in lines) Io.Current.Out.WriteLine($"{f.Key}: {f.Value}");
            });
            return status.LostTransaction != 0 ? ExitCodes.Failure : ExitCodes.Ok;
        });
        pool.Subcommands.Add(info);

        var check = new Command("check", "Check every metadata block, tree and reference count; exit 0 when clean, 1 with a report");
        check.SetAction(r =>
        {
            using var service = OpenPool(r, load: false);
            return Report(service.Check());
        });
        pool.Subcommands.Add(check);

        var repair = new Command("repair", "Rebuild the data reference counts from the mapping trees (reclaiming leaked blocks), clear needs_check, rewrite both superblocks (acknowledging a lost transaction)");
        repair.SetAction(r =>
        {
            RequireNotServed(r, "repair");
            var report = PoolDirectory.WithStores(PoolDir(r), ThinPool.Repair);
            Io.Current.Out.WriteLine("repaired");
            return Report(PoolCheck.From(report));
        });
        pool.Subcommands.Add(repair);

        var xml = new Option<bool>("--xml") { Description = "In thin-provisioning-tools' XML (thin_dump/thin_restore); the only format", Required = true };
        var dump = new Command("dump", "Write the pool's mappings as thin_dump's XML (device names and sizes are not part of it)") { xml, OutputOption };
        dump.SetAction(r =>
        {
            string? path = r.GetValue(OutputOption);
            void Write(Action<Stream> dump)
            {
                if (path is null or OutputFile.Stdout) // XML is text: a terminal may show it
                {
                    var ms = new MemoryStream();
                    dump(ms);
                    Io.Current.Out.Write(System.Text.Encoding.UTF8.GetString(ms.ToArray()));
                }
                else OutputFile.Write(path, s => { dump(s); return 0; });
            }
            using var service = OpenPool(r, load: false);
            // a dump of a pool that fell back from a lost transaction says so, as open does
            Warn(service.SuperblockProblems());
            Write(service.Dump);
            return 0;
        });
        pool.Subcommands.Add(dump);

        var restoreForce = new Option<bool>("--force") { Description = "Restore over devices that an owner holds (a thin store's layers, which break)" };
        var restore = new Command("restore", "Replace the pool's metadata by thin_dump's XML (devices are named by their ids); the data store stays as it is") { xml, InputOption, restoreForce };
        restore.SetAction(r =>
        {
            RequireNotServed(r, "restore the metadata of");
            using var input = OpenInput(r.GetValue(InputOption));
            PoolDirectory.WithStores(PoolDir(r), (data, metadata) =>
            {
                ThinPool.RestoreXml(data, metadata, input, r.GetValue(restoreForce));
                return 0;
            });
            return 0;
        });
        pool.Subcommands.Add(restore);

        var socketPath = new Option<string>("--socket") { Description = "Unix socket to serve NBD on (mode 0600)", HelpName = "PATH", DefaultValueFactory = _ => "/run/strata/nbd.sock" };
        var tcp = new Option<string?>("--tcp") { Description = "Also serve NBD on this TCP address (e.g. 127.0.0.1:10809; loopback unless you name another)", HelpName = "ADDRESS:PORT" };
        var fuse = new Option<string?>("--fuse") { Description = "Also show every device as a file in this directory (a FUSE mount; losetup attaches one as a kernel block device)", HelpName = "DIR" };
        var session = new Option<bool>("--new-session") { Description = "Run in a session of its own, away from the terminal's signals (how the thin driver starts its pool's server)", Hidden = true };
        var poolMetrics = MetricsOption("POOL");
        var serve = new Command("serve", "Serve the pool's devices over NBD (qemu, nbdinfo, nbdcopy, fio, nbdfuse) until SIGTERM/SIGINT") { socketPath, tcp, fuse, session, poolMetrics };
        serve.SetAction(r =>
        {
            if (r.GetValue(session)) Strata.Native.Posix.TrySetSid(); // EPERM: a session leader already
            // the server is the block device under the filesystems on its FUSE files: keep it out of writeback throttling
            if (r.GetValue(fuse) is not null) Strata.Native.Posix.TrySetIoFlusher();
            return ServeNbd(PoolDir(r), Io.Current.FullPath(r.GetValue(socketPath)!), r.GetValue(tcp), r.GetValue(fuse) is { } f ? Io.Current.FullPath(f) : null,
                MetricsAddress(r, poolMetrics, PoolDir(r)));
        });
        pool.Subcommands.Add(serve);

        var device = new Command("device", "Thin devices of the pool");
        var name = new Argument<string>("NAME") { Description = "Device name" };
        var size = new Option<string>("--size") { Description = "Virtual size (e.g. 10G)", HelpName = "SIZE", Required = true };
        var dcreate = new Command("create", "Create a thin device (nothing is allocated until it is written)") { name, size };
        dcreate.SetAction(r => WithPool(r, p => p.Create(r.GetValue(name)!, ByteSize.ParseWithUnit(r.GetValue(size)!, "--size"))));
        device.Subcommands.Add(dcreate);

        var source = new Argument<string>("SOURCE") { Description = "Device to snapshot" };
        var snapName = new Argument<string>("NAME") { Description = "Name of the snapshot" };
        var snapshot = new Command("snapshot", "Snapshot a device: a new device sharing all its blocks, in O(1)") { source, snapName };
        snapshot.SetAction(r => WithPool(r, p => p.Snapshot(r.GetValue(source)!, r.GetValue(snapName)!)));
        device.Subcommands.Add(snapshot);

        var names = new Argument<string[]>("NAME") { Description = "Devices to delete", Arity = ArgumentArity.OneOrMore };
        var force = new Option<bool>("--force") { Description = "Delete (rm) or write into (write, resize) a device that its owner holds (a thin layer's device: the layer breaks)" };
        var rm = new Command("rm", "Delete devices; blocks no other device uses are freed. A device with an owner (a thin layer's) is refused (exit 5) without --force") { names, force };
        rm.SetAction(r =>
        {
            using var service = OpenPool(r, commitInterval: TimeSpan.Zero);
            foreach (var n in r.GetValue(names)!)
            {
                service.Delete(n, force: r.GetValue(force));
                Io.Current.Out.WriteLine(n);
            }
            return 0;
        });
        device.Subcommands.Add(rm);

        var resize = new Command("resize", "Grow a device (one with an owner only with --force)") { name, size, force };
        resize.SetAction(r => WithPool(r, p =>
        {
            RequireUnheld(p, r.GetValue(name)!, "resizing it under its owner", r.GetValue(force));
            return p.Resize(r.GetValue(name)!, ByteSize.ParseWithUnit(r.GetValue(size)!, "--size"));
        }));
        device.Subcommands.Add(resize);

        var target = new Argument<string>("SNAPSHOT") { Description = "The device whose blocks NAME takes (usually a snapshot of it)" };
        var rollback = new Command("rollback", "Make a device hold what a snapshot holds, in one commit, sharing its blocks (the snapshot stays); refused while the device is open, and for a device with an owner without --force") { name, target, force };
        rollback.SetAction(r => WithPool(r, p => p.Rollback(r.GetValue(name)!, r.GetValue(target)!, force: r.GetValue(force))));
        device.Subcommands.Add(rollback);

        var offset = new Option<string>("--offset") { Description = "Byte offset in the device", HelpName = "BYTES", DefaultValueFactory = _ => "0" };
        var write = new Command("write", "Write stdin (or -i FILE) into a device at --offset, then flush; prints the bytes written (into a device with an owner only with --force)") { name, offset, InputOption, force };
        write.SetAction(r =>
        {
            using var input = OpenInput(r.GetValue(InputOption));
            using var service = OpenPool(r);
            RequireUnheld(service, r.GetValue(name)!, "writing into it under its owner would corrupt what the owner keeps there", r.GetValue(force));
            long total = service.Write(r.GetValue(name)!, ByteSize.Parse(r.GetValue(offset)!, "offset"), input);
            Io.Current.Out.WriteLine(total.ToString(CultureInfo.InvariantCulture));
            return 0;
        });
        device.Subcommands.Add(write);

        var length = new Option<string?>("--length") { Description = "Bytes to read (default: to the end of the device)", HelpName = "BYTES" };
        var read = new Command("read", "Read a device's bytes from --offset to stdout (or -o FILE)") { name, offset, length, OutputOption };
        read.SetAction(r =>
        {
            using var service = OpenPool(r, commitInterval: TimeSpan.Zero);
            var dev = service.Device(r.GetValue(name)!);
            long at = ByteSize.Parse(r.GetValue(offset)!, "offset");
            long count = r.GetValue(length) is { } l ? ByteSize.Parse(l, "length") : Math.Max(0, dev.Size - at);
            DeviceRange.Require(dev.Name, dev.Size, at, count);
            OutputFile.Write(r.GetValue(OutputOption), s =>
            {
                service.Read(dev.Name, at, count, s);
                return 0;
            });
            return 0;
        });
        device.Subcommands.Add(read);

        var lsOptions = new Output.ListOptions("device", "owner");
        var ls = new Command("ls", "List devices with their mapped, exclusive and shared blocks (like thin_ls)");
        lsOptions.AddTo(ls);
        ls.SetAction(r =>
        {
            var filters = lsOptions.Filters(r); // before the store: a bad filter is refused even where there is none
            using var service = OpenPool(r, commitInterval: TimeSpan.Zero);
            var devices = service.Devices().Where(d => filters.Match("owner", o => (d.Owner ?? "") == o)).ToList();
            long blockSize = service.Status().Status.BlockSize;
            return Output.List(r, lsOptions, devices, d => d.Name, d => new System.Text.Json.Nodes.JsonObject
            {
                ["Name"] = d.Name, ["Id"] = (long)d.Id, ["Size"] = d.Size, ["MappedBlocks"] = (long)d.Mapped, ["ExclusiveBlocks"] = (long)d.Exclusive,
                ["SharedBlocks"] = (long)d.Shared, ["BlockSize"] = blockSize, ["Origin"] = (long)d.Origin, ["Created"] = d.Created, ["Owner"] = d.Owner,
            }, ["NAME", "ID", "SIZE", "MAPPED", "EXCLUSIVE", "SHARED", "CREATED", "OWNER"], (d, _) =>
            [[
                d.Name, d.Id.ToString(CultureInfo.InvariantCulture), Bytes(d.Size), Bytes((long)d.Mapped * blockSize),
                Bytes((long)d.Exclusive * blockSize), Bytes((long)d.Shared * blockSize), When(d.Created), d.Owner ?? "-",
            ]]);
        });
        device.Subcommands.Add(ls);
        device.Subcommands.Add(DeviceStatsCommand());
        pool.Subcommands.Add(device);
        pool.Subcommands.Add(DiskCommand());
        pool.Subcommands.Add(ScrubCommand());
        return pool;
    }

    static int CreateResilient(ParseResult r, string[] diskArgs, uint blockSize, string? resiliency, string? slabSize, string checksum, string? metaSize, int noSpace, Option[] plainOnly)
    {
        foreach (var o in plainOnly)
            if (r.GetResult(o) is { Implicit: false }) throw StrataException.Invalid($"{o.Name} is for a pool on a data and a metadata store, not over disks");
        var specs = diskArgs.Select(ParseDisk).ToList();
        var kind = resiliency is null ? (specs.Count > 1 ? Resiliency.Mirror : Resiliency.Simple) : ResiliencyNames.Parse(resiliency);
        bool sums = checksum switch
        {
            "crc32c" => true,
            "none" => false,
            _ => throw StrataException.Invalid($"unknown --checksum '{checksum}' (crc32c or none)"),
        };
        long? slab = slabSize is null ? null : ByteSize.ParseWithUnit(slabSize, "--slab-size");
        long? meta = metaSize is null ? null : ByteSize.ParseWithUnit(metaSize, "--metadata-size");
        if (noSpace is < 0 or > 3600) throw StrataException.Invalid("--no-space-timeout must be from 0 to 3600 seconds");
        using var dir = PoolDirectory.Create(PoolDir(r), new SpaceSpec(specs, kind, slab, meta, sums), blockSize,
            new PoolOptions { CommitInterval = TimeSpan.Zero, NoSpaceTimeout = TimeSpan.FromSeconds(noSpace) });
        Io.Current.Out.WriteLine(dir.Path);
        return 0;
    }

    /// <summary>PATH or PATH,size=SIZE (the last ",size=" splits: a path may hold commas).</summary>
    internal static DiskSpec ParseDisk(string text)
    {
        int at = text.LastIndexOf(",size=", StringComparison.Ordinal);
        string path = at < 0 ? text : text[..at];
        if (path.Length == 0) throw StrataException.Invalid($"--disk '{text}' names no path");
        long? size = at < 0 ? null : ByteSize.ParseWithUnit(text[(at + 6)..], "--disk size");
        return new DiskSpec(Io.Current.FullPath(path), size);
    }

    static Command DiskCommand()
    {
        var disk = new Command("disk", "The disks of a resilient pool");
        var lsOptions = new Output.ListOptions("disk", "state");
        var ls = new Command("ls", "List the pool's disks: state, size, slabs, errors (read, write, checksum) and sectors repaired");
        lsOptions.AddTo(ls);
        ls.SetAction(r =>
        {
            var filters = lsOptions.Filters(r);
            using var service = OpenPool(r, commitInterval: TimeSpan.Zero);
            var space = service.Status().Space ?? throw StrataException.Invalid($"pool {PoolDir(r)} is on one data store, not over disks");
            var rows = space.Disks.Where(d => filters.Match("state", s => d.State == s)).ToList();
            return Output.List(r, lsOptions, rows, d => d.Path, d => DiskJson(d, space),
                ["SLOT", "PATH", "STATE", "SIZE", "SLABS", "USED", "READ ERR", "WRITE ERR", "CHECKSUM ERR", "REPAIRED"], (d, _) =>
                [[
                    d.Slot.ToString(CultureInfo.InvariantCulture), d.Path, d.Reason is null ? d.State : $"{d.State} ({d.Reason})", Bytes(d.Bytes),
                    d.Slabs.ToString(CultureInfo.InvariantCulture), d.SlabsUsed.ToString(CultureInfo.InvariantCulture),
                    d.ReadErrors.ToString(CultureInfo.InvariantCulture), d.WriteErrors.ToString(CultureInfo.InvariantCulture),
                    d.ChecksumErrors.ToString(CultureInfo.InvariantCulture), d.Repaired.ToString(CultureInfo.InvariantCulture),
                ]]);
        });
        disk.Subcommands.Add(ls);

        var addDisk = new Argument<string>("disk") { Description = "The disk: a file (made sparse when it does not exist: give its size) or a block device", HelpName = "PATH[,size=SIZE]" };
        var add = new Command("add", "Add a disk: the pool grows by the slabs it lets place (after any rebuild, which it serves first)") { addDisk };
        add.SetAction(r => ChangeDisk(r, DiskAction.Add, ParseDisk(r.GetValue(addDisk)!)));
        disk.Subcommands.Add(add);

        var path = new Argument<string>("disk") { Description = "A disk of the pool", HelpName = "PATH" };
        var remove = new Command("remove", "Empty a disk (its slabs move to the others while it still serves), then retire it") { path };
        remove.SetAction(r => ChangeDisk(r, DiskAction.Remove, new DiskSpec(Io.Current.FullPath(r.GetValue(path)!), null)));
        disk.Subcommands.Add(remove);

        var newDisk = new Argument<string>("new") { Description = "The disk taking its place", HelpName = "NEW[,size=SIZE]" };
        var replace = new Command("replace", "Replace a disk (failed, missing or in use): the new one joins and takes its slabs, rebuilt or moved; the old one is retired") { path, newDisk };
        replace.SetAction(r => ChangeDisk(r, DiskAction.Replace, new DiskSpec(Io.Current.FullPath(r.GetValue(path)!), null), ParseDisk(r.GetValue(newDisk)!)));
        disk.Subcommands.Add(replace);

        var fail = new Command("fail", "Take a disk out of use as if it had failed (a drill): the pool runs degraded and rebuilds into the other disks' free space") { path };
        fail.SetAction(r => ChangeDisk(r, DiskAction.Fail, new DiskSpec(Io.Current.FullPath(r.GetValue(path)!), null)));
        disk.Subcommands.Add(fail);
        return disk;
    }

    /// <summary>A change of the disks, through the pool's server when it has one (the rebuild then goes on in its
    /// background: `pool info` shows it), else on the pool opened here (which waits for the rebuild to end).</summary>
    static int ChangeDisk(ParseResult r, DiskAction action, DiskSpec disk, DiskSpec? other = null)
    {
        using var service = OpenPool(r);
        var space = service.ChangeDisks(action == DiskAction.Replace
            ? new DiskChange(action, disk.Path, other!.Path, other.Size)
            : new DiskChange(action, disk.Path, null, disk.Size));
        Io.Current.Out.WriteLine(space.Rebuild.Running
            ? $"rebuilding: {space.Rebuild.Done} of {space.Rebuild.Total} slab columns (`strata pool info` shows how far)"
            : $"{space.Health}{(space.AtRisk.Count > 0 ? ": " + string.Join("; ", space.AtRisk) : "")}");
        return ExitCodes.Ok;
    }

    static Command ScrubCommand()
    {
        var repair = new Option<bool>("--repair") { Description = "Rewrite what is wrong from what is right (without it, the scrub only reads and reports)" };
        var format = FormatOption();
        var scrub = new Command("scrub", "Read and check every copy of every allocated block (checksums, copies, parity), per disk; exit 1 when something is wrong and was not repaired") { repair, format };
        scrub.SetAction(r =>
        {
            using var service = OpenPool(r);
            var report = service.Scrub(r.GetValue(repair));
            Output.Document(r.GetValue(format), () => Output.Node(report)!, () =>
            {
                var o = Io.Current.Out;
                foreach (var d in report.Disks)
                    o.WriteLine($"{d.Path}: {ByteSize.Format(d.BytesRead)} read, {d.ReadErrors} read errors, {d.Errors} wrong, {d.Repaired} repaired");
                o.WriteLine($"scrubbed {report.Blocks} blocks ({ByteSize.Format(report.Bytes)}) in {report.Seconds:0.0} s: {report.Errors} wrong, {report.Repaired} repaired, {report.Unrecoverable} unrecoverable");
            });
            return report.Unrecoverable > 0 || report.Errors > 0 && !report.Repair ? ExitCodes.Failure : ExitCodes.Ok;
        });
        return scrub;
    }

    static System.Text.Json.Nodes.JsonObject DiskJson(DiskInfo d, SpaceInfo space) => new()
    {
        ["Slot"] = d.Slot, ["Path"] = d.Path, ["State"] = d.State, ["Reason"] = d.Reason, ["Size"] = d.Bytes, ["Slabs"] = d.Slabs, ["SlabsUsed"] = d.SlabsUsed,
        ["SlabSize"] = space.SlabSize, ["ReadErrors"] = d.ReadErrors, ["WriteErrors"] = d.WriteErrors, ["ChecksumErrors"] = d.ChecksumErrors, ["Repaired"] = d.Repaired,
    };

    /// <summary>Refuses (InUse, naming the owner) to change a device that its owner holds, unless forced: the pool
    /// refuses deleting one itself; writes and resizes are the CLI's to refuse, as the owner's own IO goes through the
    /// same pool calls.</summary>
    static void RequireUnheld(IPoolService pool, string name, string why, bool force)
    {
        if (pool.Device(name).Owner is { } owner && !force)
            throw StrataException.InUse($"thin device {name} is held by {owner}: {why} (--force does it all the same)");
    }

    static int WithPool(ParseResult r, Func<IPoolService, ThinDeviceInfo> change)
    {
        using var service = OpenPool(r, commitInterval: TimeSpan.Zero);
        var d = change(service);
        Io.Current.Out.WriteLine(d.Name);
        return 0;
    }

    static int Report(PoolCheck report)
    {
        var o = Io.Current.Out;
        o.WriteLine($"transaction {report.Transaction}: {report.Devices} device(s), {report.MappedBlocks} mapped block(s), {report.MetadataBlocksUsed} metadata block(s)");
        foreach (var e in report.Errors) o.WriteLine($"error: {e}");
        foreach (var l in report.Leaks) o.WriteLine($"leak: {l}");
        if (report.Clean) o.WriteLine("clean");
        return report.Clean ? ExitCodes.Ok : ExitCodes.Failure;
    }

    /// <summary>The pool's status lines, with the names Docker's devicemapper driver printed.</summary>
    static List<StatusField> PoolStatusLines(PoolInfo info, out PoolStatus s)
    {
        s = info.Status;
        var layout = info.Layout;
        List<StatusField> stores = info.Space is { } space
            ?
            [
                new("Resiliency", space.DataColumns > 1 || space.ParityColumns > 0 ? $"{space.Resiliency} ({space.DataColumns}+{space.ParityColumns})" : space.Resiliency, space.Resiliency),
                StatusField.Flag("Checksums", space.Checksums),
                new("Health", space.AtRisk.Count == 0 ? space.Health : $"{space.Health}: {string.Join("; ", space.AtRisk)}", space.Health),
                new("Disks", space.Disks.Count.ToString(CultureInfo.InvariantCulture), new System.Text.Json.Nodes.JsonArray([.. space.Disks.Select(d => DiskJson(d, space))])),
                StatusField.Bytes("Raw Space", space.RawBytes),
                StatusField.Bytes("Usable Space", space.UsableBytes),
                StatusField.Bytes("Slab Size", space.SlabSize),
                StatusField.Count("Slabs", space.Slabs),
                StatusField.Count("Unrecoverable Sectors", space.Unrecoverable),
                new("Rebuild", space.Rebuild.Running ? $"running: {space.Rebuild.Done} of {space.Rebuild.Total} slab columns" : space.Rebuild.Stuck ?? "idle", Output.Node(space.Rebuild)),
                new("Scrub", space.Scrub.Running ? $"running: {ByteSize.Format(space.Scrub.Done)} of {ByteSize.Format(space.Scrub.Total)}" : "idle", Output.Node(space.Scrub)),
                .. space.Disks.Select(d => StatusField.Text($"Disk {d.Slot}",
                    $"{d.Path}: {d.State}{(d.Reason is null ? "" : $" ({d.Reason})")}, {ByteSize.Format(d.Bytes)}, {d.SlabsUsed} of {d.Slabs} slabs used, errors {d.ReadErrors} read {d.WriteErrors} write {d.ChecksumErrors} checksum, {d.Repaired} sectors repaired")),
            ]
            : [new("Data file", layout.Data), new("Metadata file", layout.Metadata)];
        return
        [
            new("Pool Directory", info.Directory),
            StatusField.Bytes("Pool Blocksize", s.BlockSize),
            .. stores,
            .. Strata.Core.Drivers.Thin.ThinDriver.SpaceLines(s),
            StatusField.Count("Thin Devices", s.Devices),
            StatusField.Count("Transaction", (long)s.Transaction),
            StatusField.Flag("Needs Check", s.NeedsCheck),
            new("Read Only", s.ReadOnlyReason ?? "false", s.ReadOnlyReason ?? (object)false),
            new("Lost Transaction", s.LostTransaction == 0 ? "none" : s.LostTransaction.ToString(CultureInfo.InvariantCulture), (long)s.LostTransaction),
            new("Superblock", s.SuperblockProblems is { Count: > 0 } problems ? string.Join("; ", problems) : "clean", (s.SuperblockProblems ?? []).ToArray()),
            new("Autoextend", layout.AutoextendThreshold >= 100 ? "off" : $"{layout.AutoextendPercent}% at {layout.AutoextendThreshold}% used"
                + (layout.MaxDataSize > 0 ? $", data up to {ByteSize.Format(layout.MaxDataSize)}" : "")
                + (layout.MaxMetadataSize > 0 ? $", metadata up to {ByteSize.Format(layout.MaxMetadataSize)}" : ""),
                new Dictionary<string, object>
                {
                    ["Enabled"] = layout.AutoextendThreshold < 100, ["Threshold"] = (long)layout.AutoextendThreshold, ["Percent"] = (long)layout.AutoextendPercent,
                    ["MaxDataSize"] = layout.MaxDataSize, ["MaxMetadataSize"] = layout.MaxMetadataSize,
                }),
            new("No Space Timeout", layout.NoSpaceTimeoutMs == 0 ? "0 (fail at once)" : $"{layout.NoSpaceTimeoutMs / 1000} s", (long)(layout.NoSpaceTimeoutMs / 1000)),
        ];
    }

    static int ServeNbd(string poolDir, string socketPath, string? tcp, string? fuse, string? metrics)
    {
        var endpoint = ParseTcp(tcp);
        var io = Io.Current;
        return Strata.Daemon.PoolDaemon.RunAsync(new Strata.Daemon.PoolDaemonOptions
        {
            Pool = poolDir,
            NbdSocket = socketPath,
            NbdTcp = endpoint,
            Fuse = fuse,
            Metrics = metrics,
            Started = (dir, where) =>
            {
                io.Out.WriteLine($"serving pool {dir.Path} on {where}");
                io.Out.Flush();
            },
            Log = m => { lock (io.Err) io.Err.WriteLine($"strata: {m}"); },
        }).GetAwaiter().GetResult();
    }
}
