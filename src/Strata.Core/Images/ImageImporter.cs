using System.Text.Json;
using System.Text.Json.Nodes;
using Strata.Archive;
using Strata.Native;

namespace Strata.Core.Images;

/// <summary>How an import went, for progress displays: which step, bytes done of a total (0 when unknown).</summary>
public readonly record struct ImportProgress(string Step, long Done, long Total);

/// <summary>
/// Imports images into an <see cref="ImageStore"/>: an OCI image layout (directory), an oci-archive (its tar), a
/// docker-archive (`docker save`: manifest.json, configs and layer tars), or a plain rootfs tar (as `docker
/// import` does, one layer and a minimal config). Every blob is checked against its digest and every
/// layer against its diff id; layers are created by chain id, so what two images share is stored once.
/// On any failure nothing of the image becomes visible, and the layers and blobs this import added go again.
/// </summary>
public sealed class ImageImporter(ImageStore images)
{
    public sealed record Options
    {
        /// <summary>Name for the image ([registry/]name[:tag]); null: the names the archive carries.</summary>
        public string? Name { get; init; }
        /// <summary>Platform to pick from a multi-platform index; null: the host's.</summary>
        public Platform? Platform { get; init; }
        public Action<ImportProgress>? Progress { get; init; }
    }

    LayerStore Layers => images.Layers;
    BlobStore Blobs => images.Blobs;

    public List<ImageRecord> Import(string path, Options options) => Import(path, path, options);

    /// <summary>Imports an archive read from <paramref name="input"/> (stdin: `image import -`), any of the tars
    /// <see cref="Import(string, Options)"/> takes; <paramref name="shown"/> names it in messages. The archive is
    /// spooled into the store's tmp/ first (the format is told by reading it whole, then it is read again), and the
    /// spool goes when the import ends (or at the store's next open, after a crash).</summary>
    public List<ImageRecord> Import(Stream input, string shown, Options options)
    {
        string dir = Path.Combine(Layers.Root, "tmp", "import-" + Guid.NewGuid().ToString("N"));
        try
        {
            LayerStore.MakeDir(dir, Modes.OwnerOnly);
            // named after what it is where it can be, since a rootfs tar's layer is named after its file in messages
            string spool = Path.Combine(dir, shown.Contains('/') || shown is "" or "." or ".." ? "input" : shown);
            long read = 0;
            using (var fd = Posix.Open(spool, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL, 0x180))
            {
                var buffer = new byte[1 << 20];
                int n;
                while ((n = input.Read(buffer)) > 0)
                {
                    Posix.WriteAll(fd, buffer.AsSpan(0, n), spool);
                    options.Progress?.Invoke(new("reading " + shown, read += n, 0));
                }
            }
            return Import(spool, shown, options);
        }
        finally
        {
            FileTree.Remove(dir);
        }
    }

    /// <summary>Imports <paramref name="path"/>, named <paramref name="shown"/> in messages. Whatever is not an image
    /// (a directory that is no layout, a file that does not read as a tar, compressed or not) is refused as such,
    /// with what was found.</summary>
    List<ImageRecord> Import(string path, string shown, Options options)
    {
        string name = options.Name is null ? "" : ImageName.Normalize(options.Name);
        using var scope = images.BeginImport();
        if (Directory.Exists(path))
        {
            using var dir = new DirectorySource(path);
            if (dir.Has("oci-layout")) return Finish(ImportOci(dir, options, scope), name, scope);
            if (dir.Has("manifest.json")) return Finish(ImportDocker(dir, options, scope), name, scope);
            throw NotAnImage(shown, "a directory with neither oci-layout (an OCI image layout) nor manifest.json (an extracted docker-archive)");
        }
        if (!File.Exists(path)) throw StrataException.NotFound($"{shown} does not exist");
        HashSet<string> names;
        try
        {
            names = StagedSource.Names(path);
        }
        catch (StrataException ex) when (ex is not ErrnoException)
        {
            // the whole input is read here first: what does not read as a tar (empty, cut short, random bytes, a
            // damaged compression) is no image at all
            if (ex.Kind == ErrorKind.Corrupt) throw NotAnImage(shown, ex.Message);
            throw new StrataException(ex.Kind, $"{shown}: {ex.Message}", ex);
        }
        bool docker = names.Contains("manifest.json"), oci = names.Contains("oci-layout") && names.Contains("index.json");
        if (!docker && !oci) return Finish([ImportRootfs(path, options, scope)], name, scope);
        long total = new FileInfo(path).Length;
        long staged = 0;
        using var source = StagedSource.Stage(path, Path.Combine(Layers.Root, "tmp"), n => options.Progress?.Invoke(new("reading archive", staged += n, total)));
        return Finish(docker ? ImportDocker(source, options, scope) : ImportOci(source, options, scope), name, scope);
    }

