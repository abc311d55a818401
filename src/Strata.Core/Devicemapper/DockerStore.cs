using System.Text.Json;
using Strata.Core.Images;
using Strata.Native;

namespace Strata.Core.Devicemapper;

/// <summary>A thin device of Docker's pool as Docker recorded it (ROOT/devicemapper/metadata/HASH: <c>device_id</c>,
/// <c>size</c>, <c>transaction_id</c>, <c>initialized</c>, <c>deleted</c>); <see cref="Hash"/> is the graph driver's id
/// (a layer's cache-id, a container's mount-id or init-id, or "base").</summary>
public sealed record DockerDevice(string Hash, uint DeviceId, long Size, ulong TransactionId, bool Deleted);

/// <summary>A layer of Docker's layer store (ROOT/image/devicemapper/layerdb/sha256/CHAIN: diff, cache-id, parent,
/// size): its device holds the whole filesystem up to it, under rootfs/.</summary>
public sealed record DockerLayer(Digest ChainId, Digest DiffId, string CacheId, Digest? Parent, long Size, DockerDevice? Device);

/// <summary>An image of Docker's image store (imagedb content: its config, whose sha256 is its id) with the names
/// repositories.json gives it and its layers from the bottom.</summary>
public sealed record DockerImage(Digest Id, IReadOnlyList<string> Names, IReadOnlyList<DockerLayer> Layers, byte[] Config);

/// <summary>A container (ROOT/containers/ID/config.v2.json, and its mounts record in the layer store): its writable
/// device (mount-id) sits on its init device (init-id), which sits on its image's top layer.</summary>
public sealed record DockerContainer(string Id, string Name, Digest ImageId, string MountId, string? InitId, DockerDevice? Device, DockerDevice? InitDevice);

/// <summary>
/// What dockerd (1.10 to 20.10) keeps of its devicemapper storage under its root, read and never written:
/// <code>
/// devicemapper/devicemapper/{data,metadata}     the pool's loop files (loop-lvm; direct-lvm pools are LVM volumes)
/// devicemapper/metadata/HASH                    one JSON record per thin device; "base", deviceset-metadata
/// image/devicemapper/repositories.json          {"Repositories": {"REPO": {"REPO:TAG": "sha256:ID", ...}}}
/// image/devicemapper/imagedb/content/sha256/ID  image configs (rootfs.diff_ids: the layers, bottom first)
/// image/devicemapper/layerdb/sha256/CHAIN/      diff, cache-id, parent, size, tar-split.json.gz
/// image/devicemapper/layerdb/mounts/CONTAINER/  mount-id, init-id, parent
/// containers/ID/config.v2.json                  ID, Name ("/work"), Image ("sha256:ID")
/// </code>
/// Every file is read below the root (openat2 RESOLVE_BENEATH), bounded in size, and checked: ids are 64 lowercase
/// hex digits, digests sha256, records of the expected JSON types; what is wrong is one line naming the file.
/// </summary>
public sealed class DockerStore
{
    const long MaxRecord = 1 << 20, MaxConfig = 16 << 20, MaxTarSplit = 1L << 30;
    const string Graph = "image/devicemapper";

    public required string Root { get; init; }
    public required IReadOnlyDictionary<string, DockerDevice> Devices { get; init; }
    public required IReadOnlyList<DockerImage> Images { get; init; }
    public required IReadOnlyList<DockerContainer> Containers { get; init; }
    /// <summary>The filesystem of the base device (deviceset-metadata's BaseDeviceFilesystem: xfs or ext4), when recorded.</summary>
    public string? Filesystem { get; init; }

    public string DataFile => Path.Combine(Root, "devicemapper", "devicemapper", "data");
    public string MetadataFile => Path.Combine(Root, "devicemapper", "devicemapper", "metadata");

    /// <summary>The devices' sizes by thin id, as Docker recorded them (what a pool reader should serve them with).</summary>
    public IReadOnlyDictionary<uint, long> DeviceSizes() =>
        Devices.Values.Where(d => !d.Deleted).GroupBy(d => d.DeviceId).ToDictionary(g => g.Key, g => g.First().Size);

    /// <summary>A device's state in the pool opened on this store: ok, damaged (an unreadable range), missing from the
    /// pool, or no device record.</summary>
    public static string StateIn(Strata.Thin.DmThin.DmPool pool, DockerDevice? device) =>
        device is null ? "no device record"
        : pool.Devices.FirstOrDefault(p => p.Id == device.DeviceId) is not { } thin ? "missing from the pool"
        : thin.Unreadable.Count > 0 ? "damaged" : "ok";

