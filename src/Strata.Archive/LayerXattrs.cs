namespace Strata.Archive;

/// <summary>
/// Which extended attributes are layer content. <c>trusted.overlay.*</c> belongs to overlayfs
/// (whiteouts, opaque dirs, redirects, metacopy, origin): it is how a driver encodes a layer, never
/// what a layer carries. Diffs and change lists leave it out, and a tar that carries it is refused,
/// since the kernel would act on it.
/// </summary>
public static class LayerXattrs
{
    public const string OverlayPrefix = "trusted.overlay.";

    public static bool IsContent(string name) => !name.StartsWith(OverlayPrefix, StringComparison.Ordinal);

    /// <summary>Drops the attributes that are not content, in place; returns the list.</summary>
    public static List<KeyValuePair<string, byte[]>> ContentOnly(List<KeyValuePair<string, byte[]>> all)
    {
        all.RemoveAll(kv => !IsContent(kv.Key));
        return all;
    }
}