    /// <summary>Imports the images of an extracted docker-archive that is not a directory (one a migration makes up
    /// as it goes), under the names it carries.</summary>
    internal List<ImageRecord> ImportDockerArchive(ImageSource source, Options options)
    {
        using var scope = images.BeginImport();
        return Finish(ImportDocker(source, options, scope), "", scope);
    }

    static StrataException NotAnImage(string shown, string found) =>
        StrataException.Invalid($"{shown}: not an image or tar archive; {found}");

    /// <summary>Gives the imported images their names: the one asked for (then there must be exactly one image), or their own.</summary>
    List<ImageRecord> Finish(List<Pending> pending, string name, ImageStore.ImportScope scope)
    {
        if (name.Length > 0 && pending.Count != 1)
            throw StrataException.Invalid($"the archive holds {pending.Count} images; --name can name only one");
        var added = images.Add(pending.Select(p => p.Record with { Names = name.Length > 0 ? [name] : p.Record.Names }).ToList());
        scope.Complete();
        return added;
    }

    sealed record Pending(ImageRecord Record);

    // ---- formats ----

    List<Pending> ImportOci(ImageSource source, Options options, ImageStore.ImportScope scope)
    {
        var layout = OciJson.ReadLayout(source.ReadAll("oci-layout"));
        if (layout.ImageLayoutVersion is not { } version)
            throw StrataException.Corrupt("oci-layout has no imageLayoutVersion");
        if (!version.StartsWith("1.", StringComparison.Ordinal))
            throw StrataException.Unsupported($"oci-layout: image layout version '{OciJson.Shown(version)}' is not supported (only 1.x)");
        var index = OciJson.ReadIndex(source.ReadAll("index.json"), "index.json");
        var chosen = new List<(Descriptor Manifest, string? Name)>();
        var platform = options.Platform ?? Platform.Host;
        // entries that say their platform are one image's variants: only the chosen platform's is imported
        var entries = index.Manifests.Where(d => d.Platform is null || platform.Matches(d.Platform)).ToList();
        if (entries.Count == 0 && index.Manifests.Count > 0)
            throw StrataException.NotFound($"the image has no manifest for platform {platform} (it has {string.Join(", ", index.Manifests.Select(m => m.Platform?.ToString() ?? "?"))}); choose one with --platform");
        foreach (var d in entries)
        {
            string? refName = d.Annotations?.GetValueOrDefault("io.containerd.image.name")
                ?? (d.Annotations?.GetValueOrDefault("org.opencontainers.image.ref.name") is { } r ? RefName(r) : null);
            var manifest = Resolve(source, d, platform, 0);
            chosen.Add((manifest, refName));
        }
        if (chosen.Count == 0) throw StrataException.Corrupt("index.json lists no image");
        var plans = new List<Plan>();
        // one image per manifest, however many entries name it (each read once: an index may repeat one many times)
        foreach (var entriesOfOne in chosen.GroupBy(c => c.Manifest.Digest, StringComparer.Ordinal))
        {
            var descriptor = entriesOfOne.First().Manifest;
            var digest = Digest.Parse(descriptor.Digest, "manifest digest");
            foreach (var (other, _) in entriesOfOne)
            {
                if (other.MediaType is { } declared && !MediaTypes.IsManifest(declared))
                    throw StrataException.Unsupported($"manifest {digest} has media type '{OciJson.Shown(declared)}' in the index that names it, not a manifest's");
                if (other.Size != descriptor.Size)
                    throw StrataException.Corrupt($"manifest {digest} is named with sizes {descriptor.Size} and {other.Size}");
            }
            var bytes = ReadBlob(source, digest, descriptor.Size, $"manifest {digest}");
            if (OciJson.KindOf(bytes) == DocumentKind.Index)
                throw StrataException.Corrupt($"manifest {digest} is an image index, not the manifest its descriptor says ({descriptor.MediaType ?? "no media type"})");
            var manifest = OciJson.ReadManifest(bytes, $"manifest {digest}");
            if (manifest.MediaType is { } mt && !MediaTypes.IsManifest(mt)) throw StrataException.Unsupported($"manifest {digest} has media type '{OciJson.Shown(mt)}'");
            CheckDepth(manifest.Layers.Count, $"manifest {digest}");
            var configDigest = Digest.Parse(manifest.Config.Digest, "config digest");
            var config = ReadBlob(source, configDigest, manifest.Config.Size, $"config {configDigest}");
            var layers = manifest.Layers.Select(l =>
            {
                var d = Digest.Parse(l.Digest, "layer digest");
                return new LayerBlob(BlobPath(d), d, l.Size, MediaTypes.Layer(l.MediaType, $"layer {d}"), l.MediaType!);
            }).ToList();
            var names = entriesOfOne.Select(c => c.Name is null ? null : ImageName.TryNormalize(c.Name)).OfType<string>().Distinct(StringComparer.Ordinal).ToList();
            plans.Add(Plan.Of(config, configDigest, layers, names, (bytes, descriptor.MediaType ?? manifest.MediaType ?? MediaTypes.OciManifest)));
        }
        return plans.Select(p => Build(source, p, options, scope)).ToList();
    }

