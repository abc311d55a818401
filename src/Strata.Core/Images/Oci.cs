using System.Text.Json;
using System.Text.Json.Serialization;

namespace Strata.Core.Images;

/// <summary>Media types of the OCI image spec (v1.1) and their Docker schema 2 equivalents.</summary>
public static class MediaTypes
{
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciConfig = "application/vnd.oci.image.config.v1+json";
    public const string OciLayer = "application/vnd.oci.image.layer.v1.tar";
    public const string OciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    public const string OciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerConfig = "application/vnd.docker.container.image.v1+json";
    public const string DockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    public const string DockerLayer = "application/vnd.docker.image.rootfs.diff.tar";

    public static bool IsIndex(string? t) => t is OciIndex or DockerManifestList;
    public static bool IsManifest(string? t) => t is OciManifest or DockerManifest;
    public static bool IsConfig(string? t) => t is OciConfig or DockerConfig;

    /// <summary>How a layer blob is compressed, or an error (naming the layer as <paramref name="what"/>) for a type
    /// that is not a layer Strata can read.</summary>
    public static LayerCompression Layer(string? t, string what = "layer") => t switch
    {
        OciLayer or DockerLayer or "application/vnd.oci.image.layer.nondistributable.v1.tar" => LayerCompression.None,
        OciLayerGzip or DockerLayerGzip or "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => LayerCompression.Gzip,
        OciLayerZstd or "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => LayerCompression.Zstd,
        _ => throw StrataException.Unsupported($"{what} has unknown media type '{OciJson.Shown(t)}'"),
    };
}

/// <summary>How a layer's tar is compressed in its blob (see <see cref="LayerCodec"/>).</summary>
public enum LayerCompression
{
    None,
    Gzip,
    Zstd,
}

public sealed record Platform
{
    [JsonPropertyName("architecture")] public string? Architecture { get; init; }
    [JsonPropertyName("os")] public string? Os { get; init; }
    [JsonPropertyName("variant")] public string? Variant { get; init; }

    public override string ToString() => $"{Os}/{Architecture}{(Variant is null ? "" : "/" + Variant)}";

    /// <summary>The platform this process runs on, in Go's names (linux/amd64, linux/arm64, ...).</summary>
    public static Platform Host => new()
    {
        Os = "linux",
        Architecture = System.Runtime.InteropServices.RuntimeInformation.OSArchitecture switch
        {
            System.Runtime.InteropServices.Architecture.X64 => "amd64",
            System.Runtime.InteropServices.Architecture.Arm64 => "arm64",
            System.Runtime.InteropServices.Architecture.Arm => "arm",
            System.Runtime.InteropServices.Architecture.X86 => "386",
            System.Runtime.InteropServices.Architecture.S390x => "s390x",
            System.Runtime.InteropServices.Architecture.Ppc64le => "ppc64le",
            System.Runtime.InteropServices.Architecture.RiscV64 => "riscv64",
            var a => a.ToString().ToLowerInvariant(),
        },
    };

    /// <summary>"os/arch[/variant]" as docker and skopeo take it.</summary>
    public static Platform Parse(string text)
    {
        var parts = text.Split('/');
        if (parts.Length is < 2 or > 3 || parts.Any(p => p.Length == 0))
            throw StrataException.Invalid($"invalid platform '{text}' (use os/arch[/variant], e.g. linux/amd64)");
        return new Platform { Os = parts[0], Architecture = parts[1], Variant = parts.Length == 3 ? parts[2] : null };
    }

    public bool Matches(Platform? other) =>
        other is not null && other.Os == Os && other.Architecture == Architecture && (Variant is null || other.Variant is null || other.Variant == Variant);
}

public sealed record Descriptor
{
    [JsonPropertyName("mediaType")] public string? MediaType { get; init; }
    [JsonPropertyName("digest")] public required string Digest { get; init; }
    [JsonPropertyName("size")] public long Size { get; init; }
    [JsonPropertyName("annotations")] public Dictionary<string, string>? Annotations { get; init; }
    [JsonPropertyName("platform")] public Platform? Platform { get; init; }
}

/// <summary>The oci-layout file of an image layout.</summary>
public sealed record OciLayout
{
    [JsonPropertyName("imageLayoutVersion")] public string? ImageLayoutVersion { get; init; }
}