    /// <summary>A layer's tar-split.json.gz (how its tar is written again from its files), read whole.</summary>
    public byte[] TarSplit(DockerLayer layer)
    {
        using var dir = Posix.Open(Root, Posix.O_RDONLY | Posix.O_DIRECTORY);
        var reader = new Reader(Root, dir);
        string file = $"{Graph}/layerdb/sha256/{layer.ChainId.Hex}/tar-split.json.gz";
        if (!reader.Exists(file))
            throw StrataException.NotFound($"layer {layer.DiffId} has no tar-split.json.gz in {Path.Combine(Root, Graph, "layerdb")}: its tar cannot be written again as Docker had it");
        return reader.Bytes(file, MaxTarSplit);
    }

    /// <summary>The device a name means: a container (name, id, or a unique id prefix of at least 4), an image
    /// (NAME:TAG, id or prefix: its top layer), or a layer (diff id, chain id or cache id, with or without sha256:);
    /// with what it is, in words.</summary>
    public (string What, DockerDevice Device) Resolve(string name)
    {
        var found = new List<(string What, DockerDevice? Device)>();
        bool Prefix(string id) => name.Length >= 4 && id.StartsWith(name.StartsWith("sha256:", StringComparison.Ordinal) ? name[7..] : name, StringComparison.Ordinal);
        foreach (var c in Containers)
            if (c.Name == name || c.Id == name || Prefix(c.Id)) found.Add(($"container {c.Name}", c.Device));
        if (found.Count == 0)
            foreach (var i in Images)
                if (i.Layers.Count > 0 && (i.Names.Contains(name) || (!name.Contains(':') && i.Names.Contains(name + ":latest")) || Prefix(i.Id.Hex)))
                    found.Add(($"image {i.Names.FirstOrDefault() ?? i.Id.Hex[..12]} (its top layer)", i.Layers[^1].Device));
        if (found.Count == 0)
            foreach (var l in Images.SelectMany(i => i.Layers).DistinctBy(l => l.ChainId))
                if (Prefix(l.DiffId.Hex) || Prefix(l.ChainId.Hex) || Prefix(l.CacheId)) found.Add(($"layer {l.DiffId}", l.Device));
        if (found.Count == 0) throw StrataException.NotFound($"no container, image or layer '{StrataException.OneLine(name)}' in {Root}");
        if (found.DistinctBy(f => f.Device).Count() > 1)
            throw StrataException.Invalid($"'{StrataException.OneLine(name)}' names {found.Count} things in {Root}: {string.Join(", ", found.Select(f => f.What))}");
        var (what, device) = found[0];
        return (what, device ?? throw StrataException.NotFound($"{what} has no device record in {Path.Combine(Root, "devicemapper", "metadata")}"));
    }

