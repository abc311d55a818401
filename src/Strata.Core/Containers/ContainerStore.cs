using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Strata.Archive;
using Strata.Core.Images;
using Strata.Native;

namespace Strata.Core.Containers;

/// <summary>A container: a read-write layer (named by the container's id) over the init layer of its image's top
/// layer, and the image it came from.</summary>
public sealed record Container
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    /// <summary>The image reference it was created from, as given.</summary>
    public required string Image { get; init; }
    public required string ImageId { get; init; }
    public DateTimeOffset Created { get; init; }
    /// <summary>As <see cref="ContainerStore.Started"/> and <see cref="ContainerStore.Exited"/> last recorded it (read it
    /// through <see cref="ContainerStore.StateOf"/>, which knows a run that died); records older than it read as created
    /// (the JSON reader sets a missing member to null).</summary>
    public ContainerState State { get => _state; init => _state = value ?? new(); }
    readonly ContainerState _state = new();
    /// <summary>The arguments the last run ran (null: never run).</summary>
    public IReadOnlyList<string>? Command { get; init; }

    [JsonIgnore] public string ShortId => Id[..12];
}

/// <summary>Where a container is in its life, as `strata run` records it: created (never run), running (the pid of the
/// `strata run`'s runc while it runs), exited (with the command's exit code; null when the run was killed before it
/// could record one).</summary>
public sealed record ContainerState
{
    public const string Created = "created", Running = "running", Exited = "exited";

    public string Status { get; init; } = Created;
    public int? ExitCode { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? FinishedAt { get; init; }
    /// <summary>The process (strata run's runc) while running.</summary>
    public int? Pid { get; init; }
}

/// <summary>
/// Containers: records in <c>containers/&lt;id&gt;.json</c> (written durably after the container's layer exists,
/// removed before it), each with a read-write layer labelled <see cref="LayerLabel"/>. As in Docker, an init
/// layer between the image and the container holds the mount points a runtime needs (/dev, /proc, /sys),
/// so that the container's diff and commits carry only what the container itself changed. Unlike Docker's,
/// whose init layer also holds per-container files, it is the same for every container of an image, so the
/// containers over one top layer share one (<c>&lt;top layer&gt;-init</c>, labelled <see cref="InitLabel"/>):
/// made by the first, removed with the last, and a create costs one layer, not two. Container layers
/// without a record (a crash between the two) and init layers without children are removed when the store
/// is next opened. Stores made before init layers were shared have one per container (<c>&lt;id&gt;-init</c>,
/// labelled <see cref="LayerLabel"/>): they are used and removed as before.
/// </summary>
public sealed partial class ContainerStore
{
    public const string LayerLabel = "strata.container";
    public const string InitLabel = "strata.container-init";
    readonly object _lock = new();
    readonly string _dir;

    public ContainerStore(ImageStore images)
    {
        Images = images;
        _dir = Path.Combine(images.Layers.Root, "containers");
        if (!images.Layers.ReadOnly) LayerStore.MakeDir(_dir, Modes.OwnerOnly); // a reader makes nothing: no dir, no containers
    }

    public ImageStore Images { get; }
    LayerStore Layers => Images.Layers;

    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<LayerStore, ContainerStore> s_stores = new();

    /// <summary>The one container and image store of an open layer store (one per store, so that concurrent
    /// commands in the daemon share their locks); its first use sweeps what a crash left, unless the store is open
    /// read-only (then a container layer without record is listed with the layers until a writer opens the store).</summary>
    public static ContainerStore For(LayerStore layers)
    {
        // under a lock: the sweep must run once, before any command of this store has begun to work
        lock (s_stores)
        {
            if (s_stores.TryGetValue(layers, out var known)) return known;
            var store = new ContainerStore(new ImageStore(layers));
            if (!layers.ReadOnly)
            {
                store.Sweep();
                store.Images.Collect(); // image layers and blobs an interrupted import left
            }
            s_stores.Add(layers, store);
            return store;
        }
    }

