// The layer records (a metastore, as containerd's snapshots/storage/metastore.go): read, write, list and delete
// the one-file-per-layer records under layers/, crash-safe.
using System.Text.Json;
using Strata.Native;

namespace Strata.Core;

/// <summary>
/// The persisted layer records: <c>layers/&lt;id&gt;.json</c>, one JSON <see cref="Layer"/> per visible layer (its
/// <see cref="Layer.Mounts"/> is kept apart, in <see cref="MountCounts"/>, and written here as 0). Invariants: a
/// write is atomic and durable (temp file + fsync + rename + fsync of the directory), so a crash leaves the old
/// record or the new one, never half of either; a delete is durable once it returns. A record names its own
/// file: one that does not, or does not parse, is corrupt and keeps the store from opening, never guessed at.
/// Temp files a crashed write left (<c>&lt;id&gt;.json.tmp-*</c>) are leftovers the start-up sweep removes;
/// other files are not ours and are left alone. Callers serialize writes to one id (the store's id lock).
/// </summary>
sealed class LayerRecords(string directory)
{
    /// <summary>The records' directory, <c>&lt;root&gt;/layers</c>.</summary>
    public string Directory => directory;

    public string PathOf(string id) => Path.Combine(directory, id + ".json");

    /// <summary>Writes a layer's record durably; its mount count is not part of it.</summary>
    public void Write(Layer layer) =>
        AtomicFile.Write(PathOf(layer.Id), JsonSerializer.SerializeToUtf8Bytes(layer with { Mounts = 0 }, StoreJson.Default.Layer));

    /// <summary>Deletes a layer's record (absent already: nothing to do); durable once it returns unless
    /// <paramref name="sync"/> is false (the caller syncs the directory itself, see <see cref="Sync"/>).</summary>
    public void Delete(string id, bool sync = true)
    {
        string file = PathOf(id);
        int err = Posix.TryUnlinkAt(FileDescriptor.Cwd, file, directory: false);
        if (err != 0 && err != Errno.ENOENT) throw new ErrnoException(err, "unlink", file);
        if (sync) Sync();
    }

    /// <summary>Makes the deletions and renames in the directory durable.</summary>
    public void Sync() => Posix.FsyncDirectory(directory);

    /// <summary>Whether any layer has a record (complete or not).</summary>
    public bool Any() => System.IO.Directory.EnumerateFiles(directory, "*.json").Any();

    /// <summary>Every record, as persisted (<see cref="Layer.Mounts"/> as written by a store that kept it there);
    /// the names of temp files left by interrupted writes go to <paramref name="leftovers"/>.</summary>
    public List<Layer> ReadAll(List<string> leftovers)
    {
        var layers = new List<Layer>();
        foreach (var e in Posix.ReadDir(directory))
        {
            if (e.Name.Contains(".json.tmp-", StringComparison.Ordinal))
            {
                leftovers.Add(e.Name);
                continue;
            }
            if (!e.Name.EndsWith(".json", StringComparison.Ordinal)) continue; // not ours: leave it
            string file = Path.Combine(directory, e.Name);
            Layer layer;
            try
            {
                layer = JsonSerializer.Deserialize(Posix.ReadFile(file), StoreJson.Default.Layer)
                    ?? throw new JsonException("empty record");
            }
            catch (JsonException ex)
            {
                throw StrataException.Corrupt($"layer record {file} is unreadable ({ex.Message}); move it away to open the store");
            }
            if (layer.Id + ".json" != e.Name || !LayerId.IsValid(layer.Id))
                throw StrataException.Corrupt($"layer record {file} names layer '{layer.Id}'; move it away to open the store");
            layers.Add(layer);
        }
        return layers;
    }

    /// <summary>Removes a temp file <see cref="ReadAll"/> reported.</summary>
    public void RemoveLeftover(string name) => Posix.UnlinkAt(FileDescriptor.Cwd, Path.Combine(directory, name), directory: false);
}
