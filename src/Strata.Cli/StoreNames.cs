// The names in a store that completion offers (images, containers, layers, thin devices), read with the least
// machinery: straight from the record files, without opening the store, taking its lock, or creating anything.
using System.Text.Json;
using Strata.Thin;
using Strata.Thin.Service;

namespace Strata.Cli;

/// <summary>
/// What a store under a root is called, for completion only: an image's names and short id from
/// <c>images/images.json</c>, a container's name and short id from <c>containers/&lt;id&gt;.json</c>, layer ids from the
/// names of <c>layers/&lt;id&gt;.json</c> (the layouts ImageStore, ContainerStore and LayerRecords document), and a thin
/// pool's device names from its server, or from the pool opened for the moment when none serves it. Nothing here
/// writes, waits for a lock, or fails: a root without a store, a record being rewritten, a file the caller may not
/// read all give fewer names, never an error (a completion has nowhere to say it).
/// </summary>
static class StoreNames
{
    /// <summary>Image names; with <paramref name="ids"/>, the short ids too.</summary>
    public static IEnumerable<string> Images(string root, bool ids)
    {
        var names = new List<string>();
        Guard(() =>
        {
            string index = Path.Combine(root, "images", "images.json");
            if (!File.Exists(index)) return;
            using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
            if (doc.RootElement.ValueKind != JsonValueKind.Array) return;
            foreach (var image in doc.RootElement.EnumerateArray())
            {
                if (image.ValueKind != JsonValueKind.Object) continue;
                if (image.TryGetProperty("Names", out var list) && list.ValueKind == JsonValueKind.Array)
                    foreach (var n in list.EnumerateArray())
                        if (n.ValueKind == JsonValueKind.String) names.Add(n.GetString()!);
                if (ids && String(image, "Id") is { Length: >= 19 } id && id.StartsWith("sha256:", StringComparison.Ordinal)) names.Add(id[7..19]);
            }
        });
        return names;
    }

    /// <summary>Container names; with <paramref name="ids"/>, the short ids too.</summary>
    public static IEnumerable<string> Containers(string root, bool ids)
    {
        var names = new List<string>();
        foreach (string file in Records(Path.Combine(root, "containers")))
            Guard(() =>
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
                if (doc.RootElement.ValueKind != JsonValueKind.Object) return;
                if (String(doc.RootElement, "Name") is { Length: > 0 } name) names.Add(name);
                if (ids && String(doc.RootElement, "Id") is { Length: >= 12 } id) names.Add(id[..12]);
            });
        return names;
    }

    /// <summary>Layer ids: the names of the records, which name their layers.</summary>
    public static IEnumerable<string> Layers(string root) =>
        Records(Path.Combine(root, "layers")).Select(f => Path.GetFileName(f)[..^".json".Length]);

    /// <summary>The device names of the pool in <paramref name="poolDir"/>: its server's, or the pool's opened here
    /// for the moment (under its lock, which is taken without waiting: a pool another process holds gives none).</summary>
    public static IEnumerable<string> Devices(string poolDir)
    {
        IReadOnlyList<string> names = [];
        Guard(() =>
        {
            if (!PoolDirectory.Exists(poolDir)) return;
            using var server = RemotePool.ForPool(poolDir, TimeSpan.FromSeconds(2));
            if (server.Answers())
            {
                names = server.DeviceNames();
                return;
            }
            using var pool = LocalPool.Open(poolDir);
            names = pool.DeviceNames();
        });
        return names;
    }

    /// <summary>The finished records in a directory (a record being written is a temp file beside them).</summary>
    static List<string> Records(string directory)
    {
        var files = new List<string>();
        Guard(() =>
        {
            if (!Directory.Exists(directory)) return;
            files.AddRange(Directory.EnumerateFiles(directory, "*.json").Where(f => !f.Contains(".json.tmp-", StringComparison.Ordinal)));
        });
        return files;
    }

    static string? String(JsonElement o, string property) =>
        o.TryGetProperty(property, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    /// <summary>Runs a read whose failure means only that there is less to complete.</summary>
    static void Guard(Action read)
    {
        try
        {
            read();
        }
        catch (Exception)
        {
            // a completion cannot report anything: what could not be read is left out
        }
    }
}