    /// <summary>Makes a container of an image. The image is held throughout (<see cref="ImageStore.Using{T}"/>), so that an
    /// image removal either sees the new container's record and is refused, or runs before and the create finds no image.
    /// Lock order: the image store, then this one (never the reverse). With <paramref name="diff"/> (an OCI layer tar: a
    /// migrated container's changes) the container's layer starts with it applied: the record is written only once the
    /// layer is whole, so a crash before leaves no container, only a layer the next sweep removes. The diff is applied
    /// while the image and this store are held (other creates wait): meant for a migration's changes, not a large import.</summary>
    public Container Create(string imageReference, string? name, Stream? diff = null)
    {
        if (name is not null && !LayerId.IsValid(name) /* the same rules as layer ids */)
            throw StrataException.Invalid($"invalid container name '{(name.Length > 64 ? name[..64] + "..." : name)}': use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters");
        return Images.Using(imageReference, image => Create(image, imageReference, name, diff));
    }

    Container Create(ImageRecord image, string imageReference, string? name, Stream? diff)
    {
        string id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        lock (_lock)
        {
            name ??= "c-" + id[..12];
            // names are in the container layers' labels, which the layer store holds in memory: no record is read
            if (Layers.List().Any(l => l.Kind == LayerKind.ReadWrite && l.Labels.TryGetValue(LayerLabel, out var used) && used == name))
                throw StrataException.Exists($"container name {name} is in use");
            string init = SharedInitLayer(image.TopLayer);
            bool madeInit = false;
            if (Layers.Exists(init))
            {
                if (!Layers.Inspect(init).Labels.ContainsKey(InitLabel))
                    throw StrataException.Exists($"layer {init} is in the way of the containers' init layer of image {image.ShortId}; remove or rename it");
            }
            else
            {
                using var tar = InitTar();
                Layers.Create(init, image.TopLayer, LayerKind.ReadOnly, new Dictionary<string, string> { [InitLabel] = image.TopLayer ?? "" }, diff: tar);
                madeInit = true;
            }
            var container = new Container { Id = id, Name = name, Image = imageReference, ImageId = image.Id, Created = DateTimeOffset.UtcNow };
            try
            {
                Layers.Create(id, init, LayerKind.ReadWrite, new Dictionary<string, string> { [LayerLabel] = name }, diff: diff);
                try
                {
                    AtomicFile.Write(RecordPath(id), JsonSerializer.SerializeToUtf8Bytes(container, ContainerJson.Default.Container));
                }
                catch
                {
                    Layers.Remove(id);
                    throw;
                }
            }
            catch
            {
                if (madeInit) Layers.Remove(init);
                throw;
            }
            return container;
        }
    }

    public List<Container> List()
    {
        var list = new List<Container>();
        foreach (var e in Directory.Exists(_dir) ? Posix.ReadDir(_dir) : [] /* a store read before any container command */)
        {
            if (!e.Name.EndsWith(".json", StringComparison.Ordinal)) continue;
            try
            {
                list.Add(JsonSerializer.Deserialize(Posix.ReadFile(Path.Combine(_dir, e.Name)), ContainerJson.Default.Container)!);
            }
            catch (JsonException ex)
            {
                throw StrataException.Corrupt($"container record {Path.Combine(_dir, e.Name)} is unreadable ({ex.Message}); move it away");
            }
        }
        return list.OrderBy(c => c.Created).ToList();
    }

    /// <summary>A container by name, id, or unique id prefix.</summary>
    public Container Get(string reference)
    {
        var all = List();
        if (all.FirstOrDefault(c => c.Name == reference || c.Id == reference) is { } exact) return exact;
        var matches = reference.Length >= 4 ? all.Where(c => c.Id.StartsWith(reference, StringComparison.Ordinal)).ToList() : [];
        if (matches.Count > 1) throw StrataException.Invalid($"container id prefix {reference} is ambiguous");
        return matches.SingleOrDefault() ?? throw StrataException.NotFound($"container {reference} does not exist");
    }

    /// <summary>Names of the containers made from image <paramref name="imageId"/>.</summary>
    public IReadOnlyList<string> UsersOf(string imageId) => List().Where(c => c.ImageId == imageId).Select(c => c.Name).ToList();

