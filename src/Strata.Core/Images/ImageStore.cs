using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace Strata.Core.Images;

/// <summary>An image as the store knows it: its names, its config (the image id, as Docker's), its manifest,
/// and the chain of layers (by chain id, the layer ids in the <see cref="LayerStore"/>), base first.</summary>
public sealed record ImageRecord
{
    /// <summary>The config's digest, as Docker's image id.</summary>
    public required string Id { get; init; }
    public List<string> Names { get; init; } = [];
    /// <summary>repository@digest of the manifests it was pulled by (Docker's RepoDigests), as <c>strata pull</c> names them.</summary>
    public List<string>? RepoDigests { get; set; }
    public required string Manifest { get; init; }
    public required string ManifestMediaType { get; init; }
    public required List<string> Layers { get; init; }
    public DateTimeOffset Created { get; init; }
    public string? Platform { get; init; }
    /// <summary>Bytes of file content in the image's layers.</summary>
    public long Size { get; init; }

    [JsonIgnore] public Digest Config => Digest.Parse(Id);
    [JsonIgnore] public string ShortId => Id[7..19];
    [JsonIgnore] public string TopLayer => Layers[^1];
}

/// <summary>
/// The image records (<c>images/images.json</c>, replaced atomically) over the blob store and the layer
/// store. Image layers are read-only layers named by their chain id (so two images that share a base
/// share its layers) and labelled <see cref="LayerLabel"/>; a layer no image uses is removed when the
/// last image that used it goes, and blobs nothing refers to with it. A record is written only once
/// everything it refers to is in place, so a failed or interrupted import leaves no visible image
/// (its leftovers go at the next removal or open). An image layer lent to containerd's snapshotter (<see cref="Lend"/>)
/// stays while a snapshot uses it, even after its image is removed.
/// </summary>
public sealed class ImageStore
{
    public const string LayerLabel = "strata.image-layer";

    /// <summary>The most layers an image may have, whatever the driver: Docker's (moby's layer store, maxLayerDepth),
    /// so that with a container's init layer and its own a chain is at most 127 deep, what every driver mounts.</summary>
    public const int MaxLayers = 125;
    readonly object _lock = new();
    readonly string _index;

    public ImageStore(LayerStore layers)
    {
        Layers = layers;
        Blobs = new BlobStore(layers.Root, create: !layers.ReadOnly);
        _index = Path.Combine(layers.Root, "images", "images.json");
    }

    public LayerStore Layers { get; }
    public BlobStore Blobs { get; }

    public List<ImageRecord> List()
    {
        lock (_lock) return Load();
    }

    /// <summary>An image by name (name[:tag], tag latest by default), by id, or by a unique id prefix of at least 4 hex digits.</summary>
    public ImageRecord Get(string reference)
    {
        lock (_lock) return Find(Load(), reference) ?? throw StrataException.NotFound($"image {reference} does not exist");
    }

    /// <summary>Runs <paramref name="action"/> on image <paramref name="reference"/> while holding the image store: no
    /// other image command (a removal above all) runs meanwhile, so whatever the action builds on the image, or opens
    /// of it, cannot lose the image's layers and blobs half-way. Keep the action short: image commands wait for it.</summary>
    public T Using<T>(string reference, Func<ImageRecord, T> action)
    {
        lock (_lock) return action(Find(Load(), reference) ?? throw StrataException.NotFound($"image {reference} does not exist"));
    }