    /// <summary>Refuses an image with more layers than <see cref="ImageStore.MaxLayers"/>, before anything of it is read.</summary>
    static void CheckDepth(int layers, string what)
    {
        if (layers > ImageStore.MaxLayers)
            throw StrataException.Invalid($"{what} has {layers} layers, more than the {ImageStore.MaxLayers} an image may have");
    }

    /// <summary>The manifest to import for an index entry: itself, or the host's (or asked-for) platform's entry of a nested index.</summary>
    Descriptor Resolve(ImageSource source, Descriptor d, Platform platform, int depth)
    {
        if (!MediaTypes.IsIndex(d.MediaType)) return d;
        if (depth > 4) throw StrataException.Corrupt("image indexes nest too deeply");
        var digest = Digest.Parse(d.Digest, "index digest");
        var bytes = ReadBlob(source, digest, d.Size, $"index {digest}");
        if (OciJson.KindOf(bytes) == DocumentKind.Manifest)
            throw StrataException.Corrupt($"index {digest} is an image manifest, not the index its descriptor says ({d.MediaType})");
        var nested = OciJson.ReadIndex(bytes, $"index {digest}");
        if (nested.Manifests.Count == 0) throw StrataException.Corrupt($"index {digest} lists no manifest");
        var match = nested.Manifests.FirstOrDefault(m => platform.Matches(m.Platform))
            ?? throw StrataException.NotFound($"the image has no manifest for platform {platform} (it has {string.Join(", ", nested.Manifests.Select(m => m.Platform?.ToString() ?? "?"))}); choose one with --platform");
        return Resolve(source, match, platform, depth + 1);
    }

    static string? RefName(string refName) => refName.Contains(':') || refName.Contains('/') ? refName : "strata/image:" + refName;

    static string BlobPath(Digest d) => "blobs/sha256/" + d.Hex;