    /// <summary>Records durably that container <paramref name="idOrName"/> runs <paramref name="command"/> in process
    /// <paramref name="pid"/> (strata run's runc).</summary>
    public void Started(string idOrName, IReadOnlyList<string> command, int pid)
    {
        if (pid <= 0) throw StrataException.Invalid($"pid {pid} is not a process id");
        Update(idOrName, c => c with { Command = [.. command], State = new ContainerState { Status = ContainerState.Running, StartedAt = DateTimeOffset.UtcNow, Pid = pid } });
    }

    /// <summary>Records durably that the run of container <paramref name="idOrName"/> ended with <paramref name="exitCode"/>.</summary>
    public void Exited(string idOrName, int exitCode) =>
        Update(idOrName, c => c with { State = c.State with { Status = ContainerState.Exited, ExitCode = exitCode, FinishedAt = DateTimeOffset.UtcNow, Pid = null } });

    /// <summary>The container's state as it is now: a run recorded as running whose process is gone (its `strata run`
    /// was killed) reads as exited, with no exit code.</summary>
    public ContainerState StateOf(Container c) =>
        c.State is { Status: ContainerState.Running, Pid: { } pid } && !IsRunc(pid) ? c.State with { Status = ContainerState.Exited, ExitCode = null, Pid = null } : c.State;

    /// <summary>Whether process <paramref name="pid"/> lives and is a runc (a pid reused by another program is not the run's).</summary>
    static bool IsRunc(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/comm").TrimEnd('\n') == "runc";
        }
        catch (IOException)
        {
            return false;
        }
    }

    void Update(string idOrName, Func<Container, Container> change)
    {
        lock (_lock)
        {
            var c = Get(idOrName);
            AtomicFile.Write(RecordPath(c.Id), JsonSerializer.SerializeToUtf8Bytes(change(c), ContainerJson.Default.Container));
        }
    }

    public string Mount(string reference) => Layers.Mount(Get(reference).Id);

    public void Unmount(string reference) => Layers.Unmount(Get(reference).Id);

    /// <summary>The container's changes over its image (its init layer), snapshots in its chain included.</summary>
    public List<Change> Changes(string reference)
    {
        var c = Get(reference);
        return Layers.Changes(c.Id, InitLayerOf(c.Id));
    }

    /// <summary>Removes a container and its layer; refused while it is mounted unless <paramref name="force"/>, which
    /// unmounts it first (refused still if processes use the mount).</summary>
    public void Remove(string reference, bool force = false)
    {
        lock (_lock)
        {
            var c = Get(reference);
            var layer = Layers.Inspect(c.Id);
            if (layer.Mounts > 0 && !force)
                throw StrataException.InUse($"container {c.Name} is mounted; unmount it first (or remove it with --force)");
            for (int i = 0; i < layer.Mounts && force; i++) Layers.Unmount(c.Id);
            string? init = InitLayerOf(c.Id);
            File.Delete(RecordPath(c.Id));
            Posix.FsyncDirectory(_dir);
            // the layer, then its snapshots (which may be under it), then the init layer; a crash on the way leaves
            // layers of a container without record, which the sweep removes
            Layers.Remove(c.Id);
            RemoveSnapshots(c.Id);
            if (init is not null) RemoveInitLayer(init);
        }
    }

    /// <summary>Removes an init layer the last container over it has left (or the one of a container of an
    /// older store); one still in use stays.</summary>
    void RemoveInitLayer(string id)
    {
        if (!Layers.Exists(id)) return;
        var labels = Layers.Inspect(id).Labels;
        bool own = labels.ContainsKey(LayerLabel), shared = labels.ContainsKey(InitLabel);
        if (!own && !shared) return; // not an init layer (a container made over another layer): not ours to remove
        if (shared && Layers.List().Any(l => l.Parent == id)) return;
        try
        {
            Layers.Remove(id);
        }
        catch (StrataException)
        {
            // mounted right now: the next sweep takes it
        }
    }