    /// <summary>Writes into the blob store the layer tars of image <paramref name="reference"/> that the store keeps as
    /// their tar-split (a migration's layers), each from its tar-split and its layer's files, checked against its digest
    /// and size. An export or a push calls it before it opens the image's blobs (<see cref="Using"/>); then every blob
    /// of the image is in the store as itself, as an import's are (the tar-split goes at the next collection). The
    /// image's layers and blobs are held as an import's are, not under the store's lock: other image commands go on.</summary>
    public void AssembleBlobs(string reference)
    {
        using var scope = BeginImport();
        var needed = new List<(Digest Blob, long Size, string Layer)>();
        lock (_lock)
        {
            var image = Find(Load(), reference) ?? throw StrataException.NotFound($"image {reference} does not exist");
            var manifestDigest = Digest.Parse(image.Manifest);
            var manifest = OciJson.Decode(Blobs.Read(manifestDigest), OciJson.Default.ImageManifest, $"manifest {manifestDigest}");
            for (int i = 0; i < manifest.Layers.Count; i++)
            {
                var blob = Digest.Parse(manifest.Layers[i].Digest);
                if (!Blobs.HasTarSplit(blob)) continue;
                if (i >= image.Layers.Count) throw StrataException.Corrupt($"image {image.Id} has {image.Layers.Count} layers, fewer than its manifest's {manifest.Layers.Count}");
                scope.UseBlob(blob);
                scope.UseLayer(image.Layers[i]);
                needed.Add((blob, manifest.Layers[i].Size, image.Layers[i]));
            }
        }
        if (needed.Count > 0 && Layers.ReadOnly)
            throw new StrataException(ErrorKind.ReadOnly, $"image {reference} has layers kept as their tar-split (a migration's), whose tars an export writes into the store, which this command opened read-only (a migration ran meanwhile?): run it again");
        foreach (var (blob, size, layer) in needed)
        {
            Layers.ReadTree(layer, tree =>
            {
                try
                {
                    using var tar = new TreeTar(Blobs.TarSplitPath(blob), tree);
                    return Blobs.Put(tar, blob, size, "the tar written again", scope: scope);
                }
                catch (StrataException ex) when (ex is not ErrnoException)
                {
                    throw new StrataException(ex.Kind, $"layer {blob} is kept as its tar-split, and its tar cannot be written again from it and the files of layer {layer}: {ex.Message}", ex);
                }
            });
        }
        scope.Complete();
    }

    public bool TryGet(string reference, out ImageRecord? image)
    {
        lock (_lock) image = Find(Load(), reference);
        return image is not null;
    }

    static ImageRecord? Find(List<ImageRecord> images, string reference)
    {
        if (reference.Contains('@')) return images.FirstOrDefault(i => i.RepoDigests?.Contains(reference) == true);
        string? name = ImageName.TryNormalize(reference);
        if (name is not null && images.FirstOrDefault(i => i.Names.Contains(name)) is { } named) return named;
        string hex = reference.StartsWith("sha256:", StringComparison.Ordinal) ? reference[7..] : reference;
        if (hex.Length < 4 || !hex.All(Uri.IsHexDigit)) return null;
        var matches = images.Where(i => i.Id.AsSpan(7).StartsWith(hex, StringComparison.Ordinal)).ToList();
        if (matches.Count > 1) throw StrataException.Invalid($"image id prefix {reference} is ambiguous ({matches.Count} images)");
        return matches.SingleOrDefault();
    }

    /// <summary>Records an image whose blobs and layers are all in place; its names move to it from other images
    /// (as `docker load` retags).</summary>
    public ImageRecord Add(ImageRecord image) => Add([image])[0];

    /// <summary>Records images whose blobs and layers are all in place, in one write, in order: each one's names move
    /// to it from other images (as `docker load` retags), so a name two of them carry ends with the later one; an
    /// image already recorded gains the names. Returns the records, once each. Linear in the names: an index of
    /// 300,000 entries naming one image cost 300,000 rewrites of a growing images.json.</summary>
    public List<ImageRecord> Add(IReadOnlyList<ImageRecord> added)
    {
        lock (_lock)
        {
            var images = Load();
            var byId = new Dictionary<string, ImageRecord>(StringComparer.Ordinal);
            var owner = new Dictionary<string, ImageRecord>(StringComparer.Ordinal);
            foreach (var i in images)
            {
                byId.TryAdd(i.Id, i);
                foreach (var n in i.Names) owner[n] = i;
            }
            var result = new List<ImageRecord>();
            var seen = new HashSet<ImageRecord>(ReferenceEqualityComparer.Instance);
            foreach (var image in added)
            {
                if (!byId.TryGetValue(image.Id, out var target))
                {
                    target = image with { Names = [], RepoDigests = null };
                    images.Add(target);
                    byId[image.Id] = target;
                }
                foreach (var d in image.RepoDigests ?? [])
                {
                    target.RepoDigests ??= [];
                    if (!target.RepoDigests.Contains(d)) target.RepoDigests.Add(d);
                }
                foreach (var name in image.Names)
                {
                    if (owner.TryGetValue(name, out var had) && ReferenceEquals(had, target)) continue;
                    target.Names.Add(name);
                    owner[name] = target;
                }
                if (seen.Add(target)) result.Add(target);
            }
            // a name stays only with the last image that took it
            foreach (var i in images)
            {
                var keep = i.Names.Where(n => ReferenceEquals(owner[n], i)).Distinct(StringComparer.Ordinal).ToList();
                i.Names.Clear();
                i.Names.AddRange(keep);
            }
            Save(images);
            return result;
        }
    }