    /// <summary>A JSON document's blob, read whole: no more than its descriptor says, and never more than <see cref="ImageSource.MaxDocument"/>.</summary>
    static byte[] ReadBlob(ImageSource source, Digest digest, long size, string what)
    {
        string path = BlobPath(digest);
        if (size > ImageSource.MaxDocument)
            throw StrataException.Corrupt($"{what} is {size} bytes by its descriptor, more than a JSON document of an image may be ({ImageSource.MaxDocument})");
        byte[] bytes;
        using (var s = source.TryOpen(path) ?? throw StrataException.Corrupt($"{what} is missing from the image (no {path})"))
            bytes = ConfinedFile.ReadAtMost(s, size) ?? throw StrataException.Corrupt($"{what} has more than the {size} bytes its descriptor says");
        if (bytes.Length != size) throw StrataException.Corrupt($"{what} has {bytes.Length} bytes, not {size} as its descriptor says");
        if (Digest.Of(bytes) != digest) throw StrataException.Corrupt($"{what} has digest {Digest.Of(bytes)}, not {digest} as its descriptor says");
        return bytes;
    }

    List<Pending> ImportDocker(ImageSource source, Options options, ImageStore.ImportScope scope)
    {
        var entries = OciJson.ReadDockerManifest(source.ReadAll("manifest.json"));
        if (entries.Count == 0) throw StrataException.Corrupt("manifest.json lists no image");
        for (int i = 0; i < entries.Count; i++) CheckDepth(entries[i].Layers.Count, $"manifest.json: [{i}]");
        var plans = new List<Plan>();
        var configs = new Dictionary<string, (byte[] Bytes, Digest Digest)>(StringComparer.Ordinal); // each read once
        foreach (var e in entries)
        {
            string configPath = ImageSource.Clean(e.Config, "config path");
            if (!configs.TryGetValue(configPath, out var read))
            {
                var bytes = source.ReadAll(configPath);
                configs[configPath] = read = (bytes, Digest.Of(bytes));
            }
            var (config, configDigest) = read;
            // docker names the config by its digest: a config that is not what its name says was altered
            string expected = Path.GetFileName(configPath).Replace(".json", "", StringComparison.Ordinal);
            if (expected.Length == 64 && expected.All(Uri.IsHexDigit) && expected != configDigest.Hex)
                throw StrataException.Corrupt($"config {configPath} has digest {configDigest}, not sha256:{expected} as its name says");
            var layers = e.Layers.Select(l =>
            {
                string p = ImageSource.Clean(l, "layer path");
                using var s = source.TryOpen(p) ?? throw StrataException.Corrupt($"layer {p} is missing from the archive");
                return new LayerBlob(p, null, s.Length, null, null);
            }).ToList();
            var names = (e.RepoTags ?? []).Select(ImageName.TryNormalize).OfType<string>().ToList();
            plans.Add(Plan.Of(config, configDigest, layers, names, null));
        }
        return plans.Select(p => Build(source, p, options, scope)).ToList();
    }

    /// <summary>A rootfs tar as `docker import` takes it: one layer, and a config with nothing but that layer.</summary>
    Pending ImportRootfs(string path, Options options, ImageStore.ImportScope scope)
    {
        // the file the user named, wherever a symlink of theirs leads
        string real = Posix.RealPath(path);
        using var source = new DirectorySource(Path.GetDirectoryName(real)!);
        string name = Path.GetFileName(real);
        long total;
        using (var s = source.Open(name)) total = s.Length;
        var layer = new LayerBlob(name, null, total, null, null);
        return Build(source, Plan.Of(null, default, [layer], [], null), options, scope);
    }

    // ---- the common part ----

    /// <summary>A layer blob to import: where it is, and what its descriptor says (null: nothing, take what it is).</summary>
    sealed record LayerBlob(string Path, Digest? Digest, long Size, LayerCompression? Compression, string? MediaType);

