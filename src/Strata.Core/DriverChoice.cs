// The store's driver choice: which driver and driver options a store uses, recorded in <root>/driver when the
// store is made and fixed from then on.
using System.Text;
using Strata.Core.Drivers;

namespace Strata.Core;

/// <summary>
/// <c>&lt;root&gt;/driver</c>: the driver's name on the first line, then one KEY=VALUE driver option per line
/// (sorted), written atomically and durably once the new store has opened with them. A request may repeat the
/// recorded driver and options but not change them — except for a store that holds no layers yet, when the
/// caller asks (<see cref="StoreOptions.ReconfigureIfEmpty"/>). A file that does not parse is corrupt.
/// </summary>
static class DriverChoice
{
    /// <summary>The store's driver and driver options: those recorded when the store exists; else the requested
    /// ones, or the probe's choice (<see cref="DriverRegistry.Probe"/>). IsNew: they are to be recorded.</summary>
    public static (string Name, IReadOnlyDictionary<string, string> Options, bool IsNew) Choose(string root, LayerRecords records, string? requested, IReadOnlyDictionary<string, string> options, bool reconfigureIfEmpty)
    {
        string file = Path.Combine(root, "driver");
        if (requested is not null && !DriverRegistry.IsKnown(requested))
            throw StrataException.Invalid($"unknown driver '{requested}' (available: {string.Join(", ", DriverRegistry.Names)})");
        foreach (var (k, v) in options)
            if (k.Length == 0 || k.Contains('=') || (k + v).Contains('\n'))
                throw StrataException.Invalid($"driver option '{k}={v}' is not a KEY=VALUE on one line");
        if (File.Exists(file))
        {
            var lines = File.ReadAllLines(file).Where(l => l.Length > 0).ToList();
            string recorded = lines.Count > 0 ? lines[0].Trim() : throw StrataException.Corrupt($"{file} is empty; write the store's driver name into it");
            var recordedOptions = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var line in lines.Skip(1))
            {
                int eq = line.IndexOf('=');
                if (eq <= 0) throw StrataException.Corrupt($"{file}: '{line}' is not KEY=VALUE");
                recordedOptions[line[..eq]] = line[(eq + 1)..];
            }
            string? mismatch = Mismatch(root, recorded, recordedOptions, requested, options);
            if (mismatch is not null && reconfigureIfEmpty && !records.Any())
                return (requested ?? recorded, options, true);
            if (mismatch is not null) throw StrataException.Invalid(mismatch);
            return (recorded, recordedOptions, false);
        }
        return (requested ?? DriverRegistry.Probe(root, options), options, true);
    }

    /// <summary>Records the driver of a new store (or of one reconfigured while empty).</summary>
    public static void Record(string root, string name, IReadOnlyDictionary<string, string> options)
    {
        var text = new StringBuilder(name).Append('\n');
        foreach (var (k, v) in options.OrderBy(p => p.Key, StringComparer.Ordinal)) text.Append(k).Append('=').Append(v).Append('\n');
        AtomicFile.Write(Path.Combine(root, "driver"), Encoding.UTF8.GetBytes(text.ToString()));
    }

    /// <summary>Why a request for <paramref name="requested"/> (null: any) with <paramref name="options"/> does not fit
    /// a store recorded with <paramref name="recorded"/> and <paramref name="recordedOptions"/>; null when it fits.</summary>
    public static string? Mismatch(string root, string recorded, IReadOnlyDictionary<string, string> recordedOptions, string? requested, IReadOnlyDictionary<string, string> options)
    {
        if (requested is not null && requested != recorded)
            return $"store {root} was created with driver '{recorded}', not '{requested}'; use another store root for '{requested}'";
        foreach (var (k, v) in options)
            if (!recordedOptions.TryGetValue(k, out var had) || had != v)
                return $"store {root} was created with {(had is null ? $"no {k}" : $"{k}={had}")}; driver options are fixed when a store is created";
        return null;
    }
}