    /// <summary>Gives an image one more name.</summary>
    public void Tag(string reference, string newName)
    {
        string name = ImageName.Normalize(newName);
        lock (_lock)
        {
            var images = Load();
            var image = Find(images, reference) ?? throw StrataException.NotFound($"image {reference} does not exist");
            foreach (var other in images) other.Names.Remove(name);
            image.Names.Add(name);
            Save(images);
        }
    }

    /// <summary>
    /// Removes a reference to an image, as `docker rmi` does. A name (or a repository digest) of an image that has
    /// other names only goes itself: one <see cref="ImageRemovalKind.Untagged"/>. The image's last name, or its id (or
    /// a unique id prefix), removes the image: each of its names and digests untagged, then the image deleted, then
    /// each of its layers that no other image or container keeps (and blobs nothing else refers to, unreported). An id
    /// of an image with several names is refused unless <paramref name="force"/> (as docker, which names the image
    /// "referenced in multiple repositories"). An image that a container uses (<paramref name="inUse"/> names them) is
    /// never deleted, forced or not: containers refer to their image (docker deletes it under -f when the containers
    /// are stopped, leaving them with an image id that names nothing).
    /// </summary>
    public List<ImageRemoval> Remove(string reference, Func<string, IReadOnlyList<string>> inUse, bool force = false)
    {
        lock (_lock)
        {
            var images = Load();
            var image = Find(images, reference) ?? throw StrataException.NotFound($"image {reference} does not exist");
            var events = new List<ImageRemoval>();
            // which of the image's references the argument is: a name, a repository digest, or none (an id)
            string? name = reference.Contains('@') ? null : ImageName.TryNormalize(reference);
            bool byName = name is not null && image.Names.Contains(name);
            bool byDigest = image.RepoDigests?.Contains(reference) == true;
            if (byName && image.Names.Count > 1 || byDigest && image.Names.Count + image.RepoDigests!.Count > 1)
            {
                // an untag: the image stays under its other references
                if (byName) image.Names.Remove(name!);
                else image.RepoDigests!.Remove(reference);
                if (image.RepoDigests is { Count: 0 }) image.RepoDigests = null;
                Save(images);
                return [new(ImageRemovalKind.Untagged, byName ? name! : reference)];
            }
            if (!byName && !byDigest && image.Names.Count > 1 && !force)
                throw StrataException.InUse($"image {image.ShortId} has {image.Names.Count} names ({Shown(image.Names)}); remove them one by one, or all with -f");
            var users = inUse(image.Id);
            if (users.Count > 0)
                throw StrataException.InUse($"image {reference} is used by container(s) {Shown(users)}; remove them first");
            foreach (var n in image.Names) events.Add(new(ImageRemovalKind.Untagged, n));
            foreach (var d in image.RepoDigests ?? []) events.Add(new(ImageRemovalKind.Untagged, d));
            images.Remove(image);
            Save(images);
            events.Add(new(ImageRemovalKind.Deleted, image.Id));
            var gone = Collect(images);
            // the image's own layers, top first as docker lists them; leftovers collected with them are not this removal's
            foreach (var layer in Enumerable.Reverse(image.Layers))
                if (gone.Contains(layer)) events.Add(new(ImageRemovalKind.DeletedLayer, layer.Length == 64 ? "sha256:" + layer : layer));
            return events;
        }
    }

    static string Shown(IReadOnlyList<string> items) => string.Join(", ", items.Take(5)) + (items.Count > 5 ? ", ..." : "");

    /// <summary>Removes image layers and blobs that no image refers to (what an interrupted import, or an image's
    /// removal, leaves); layers that still have children (a container's, another image's) stay, and so does
    /// what an import in progress uses.</summary>
    public void Collect()
    {
        lock (_lock) Collect(Load());
    }

    readonly List<ImportScope> _imports = [];

    /// <summary>Starts an import: until it ends, what it uses is kept from collection; if it ends without
    /// <see cref="ImportScope.Complete"/>, the layers and blobs it added that no image refers to go again.</summary>
    public ImportScope BeginImport()
    {
        var scope = new ImportScope(this);
        lock (_lock) _imports.Add(scope);
        return scope;
    }

    /// <summary>The layers and blobs an import uses (shared ones too) and those it added.</summary>
    public sealed class ImportScope : IDisposable
    {
        readonly ImageStore _store;
        internal readonly HashSet<string> UsedLayers = new(StringComparer.Ordinal), UsedBlobs = new(StringComparer.Ordinal);
        internal readonly List<string> CreatedLayers = [];
        internal readonly HashSet<string> AddedBlobs = new(StringComparer.Ordinal);
        bool _complete;

        internal ImportScope(ImageStore store) => _store = store;

