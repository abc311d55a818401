using Strata.Core.Images;

namespace Strata.Core.Registry;

/// <summary>
/// Pulls images from a registry into an <see cref="ImageStore"/>, as `docker pull` does: the manifest (the host's or
/// the asked-for platform's, from an index), the config, then the layers the store lacks. Layers download at once (up
/// to the settings' limit) into the store's tmp/, each hashed as it comes and resumed with <c>Range</c> when the
/// connection breaks; they are applied in order while they download (the applier reads a layer's file as it grows),
/// and a layer becomes visible only once its blob's digest and size and its tar's diff id are verified. On any failure
/// nothing of the image is visible and what the pull added goes again.
/// </summary>
public sealed class Puller(ImageStore images, RegistrySettings settings, DockerCredentials credentials)
{
    LayerStore Layers => images.Layers;
    BlobStore Blobs => images.Blobs;

    /// <summary>Pauses between retries grow from this (tests shorten it).</summary>
    internal TimeSpan Backoff { get; init; } = TimeSpan.FromMilliseconds(500);

    public List<PulledImage> Pull(ImageReference reference, PullOptions options)
    {
        using var client = new RegistryClient(reference.Registry, settings, credentials.Get(reference.Registry)) { Backoff = Backoff };
        client.Scopes.Add($"repository:{reference.Repository}:pull");
        if (!options.AllTags) return [PullOne(client, reference, options)];
        if (reference.Digest is not null) throw StrataException.Invalid("--all-tags takes a repository without a tag or digest");
        var tags = client.ListTags(reference.Repository).Select(t => ImageReference.Parse($"{reference.Name}:{t}").Tag!).ToList();
        if (tags.Count == 0) throw StrataException.NotFound($"{reference.Name} has no tags");
        return tags.Order(StringComparer.Ordinal).Select(t => PullOne(client, reference with { Tag = t }, options)).ToList();
    }