    /// <summary>An image to build, read and checked whole before anything of any image of the archive is stored:
    /// its config (null: a rootfs tar's, made up), the config's diff ids, its layer blobs, names and manifest.</summary>
    sealed record Plan(byte[]? Config, ImageConfig? Parsed, List<Digest>? DiffIds, Digest ConfigDigest, List<LayerBlob> Layers, List<string> Names, (byte[] Bytes, string MediaType)? Manifest)
    {
        public static Plan Of(byte[]? config, Digest configDigest, List<LayerBlob> layers, List<string> names, (byte[] Bytes, string MediaType)? manifest)
        {
            ImageConfig? parsed = config is null ? null : OciJson.ReadConfig(config, $"config {configDigest}");
            var diffIds = parsed?.RootFs?.DiffIds?.Select(d => Digest.Parse(d, "diff_id")).ToList();
            if (parsed is not null && (diffIds is null || diffIds.Count != layers.Count))
                throw StrataException.Corrupt($"config {configDigest} lists {diffIds?.Count ?? 0} layer diff id(s) for {layers.Count} layer(s)");
            return new Plan(config, parsed, diffIds, configDigest, layers, names, manifest);
        }
    }

    Pending Build(ImageSource source, Plan plan, Options options, ImageStore.ImportScope scope)
    {
        var (config, parsed, diffIds, configDigest, blobs, names, manifest) = plan;
        // for progress only: descriptors' sizes are checked as the blobs are read, and may add up past long.MaxValue
        long total = blobs.Aggregate(0L, (sum, b) => sum > long.MaxValue - b.Size ? long.MaxValue : sum + b.Size), done = 0;
        var stored = new List<(Digest Digest, long Size, string MediaType, byte[]? TarSplit)>();
        for (int i = 0; i < blobs.Count; i++)
        {
            var b = blobs[i];
            if (diffIds is not null && b.Digest is null && source.TarSplitOf(b.Path) is { } packed)
            {
                // a layer the source writes again from files (a migration's) is kept as its tar-split, not copied: it is
                // read once, as it is unpacked, and checked against its diff id then, which is its blob's digest (the
                // tar is not compressed)
                scope.UseBlob(diffIds[i]);
                stored.Add((diffIds[i], b.Size, LayerCodec.MediaType(LayerCompression.None), packed));
                continue;
            }
            using var s = source.Open(b.Path);
            var (digest, size) = Blobs.Put(s, b.Digest, b.Digest is null ? null : b.Size, $"layer {b.Digest?.ToString() ?? b.Path}",
                n => options.Progress?.Invoke(new("storing layers", done += n, total)), scope);
            var compression = b.Compression ?? Sniff(digest);
            stored.Add((digest, size, b.MediaType ?? LayerCodec.MediaType(compression), null));
        }
        // layers, base first, each by its chain id
        var chain = new List<string>();
        var actualDiffIds = new List<Digest>();
        Digest? below = null;
        long contentSize = 0, applied = 0;
        for (int i = 0; i < stored.Count; i++)
        {
            var (digest, blobSize, mediaType, packed) = stored[i];
            Digest diffId;
            string id;
            if (diffIds is not null) scope.UseLayer(ChainOf(below, diffIds[i]).Hex);
            if (diffIds is not null && Layers.Exists(ChainOf(below, diffIds[i]).Hex))
            {
                diffId = diffIds[i];
                id = ChainOf(below, diffId).Hex;
                var layer = Layers.Inspect(id);
                // the layer is known to unpack from the blob it was made from; another blob must be shown to unpack to it,
                // or the image would be recorded with a blob that is not its layer
                if (layer.Labels.GetValueOrDefault(ImageStore.LayerLabel) != digest.ToString())
                {
                    if (packed is null) CheckDiffId(digest, MediaTypes.Layer(mediaType), diffId);
                    else
                    {
                        using var tar = source.Open(blobs[i].Path);
                        CheckDiffId(tar, LayerCompression.None, $"layer {blobs[i].Path}", diffId);
                    }
                }
                contentSize += layer.Size;
            }
            else
            {
                using var raw = packed is null ? Blobs.Open(digest) : source.Open(blobs[i].Path);
                (diffId, id) = CreateLayer(raw, digest, fromStore: packed is null, packed is null ? $"layer {digest}" : $"layer {blobs[i].Path}",
                    MediaTypes.Layer(mediaType), below, diffIds?[i], chain.LastOrDefault(), scope,
                    n => options.Progress?.Invoke(new("applying layers", applied += n, stored.Sum(s => s.Size))));
                contentSize += Layers.Inspect(id).Size;
            }
            if (packed is not null) Blobs.PutTarSplit(digest, packed, scope);
            actualDiffIds.Add(diffId);
            chain.Add(id);
            below = ChainOf(below, diffId);
        }
        if (config is null)
        {
            config = MinimalConfig(actualDiffIds);
            (configDigest, _) = Blobs.Put(config, "config", scope);
            parsed = OciJson.Decode(config, OciJson.Default.ImageConfig, "config");
        }
        else Blobs.Put(new MemoryStream(config), configDigest, config.Length, $"config {configDigest}", scope: scope);
        Digest manifestDigest;
        string manifestType;
        if (manifest is { } m)
        {
            manifestDigest = Blobs.Put(new MemoryStream(m.Bytes), Digest.Of(m.Bytes), m.Bytes.Length, "manifest", scope: scope).Digest;
            manifestType = m.MediaType;
        }
        else
        {
            var oci = new ImageManifest
            {
                MediaType = MediaTypes.OciManifest,
                Config = new Descriptor { MediaType = MediaTypes.OciConfig, Digest = configDigest.ToString(), Size = config.Length },
                Layers = stored.Select(s => new Descriptor { MediaType = s.MediaType, Digest = s.Digest.ToString(), Size = s.Size }).ToList(),
            };
            manifestDigest = Blobs.Put(JsonSerializer.SerializeToUtf8Bytes(oci, OciJson.Default.ImageManifest), "manifest", scope).Digest;
            manifestType = MediaTypes.OciManifest;
        }
        var record = new ImageRecord
        {
            Id = configDigest.ToString(),
            Names = names,
            Manifest = manifestDigest.ToString(),
            ManifestMediaType = manifestType,
            Layers = chain,
            Created = DateTimeOffset.UtcNow,
            Platform = parsed is null ? null : $"{parsed.Os}/{parsed.Architecture}{(parsed.Variant is null ? "" : "/" + parsed.Variant)}",
            Size = contentSize,
        };
        return new Pending(record);
    }