        // a use is recorded before the thing is looked for, so that no collection can take it in between
        public void UseLayer(string id)
        {
            lock (_store._lock) UsedLayers.Add(id);
        }

        public void UseBlob(Digest blob)
        {
            lock (_store._lock) UsedBlobs.Add(blob.Hex);
        }

        public void Created(string layer)
        {
            lock (_store._lock) CreatedLayers.Add(layer);
        }

        public void Added(Digest blob)
        {
            lock (_store._lock) AddedBlobs.Add(blob.Hex);
        }

        /// <summary>The import's records are written: what it added is theirs now.</summary>
        public void Complete() => _complete = true;

        public void Dispose() => _store.End(this, _complete);
    }

    void End(ImportScope scope, bool complete)
    {
        lock (_lock)
        {
            _imports.Remove(scope);
            if (complete) return;
            try
            {
                var images = Load();
                var keepLayers = images.SelectMany(i => i.Layers).Concat(_imports.SelectMany(s => s.UsedLayers)).ToHashSet(StringComparer.Ordinal);
                for (int i = scope.CreatedLayers.Count - 1; i >= 0; i--)
                {
                    if (keepLayers.Contains(scope.CreatedLayers[i])) continue;
                    try
                    {
                        Layers.Remove(scope.CreatedLayers[i]);
                    }
                    catch (StrataException)
                    {
                        // in use right now (a child, a mount): the next collection takes it
                    }
                }
                var keep = ReferencedBlobs(images);
                keep.UnionWith(_imports.SelectMany(s => s.UsedBlobs));
                foreach (var hex in scope.AddedBlobs)
                    if (!keep.Contains(hex)) Blobs.Delete(new Digest(hex));
            }
            catch (StrataException)
            {
                // the import's own error is the one to report; what is left goes at the next collection
            }
        }
    }

    /// <summary>Lends image layer <paramref name="layer"/> to another user of the store (containerd's snapshotter: a
    /// snapshot made of it): under the lock that collection takes, <paramref name="record"/> persists the loan, so the
    /// layer is either collected before or kept after. False when no image has the layer (an import still making it
    /// may yet fail and take it away).</summary>
    public bool Lend(string layer, Action record)
    {
        lock (_lock)
        {
            if (!Layers.Exists(layer) || !Load().Any(i => i.Layers.Contains(layer))) return false;
            record();
            return true;
        }
    }

    /// <summary>After a loan of <paramref name="layer"/> ended: when no image uses the layer any more (its image was removed
    /// while the layer was lent), collects it and what it alone kept.</summary>
    public void Returned(string layer)
    {
        lock (_lock)
        {
            var images = Load();
            if (!images.Any(i => i.Layers.Contains(layer))) Collect(images);
        }
    }

    /// <summary>Collects what <paramref name="images"/> do not use; returns the layers removed.</summary>
    HashSet<string> Collect(List<ImageRecord> images)
    {
        var removed = new HashSet<string>(StringComparer.Ordinal);
        var usedLayers = images.SelectMany(i => i.Layers).Concat(_imports.SelectMany(s => s.UsedLayers.Concat(s.CreatedLayers))).ToHashSet(StringComparer.Ordinal);
        // layers lent to containerd's snapshots, read from their records so that a CLI without the daemon sees them
        // too; when one does not parse (null), no layer is collected
        var lent = Snapshots.SnapshotRecords.Peek(Layers.Root);
        if (lent is not null) RemoveUnused(Layers.List, usedLayers.Union(lent.Select(r => r.Layer)).ToHashSet(StringComparer.Ordinal), id =>
        {
            try
            {
                Layers.Remove(id);
                removed.Add(id);
                return true;
            }
            catch (StrataException)
            {
                return false; // in use right now: the next collection takes it
            }
        });
        var keep = ReferencedBlobs(images);
        keep.UnionWith(_imports.SelectMany(s => s.UsedBlobs.Concat(s.AddedBlobs)));
        Blobs.Collect(keep);
        return removed;
    }