    PulledImage PullOne(RegistryClient client, ImageReference reference, PullOptions options)
    {
        string repo = reference.Repository;
        string shown = reference.Familiar;
        options.Message?.Invoke($"{reference.ManifestReference}: Pulling from {repo}");
        var (bytes, mediaType, digest) = client.GetManifest(repo, reference.ManifestReference, $"manifest for {shown}");
        var top = digest; // what the reference names: the index's digest when it is one, as docker records it
        var platform = options.Platform ?? Platform.Host;
        for (int depth = 0; MediaTypes.IsIndex(mediaType); depth++)
        {
            if (depth > 4) throw StrataException.Corrupt($"{shown}: image indexes nest too deeply");
            var index = OciJson.ReadIndex(bytes, $"index of {shown}");
            var entry = index.Manifests.FirstOrDefault(m => platform.Matches(m.Platform))
                ?? throw StrataException.NotFound($"{shown} has no manifest for platform {platform} (it has {string.Join(", ", index.Manifests.Select(m => m.Platform?.ToString() ?? "?").Distinct().Take(10))}); choose one with --platform");
            var entryDigest = Digest.Parse(entry.Digest, "manifest digest");
            if (entry.Size > RegistryClient.MaxManifest) throw StrataException.Invalid($"{shown}: manifest {entryDigest} is {entry.Size} bytes, more than the {RegistryClient.MaxManifest} accepted");
            (bytes, mediaType, digest) = client.GetManifest(repo, entryDigest.ToString(), $"manifest {entryDigest} of {shown}");
            if (bytes.Length != entry.Size) throw StrataException.Corrupt($"{shown}: manifest {entryDigest} has {bytes.Length} bytes, not {entry.Size} as the index says");
        }
        var manifest = OciJson.ReadManifest(bytes, $"manifest of {shown}");
        if (manifest.Config.MediaType is { } ct && !MediaTypes.IsConfig(ct))
            throw StrataException.Unsupported($"{shown} is not a container image (its config has media type '{(ct.Length > 100 ? ct[..100] : ct)}')");
        if (manifest.Layers.Count > ImageStore.MaxLayers)
            throw StrataException.Invalid($"{shown} has {manifest.Layers.Count} layers, more than the {ImageStore.MaxLayers} an image may have");
        // every layer's type is known before a byte of any is fetched
        var layers = manifest.Layers.Select(l =>
        {
            var d = Digest.Parse(l.Digest, "layer digest");
            if (l.Size < 0) throw StrataException.Corrupt($"{shown}: layer {d} has a negative size");
            return (Digest: d, l.Size, Compression: MediaTypes.Layer(l.MediaType, $"{shown}: layer {d}"));
        }).ToList();

        using var scope = images.BeginImport();
        var configDigest = Digest.Parse(manifest.Config.Digest, "config digest");
        scope.UseBlob(configDigest);
        byte[] config = Blobs.Exists(configDigest) && Blobs.Size(configDigest) == manifest.Config.Size
            ? Blobs.Read(configDigest)
            : client.GetSmallBlob(repo, configDigest, manifest.Config.Size, $"config {configDigest} of {shown}");
        if (Digest.Of(config) != configDigest) throw StrataException.Corrupt($"config {configDigest} in the store does not have its digest");
        var parsed = OciJson.ReadConfig(config, $"config {configDigest}");
        var diffIds = parsed.RootFs?.DiffIds?.Select(d => Digest.Parse(d, "diff_id")).ToList();
        if (diffIds is null || diffIds.Count != layers.Count)
            throw StrataException.Corrupt($"config {configDigest} lists {diffIds?.Count ?? 0} layer diff id(s) for {layers.Count} layer(s)");

        // what is here already: layers by chain id, blobs by digest
        var plan = new List<LayerPlan>();
        Digest? below = null;
        for (int i = 0; i < layers.Count; i++)
        {
            var chain = below is { } b ? Digest.Chain(b, diffIds[i]) : diffIds[i];
            scope.UseLayer(chain.Hex);
            scope.UseBlob(layers[i].Digest);
            bool haveLayer = Layers.Exists(chain.Hex);
            bool haveBlob = Blobs.Exists(layers[i].Digest);
            if (haveBlob && Blobs.Size(layers[i].Digest) != layers[i].Size)
                throw StrataException.Corrupt($"{shown}: layer {layers[i].Digest} is {layers[i].Size} bytes by its descriptor, but the blob with that digest has {Blobs.Size(layers[i].Digest)}");
            plan.Add(new LayerPlan(layers[i].Digest, layers[i].Size, layers[i].Compression, diffIds[i], chain.Hex, i == 0 ? null : plan[i - 1].Id, haveLayer, haveBlob));
            below = chain;
        }
        bool anything = plan.Any(p => !p.HaveBlob || !p.HaveLayer);
        foreach (var p in plan.Where(p => p.HaveBlob && p.HaveLayer)) options.Progress?.Invoke(new(p.ShortId, "Already exists"));

        var downloads = new Downloads(this, client, repo, plan.Where(p => !p.HaveBlob).ToList(), options, scope);
        try
        {
            foreach (var p in plan)
            {
                if (p.HaveLayer)
                {
                    // a layer here made from another blob (another compression of it) must be shown to be that blob's
                    if (!p.HaveBlob && Layers.Inspect(p.Id).Labels.GetValueOrDefault(ImageStore.LayerLabel) != p.Blob.ToString())
                    {
                        downloads.Wait(p);
                        CheckDiffId(p);
                    }
                    continue;
                }
                Apply(p, downloads.For(p), options, scope);
            }
            downloads.WaitAll();
        }
        catch
        {
            downloads.Cancel();
            throw;
        }
        finally
        {
            downloads.Dispose();
        }

        Blobs.Put(new MemoryStream(config), configDigest, config.Length, $"config {configDigest}", scope: scope);
        var manifestDigest = Blobs.Put(new MemoryStream(bytes), Digest.Of(bytes), bytes.Length, "manifest", scope: scope).Digest;
        string? name = reference.Tag is null ? null : ImageName.Normalize((reference with { Digest = null }).Familiar);
        var record = new ImageRecord
        {
            Id = configDigest.ToString(),
            Names = name is null ? [] : [name],
            RepoDigests = [$"{(reference with { Tag = null, Digest = null }).Familiar}@{top}"],
            Manifest = manifestDigest.ToString(),
            ManifestMediaType = mediaType,
            Layers = plan.Select(p => p.Id).ToList(),
            Created = DateTimeOffset.UtcNow,
            Platform = $"{parsed.Os}/{parsed.Architecture}{(parsed.Variant is null ? "" : "/" + parsed.Variant)}",
            Size = plan.Sum(p => Layers.Inspect(p.Id).Size),
        };
        bool had = images.TryGet(configDigest.ToString(), out var existing) && existing is not null && (name is null || existing.Names.Contains(name));
        var added = images.Add(record);
        scope.Complete();
        options.Message?.Invoke($"Digest: {top}");
        bool fresh = anything || !had;
        options.Message?.Invoke(fresh ? $"Status: Downloaded newer image for {shown}" : $"Status: Image is up to date for {shown}");
        return new PulledImage(name ?? record.RepoDigests[0], added, top, fresh);
    }

