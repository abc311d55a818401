using System.Globalization;

namespace Strata.Core;

/// <summary>Sizes as users write them ("50M", "20GiB", "1.5g", "4096"): binary units, as Docker's
/// --storage-opt size= and LVM read them.</summary>
public static class ByteSize
{
    /// <summary>A size whose unit must be written: capacities (devices, pools, chunks), where a bare number is bytes to
    /// docker and MiB to LVM, so "100" is refused with how to say it rather than read either way.</summary>
    public static long ParseWithUnit(string text, string what)
    {
        string s = text.Trim();
        if (s.Length > 0 && char.IsAsciiDigit(s[^1]) && s.Trim('0').Length > 0)
            throw StrataException.Invalid($"{what} '{text}' has no unit: write {s}M or {s}G (or {s}B for bytes)");
        return Parse(text, what);
    }

    public static long Parse(string text, string what)
    {
        string s = text.Trim();
        int end = s.Length;
        while (end > 0 && char.IsLetter(s[end - 1])) end--;
        string number = s[..end].Trim(), unit = s[end..].ToLowerInvariant();
        int shift = unit switch
        {
            "" or "b" => 0,
            "k" or "kb" or "kib" => 10,
            "m" or "mb" or "mib" => 20,
            "g" or "gb" or "gib" => 30,
            "t" or "tb" or "tib" => 40,
            "p" or "pb" or "pib" => 50,
            _ => -1,
        };
        if (shift < 0 || !decimal.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value))
            throw StrataException.Invalid($"{what} '{text}' is not a size (examples: 4096, 64K, 50M, 10G)");
        try
        {
            decimal bytes = value * (1L << shift);
            if (bytes <= long.MaxValue) return (long)bytes;
        }
        catch (OverflowException)
        {
        }
        throw StrataException.Invalid($"{what} '{text}' is too large");
    }

    /// <summary>"50 MiB", "1.5 GiB": for messages and status lines.</summary>
    public static string Format(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        return u == 0 ? $"{bytes} B" : v.ToString(v < 10 ? "0.##" : "0.#", CultureInfo.InvariantCulture) + " " + units[u];
    }
}