    /// <summary>Removes container layers whose record is gone (a crash between the two).</summary>
    public void Sweep()
    {
        lock (_lock)
        {
            // a record's file name is its id: the listing is enough, no record is read
            var ids = Posix.ReadDir(_dir).Where(e => e.Name.EndsWith(".json", StringComparison.Ordinal))
                .SelectMany(e => new[] { e.Name[..^5], e.Name[..^5] + "-init" /* an older store's own init layer */ }).ToHashSet(StringComparer.Ordinal);
            // container layers and snapshots first (over one another when in a chain: rounds until none goes), then
            // their init layers
            var orphans = Layers.List().Where(l => l.Mounts == 0 && (l.Labels.ContainsKey(LayerLabel) && !ids.Contains(l.Id)
                || l.Labels.TryGetValue(SnapshotLabel, out var of) && !ids.Contains(of))).OrderBy(l => l.Kind == LayerKind.ReadOnly && !l.Labels.ContainsKey(SnapshotLabel)).ToList();
            for (int gone = -1; gone != 0;)
            {
                gone = 0;
                foreach (var l in orphans.ToList())
                    try
                    {
                        Layers.Remove(l.Id);
                        orphans.Remove(l);
                        gone++;
                    }
                    catch (StrataException)
                    {
                        // in use, or under another: the next round or sweep takes it
                    }
            }
            // then the shared init layers no container is over any more: children counted from one listing (asking
            // the store per init layer is a listing each)
            var layers = Layers.List();
            var parents = layers.Select(l => l.Parent).OfType<string>().ToHashSet(StringComparer.Ordinal);
            foreach (var l in layers.Where(l => l.Labels.ContainsKey(InitLabel) && l.Mounts == 0 && !parents.Contains(l.Id)))
                try
                {
                    Layers.Remove(l.Id);
                }
                catch (StrataException)
                {
                    // in use: the next sweep takes it
                }
        }
    }

    /// <summary>The image config the container was made from.</summary>
    public ImageConfig Config(Container c) =>
        OciJson.Decode(Images.Blobs.Read(Digest.Parse(c.ImageId)), OciJson.Default.ImageConfig, $"config {c.ImageId}");

