namespace Strata.Archive;

/// <summary>
/// Paths inside a layer, in their one canonical form: relative to the layer root, '/'-separated,
/// no empty, "." or ".." components (e.g. "usr/bin/env"); the root itself is "".
/// </summary>
public static class LayerPath
{
    /// <summary>Canonicalises a tar member name. Leading "./" is dropped; absolute names and ".."
    /// components are refused, so no name can point outside the layer.</summary>
    public static string Normalize(string name, string what = "member")
    {
        if (name.StartsWith('/'))
            throw StrataException.Invalid($"tar: {what} '{Shorten(name)}' is an absolute path");
        var parts = name.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var kept = new List<string>(parts.Length);
        foreach (var p in parts)
        {
            if (p == ".") continue;
            if (p == "..") throw StrataException.Invalid($"tar: {what} '{Shorten(name)}' climbs out of the layer with '..'");
            kept.Add(p);
        }
        return string.Join('/', kept);
    }

    public static string Parent(string path)
    {
        int i = path.LastIndexOf('/');
        return i < 0 ? "" : path[..i];
    }

    public static string Base(string path) => path[(path.LastIndexOf('/') + 1)..];

    public static string Join(string dir, string name) => dir.Length == 0 ? name : dir + "/" + name;

    /// <summary>Shown form: absolute from the layer root, as `docker diff` prints it.</summary>
    public static string Display(string path) => "/" + path;

    internal static string Shorten(string s) => s.Length <= 200 ? s : s[..200] + "...";
}