    /// <summary>One layer of the image: its blob, the layer it makes (by chain id) on its parent, and what the store has.</summary>
    internal sealed record LayerPlan(Digest Blob, long Size, LayerCompression Compression, Digest DiffId, string Id, string? Parent, bool HaveLayer, bool HaveBlob)
    {
        public string ShortId => Blob.Hex[..12];
    }

    /// <summary>Creates the layer of <paramref name="p"/> from its blob: the stored one, or the download as it grows.</summary>
    void Apply(LayerPlan p, BlobDownload? download, PullOptions options, ImageStore.ImportScope scope)
    {
        if (Layers.Exists(p.Id)) return; // made meanwhile by another pull (in the daemon, pulls run side by side)
        using var source = download is not null ? download.OpenReader() : Blobs.Open(p.Blob);
        long done = 0;
        // while the blob still downloads its line says so (as docker's, whose extraction starts after it): the bytes
        // extracted are shown once it is whole
        using var counted = new CountingStream(source, n =>
        {
            done += n;
            if (download is null || download.Complete) options.Progress?.Invoke(new(p.ShortId, "Extracting", done, p.Size));
        });
        using var tar = LayerCodec.Decompress(counted, p.Compression, leaveOpen: true);
        using var hashing = new HashingStream(tar);
        using var ahead = new ReadAheadStream(hashing);
        try
        {
            Layers.Create(p.Id, p.Parent, LayerKind.ReadOnly, new Dictionary<string, string> { [ImageStore.LayerLabel] = p.Blob.ToString() }, diff: ahead, verify: () =>
            {
                ahead.ReadToEnd(); // the tar's trailing blocks count in its digest
                var actual = hashing.Finish();
                // the blob must be whole and have its digest before its layer is published
                download?.WaitVerified();
                if (actual != p.DiffId)
                    throw StrataException.Corrupt($"layer {p.Blob} unpacks to a tar with digest {actual}, not the diff id {p.DiffId} its config lists");
            });
            scope.Created(p.Id); // a failure of a later layer takes it away again
        }
        catch (StrataException ex) when (ex.Kind == ErrorKind.AlreadyExists && Layers.Exists(p.Id))
        {
            // made by another pull between the look and the create: the same chain id is the same content (the blob
            // still comes: the image's record names it)
            return;
        }
        catch (StrataException ex) when (ex.Kind != ErrorKind.Corrupt || !ex.Message.StartsWith("layer ", StringComparison.Ordinal))
        {
            // the blob's own failure (digest, size, registry) is the story, not what the applier made of its bytes; a
            // download still running is stopped rather than waited for
            if (download is not null && !download.Finished) download.Abort();
            download?.ThrowIfFailed();
            if (ex is ErrnoException) throw;
            throw new StrataException(ex.Kind, $"layer {p.Blob}: {ex.Message}", ex);
        }
        options.Progress?.Invoke(new(p.ShortId, "Pull complete"));
    }

    /// <summary>Refuses a stored blob unless its tar has the diff id the config lists for it.</summary>
    void CheckDiffId(LayerPlan p) => ImageImporter.CheckDiffId(Blobs, p.Blob, p.Compression, p.DiffId);

    /// <summary>The downloads of one pull: a few worker threads take the blobs in layer order.</summary>
    sealed class Downloads : IDisposable
    {
        readonly Dictionary<LayerPlan, BlobDownload> _byLayer = [];
        readonly List<Thread> _workers = [];
        readonly Queue<BlobDownload> _queue;
        readonly CancellationTokenSource _cancel = new();

