namespace Strata.Archive;

/// <summary>How deletions are represented where a layer is applied.</summary>
public enum WhiteoutFormat
{
    /// <summary>Deletions are carried out: whiteouts remove from the target tree (vfs, thin, btrfs).</summary>
    Oci,
    /// <summary>Deletions are recorded overlayfs-style in an upper dir: 0/0 char devices and the
    /// <c>trusted.overlay.opaque</c> xattr.</summary>
    Overlay,
}

/// <summary>The OCI whiteout naming rules (image-spec layer.md).</summary>
public static class Whiteouts
{
    public const string Prefix = ".wh.";
    public const string MetaPrefix = ".wh..wh.";
    public const string OpaqueMarker = ".wh..wh..opq";
    public const string OverlayOpaqueXattr = "trusted.overlay.opaque";

    public static bool IsWhiteout(string baseName) => baseName.StartsWith(Prefix, StringComparison.Ordinal);

    /// <summary>Whether a directory's xattrs mark it opaque in an overlayfs upper dir.</summary>
    public static bool IsOverlayOpaque(List<KeyValuePair<string, byte[]>> xattrs) =>
        xattrs.Any(x => x.Key == OverlayOpaqueXattr && x.Value is [(byte)'y']);
}