    /// <summary>
    /// Makes the container's changes a new image layer (gzip, as registries take them) on top of its image's
    /// layers, and a new image with them: the image's config with the new diff id and a history entry,
    /// and a manifest that reuses every blob of the old image.
    /// </summary>
    public ImageRecord Commit(string reference, string newName, string? message = null)
    {
        string name = ImageName.Normalize(newName);
        var c = Get(reference);
        using var scope = Images.BeginImport(); // keeps what the commit uses and adds from collection until the image is recorded
        // the old image's blobs and layers, which the new image reuses, are marked used while the image is held: a
        // `container rm` and `image rm` of the old image during the commit cannot collect them from under it
        var (image, old) = Images.Using(c.ImageId, image =>
        {
            var manifestDigest = Digest.Parse(image.Manifest);
            var manifest = OciJson.Decode(Images.Blobs.Read(manifestDigest), OciJson.Default.ImageManifest, "manifest");
            scope.UseBlob(manifestDigest);
            scope.UseBlob(image.Config);
            foreach (var l in manifest.Layers) scope.UseBlob(Digest.Parse(l.Digest));
            foreach (var id in image.Layers) scope.UseLayer(id);
            return (image, manifest);
        });
        if (image.Layers.Count >= ImageStore.MaxLayers)
            throw StrataException.Invalid($"image {c.Image} has {image.Layers.Count} layers, the most an image may have; a commit would add one more");
        string tmp = Path.Combine(Layers.Root, "tmp", "commit-" + Guid.NewGuid().ToString("N"));
        try
        {
            // the diff once, to a gzip blob, hashing both the tar (diff id) and the blob
            Digest diffId, blob;
            using (var file = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            using (var blobHash = new DigestWriter(file))
            {
                using (var gzip = new GZipStream(blobHash, CompressionLevel.Fastest, leaveOpen: true))
                using (var tarHash = new DigestWriter(gzip))
                {
                    Layers.Diff(c.Id, InitLayerOf(c.Id), tarHash); // the container's own changes (its snapshots' too), not the init layer's
                    tarHash.Flush();
                    diffId = tarHash.Digest();
                }
                blob = blobHash.Digest();
            }
            long blobSize = new FileInfo(tmp).Length;
            scope.UseBlob(blob);
            Images.Blobs.Adopt(tmp, blob);
            var chain = image.Layers.Count == 0 ? diffId : Digest.Chain(ChainId(image), diffId);
            scope.UseLayer(chain.Hex);
            if (!Layers.Exists(chain.Hex))
            {
                using var layerTar = Images.Blobs.Open(blob);
                Layers.Create(chain.Hex, image.TopLayer, LayerKind.ReadOnly, new Dictionary<string, string> { [ImageStore.LayerLabel] = blob.ToString() }, diff: layerTar);
            }
            // config: the old one (kept whole) with the new layer
            var config = JsonNode.Parse(Images.Blobs.Read(image.Config))!.AsObject();
            string now = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffffffZ", System.Globalization.CultureInfo.InvariantCulture);
            config["created"] = now;
            config["rootfs"]!["diff_ids"]!.AsArray().Add((JsonNode)diffId.ToString());
            if (config["history"] is not JsonArray history) config["history"] = history = [];
            history.Add((JsonNode)new JsonObject { ["created"] = now, ["created_by"] = $"strata container commit {c.Name}", ["comment"] = message });
            var (configDigest, configSize) = Images.Blobs.Put(OciJson.Bytes(config), "config", scope);
            var manifest = new ImageManifest
            {
                MediaType = MediaTypes.OciManifest,
                Config = new Descriptor { MediaType = MediaTypes.OciConfig, Digest = configDigest.ToString(), Size = configSize },
                Layers = [.. old.Layers.Select(l => l with { MediaType = OciType(l.MediaType), Annotations = null }),
                    new Descriptor { MediaType = MediaTypes.OciLayerGzip, Digest = blob.ToString(), Size = blobSize }],
            };
            var (manifestDigest, _) = Images.Blobs.Put(JsonSerializer.SerializeToUtf8Bytes(manifest, OciJson.Default.ImageManifest), "manifest", scope);
            var committed = Images.Add(new ImageRecord
            {
                Id = configDigest.ToString(),
                Names = [name],
                Manifest = manifestDigest.ToString(),
                ManifestMediaType = MediaTypes.OciManifest,
                Layers = [.. image.Layers, chain.Hex],
                Created = DateTimeOffset.UtcNow,
                Platform = image.Platform,
                Size = image.Size + Layers.Inspect(chain.Hex).Size,
            });
            scope.Complete();
            return committed;
        }
        finally
        {
            File.Delete(tmp);
        }
    }

    /// <summary>The chain id of an image's top layer (its layer id in the store, as a digest).</summary>
    static Digest ChainId(ImageRecord image) => Digest.Parse("sha256:" + image.TopLayer);

    static string? OciType(string? t) => t switch
    {
        MediaTypes.DockerLayerGzip => MediaTypes.OciLayerGzip,
        MediaTypes.DockerLayer => MediaTypes.OciLayer,
        _ => t,
    };

    string RecordPath(string id) => Path.Combine(_dir, id + ".json");

    /// <summary>The init layer the containers over <paramref name="topLayer"/> share (an image without layers: <c>scratch-init</c>).</summary>
    static string SharedInitLayer(string? topLayer) => (topLayer ?? "scratch") + "-init";

    /// <summary>The init layer's content: the mount points runc needs, so that it never creates them in the container layer.</summary>
    static MemoryStream InitTar()
    {
        var ms = new MemoryStream();
        using (var tar = new Strata.Archive.Tar.TarWriter(ms))
        {
            foreach (var dir in new[] { "dev/", "proc/", "sys/" })
                tar.WriteHeader(new Strata.Archive.Tar.TarEntry { Name = dir, Type = Strata.Archive.Tar.TarEntryType.Directory, Mode = 0x1ED });
            tar.Finish();
        }
        ms.Position = 0;
        return ms;
    }
}

/// <summary>Hashes what is written through it.</summary>
sealed class DigestWriter(Stream inner) : WriteOnlyStream
{
    readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    public Digest Digest() => Images.Digest.From(_hash);

    public override void Write(ReadOnlySpan<byte> data)
    {
        _hash.AppendData(data);
        inner.Write(data);
    }

    public override void Flush() => inner.Flush();

    protected override void Dispose(bool disposing)
    {
        if (disposing) _hash.Dispose();
        base.Dispose(disposing);
    }
}

[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(Container))]
internal partial class ContainerJson : JsonSerializerContext;