        public Downloads(Puller puller, RegistryClient client, string repo, List<LayerPlan> layers, PullOptions options, ImageStore.ImportScope scope)
        {
            foreach (var p in layers)
            {
                _byLayer[p] = new BlobDownload(puller, client, repo, p, options, scope, _cancel.Token);
                options.Progress?.Invoke(new(p.ShortId, "Waiting"));
            }
            _queue = new Queue<BlobDownload>(_byLayer.Values);
            int workers = Math.Min(layers.Count, Math.Max(1, options.MaxConcurrentDownloads ?? puller.MaxDownloads));
            for (int i = 0; i < workers; i++)
            {
                var t = new Thread(Work) { IsBackground = true, Name = "strata pull" };
                _workers.Add(t);
                t.Start();
            }
        }

        void Work()
        {
            while (true)
            {
                BlobDownload? next;
                lock (_queue) if (!_queue.TryDequeue(out next)) return;
                next.Run();
            }
        }

        public BlobDownload? For(LayerPlan p) => _byLayer.GetValueOrDefault(p);

        public void Wait(LayerPlan p) => _byLayer.GetValueOrDefault(p)?.WaitVerified();

        public void WaitAll()
        {
            foreach (var d in _byLayer.Values) d.WaitVerified();
        }

        public void Cancel()
        {
            _cancel.Cancel();
            foreach (var d in _byLayer.Values) d.Abort();
        }

        public void Dispose()
        {
            _cancel.Cancel();
            lock (_queue)
            {
                while (_queue.TryDequeue(out var d)) d.Abandon();
            }
            foreach (var t in _workers) t.Join();
            foreach (var d in _byLayer.Values) d.Dispose();
            _cancel.Dispose();
        }
    }

    int MaxDownloads => settings.MaxConcurrentDownloads;
    int Attempts => Math.Max(1, settings.MaxDownloadAttempts);
    string Tmp => Path.Combine(Layers.Root, "tmp");

    /// <summary>
    /// One blob coming from the registry into a file in the store's tmp/: appended to as bytes arrive (a broken
    /// connection resumes at the file's end with <c>Range</c>), hashed as written, checked against its digest and size
    /// at the end and then moved into the blob store. <see cref="OpenReader"/> reads the file while it grows.
    /// </summary>
    sealed class BlobDownload : IDisposable
    {
        readonly Puller _puller;
        readonly RegistryClient _client;
        readonly string _repo;
        readonly LayerPlan _layer;
        readonly PullOptions _options;
        readonly ImageStore.ImportScope _scope;
        readonly CancellationTokenSource _abort;
        readonly CancellationToken _cancel;
        readonly string _path;
        readonly Microsoft.Win32.SafeHandles.SafeFileHandle _file;
        readonly object _lock = new();
        long _written;
        Stream? _body;
        bool _finished, _verified;
        Exception? _failure;

        public BlobDownload(Puller puller, RegistryClient client, string repo, LayerPlan layer, PullOptions options, ImageStore.ImportScope scope, CancellationToken cancel)
        {
            (_puller, _client, _repo, _layer, _options, _scope) = (puller, client, repo, layer, options, scope);
            _abort = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            _cancel = _abort.Token;
            _path = Path.Combine(puller.Tmp, $"pull-{layer.Blob.Hex[..16]}-{Guid.NewGuid():N}");
            _file = File.OpenHandle(_path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read);
        }

        string What => $"layer {_layer.Blob}";

        public void Run()
        {
            try
            {
                Download();
                lock (_lock)
                {
                    _verified = true;
                    _finished = true;
                    Monitor.PulseAll(_lock);
                }
            }
            catch (Exception ex)
            {
                Fail(ex is StrataException || _cancel.IsCancellationRequested ? ex : StrataException.Io($"{What}: {RegistryClient.Describe(ex)}"));
            }
        }

        public void Abandon() => Fail(new OperationCanceledException());

        /// <summary>Breaks off this download (a read blocked on the registry returns with an error).</summary>
        public void Abort()
        {
            _abort.Cancel();
            lock (_lock) _body?.Dispose();
        }

        public bool Finished
        {
            get
            {
                lock (_lock) return _finished;
            }
        }

        void Fail(Exception ex)
        {
            lock (_lock)
            {
                _failure ??= ex;
                _finished = true;
                Monitor.PulseAll(_lock);
            }
        }

