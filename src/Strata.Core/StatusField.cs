using System.Globalization;

namespace Strata.Core;

/// <summary>One line of a status report (`strata info`, `strata pool info`, Docker's driver Status): its name, its value as
/// people read it, and as scripts read it (<see cref="Data"/>: bytes or a count as a number, a flag as a boolean, text as
/// itself, null when unknown).</summary>
public sealed record StatusField(string Key, string Value, object? Data)
{
    public StatusField(string key, string value) : this(key, value, value) { }

    public static StatusField Bytes(string key, long bytes) => new(key, ByteSize.Format(bytes), bytes);

    public static StatusField Count(string key, long n) => new(key, n.ToString(CultureInfo.InvariantCulture), n);

    public static StatusField Flag(string key, bool on) => new(key, on ? "true" : "false", on);

    /// <summary>A value that could not be had: <paramref name="why"/> for people, null for scripts.</summary>
    public static StatusField Unknown(string key, string why) => new(key, why, null);

    /// <summary>What <see cref="Data"/> holds for a line that is for people only (its data is in another line's).</summary>
    public static readonly object TextOnly = new();

    /// <summary>A line for people only: JSON leaves it out (another line carries its data).</summary>
    public static StatusField Text(string key, string value) => new(key, value, TextOnly);

    /// <summary>The key as a JSON member name: its words joined, each capitalized ("Supports d_type": SupportsDType).</summary>
    public string JsonName => string.Concat(Key.Split([' ', '_', '-', '.'], StringSplitOptions.RemoveEmptyEntries).Select(w => char.ToUpperInvariant(w[0]) + w[1..]));
}