    static Digest ChainOf(Digest? below, Digest diffId) => below is { } b ? Digest.Chain(b, diffId) : diffId;

    /// <summary>Creates one image layer from layer tar <paramref name="raw"/>, compressed as <paramref name="compression"/>
    /// and recorded as unpacked from blob <paramref name="blob"/>; the tar's digest must be <paramref name="expectedDiffId"/>.
    /// <paramref name="fromStore"/>: <paramref name="raw"/> is that blob as the store holds it, whose digest the store
    /// checked as it came; an uncompressed one's is its tar's, so the tar is not hashed again. <paramref name="what"/>
    /// names the layer in errors.</summary>
    (Digest DiffId, string Id) CreateLayer(Stream raw, Digest blob, bool fromStore, string what, LayerCompression compression, Digest? below, Digest? expectedDiffId, string? parent,
        ImageStore.ImportScope scope, Action<long> progress)
    {
        using var counted = new CountingStream(raw, progress);
        using var tar = LayerCodec.Decompress(counted, compression);
        bool plain = fromStore && compression == LayerCompression.None;
        using var hashing = plain ? null : new HashingStream(tar);
        Digest diffId = default;
        StrataException? mismatch = null;
        string? id = expectedDiffId is { } known ? ChainOf(below, known).Hex : null;
        try
        {
            if (id is null)
            {
                // a rootfs tar: its diff id, and so the layer's id, is known only once it has been read; a compressed one
                // is read once to hash it, then applied (the second read comes from the page cache)
                if (plain) diffId = blob;
                else
                {
                    if (!fromStore) throw new ArgumentException("a layer tar read from its source needs the diff id it must have", nameof(expectedDiffId));
                    using var pre = Blobs.Open(blob);
                    using var preTar = LayerCodec.Decompress(pre, compression);
                    using var preHash = new HashingStream(preTar);
                    diffId = preHash.Finish();
                }
                id = ChainOf(below, diffId).Hex;
                scope.UseLayer(id);
                if (Layers.Exists(id)) return (diffId, id);
            }
            // decompression and hashing run a thread ahead of the extraction
            using var ahead = new ReadAheadStream(hashing ?? tar);
            Layers.Create(id, parent, LayerKind.ReadOnly, new Dictionary<string, string> { [ImageStore.LayerLabel] = blob.ToString() }, diff: ahead, verify: () =>
            {
                Digest actual = blob;
                if (hashing is not null)
                {
                    ahead.ReadToEnd(); // the tar's trailing blocks count in its digest
                    actual = hashing.Finish();
                }
                if (expectedDiffId is { } want && actual != want)
                    throw mismatch = StrataException.Corrupt($"{what} unpacks to a tar with digest {actual}, not the diff id {want} its config lists");
                diffId = actual;
            });
        }
        catch (StrataException ex) when (ex != mismatch && ex is not ErrnoException)
        {
            // the decompressor's or the applier's word on a bad blob says what is wrong (and which member), not which of
            // the image's layers
            throw new StrataException(ex.Kind, $"{what}: {ex.Message}", ex);
        }
        scope.Created(id);
        return (diffId, id);
    }