        void Download()
        {
            using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
            var buffer = new byte[1 << 20];
            long size = _layer.Size;
            for (int attempt = 1; ; attempt++)
            {
                _cancel.ThrowIfCancellationRequested();
                try
                {
                    using var body = _client.OpenBlob(_repo, _layer.Blob, _written, What, _cancel);
                    lock (_lock) _body = body;
                    _options.Progress?.Invoke(new(_layer.ShortId, "Downloading", _written, size));
                    int n;
                    while ((n = RegistryClient.ReadIdle(body, buffer, _cancel)) > 0)
                    {
                        _cancel.ThrowIfCancellationRequested();
                        if (_written + n > size) throw StrataException.Corrupt($"{What} is larger than the {size} bytes its descriptor says");
                        try
                        {
                            RandomAccess.Write(_file, buffer.AsSpan(0, n), _written);
                        }
                        catch (IOException ex)
                        {
                            // the disk here, not the network: not retried
                            throw StrataException.Io($"{What}: writing {_path}: {ex.Message}");
                        }
                        hash.AppendData(buffer, 0, n);
                        lock (_lock)
                        {
                            _written += n;
                            Monitor.PulseAll(_lock);
                        }
                        _options.Progress?.Invoke(new(_layer.ShortId, "Downloading", _written, size));
                    }
                    if (_written < size) throw new IOException($"the registry's answer ended at byte {_written} of {size}");
                    break;
                }
                catch (Exception ex) when (ex is IOException or HttpRequestException && attempt < _puller.Attempts && !_cancel.IsCancellationRequested)
                {
                    _cancel.WaitHandle.WaitOne(_puller.Backoff * (1 << Math.Min(attempt - 1, 6)));
                }
                catch (Exception ex) when (ex is IOException or HttpRequestException)
                {
                    throw StrataException.Io($"{What}: the download broke off at byte {_written} of {size} after {attempt} attempts: {RegistryClient.Describe(ex)}");
                }
            }
            _options.Progress?.Invoke(new(_layer.ShortId, "Verifying Checksum"));
            var digest = Digest.From(hash);
            if (digest != _layer.Blob) throw StrataException.Corrupt($"{What} has digest {digest}, not {_layer.Blob} as its descriptor says");
            // durable before the rename makes it the store's
            using (var fd = Native.Posix.Open(_path, Native.Posix.O_RDONLY)) Native.Posix.Fsync(fd, _path);
            _scope.UseBlob(digest);
            if (!_puller.Blobs.Exists(digest))
            {
                Native.Posix.Rename(_path, _puller.Blobs.PathOf(digest));
                Native.Posix.FsyncDirectory(_puller.Blobs.Directory);
                _scope.Added(digest);
            }
            _options.Progress?.Invoke(new(_layer.ShortId, "Download complete"));
        }

        /// <summary>Whether the blob is whole and verified.</summary>
        public bool Complete
        {
            get
            {
                lock (_lock) return _verified;
            }
        }

        /// <summary>Waits until the blob is whole and verified; throws what stopped it otherwise.</summary>
        public void WaitVerified()
        {
            lock (_lock)
            {
                while (!_finished) Monitor.Wait(_lock);
            }
            ThrowIfFailed();
        }

        public void ThrowIfFailed()
        {
            Exception? failure;
            lock (_lock) failure = _finished && !_verified ? _failure : null;
            if (failure is not null and not StrataException) throw StrataException.Io($"{What}: the pull was stopped");
            if (failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }

        /// <summary>Reads the blob from its start while it downloads: a read waits for bytes not yet written.</summary>
        public Stream OpenReader() => new Reader(this);

        sealed class Reader(BlobDownload d) : Strata.Archive.ReadOnlyStream
        {
            long _offset;

            public override int Read(Span<byte> buffer)
            {
                if (buffer.Length == 0) return 0;
                long available;
                lock (d._lock)
                {
                    while (d._written <= _offset && !d._finished) Monitor.Wait(d._lock);
                    available = d._written - _offset;
                    if (available <= 0)
                    {
                        if (d._failure is not null) d.ThrowIfFailed();
                        return 0;
                    }
                }
                int n = RandomAccess.Read(d._file, buffer[..(int)Math.Min(buffer.Length, available)], _offset);
                _offset += n;
                return n;
            }
        }

        public void Dispose()
        {
            _file.Dispose();
            _abort.Dispose();
            File.Delete(_path); // gone already when it became a blob
        }
    }
}
