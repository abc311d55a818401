using System.Text.Json;
using System.Text.Json.Nodes;
using Strata.Archive.Tar;
using Strata.Native;

namespace Strata.Core.Images;

public enum ExportFormat
{
    /// <summary>An OCI image layout: a directory, or its tar (oci-archive) when the path ends in .tar.</summary>
    Oci,
    /// <summary>`docker save`'s format (manifest.json + blobs), which `docker load` reads; it is an OCI layout too.</summary>
    DockerArchive,
}

/// <summary>Writes an image out with its blobs as they are stored (so digests do not change): as an OCI image
/// layout directory, an oci-archive tar, or a docker-archive tar. The output appears only when complete.</summary>
public sealed class ImageExporter(ImageStore images)
{
    public void Export(string reference, string path, ExportFormat format, Action<ImportProgress>? progress = null) =>
        Export(reference, format, progress, (files, report) =>
        {
            if (format == ExportFormat.Oci && !path.EndsWith(".tar", StringComparison.Ordinal) && !OutputTarget.IsSpecial(path)) WriteDirectory(path, files, report);
            else
            {
                using var output = OutputTarget.Open(path);
                WriteTar(output.Stream, files, report);
                output.Commit();
            }
        });

    /// <summary>Writes the image as a tar to <paramref name="output"/> (stdout: `image export IMAGE > x.tar`): an
    /// oci-archive for <see cref="ExportFormat.Oci"/>, a docker-archive for <see cref="ExportFormat.DockerArchive"/>.</summary>
    public void Export(string reference, Stream output, ExportFormat format, Action<ImportProgress>? progress = null) =>
        Export(reference, format, progress, (files, report) => WriteTar(output, files, report));

    void Export(string reference, ExportFormat format, Action<ImportProgress>? progress, Action<List<OutputEntry>, Action<long>> write)
    {
        // the blobs are opened while the image is held, so that an image removal racing the export cannot take them
        // from under it; the bytes are then written with nothing held
        images.AssembleBlobs(reference);
        var files = images.Using(reference, image => Files(image, reference, format));
        try
        {
            long total = files.Sum(f => f.Bytes?.Length ?? f.Blob!.Size), done = 0;
            write(files, n => progress?.Invoke(new("exporting", done += n, total)));
        }
        finally
        {
            foreach (var f in files) f.Blob?.Fd.Dispose();
        }
    }

    /// <summary>One file of the output: bytes made here, or a blob of the store opened for reading.</summary>
    sealed record OutputEntry(string Name, byte[]? Bytes, OpenBlob? Blob);

    sealed record OpenBlob(FileDescriptor Fd, long Size);

    List<OutputEntry> Files(ImageRecord image, string reference, ExportFormat format)
    {
        string name = image.Names.FirstOrDefault(n => n == ImageName.TryNormalize(reference)) ?? image.Names.FirstOrDefault() ?? "";
        var manifestDigest = Digest.Parse(image.Manifest);
        var manifest = OciJson.Decode(images.Blobs.Read(manifestDigest), OciJson.Default.ImageManifest, $"manifest {manifestDigest}");
        var blobs = new List<Digest> { manifestDigest, image.Config };
        blobs.AddRange(manifest.Layers.Select(l => Digest.Parse(l.Digest)));
        var files = new List<OutputEntry>
        {
            new("oci-layout", """{"imageLayoutVersion":"1.0.0"}"""u8.ToArray(), null),
            new("index.json", Index(image, manifestDigest, name), null),
        };
        if (format == ExportFormat.DockerArchive)
        {
            var entry = new JsonArray(new JsonObject
            {
                ["Config"] = "blobs/sha256/" + image.Config.Hex,
                ["RepoTags"] = name.Length > 0 ? new JsonArray(JsonValue.Create(name)) : null,
                ["Layers"] = new JsonArray(manifest.Layers.Select(l => (JsonNode)JsonValue.Create("blobs/sha256/" + Digest.Parse(l.Digest).Hex)).ToArray()),
            });
            files.Add(new("manifest.json", OciJson.Bytes(entry), null));
        }
        try
        {
            foreach (var d in blobs.Distinct())
            {
                var fd = Posix.Open(images.Blobs.PathOf(d), Posix.O_RDONLY);
                files.Add(new("blobs/sha256/" + d.Hex, null, new OpenBlob(fd, Posix.Fstat(fd).Size)));
            }
        }
        catch
        {
            foreach (var f in files) f.Blob?.Fd.Dispose();
            throw;
        }
        return files;
    }