    /// <summary>Removes the image layers (labelled <see cref="LayerLabel"/>) that are not <paramref name="used"/>, not
    /// mounted and have no children, children before parents, through <paramref name="remove"/> (false: it could not);
    /// <paramref name="list"/> lists the store's layers. Returns how many went. Linear in the layers: one listing,
    /// children counted once, and a parent becomes a candidate when its last child goes (a killed import can leave
    /// thousands; asking "has it children?" of the whole store per layer, per pass, took hours).</summary>
    internal static int RemoveUnused(Func<IReadOnlyList<Layer>> list, IReadOnlySet<string> used, Func<string, bool> remove)
    {
        var layers = new Dictionary<string, Layer>(StringComparer.Ordinal);
        var children = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var l in list())
        {
            layers[l.Id] = l;
            if (l.Parent is { } p) children[p] = children.GetValueOrDefault(p) + 1;
        }
        bool Unused(Layer l) => l.Labels.ContainsKey(LayerLabel) && !used.Contains(l.Id) && l.Mounts == 0 && children.GetValueOrDefault(l.Id) == 0;
        var ready = new Stack<Layer>(layers.Values.Where(Unused));
        int count = 0;
        while (ready.TryPop(out var layer))
        {
            if (!remove(layer.Id)) continue; // it stays, and so does its parent
            count++;
            if (layer.Parent is { } parentId && --children[parentId] == 0 && layers.TryGetValue(parentId, out var parent) && Unused(parent))
                ready.Push(parent);
        }
        return count;
    }

    HashSet<string> ReferencedBlobs(List<ImageRecord> images)
    {
        var keep = new HashSet<string>(StringComparer.Ordinal);
        foreach (var image in images)
        {
            keep.Add(image.Config.Hex);
            var manifest = Digest.Parse(image.Manifest);
            keep.Add(manifest.Hex);
            if (!Blobs.Exists(manifest)) continue;
            var m = OciJson.Decode(Blobs.Read(manifest), OciJson.Default.ImageManifest, $"manifest {manifest}");
            foreach (var l in m.Layers) if (Digest.TryParse(l.Digest, out var d)) keep.Add(d.Hex);
        }
        return keep;
    }

    List<ImageRecord> Load()
    {
        if (!File.Exists(_index)) return [];
        try
        {
            return JsonSerializer.Deserialize(Strata.Native.Posix.ReadFile(_index), ImageStoreJson.Default.ListImageRecord) ?? [];
        }
        catch (JsonException ex)
        {
            throw StrataException.Corrupt($"{_index} is unreadable ({ex.Message}); restore it or move it away");
        }
    }

    void Save(List<ImageRecord> images) =>
        AtomicFile.Write(_index, JsonSerializer.SerializeToUtf8Bytes(images.OrderBy(i => i.Created).ToList(), ImageStoreJson.Default.ListImageRecord));
}

/// <summary>What one removal did, in the order docker reports it: a reference untagged (a name, or a repository digest),
/// the image deleted (its id), a layer deleted (its chain id, sha256:...).</summary>
public readonly record struct ImageRemoval(ImageRemovalKind Kind, string What);

public enum ImageRemovalKind
{
    Untagged,
    Deleted,
    DeletedLayer,
}

/// <summary>Image names as Docker writes them: [registry[:port]/]path[:tag], lowercase path components, tag latest
/// when none is given. Digest references (name@sha256:...) are not names.</summary>
public static partial class ImageName
{
    [GeneratedRegex(@"\A(?:(?<host>[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)/)?(?<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)(?::(?<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?\z")]
    private static partial Regex Pattern();

    public static string Normalize(string reference) =>
        TryNormalize(reference) ?? throw StrataException.Invalid($"invalid image name '{(reference.Length > 80 ? reference[..80] + "..." : reference)}' (use [registry/]name[:tag] with lowercase names)");

    public static string? TryNormalize(string reference)
    {
        if (reference.Length > 255) return null;
        var m = Pattern().Match(reference);
        if (!m.Success) return null;
        // "host/path" only when the first component looks like a host (has a dot or port, or is localhost)
        string host = m.Groups["host"].Value;
        if (host.Length > 0 && host.Any(char.IsUpper) && !host.Contains('.') && !host.Contains(':')) return null;
        return m.Groups["tag"].Success ? reference : reference + ":latest";
    }

    /// <summary>Whether image name <paramref name="name"/> (name:tag) matches docker's --filter reference= pattern: a glob
    /// (* and ? within one path component) on the name and tag when the pattern has a tag, else on the name alone.</summary>
    public static bool Matches(string name, string pattern)
    {
        int tagAt = name.LastIndexOf(':');
        if (tagAt < name.LastIndexOf('/')) tagAt = -1;
        bool patternHasTag = pattern.LastIndexOf(':') > pattern.LastIndexOf('/');
        string subject = patternHasTag || tagAt < 0 ? name : name[..tagAt];
        string regex = "\\A" + string.Concat(pattern.Select(c => c switch
        {
            '*' => "[^/]*",
            '?' => "[^/]",
            _ => Regex.Escape(c.ToString()),
        })) + "\\z";
        return Regex.IsMatch(subject, regex, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
    }
}

[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(List<ImageRecord>))]
internal partial class ImageStoreJson : JsonSerializerContext;
