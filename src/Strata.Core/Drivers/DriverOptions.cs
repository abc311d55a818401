namespace Strata.Core.Drivers;

/// <summary>Checks of the KEY=VALUE options a store or a layer is given (Docker's --storage-opt).</summary>
public static class DriverOptions
{
    public static void RefuseAll(string driver, IReadOnlyDictionary<string, string> options)
    {
        if (options.Count > 0)
            throw StrataException.Invalid($"driver {driver} takes no options (got {string.Join(", ", options.Keys)})");
    }

    /// <summary>Refuses any key not in <paramref name="known"/>, naming the ones that are.</summary>
    public static void Only(string what, IReadOnlyDictionary<string, string> options, params string[] known)
    {
        foreach (var key in options.Keys)
            if (!known.Contains(key, StringComparer.Ordinal))
                throw StrataException.Invalid($"unknown {what} option '{key}' (known: {(known.Length > 0 ? string.Join(", ", known) : "none")})");
    }
}
