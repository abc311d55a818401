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
    public void Export(string reference, string path, ExportFormat format, Action<ImportProgress>? progress = null)
    {
        var image = images.Get(reference);
        string name = image.Names.FirstOrDefault(n => n == ImageName.TryNormalize(reference)) ?? image.Names.FirstOrDefault() ?? "";
        var manifestDigest = Digest.Parse(image.Manifest);
        var manifest = OciJson.Decode(images.Blobs.Read(manifestDigest), OciJson.Default.ImageManifest, $"manifest {manifestDigest}");
        var blobs = new List<Digest> { manifestDigest, image.Config };
        blobs.AddRange(manifest.Layers.Select(l => Digest.Parse(l.Digest)));
        var files = new List<(string Name, byte[]? Bytes, Digest? Blob)>
        {
            ("oci-layout", """{"imageLayoutVersion":"1.0.0"}"""u8.ToArray(), null),
            ("index.json", Index(image, manifestDigest, name), null),
        };
        if (format == ExportFormat.DockerArchive)
        {
            var entry = new JsonArray(new JsonObject
            {
                ["Config"] = "blobs/sha256/" + image.Config.Hex,
                ["RepoTags"] = name.Length > 0 ? new JsonArray(JsonValue.Create(name)) : null,
                ["Layers"] = new JsonArray(manifest.Layers.Select(l => (JsonNode)JsonValue.Create("blobs/sha256/" + Digest.Parse(l.Digest).Hex)).ToArray()),
            });
            files.Add(("manifest.json", OciJson.Bytes(entry), null));
        }
        foreach (var d in blobs.Distinct()) files.Add(("blobs/sha256/" + d.Hex, null, d));
        long total = files.Sum(f => f.Bytes?.Length ?? images.Blobs.Size(f.Blob!.Value)), done = 0;
        void Report(long n) => progress?.Invoke(new("exporting", done += n, total));
        if (format == ExportFormat.Oci && !path.EndsWith(".tar", StringComparison.Ordinal)) WriteDirectory(path, files, Report);
        else WriteTar(path, files, Report);
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

    void WriteDirectory(string path, List<(string Name, byte[]? Bytes, Digest? Blob)> files, Action<long> report)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw StrataException.Exists($"{full} exists and is not empty; export into a new directory");
        if (File.Exists(full)) throw StrataException.Exists($"{full} exists and is not a directory");
        string tmp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            Directory.CreateDirectory(Path.Combine(tmp, "blobs", "sha256"));
            foreach (var (name, bytes, blob) in files)
            {
                string to = Path.Combine(tmp, name);
                if (bytes is not null) File.WriteAllBytes(to, bytes);
                else
                {
                    File.Copy(images.Blobs.PathOf(blob!.Value), to);
                    report(new FileInfo(to).Length);
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

    void WriteTar(string path, List<(string Name, byte[]? Bytes, Digest? Blob)> files, Action<long> report)
    {
        string full = Path.GetFullPath(path);
        string tmp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1))
            using (var tar = new TarWriter(fs))
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
                    string from = images.Blobs.PathOf(blob!.Value);
                    using var fd = Posix.Open(from, Posix.O_RDONLY);
                    long size = new FileInfo(from).Length;
                    tar.WriteHeader(new TarEntry { Name = name, Type = TarEntryType.Regular, Mode = 0x1A4, Size = size, Mtime = mtime });
                    tar.WriteFileData(fd, size, name);
                    report(size);
                }
                tar.Finish();
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
    }
}
