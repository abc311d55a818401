using System.Text.Json;
using Strata.Core.Images;

namespace Strata.Core.Registry;

/// <summary>
/// Pushes an image of an <see cref="ImageStore"/> to a registry, as `docker push` does: each layer the repository lacks
/// is mounted from another repository of the same registry that an image here came from, or uploaded (a few at once);
/// then the config, then the manifest under the tag. Blobs are sent as stored, so the registry gets the digests the
/// store has; with <see cref="PushOptions.Compression"/> the layers are recompressed first (into the store's tmp/)
/// and the registry gets an OCI manifest naming them.
/// </summary>
public sealed class Pusher(ImageStore images, RegistrySettings settings, DockerCredentials credentials)
{
    BlobStore Blobs => images.Blobs;

    /// <summary>Pushes image <paramref name="image"/> (a name or id in the store) as <paramref name="target"/>.</summary>
    public PushedImage Push(string image, ImageReference target, PushOptions options)
    {
        if (target.Digest is not null) throw StrataException.Invalid($"cannot push to a digest ({target.Familiar}): give a tag");
        string tag = target.Tag ?? "latest";
        string repo = target.Repository;
        // what is pushed is read while the image is held, so that a removal cannot take its blobs half-way; the bytes are
        // then sent with nothing held (the blob files stay readable once open)
        images.AssembleBlobs(image);
        var (manifestBytes, manifestType, manifest, open, mounts) = images.Using(image, record =>
        {
            var digest = Digest.Parse(record.Manifest);
            var bytes = Blobs.Read(digest);
            var m = OciJson.ReadManifest(bytes, $"manifest {digest}");
            var files = new Dictionary<Digest, FileStream>();
            try
            {
                foreach (var d in m.Layers.Select(l => Digest.Parse(l.Digest)).Append(record.Config).Distinct())
                    files[d] = (FileStream)Blobs.Open(d);
            }
            catch
            {
                foreach (var f in files.Values) f.Dispose();
                throw;
            }
            return (bytes, record.ManifestMediaType, m, files, MountSources(target, m));
        });
        var temporary = new List<string>();
        try
        {
            options.Message?.Invoke($"The push refers to repository [{(target.Registry == ImageReference.DefaultRegistry ? "docker.io/" + repo : target.Name)}]");
            var layers = manifest.Layers.Select(l => (Descriptor: l, Digest: Digest.Parse(l.Digest))).ToList();
            if (options.Compression is { } wanted)
            {
                var recompressed = new List<Descriptor>();
                foreach (var (d, digest) in layers)
                {
                    var have = MediaTypes.Layer(d.MediaType, $"layer {digest}");
                    if (have == wanted && d.MediaType == LayerCodec.MediaType(wanted))
                    {
                        recompressed.Add(d);
                        continue;
                    }
                    options.Progress?.Invoke(new(digest.Hex[..12], "Preparing"));
                    var (path, newDigest, size) = Recompress(open[digest], have, wanted);
                    temporary.Add(path);
                    open[newDigest] = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
                    recompressed.Add(new Descriptor { MediaType = LayerCodec.MediaType(wanted), Digest = newDigest.ToString(), Size = size, Annotations = d.Annotations });
                }
                var configDescriptor = manifest.Config with { MediaType = MediaTypes.OciConfig };
                var rewritten = new ImageManifest { MediaType = MediaTypes.OciManifest, Config = configDescriptor, Layers = recompressed };
                manifestBytes = JsonSerializer.SerializeToUtf8Bytes(rewritten, OciJson.Default.ImageManifest);
                manifestType = MediaTypes.OciManifest;
                manifest = rewritten;
                layers = recompressed.Select(l => (l, Digest.Parse(l.Digest))).ToList();
            }

            using var client = new RegistryClient(target.Registry, settings, credentials.Get(target.Registry), push: true);
            client.Scopes.Add($"repository:{repo}:pull,push");
            foreach (var from in mounts.Values.SelectMany(v => v).Distinct()) client.Scopes.Add($"repository:{from}:pull");
            foreach (var (_, d) in layers) options.Progress?.Invoke(new(d.Hex[..12], "Preparing"));
            var queue = new Queue<(Descriptor Descriptor, Digest Digest)>(layers.DistinctBy(l => l.Digest));
            Exception? failure = null;
            var workers = Enumerable.Range(0, Math.Min(queue.Count, Math.Max(1, options.MaxConcurrentUploads ?? settings.MaxConcurrentUploads))).Select(_ =>
            {
                var t = new Thread(() =>
                {
                    while (true)
                    {
                        (Descriptor Descriptor, Digest Digest) next;
                        lock (queue)
                        {
                            if (failure is not null || !queue.TryDequeue(out next)) return;
                        }
                        try
                        {
                            PushBlob(client, repo, next.Digest, next.Descriptor.Size, open, mounts.GetValueOrDefault(next.Digest) ?? [], options, layer: true);
                        }
                        catch (Exception ex)
                        {
                            lock (queue) failure ??= ex;
                            return;
                        }
                    }
                }) { IsBackground = true, Name = "strata push" };
                t.Start();
                return t;
            }).ToList();
            foreach (var t in workers) t.Join();
            if (failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            var config = Digest.Parse(manifest.Config.Digest);
            PushBlob(client, repo, config, manifest.Config.Size, open, [], options, layer: false);
            var pushed = client.PutManifest(repo, tag, manifestBytes, manifestType);
            options.Message?.Invoke($"{tag}: digest: {pushed} size: {manifestBytes.Length}");
            return new PushedImage(tag, pushed, manifestBytes.Length);
        }
        finally
        {
            foreach (var f in open.Values) f.Dispose();
            foreach (var t in temporary) File.Delete(t);
        }
    }

    void PushBlob(RegistryClient client, string repo, Digest digest, long size, Dictionary<Digest, FileStream> open, IReadOnlyList<string> mountFrom,
        PushOptions options, bool layer)
    {
        string id = digest.Hex[..12];
        if (client.HasBlob(repo, digest))
        {
            if (layer) options.Progress?.Invoke(new(id, "Layer already exists"));
            return;
        }
        foreach (var from in mountFrom)
        {
            if (!client.MountBlob(repo, digest, from)) continue;
            if (layer) options.Progress?.Invoke(new(id, $"Mounted from {from}"));
            return;
        }
        var file = open[digest];
        long done = 0;
        if (file.Length != size) throw StrataException.Corrupt($"blob {digest} in the store has {file.Length} bytes, not {size} as its manifest says");
        client.UploadBlob(repo, digest, size, () =>
        {
            // each attempt reads the blob from the start, through its own handle
            done = 0;
            return new HandleReader(file.SafeFileHandle);
        }, options.ChunkSize, n =>
        {
            if (layer) options.Progress?.Invoke(new(id, "Pushing", done += n, size));
        }, $"blob {digest}");
        if (layer) options.Progress?.Invoke(new(id, "Pushed"));
    }

    /// <summary>For each layer blob of <paramref name="manifest"/>, the repositories of the target's registry that an
    /// image here was named after and that have the blob (a registry mounts from them instead of taking an upload).</summary>
    Dictionary<Digest, List<string>> MountSources(ImageReference target, ImageManifest manifest)
    {
        var wanted = manifest.Layers.Select(l => Digest.Parse(l.Digest)).ToHashSet();
        var result = new Dictionary<Digest, List<string>>();
        foreach (var other in images.List())
        {
            var repos = other.Names.Select(n =>
            {
                try
                {
                    return ImageReference.Parse(n);
                }
                catch (StrataException)
                {
                    return null;
                }
            }).Where(r => r is not null && r.Registry == target.Registry && r.Repository != target.Repository).Select(r => r!.Repository).Distinct().ToList();
            if (repos.Count == 0) continue;
            var digest = Digest.Parse(other.Manifest);
            if (!Blobs.Exists(digest)) continue;
            var m = OciJson.ReadManifest(Blobs.Read(digest), $"manifest {digest}");
            foreach (var l in m.Layers)
                if (Digest.TryParse(l.Digest, out var d) && wanted.Contains(d))
                {
                    if (!result.TryGetValue(d, out var list)) result[d] = list = [];
                    list.AddRange(repos.Where(r => !list.Contains(r)));
                }
        }
        return result;
    }

    /// <summary>Rewrites a layer blob with another compression into the store's tmp/; returns the file, digest and size.</summary>
    (string Path, Digest Digest, long Size) Recompress(FileStream blob, LayerCompression from, LayerCompression to)
    {
        string path = Path.Combine(images.Layers.Root, "tmp", "push-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var input = new HandleReader(blob.SafeFileHandle);
            using var tar = LayerCodec.Decompress(input, from);
            using var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
            using var hashing = new Containers.DigestWriter(output);
            using (var compressor = LayerCodec.Compress(hashing, to, leaveOpen: true)) tar.CopyTo(compressor, 1 << 20);
            return (path, hashing.Digest(), output.Position);
        }
        catch
        {
            File.Delete(path);
            throw;
        }
    }

    /// <summary>Reads an open file from its start by position, however many readers share the handle (the file may be
    /// unlinked by an image removal meanwhile: the handle keeps its bytes).</summary>
    sealed class HandleReader(Microsoft.Win32.SafeHandles.SafeFileHandle handle) : Strata.Archive.ReadOnlyStream
    {
        long _offset;

        public override int Read(Span<byte> buffer)
        {
            int n = RandomAccess.Read(handle, buffer, _offset);
            _offset += n;
            return n;
        }
    }
}
