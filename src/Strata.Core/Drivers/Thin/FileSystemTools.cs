using Strata.Native;

namespace Strata.Core.Drivers.Thin;

/// <summary>The filesystems the thin driver puts on its devices: mkfs, grow, the options every mount of one takes, and
/// the driver's own short mounts of one (the base's, a grow's, a freeze's).</summary>
static class FileSystemTools
{
    public static void Make(string fs, string device, IReadOnlyList<string> extra)
    {
        // nodiscard / -K: a new thin device has nothing to discard. lazy_itable_init: unwritten inode tables read as
        // zeros on a thin device, so mkfs need not write them (and no layer copies them up later).
        var args = fs == "xfs"
            ? new List<string> { "-q", "-K" }
            : new List<string> { "-q", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1" };
        args.AddRange(extra);
        args.Add(device);
        ExternalTool.Run("mkfs." + fs, args, package: fs == "xfs" ? "xfsprogs" : "e2fsprogs");
    }

    public static void Grow(string fs, string device, string? mountPoint)
    {
        if (fs == "xfs") ExternalTool.Run("xfs_growfs", ["-d", mountPoint ?? throw new ArgumentNullException(nameof(mountPoint))], package: "xfsprogs");
        else ExternalTool.Run("resize2fs", ["-f", device], package: "e2fsprogs"); // -f: no e2fsck first; the filesystem was unmounted cleanly
    }

    /// <summary>The options of every mount of a layer's filesystem.</summary>
    public static List<string> MountOptions(ThinOptions options)
    {
        // ext4: the inode tables of a fresh filesystem read as zeros on a thin device already, so the background
        // thread that zeroes them would only copy blocks up in every layer. xfs: snapshots share the UUID.
        var list = new List<string> { options.FileSystem == "xfs" ? "nouuid" : "noinit_itable" };
        list.AddRange(options.MountOptions);
        return list;
    }

    /// <summary>Mounts the filesystem on <paramref name="device"/> at <paramref name="target"/>, for the driver's own use.</summary>
    public static void Mount(ThinOptions options, string device, string target) =>
        Mounter.Mount(new MountSpec(options.FileSystem, device, MountOptions(options)) { Target = target });

    /// <summary>Unmounts a scratch mount of the driver's own after making what it wrote durable.</summary>
    public static void UnmountScratch(string dir)
    {
        Posix.SyncFileSystem(dir);
        Mounter.Unmount(dir);
    }
}
