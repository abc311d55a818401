using System.Text.Json.Serialization;

namespace Strata.Core;

/// <summary>Read-only image layers are shared parents; read-write layers are container layers.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<LayerKind>))]
public enum LayerKind
{
    ReadOnly,
    ReadWrite,
}

/// <summary>
/// A layer's record, persisted as <c>layers/&lt;id&gt;.json</c>. A layer is visible exactly when its
/// record exists; <see cref="Incomplete"/> marks one whose diff is being applied in place (a crash
/// leaves it so, and the next open removes it). <see cref="Mounts"/> counts unreleased mounts
/// (<c>strata layer mount</c>, Docker's Get) and survives restarts of Strata, as LVM activation does;
/// it is kept apart from the record, in <c>mounts/&lt;id&gt;</c> (see <see cref="LayerStore"/>).
/// </summary>
public sealed record Layer
{
    public required string Id { get; init; }
    public string? Parent { get; init; }
    public LayerKind Kind { get; init; }
    public required string Driver { get; init; }
    public DateTimeOffset Created { get; init; }
    public Dictionary<string, string> Labels { get; init; } = [];
    /// <summary>Bytes of regular-file content this layer adds over its parent, as last applied.</summary>
    public long Size { get; init; }
    public int Mounts { get; init; }
    public bool Incomplete { get; init; }
    /// <summary>A change of the layer's place in a chain that was begun and is finished at the next open if a crash cut
    /// it short (<see cref="ILayerChains"/>): <c>freeze:ID</c> on a layer being made of layer ID's changes,
    /// <c>reset:PARENT</c> on a layer being put back over PARENT, <c>merge</c> on a layer being folded into its children.</summary>
    public string? Pending { get; init; }
}

/// <summary>Layer id rules: 1–128 characters of [A-Za-z0-9_.-], starting with a letter or digit,
/// so an id is always a single, harmless path component.</summary>
public static class LayerId
{
    // by hand, not by Regex: every record is checked when a store opens, and loading the regex engine costs a
    // CLI invocation more than the whole check
    public static bool IsValid(string? id)
    {
        if (id is null || id.Length is 0 or > 128 || !char.IsAsciiLetterOrDigit(id[0])) return false;
        foreach (char c in id)
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('_' or '.' or '-')) return false;
        return true;
    }

    public static string Validate(string? id, string what = "layer id")
    {
        if (!IsValid(id))
            throw StrataException.Invalid($"invalid {what} '{Shorten(id ?? "")}': use 1-128 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit");
        return id!;
    }

    static string Shorten(string s) => s.Length <= 64 ? s : s[..64] + "...";
}

[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(Layer))]
[JsonSerializable(typeof(List<Layer>))]
internal partial class StoreJson : JsonSerializerContext;