    public static DockerStore Open(string root)
    {
        if (!Directory.Exists(Path.Combine(root, "devicemapper", "metadata")))
            throw StrataException.NotFound($"{root} holds no devicemapper storage (no devicemapper/metadata: not a Docker root, or another storage driver's)");
        using var dir = Posix.Open(root, Posix.O_RDONLY | Posix.O_DIRECTORY);
        var reader = new Reader(root, dir);
        var devices = new Dictionary<string, DockerDevice>(StringComparer.Ordinal);
        foreach (string hash in reader.List("devicemapper/metadata"))
        {
            if (hash is "deviceset-metadata" or "transaction-metadata") continue;
            if (!IsGraphId(hash) && hash != "base") continue; // Docker's own temporary files
            var r = reader.Json($"devicemapper/metadata/{hash}");
            devices[hash] = new DockerDevice(hash, checked((uint)reader.Number(r, "device_id", hash, max: 0xFF_FFFF)),
                reader.Number(r, "size", hash), (ulong)reader.Number(r, "transaction_id", hash), reader.Flag(r, "deleted", hash));
        }
        string? filesystem = null;
        if (reader.Exists("devicemapper/metadata/deviceset-metadata"))
        {
            var set = reader.Json("devicemapper/metadata/deviceset-metadata");
            if (set.TryGetProperty("BaseDeviceFilesystem", out var fs) && fs.ValueKind == JsonValueKind.String && fs.GetString() is "xfs" or "ext4")
                filesystem = fs.GetString();
        }

        var layers = new Dictionary<Digest, DockerLayer>();
        DockerLayer? Layer(Digest chain)
        {
            if (layers.TryGetValue(chain, out var known)) return known;
            string dirName = $"{Graph}/layerdb/sha256/{chain.Hex}";
            if (!reader.Exists(dirName + "/diff")) return null;
            var diff = Digest.Parse(reader.Text(dirName + "/diff"), $"{dirName}/diff");
            string cache = reader.Text(dirName + "/cache-id");
            if (!IsGraphId(cache)) throw StrataException.Corrupt($"{Full(root, dirName)}/cache-id is not a graph driver id: '{StrataException.OneLine(cache)}'");
            Digest? parent = reader.Exists(dirName + "/parent") ? Digest.Parse(reader.Text(dirName + "/parent"), $"{dirName}/parent") : null;
            long size = reader.Exists(dirName + "/size") && long.TryParse(reader.Text(dirName + "/size"), out long s) && s >= 0 ? s : 0;
            return layers[chain] = new DockerLayer(chain, diff, cache, parent, size, devices.GetValueOrDefault(cache));
        }

        var names = new Dictionary<Digest, List<string>>();
        if (reader.Exists($"{Graph}/repositories.json"))
        {
            var repos = reader.Json($"{Graph}/repositories.json");
            if (repos.TryGetProperty("Repositories", out var all) && all.ValueKind == JsonValueKind.Object)
                foreach (var repo in all.EnumerateObject())
                    if (repo.Value.ValueKind == JsonValueKind.Object)
                        foreach (var tag in repo.Value.EnumerateObject())
                            if (tag.Value.ValueKind == JsonValueKind.String && Digest.TryParse(tag.Value.GetString(), out var id) && !tag.Name.Contains('@'))
                                (names.TryGetValue(id, out var list) ? list : names[id] = []).Add(StrataException.OneLine(tag.Name));
        }

        var images = new List<DockerImage>();
        foreach (string hex in reader.List($"{Graph}/imagedb/content/sha256"))
        {
            if (!IsHex64(hex)) continue;
            string file = $"{Graph}/imagedb/content/sha256/{hex}";
            byte[] config = reader.Bytes(file, MaxConfig);
            var id = Digest.Of(config);
            if (id.Hex != hex) throw StrataException.Corrupt($"{Full(root, file)} does not hash to its name (sha256:{id.Hex})");
            var chain = new List<DockerLayer>();
            Digest? below = null;
            foreach (var diffId in DiffIds(config, Full(root, file)))
            {
                var chainId = below is { } b ? Digest.Chain(b, diffId) : diffId;
                var layer = Layer(chainId) ?? throw StrataException.Corrupt($"image {id} names layer {diffId}, which Docker's layer store does not have (layerdb/sha256/{chainId.Hex})");
                if (layer.DiffId != diffId) throw StrataException.Corrupt($"layerdb/sha256/{chainId.Hex} holds diff {layer.DiffId}, where image {id} says {diffId}");
                chain.Add(layer);
                below = chainId;
            }
            images.Add(new DockerImage(id, names.GetValueOrDefault(id) is { } n ? [.. n.Order(StringComparer.Ordinal)] : [], chain, config));
        }

        var containers = new List<DockerContainer>();
        foreach (string id in reader.List("containers"))
        {
            if (!IsHex64(id) || !reader.Exists($"containers/{id}/config.v2.json")) continue;
            var c = reader.Json($"containers/{id}/config.v2.json");
            string name = c.TryGetProperty("Name", out var n) && n.ValueKind == JsonValueKind.String ? StrataException.OneLine(n.GetString()!.TrimStart('/')) : id[..12];
            var image = Digest.Parse(c.TryGetProperty("Image", out var img) && img.ValueKind == JsonValueKind.String ? img.GetString() : null, $"containers/{id}/config.v2.json's Image");
            string mounts = $"{Graph}/layerdb/mounts/{id}";
            if (!reader.Exists(mounts + "/mount-id")) continue; // a container Docker never finished creating
            string mountId = reader.Text(mounts + "/mount-id");
            string? initId = reader.Exists(mounts + "/init-id") ? reader.Text(mounts + "/init-id") : null;
            if (!IsGraphId(mountId) || (initId is not null && !IsGraphId(initId)))
                throw StrataException.Corrupt($"{Full(root, mounts)}: mount-id or init-id is not a graph driver id");
            containers.Add(new DockerContainer(id, name, image, mountId, initId, devices.GetValueOrDefault(mountId), initId is null ? null : devices.GetValueOrDefault(initId)));
        }
        return new DockerStore
        {
            Root = root, Devices = devices, Filesystem = filesystem,
            Images = [.. images.OrderBy(i => i.Names.FirstOrDefault() ?? "~" + i.Id.Hex, StringComparer.Ordinal)],
            Containers = [.. containers.OrderBy(c => c.Name, StringComparer.Ordinal)],
        };
    }

