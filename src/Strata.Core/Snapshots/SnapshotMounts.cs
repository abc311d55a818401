// Turns a driver's MountSpec for a snapshot's layer into the mounts containerd performs itself, and finds the
// directory that holds the layer's own data (for Usage).
using Strata.Native;

namespace Strata.Core.Snapshots;

/// <summary>
/// The mounts containerd is handed, as its own overlay and native snapshotters return them (targets unset: containerd
/// mounts where it likes): a layer that is a plain directory (vfs, btrfs, overlay without parent) is a <c>bind</c>
/// with <c>rbind</c> and <c>rw</c> or <c>ro</c>; an active overlay snapshot is the driver's overlay mount (lowerdir,
/// upperdir, workdir); a view over overlay reads its parent's chain alone (lowerdir only, or a read-only bind of the
/// parent's directory when the chain is one directory), so nothing is written to its own upper dir. A block layer
/// (thin) is its filesystem's mount of the device (<see cref="ForDevice"/>).
/// </summary>
static class SnapshotMounts
{
    public static IReadOnlyList<MountSpec> For(MountSpec layer, SnapshotKind kind)
    {
        bool readOnly = kind != SnapshotKind.Active;
        if (layer.IsPlainDirectory) return [Bind(layer.Source, readOnly)];
        if (layer.Type != "overlay")
            throw StrataException.Unsupported($"the snapshotter cannot hand containerd a '{layer.Type}' mount (a mount program is the store's to run)");
        if (!readOnly) return [new MountSpec("overlay", "overlay", [.. layer.Options])];
        var lowers = Option(layer, "lowerdir=")?.Split(':') ?? throw StrataException.Corrupt($"an overlay mount without lowerdir: {string.Join(',', layer.Options)}");
        if (lowers.Length == 1) return [Bind(lowers[0], readOnly: true)];
        var options = layer.Options.Where(o => !o.StartsWith("upperdir=", StringComparison.Ordinal) && !o.StartsWith("workdir=", StringComparison.Ordinal)).ToList();
        options.Add("ro");
        return [new MountSpec("overlay", "overlay", options)];
    }

    /// <summary>The mount of a layer's filesystem on its block device (<see cref="IBlockLayers"/>), as containerd's
    /// devmapper snapshotter returns it: <c>{ext4|xfs, /dev/..., options}</c>, read-only unless active.</summary>
    public static IReadOnlyList<MountSpec> ForDevice(MountSpec device, SnapshotKind kind) =>
        [new MountSpec(device.Type, device.Source, [.. device.Options.Where(o => o is not ("ro" or "rw")), kind == SnapshotKind.Active ? "rw" : "ro"])];

    /// <summary>The directory holding the layer's own data: the bind's source or the overlay's upper dir.</summary>
    public static string OwnDirectory(MountSpec layer) =>
        layer.IsPlainDirectory ? layer.Source
        : Option(layer, "upperdir=") ?? throw StrataException.Unsupported($"cannot tell the own data of a '{layer.Type}' layer");

    static MountSpec Bind(string dir, bool readOnly) => new("bind", dir, ["rbind", readOnly ? "ro" : "rw"]);

    static string? Option(MountSpec spec, string prefix) =>
        spec.Options.FirstOrDefault(o => o.StartsWith(prefix, StringComparison.Ordinal))?[prefix.Length..];

    /// <summary>Bytes allocated (st_blocks) and inodes under <paramref name="dir"/>, itself included, each inode once,
    /// without crossing into other filesystems (containerd's fs.DiskUsage).</summary>
    public static SnapshotUsage DiskUsage(string dir)
    {
        var root = Posix.Lstat(dir);
        var seen = new HashSet<ulong>();
        long bytes = 0, inodes = 0;
        var pending = new Stack<string>();
        pending.Push(dir);
        Count(root);
        while (pending.TryPop(out var current))
            foreach (var e in Posix.ReadDir(current))
            {
                string path = Path.Combine(current, e.Name);
                if (!Posix.TryLstat(path, out var st)) continue; // gone meanwhile
                if (st.Device != root.Device) continue;
                Count(st);
                if (st.IsDirectory) pending.Push(path);
            }
        return new SnapshotUsage(bytes, inodes);

        void Count(FileStat st)
        {
            if (!seen.Add(st.Inode)) return;
            inodes++;
            bytes += st.Blocks * 512;
        }
    }
}
