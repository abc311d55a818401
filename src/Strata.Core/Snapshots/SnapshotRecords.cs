// The snapshot metastore (containerd's snapshots/storage/metastore.go): one crash-safe record per snapshot under
// snapshots/, mapping containerd's keys to Strata's layer ids.
using System.Text.Json;
using System.Text.Json.Serialization;
using Strata.Native;

namespace Strata.Core.Snapshots;

/// <summary>
/// A snapshot's persisted record. <see cref="Id"/> names its file and never changes (a Commit rewrites the same file
/// with the new key and kind, so it is one atomic rename); <see cref="Layer"/> is the layer holding its data, which is
/// the snapshot's own (<see cref="Id"/> == <see cref="Layer"/>) unless <see cref="Borrowed"/>: a layer the store had
/// already, lent to a remote-snapshot answer (an image layer, or another record's layer). Several records may use one
/// layer; it goes with the last of them (an image layer goes back to the image store).
/// </summary>
sealed record SnapshotRecord
{
    public required string Id { get; init; }
    public required string Key { get; init; }
    public required string Layer { get; init; }
    public SnapshotKind Kind { get; init; }
    public string? Parent { get; init; }
    public Dictionary<string, string> Labels { get; init; } = [];
    public DateTimeOffset Created { get; init; }
    public DateTimeOffset Updated { get; init; }
    public bool Borrowed { get; init; }

    public SnapshotInfo Info() => new(Key, Parent, Kind, Created, Updated, new Dictionary<string, string>(Labels));
}

/// <summary>
/// The records' directory, <c>ROOT/snapshots/&lt;id&gt;.json</c>: a write is temp file + fsync + rename + fsync of the
/// directory (<see cref="AtomicFile"/>), so a crash leaves the old record or the new one; a delete is durable once it
/// returns. A record that does not parse, or does not name its own file, keeps the store's snapshots from opening
/// (Corrupt), never guessed at; temp files of interrupted writes are removed when the records are read.
/// Callers serialize writes to one record.
/// </summary>
sealed class SnapshotRecords(string directory)
{
    /// <summary>The records' directory under the store's root.</summary>
    public const string DirectoryName = "snapshots";

    public string Directory => directory;

    string PathOf(string id) => Path.Combine(directory, id + ".json");

    public void Write(SnapshotRecord record) =>
        AtomicFile.Write(PathOf(record.Id), JsonSerializer.SerializeToUtf8Bytes(record, SnapshotJson.Default.SnapshotRecord));

    public void Delete(string id)
    {
        string file = PathOf(id);
        int err = Posix.TryUnlinkAt(FileDescriptor.Cwd, file, directory: false);
        if (err != 0 && err != Errno.ENOENT) throw new ErrnoException(err, "unlink", file);
        Posix.FsyncDirectory(directory);
    }

    /// <summary>The records of the store at <paramref name="root"/>, read without changing anything, for readers other
    /// than the snapshotter (image collection must keep the layers they hold; `strata info` counts them). Null when one
    /// does not read as a record: what it holds cannot be known (opening the snapshots reports it).</summary>
    public static List<SnapshotRecord>? Peek(string root)
    {
        string directory = Path.Combine(root, DirectoryName);
        var records = new List<SnapshotRecord>();
        if (!System.IO.Directory.Exists(directory)) return records;
        foreach (var e in Posix.ReadDir(directory))
        {
            if (!e.Name.EndsWith(".json", StringComparison.Ordinal)) continue; // temp files of writes not yet renamed
            try
            {
                records.Add(Read(Path.Combine(directory, e.Name), e.Name));
            }
            catch (StrataException ex) when (ex.Kind == ErrorKind.NotFound)
            {
                // removed since the listing: not a record any more
            }
            catch (StrataException)
            {
                return null;
            }
        }
        return records;
    }

    public List<SnapshotRecord> ReadAll(List<string> swept)
    {
        var records = new List<SnapshotRecord>();
        foreach (var e in Posix.ReadDir(directory))
        {
            string file = Path.Combine(directory, e.Name);
            if (e.Name.Contains(".json.tmp-", StringComparison.Ordinal))
            {
                Posix.UnlinkAt(FileDescriptor.Cwd, file, directory: false);
                swept.Add($"snapshot record leftover {e.Name}");
                continue;
            }
            if (!e.Name.EndsWith(".json", StringComparison.Ordinal)) continue; // not ours
            records.Add(Read(file, e.Name));
        }
        return records;
    }

    /// <summary>One record, checked: Corrupt when it does not parse or is not a valid record named <paramref name="name"/>.</summary>
    static SnapshotRecord Read(string file, string name)
    {
        SnapshotRecord record;
        try
        {
            record = JsonSerializer.Deserialize(Posix.ReadFile(file), SnapshotJson.Default.SnapshotRecord) ?? throw new JsonException("empty record");
        }
        catch (JsonException ex)
        {
            throw StrataException.Corrupt($"snapshot record {file} is unreadable ({ex.Message}); move it away to open the store");
        }
        if (record.Id + ".json" != name || !LayerId.IsValid(record.Id) || !LayerId.IsValid(record.Layer)
            || !Enum.IsDefined(record.Kind) || record.Labels is null)
            throw StrataException.Corrupt($"snapshot record {file} is not a valid record for '{record.Id}'; move it away to open the store");
        try
        {
            SnapshotLimits.ValidateKey(record.Key);
            if (record.Parent is not null) SnapshotLimits.ValidateKey(record.Parent, "parent");
        }
        catch (StrataException ex)
        {
            throw StrataException.Corrupt($"snapshot record {file}: {ex.Message}; move it away to open the store");
        }
        return record;
    }
}

[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SnapshotRecord))]
internal partial class SnapshotJson : JsonSerializerContext;