    byte[] Index(ImageRecord image, Digest manifest, string name)
    {
        var annotations = new Dictionary<string, string>();
        if (name.Length > 0)
        {
            annotations["io.containerd.image.name"] = name;
            annotations["org.opencontainers.image.ref.name"] = name[(name.LastIndexOf(':') + 1)..];
        }
        var index = new ImageIndex
        {
            MediaType = MediaTypes.OciIndex,
            Manifests =
            [
                new Descriptor
                {
                    MediaType = image.ManifestMediaType,
                    Digest = manifest.ToString(),
                    Size = images.Blobs.Size(manifest),
                    Annotations = annotations.Count > 0 ? annotations : null,
                    Platform = image.Platform is { } p ? Platform.Parse(p) : null,
                },
            ],
        };
        return JsonSerializer.SerializeToUtf8Bytes(index, OciJson.Default.ImageIndex);
    }

    void WriteDirectory(string path, List<OutputEntry> files, Action<long> report)
    {
        string full = Path.GetFullPath(path);
        if (Posix.TryLstat(full, out var link) && link.IsSymlink) throw StrataException.Invalid($"{full} is a symbolic link; name the directory itself");
        OutputTarget.CheckParent(full);
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw StrataException.Exists($"{full} exists and is not empty; export into a new directory");
        if (File.Exists(full)) throw StrataException.Exists($"{full} exists and is not a directory");
        string tmp = AtomicFile.TempBeside(full);
        try
        {
            Directory.CreateDirectory(Path.Combine(tmp, "blobs", "sha256"));
            foreach (var (name, bytes, blob) in files)
            {
                string to = Path.Combine(tmp, name);
                if (bytes is not null) File.WriteAllBytes(to, bytes);
                else
                {
                    using (var dest = Posix.Open(to, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL, 0x1A4))
                        Drivers.Vfs.TreeCopy.CopyRange(blob!.Fd, dest, 0, blob.Size, to);
                    report(blob!.Size);
                }
            }
            if (Directory.Exists(full)) Directory.Delete(full);
            Directory.Move(tmp, full);
        }
        catch
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
            throw;
        }
    }

    static void WriteTar(Stream output, List<OutputEntry> files, Action<long> report)
    {
        using (var tar = new TarWriter(output))
        {
            var mtime = new UnixTime(0, 0);
            foreach (var dir in new[] { "blobs/", "blobs/sha256/" })
                tar.WriteHeader(new TarEntry { Name = dir, Type = TarEntryType.Directory, Mode = 0x1ED, Mtime = mtime });
            foreach (var (name, bytes, blob) in files)
            {
                if (bytes is not null)
                {
                    tar.WriteHeader(new TarEntry { Name = name, Type = TarEntryType.Regular, Mode = 0x1A4, Size = bytes.Length, Mtime = mtime });
                    tar.WriteData(bytes);
                    tar.Pad(bytes.Length);
                    continue;
                }
                tar.WriteHeader(new TarEntry { Name = name, Type = TarEntryType.Regular, Mode = 0x1A4, Size = blob!.Size, Mtime = mtime });
                tar.WriteFileData(blob.Fd, blob.Size, name);
                report(blob.Size);
            }
            tar.Finish();
        }
    }
}
