using Strata.Core.Drivers.Btrfs;
using Strata.Core.Drivers.Overlay;
using Strata.Core.Drivers.Thin;
using Strata.Core.Drivers.Vfs;

namespace Strata.Core.Drivers;

/// <summary>The drivers a store can be created with, by name, and the default for a new store.</summary>
public static class DriverRegistry
{
    static readonly Dictionary<string, Func<string, IReadOnlyDictionary<string, string>, IDriver>> Factories = new(StringComparer.Ordinal)
    {
        ["overlay"] = (root, options) => new OverlayDriver(root, options),
        ["vfs"] = (root, options) => new VfsDriver(root, options),
        ["thin"] = (root, options) => new ThinDriver(root, options),
        ["btrfs"] = (root, options) => new BtrfsDriver(root, options),
    };

    public static IReadOnlyCollection<string> Names => Factories.Keys;

    /// <summary>The driver a new store at <paramref name="root"/> gets: the first that works there, in order
    /// of preference: btrfs when the root is on btrfs and a scratch subvolume can be made, snapshotted and deleted there
    /// (native snapshots, nothing to mount), overlay when the
    /// kernel mounts it on that filesystem (<see cref="OverlayProbe"/>), else vfs, which works everywhere.
    /// Options for overlay (overlay.*) ask for overlay.</summary>
    public static string Probe(string root, IReadOnlyDictionary<string, string> options)
    {
        options.TryGetValue("overlay.mount_program", out var program);
        if (program is null && BtrfsDriver.IsBtrfs(root) && BtrfsDriver.Works(root)) return "btrfs";
        return OverlayDriver.CanLiveAt(root) && OverlayProbe.Run(Path.Combine(root, "tmp"), program).Supported ? "overlay" : "vfs";
    }

    public static bool IsKnown(string name) => Factories.ContainsKey(name);

    public static IDriver Create(string name, string root, IReadOnlyDictionary<string, string> options) =>
        Factories.TryGetValue(name, out var make) ? make(root, options)
            : throw StrataException.Invalid($"unknown driver '{name}' (available: {string.Join(", ", Names)})");
}
