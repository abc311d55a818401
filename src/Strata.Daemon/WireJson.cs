using System.Text.Json.Serialization;

namespace Strata.Daemon;

// Requests and replies of the graphdriver plugin protocol, named as moby's Go structs name their fields
// (daemon/graphdriver/proxy.go); Go decodes case-insensitively and leaves out empty fields.

/// <summary>A request body after parsing. JSON may set any field to null whatever its C# type says, and a field
/// it leaves out keeps its default: <see cref="Check"/> refuses what the endpoints cannot use, as
/// <see cref="RequestBody.Malformed"/>, before any of it reaches the store.</summary>
public interface IPluginRequest
{
    void Check();
}

public sealed class Empty : IPluginRequest
{
    public void Check() { }
}

public sealed class InitRequest : IPluginRequest
{
    public string? Home { get; set; }
    public List<string>? Opts { get; set; }
    public List<IdMap>? UIDMaps { get; set; }
    public List<IdMap>? GIDMaps { get; set; }

    public void Check()
    {
        if (Opts?.IndexOf(null!) is >= 0 and var opt) throw RequestBody.Malformed($"Opts[{opt}] is null");
        if (UIDMaps?.IndexOf(null!) is >= 0 and var uid) throw RequestBody.Malformed($"UIDMaps[{uid}] is null");
        if (GIDMaps?.IndexOf(null!) is >= 0 and var gid) throw RequestBody.Malformed($"GIDMaps[{gid}] is null");
    }
}

public sealed class IdMap
{
    [JsonPropertyName("container_id")] public long ContainerId { get; set; }
    [JsonPropertyName("host_id")] public long HostId { get; set; }
    [JsonPropertyName("size")] public long Size { get; set; }
}

public sealed class LayerRequest : IPluginRequest
{
    public string ID { get; set; } = "";
    public string? Parent { get; set; }
    public string? MountLabel { get; set; }
    public Dictionary<string, string>? StorageOpt { get; set; }

    public void Check()
    {
        if (ID is null) throw RequestBody.Malformed("ID is null");
        if (ID.Length == 0) throw RequestBody.Malformed("ID is missing");
        foreach (var (key, value) in StorageOpt ?? [])
            if (value is null) throw RequestBody.Malformed($"StorageOpt '{RequestBody.Quote(key)}' is null");
    }
}

public sealed record PluginActivation(List<string> Implements);
public sealed record ErrReply(string? Err);
public sealed record DirReply(string Dir);
public sealed record ExistsReply(bool Exists);
public sealed record StatusReply(List<string[]> Status);
public sealed record MetadataReply(Dictionary<string, string> Metadata);
public sealed record ChangesReply(List<WireChange> Changes);
public sealed record SizeReply(long Size);
public sealed record DriverCapabilities(bool ReproducesExactDiffs);
public sealed record CapabilitiesReply(DriverCapabilities Capabilities);
public sealed record WireChange(string Path, int Kind);

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, PropertyNameCaseInsensitive = true)]
[JsonSerializable(typeof(Empty))]
[JsonSerializable(typeof(InitRequest))]
[JsonSerializable(typeof(LayerRequest))]
[JsonSerializable(typeof(PluginActivation))]
[JsonSerializable(typeof(ErrReply))]
[JsonSerializable(typeof(DirReply))]
[JsonSerializable(typeof(ExistsReply))]
[JsonSerializable(typeof(StatusReply))]
[JsonSerializable(typeof(MetadataReply))]
[JsonSerializable(typeof(ChangesReply))]
[JsonSerializable(typeof(SizeReply))]
[JsonSerializable(typeof(CapabilitiesReply))]
public sealed partial class WireJson : JsonSerializerContext;
