using Strata.Block;
using Strata.Fuse;
using Strata.Native;
using Strata.Thin.DmThin;

namespace Strata.Daemon;

/// <summary>How `strata dm docker mount` runs.</summary>
public sealed record DmMountOptions
{
    public required string Data { get; init; }
    public required string Metadata { get; init; }
    /// <summary>The devices' sizes as their owner recorded them (Docker's records).</summary>
    public IReadOnlyDictionary<uint, long>? Sizes { get; init; }
    public required uint Device { get; init; }
    /// <summary>The directory of the device's filesystem to show (Docker keeps a layer's tree under rootfs/); null: all.</summary>
    public string? Subdirectory { get; init; }
    public required string Target { get; init; }
    /// <summary>Called once mounted, with the filesystem's type.</summary>
    public Action<string>? Mounted { get; init; }
    public Action<string>? Log { get; init; }
}

/// <summary>
/// `strata dm docker mount`: one thin device of a dm-thin pool mounted read-only, for as long as this process runs
/// (as nbdfuse or squashfuse -f serve their mounts): the pool opened read-only, the device exported as a file of a
/// private FUSE mount, a read-only loop device over it, its filesystem (ext4 or xfs, by its superblock) mounted without
/// replaying its journal (noload, norecovery) in a private directory, and the subdirectory asked for bound on the
/// target. On SIGTERM or SIGINT everything is undone in the reverse order; so it is when any step fails.
/// </summary>
public static class DmMount
{
    public static async Task<int> RunAsync(DmMountOptions options, CancellationToken stop = default)
    {
        if (!Directory.Exists(options.Target)) throw StrataException.NotFound($"{options.Target} is not a directory");
        if (MountTable.IsMountPoint(options.Target)) throw StrataException.InUse($"{options.Target} is a mount point already");
        using var pool = DmPool.Open(options.Data, options.Metadata, options.Sizes);
        pool.Device(options.Device); // one that does not exist is refused before anything is made
        foreach (var problem in pool.Problems) options.Log?.Invoke($"warning: {problem}");
        foreach (var u in pool.Device(options.Device).Unreadable) options.Log?.Invoke($"warning: thin device {options.Device}: {u}");
        string type;
        using (var reader = pool.OpenDevice(options.Device))
        {
            var head = new byte[FilesystemProbe.ProbeLength];
            if (reader.Size < head.Length) throw StrataException.Invalid($"thin device {options.Device} holds no filesystem ({reader.Size} bytes)");
            reader.Read(0, head);
            type = FilesystemProbe.Type(head) ?? throw StrataException.Unsupported($"thin device {options.Device} holds neither ext4 nor xfs");
        }

        string home = Directory.CreateTempSubdirectory("strata-dm-mount-").FullName; // 0700
        string exportDir = Path.Combine(home, "devices"), fsDir = Path.Combine(home, "fs");
        Directory.CreateDirectory(exportDir);
        Directory.CreateDirectory(fsDir);
        FuseExport? fuse = null;
        FileDescriptor? loop = null;
        bool fsMounted = false, targetMounted = false;
        try
        {
            fuse = FuseExport.Mount(exportDir, new OneDevice(pool, options.Device), (uint)Math.Min(pool.BlockSize, 1 << 20), m => options.Log?.Invoke(m));
            string file = Path.Combine(exportDir, options.Device.ToString(System.Globalization.CultureInfo.InvariantCulture));
            string loopPath;
            using (var backing = Posix.Open(file, Posix.O_RDONLY))
                (loopPath, loop) = Posix.AttachLoop(backing, file, Posix.LO_FLAGS_READ_ONLY | Posix.LO_FLAGS_AUTOCLEAR);
            Errno.Check(Posix.TryMount(loopPath, fsDir, type, Posix.MS_RDONLY | Posix.MS_NODEV | Posix.MS_NOSUID, FilesystemProbe.ReadOnlyOptions(type)),
                $"mount ({type}, ro,{FilesystemProbe.ReadOnlyOptions(type)})", loopPath);
            fsMounted = true;
            string shown = options.Subdirectory is { } sub ? Path.Combine(fsDir, sub) : fsDir;
            if (!Directory.Exists(shown)) throw StrataException.NotFound($"thin device {options.Device}'s filesystem has no {options.Subdirectory}/");
            Errno.Check(Posix.TryMount(shown, options.Target, null, Posix.MS_BIND, null), "mount --bind", options.Target);
            targetMounted = true;

            using var stopped = new StopSignal(stop);
            options.Mounted?.Invoke(type);
            await stopped.Task;
        }
        finally
        {
            if (targetMounted && Posix.TryUnmount(options.Target, 0) != 0) Posix.TryUnmount(options.Target, Posix.MNT_DETACH);
            if (fsMounted && Posix.TryUnmount(fsDir, 0) != 0) Posix.TryUnmount(fsDir, Posix.MNT_DETACH);
            loop?.Dispose(); // autoclear: the loop device goes once the filesystem let go of it
            fuse?.Dispose();
            try
            {
                Directory.Delete(home, recursive: true);
            }
            catch (IOException)
            {
                // a mount that went lazily away still held it: leave the empty directories
            }
        }
        return 0;
    }

    /// <summary>The one device the mount needs, as the FUSE export shows devices.</summary>
    sealed class OneDevice(DmPool pool, uint id) : IBlockExports
    {
        readonly string _name = id.ToString(System.Globalization.CultureInfo.InvariantCulture);

        public IReadOnlyList<string> Names() => [_name];

        public IBlockDevice? Open(string name) => name == _name ? pool.OpenDevice(id) : null;

        public bool ReadOnly(string name) => true;
    }
}