public sealed record ImageIndex
{
    [JsonPropertyName("schemaVersion")] public int SchemaVersion { get; init; } = 2;
    [JsonPropertyName("mediaType")] public string? MediaType { get; init; }
    [JsonPropertyName("manifests")] public List<Descriptor> Manifests { get; init; } = [];
}

public sealed record ImageManifest
{
    [JsonPropertyName("schemaVersion")] public int SchemaVersion { get; init; } = 2;
    [JsonPropertyName("mediaType")] public string? MediaType { get; init; }
    [JsonPropertyName("config")] public required Descriptor Config { get; init; }
    [JsonPropertyName("layers")] public List<Descriptor> Layers { get; init; } = [];
}

/// <summary>One image of a docker-archive's manifest.json (`docker save`).</summary>
public sealed record DockerArchiveEntry
{
    public required string Config { get; init; }
    public List<string>? RepoTags { get; init; }
    public List<string> Layers { get; init; } = [];
}

/// <summary>The parts of an image config (OCI config.md) Strata reads; the config itself is kept as its
/// blob, byte for byte.</summary>
public sealed record ImageConfig
{
    [JsonPropertyName("architecture")] public string? Architecture { get; init; }
    [JsonPropertyName("os")] public string? Os { get; init; }
    [JsonPropertyName("variant")] public string? Variant { get; init; }
    [JsonPropertyName("created")] public string? Created { get; init; }
    [JsonPropertyName("config")] public ProcessConfig? Config { get; init; }
    [JsonPropertyName("rootfs")] public RootFs? RootFs { get; init; }
    [JsonPropertyName("history")] public List<HistoryEntry>? History { get; init; }
}

/// <summary>One step of how an image was made; read only to check its types.</summary>
public sealed record HistoryEntry
{
    [JsonPropertyName("created")] public string? Created { get; init; }
    [JsonPropertyName("created_by")] public string? CreatedBy { get; init; }
    [JsonPropertyName("author")] public string? Author { get; init; }
    [JsonPropertyName("comment")] public string? Comment { get; init; }
    [JsonPropertyName("empty_layer")] public bool? EmptyLayer { get; init; }
}

public sealed record ProcessConfig
{
    public string? User { get; init; }
    public List<string>? Env { get; init; }
    public List<string>? Entrypoint { get; init; }
    public List<string>? Cmd { get; init; }
    public string? WorkingDir { get; init; }
    public Dictionary<string, string>? Labels { get; init; }
    public string? StopSignal { get; init; }
}

public sealed record RootFs
{
    [JsonPropertyName("type")] public string? Type { get; init; }
    [JsonPropertyName("diff_ids")] public List<string>? DiffIds { get; init; }
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, PropertyNameCaseInsensitive = true, AllowTrailingCommas = false)]
[JsonSerializable(typeof(OciLayout))]
[JsonSerializable(typeof(ImageIndex))]
[JsonSerializable(typeof(ImageManifest))]
[JsonSerializable(typeof(List<DockerArchiveEntry>))]
[JsonSerializable(typeof(ImageConfig))]
[JsonSerializable(typeof(Dictionary<string, string>))]
public sealed partial class OciJson : JsonSerializerContext
{
    /// <summary>Decodes a JSON document from outside; malformed input is a one-line Corrupt error naming <paramref name="what"/>.</summary>
    public static T Decode<T>(ReadOnlySpan<byte> json, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, string what)
    {
        try
        {
            return JsonSerializer.Deserialize(json, type) ?? throw new JsonException("null");
        }
        catch (JsonException ex)
        {
            throw StrataException.Corrupt($"{what} is not valid JSON ({Reason(ex)})");
        }
    }

    /// <summary>The parser's complaint in a few words, with the path of the value it was at.</summary>
    static string Reason(JsonException ex)
    {
        string message = ex.Message;
        int cut = message.IndexOf(" Path: ", StringComparison.Ordinal);
        if (cut >= 0) message = message[..cut];
        message = message.TrimEnd('.');
        // the type it names is the one holding the value, not the value's: the path says more
        if (message.StartsWith("The JSON value could not be converted to ", StringComparison.Ordinal)) return $"{ex.Path ?? "$"} has the wrong type";
        return ex.Path is null or "$" ? message : $"{message} at {ex.Path}";
    }

    /// <summary>A document built as nodes, compact UTF-8 (what <c>JsonSerializer</c> writes for it, without reflection).</summary>
    public static byte[] Bytes(System.Text.Json.Nodes.JsonNode node)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer)) node.WriteTo(writer);
        return buffer.WrittenSpan.ToArray();
    }
}
