using System.Text.Json;

namespace Strata.Core.Images;

/// <summary>
/// The JSON documents of an image as they come from outside, decoded and then validated: valid JSON may still hold
/// null where a value must be (an entry, a digest, a list), a negative size, an annotation or an Env entry that is
/// null. What passes has the shape the types promise, so the importer (and `strata run`, which reads the config
/// later) never meets a null it did not expect. Each failure is one Corrupt line naming the document and the field
/// as a path (<c>manifests[0].digest</c>); a schema version other than 2 is Unsupported.
/// </summary>
public sealed partial class OciJson
{
    public static OciLayout ReadLayout(ReadOnlySpan<byte> json) => Decode(json, Default.OciLayout, "oci-layout");

    public static ImageIndex ReadIndex(ReadOnlySpan<byte> json, string what)
    {
        var index = Decode(json, Default.ImageIndex, what);
        SchemaVersion(index.SchemaVersion, what);
        if (index.MediaType is { } type && !MediaTypes.IsIndex(type))
            throw StrataException.Unsupported($"{what} has media type '{Shown(type)}', not an index's");
        var manifests = index.Manifests ?? throw Missing(what, "manifests");
        for (int i = 0; i < manifests.Count; i++) Check(manifests[i], what, $"manifests[{i}]");
        return index;
    }

    public static ImageManifest ReadManifest(ReadOnlySpan<byte> json, string what)
    {
        var manifest = Decode(json, Default.ImageManifest, what);
        SchemaVersion(manifest.SchemaVersion, what);
        Check(manifest.Config, what, "config");
        if (manifest.Config.MediaType is { } type && !MediaTypes.IsConfig(type))
            throw StrataException.Unsupported($"{what}: config has media type '{Shown(type)}', not an image config's (an artifact that is not an image?)");
        var layers = manifest.Layers ?? throw Missing(what, "layers");
        for (int i = 0; i < layers.Count; i++) Check(layers[i], what, $"layers[{i}]");
        return manifest;
    }

    public static ImageConfig ReadConfig(ReadOnlySpan<byte> json, string what)
    {
        var config = Decode(json, Default.ImageConfig, what);
        if (config.Os is null) throw Missing(what, "os");
        if (config.Architecture is null) throw Missing(what, "architecture");
        if (config.RootFs?.Type is { } type && type != "layers")
            throw StrataException.Unsupported($"{what}: rootfs.type is '{Shown(type)}', not 'layers'");
        NoNulls(config.RootFs?.DiffIds, what, "rootfs.diff_ids");
        NoNulls(config.History, what, "history");
        if (config.Config is { } process)
        {
            NoNulls(process.Env, what, "config.Env");
            NoNulls(process.Entrypoint, what, "config.Entrypoint");
            NoNulls(process.Cmd, what, "config.Cmd");
            NoNullValues(process.Labels, what, "config.Labels");
        }
        return config;
    }

    /// <summary>A docker-archive's manifest.json: one entry per image.</summary>
    public static List<DockerArchiveEntry> ReadDockerManifest(ReadOnlySpan<byte> json)
    {
        const string what = "manifest.json";
        var entries = Decode(json, Default.ListDockerArchiveEntry, what);
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i] ?? throw Null(what, $"[{i}]");
            if (e.Config is null) throw Missing(what, $"[{i}].Config");
            NoNulls(e.Layers ?? throw Missing(what, $"[{i}].Layers"), what, $"[{i}].Layers");
            NoNulls(e.RepoTags, what, $"[{i}].RepoTags");
        }
        return entries;
    }

    /// <summary>What a manifest or index document is, by its own mediaType or else by its shape (OCI makes an
    /// index's and a manifest's mediaType optional): to catch a descriptor that says one and names the other.</summary>
    public static DocumentKind KindOf(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        bool index = false, manifest = false;
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return DocumentKind.Unknown;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string name = reader.GetString()!;
                reader.Read();
                if (name.Equals("mediaType", StringComparison.OrdinalIgnoreCase) && reader.TokenType == JsonTokenType.String)
                {
                    string type = reader.GetString()!;
                    if (MediaTypes.IsIndex(type)) return DocumentKind.Index;
                    if (MediaTypes.IsManifest(type)) return DocumentKind.Manifest;
                }
                else if (name.Equals("manifests", StringComparison.OrdinalIgnoreCase)) index = true;
                else if (name.Equals("config", StringComparison.OrdinalIgnoreCase) || name.Equals("layers", StringComparison.OrdinalIgnoreCase)) manifest = true;
                reader.Skip();
            }
        }
        catch (JsonException)
        {
            return DocumentKind.Unknown; // decoding it says what is wrong
        }
        return index == manifest ? DocumentKind.Unknown : index ? DocumentKind.Index : DocumentKind.Manifest;
    }

    static void SchemaVersion(int version, string what)
    {
        if (version != 2) throw StrataException.Unsupported($"{what} has schema version {version} (only 2 is supported)");
    }

    static void Check(Descriptor? d, string what, string path)
    {
        if (d is null) throw path.EndsWith(']') ? Null(what, path) : Missing(what, path);
        if (d.Digest is null) throw Missing(what, path + ".digest");
        if (d.Size < 0) throw StrataException.Corrupt($"{what}: {path}.size is negative ({d.Size})");
        NoNullValues(d.Annotations, what, path + ".annotations");
        if (d.Platform is { } p)
        {
            if (p.Os is null) throw Missing(what, path + ".platform.os");
            if (p.Architecture is null) throw Missing(what, path + ".platform.architecture");
        }
    }

    static void NoNulls<T>(List<T>? list, string what, string path)
    {
        if (list is null) return;
        for (int i = 0; i < list.Count; i++)
            if (list[i] is null) throw Null(what, $"{path}[{i}]");
    }

    static void NoNullValues(Dictionary<string, string>? map, string what, string path)
    {
        if (map is null) return;
        foreach (var (k, v) in map)
            if (v is null) throw Null(what, $"{path}['{k}']");
    }

    /// <summary>A value from outside as a message shows it: at most 80 characters (the message escapes what would break its line).</summary>
    internal static string Shown(string? text) => text is null ? "null" : text.Length <= 80 ? text : text[..80] + "...";

    static StrataException Missing(string what, string path) => StrataException.Corrupt($"{what}: {path} is missing or null");

    static StrataException Null(string what, string path) => StrataException.Corrupt($"{what}: {path} is null");
}

/// <summary>What a JSON document of an image is: an index (or Docker manifest list), a manifest, or neither that can be told.</summary>
public enum DocumentKind
{
    Unknown,
    Index,
    Manifest,
}
