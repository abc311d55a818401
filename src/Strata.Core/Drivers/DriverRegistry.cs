using Strata.Core.Drivers.Vfs;

namespace Strata.Core.Drivers;

/// <summary>The drivers a store can be created with, by name, and the default for a new store.</summary>
public static class DriverRegistry
{
    static readonly Dictionary<string, Func<string, IDriver>> Factories = new(StringComparer.Ordinal)
    {
        ["vfs"] = root => new VfsDriver(root),
    };

    public static IReadOnlyCollection<string> Names => Factories.Keys;

    /// <summary>The driver a new store gets: the first that works here, in order of preference
    /// (overlay will come first once it exists; vfs works everywhere).</summary>
    public static string Probe() => "vfs";

    public static bool IsKnown(string name) => Factories.ContainsKey(name);

    public static IDriver Create(string name, string root) =>
        Factories.TryGetValue(name, out var make) ? make(root)
            : throw StrataException.Invalid($"unknown driver '{name}' (available: {string.Join(", ", Names)})");
}