    void CheckDiffId(Digest blob, LayerCompression compression, Digest diffId) => CheckDiffId(Blobs, blob, compression, diffId);

    /// <summary>Refuses a stored layer blob unless its tar, decompressed and read to the end, has digest <paramref name="diffId"/>
    /// (an import of a layer the store has, and a pull's: the blob is checked before the layer is taken as its).</summary>
    internal static void CheckDiffId(BlobStore blobs, Digest blob, LayerCompression compression, Digest diffId)
    {
        using var raw = blobs.Open(blob);
        CheckDiffId(raw, compression, $"layer {blob}", diffId);
    }

    /// <summary>Refuses layer <paramref name="raw"/> (named <paramref name="what"/>) unless its tar has digest <paramref name="diffId"/>.</summary>
    static void CheckDiffId(Stream raw, LayerCompression compression, string what, Digest diffId)
    {
        Digest actual;
        try
        {
            using var tar = LayerCodec.Decompress(raw, compression);
            using var hashing = new HashingStream(tar);
            actual = hashing.Finish();
        }
        catch (StrataException ex) when (ex is not ErrnoException)
        {
            throw new StrataException(ex.Kind, $"{what}: {ex.Message}", ex);
        }
        if (actual != diffId)
            throw StrataException.Corrupt($"{what} unpacks to a tar with digest {actual}, not the diff id {diffId} its config lists");
    }

    LayerCompression Sniff(Digest blob)
    {
        using var s = Blobs.Open(blob);
        Span<byte> head = stackalloc byte[4];
        return LayerCodec.Sniff(head[..s.ReadAtLeast(head, head.Length, throwOnEndOfStream: false)]);
    }

    static byte[] MinimalConfig(List<Digest> diffIds)
    {
        var host = Platform.Host;
        string now = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffffffZ", System.Globalization.CultureInfo.InvariantCulture);
        var config = new JsonObject
        {
            ["created"] = now,
            ["architecture"] = host.Architecture,
            ["os"] = host.Os,
            ["config"] = new JsonObject(),
            ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = new JsonArray(diffIds.Select(d => (JsonNode)JsonValue.Create(d.ToString())!).ToArray()) },
            ["history"] = new JsonArray(new JsonObject { ["created"] = now, ["created_by"] = "strata image import", ["comment"] = "imported from a rootfs tar" }),
        };
        return OciJson.Bytes(config);
    }
}

/// <summary>Reports bytes read through it.</summary>
sealed class CountingStream(Stream inner, Action<long> progress) : ReadOnlyStream
{
    public override int Read(Span<byte> buffer)
    {
        int n = inner.Read(buffer);
        if (n > 0) progress(n);
        return n;
    }
}