    /// <summary>rootfs.diff_ids of an image config.</summary>
    static IEnumerable<Digest> DiffIds(byte[] config, string where)
    {
        JsonElement ids;
        try
        {
            using var doc = JsonDocument.Parse(config);
            if (!doc.RootElement.TryGetProperty("rootfs", out var rootfs) || rootfs.ValueKind != JsonValueKind.Object
                || !rootfs.TryGetProperty("diff_ids", out ids) || ids.ValueKind != JsonValueKind.Array)
                throw StrataException.Corrupt($"{where} has no rootfs.diff_ids");
            ids = ids.Clone();
        }
        catch (JsonException ex)
        {
            throw StrataException.Corrupt($"{where} is not JSON: {StrataException.OneLine(ex.Message)}");
        }
        foreach (var id in ids.EnumerateArray())
            yield return Digest.Parse(id.ValueKind == JsonValueKind.String ? id.GetString() : null, $"{where}: a diff id");
    }

    static bool IsHex64(string s) => s.Length == 64 && s.AsSpan().IndexOfAnyExcept("0123456789abcdef") < 0;

    /// <summary>A graph driver id: 64 hex digits, or that and "-init" (a container's init layer).</summary>
    static bool IsGraphId(string s) => IsHex64(s) || (s.Length == 69 && s.EndsWith("-init", StringComparison.Ordinal) && IsHex64(s[..64]));

    static string Full(string root, string relative) => Path.Combine(root, relative);

    /// <summary>Small files below the Docker root, read confined to it.</summary>
    sealed class Reader(string root, FileDescriptor dir)
    {
        public bool Exists(string relative) => Posix.TryOpenAt2(dir, relative, Posix.O_PATH, Posix.RESOLVE_BENEATH | Posix.RESOLVE_NO_MAGICLINKS, out var fd) == 0 && Close(fd);

        static bool Close(FileDescriptor? fd)
        {
            fd?.Dispose();
            return true;
        }

        public IEnumerable<string> List(string relative)
        {
            string full = Path.Combine(root, relative);
            return Directory.Exists(full) ? Directory.EnumerateFileSystemEntries(full).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList() : [];
        }

        public byte[] Bytes(string relative, long max)
        {
            int err = ConfinedFile.TryOpen(dir, relative, Posix.RESOLVE_BENEATH, out var file, out var kind);
            if (err != 0) throw Errno.Error("open", Path.Combine(root, relative));
            if (file is null) throw StrataException.Corrupt($"{Path.Combine(root, relative)} is {ConfinedFile.Describe(kind)}, not a regular file");
            using (file)
                return ConfinedFile.ReadAtMost(file, max) ?? throw StrataException.Corrupt($"{Path.Combine(root, relative)} is larger than {max} bytes");
        }

        public string Text(string relative) => System.Text.Encoding.UTF8.GetString(Bytes(relative, MaxRecord)).Trim();

        public JsonElement Json(string relative)
        {
            try
            {
                using var doc = JsonDocument.Parse(Bytes(relative, MaxRecord));
                if (doc.RootElement.ValueKind != JsonValueKind.Object) throw StrataException.Corrupt($"{Path.Combine(root, relative)} is not a JSON object");
                return doc.RootElement.Clone();
            }
            catch (JsonException ex)
            {
                throw StrataException.Corrupt($"{Path.Combine(root, relative)} is not JSON: {StrataException.OneLine(ex.Message)}");
            }
        }

        public long Number(JsonElement o, string field, string record, long max = long.MaxValue) =>
            o.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long n) && n >= 0 && n <= max ? n
                : throw StrataException.Corrupt($"{Path.Combine(root, "devicemapper/metadata", record)}: {field} is missing or not a number from 0 to {max}");

        public bool Flag(JsonElement o, string field, string record) =>
            !o.TryGetProperty(field, out var v) ? false
                : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean()
                : throw StrataException.Corrupt($"{Path.Combine(root, "devicemapper/metadata", record)}: {field} is not true or false");
    }
}
