using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Strata.Archive.Tar;
using Strata.Core.Images;
using Strata.Native;

namespace Strata.Core.Tests;

/// <summary>Layer tars in memory, written with Strata's own <see cref="TarWriter"/> (which writes whatever it is
/// given, so hostile names and links are easy).</summary>
sealed class LayerTar
{
    readonly MemoryStream _stream = new();
    readonly TarWriter _writer;

    public LayerTar() => _writer = new TarWriter(_stream);

    static readonly UnixTime Time = new(1_600_000_000, 0);

    public LayerTar Dir(string name) => Entry(new TarEntry { Name = name, Type = TarEntryType.Directory, Mode = 0x1ED, Mtime = Time });

    public LayerTar File(string name, string content) => File(name, Encoding.UTF8.GetBytes(content));

    public LayerTar File(string name, byte[] content)
    {
        _writer.WriteHeader(new TarEntry { Name = name, Type = TarEntryType.Regular, Size = content.Length, Mode = 0x1A4, Mtime = Time });
        _writer.WriteData(content);
        _writer.Pad(content.Length);
        return this;
    }

    public LayerTar Symlink(string name, string target) =>
        Entry(new TarEntry { Name = name, Type = TarEntryType.Symlink, LinkName = target, Mode = 0x1FF, Mtime = Time });

    public LayerTar HardLink(string name, string target) =>
        Entry(new TarEntry { Name = name, Type = TarEntryType.HardLink, LinkName = target, Mode = 0x1A4, Mtime = Time });

    /// <summary>An OCI whiteout: deletes <paramref name="path"/> of the layers below.</summary>
    public LayerTar Whiteout(string path)
    {
        int slash = path.LastIndexOf('/');
        return File(slash < 0 ? ".wh." + path : path[..(slash + 1)] + ".wh." + path[(slash + 1)..], "");
    }

    public LayerTar Entry(TarEntry e)
    {
        _writer.WriteHeader(e);
        return this;
    }

    public byte[] Bytes()
    {
        _writer.Finish();
        _writer.Dispose();
        return _stream.ToArray();
    }
}

static class Blob
{
    public static string Hex(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    public static string DigestOf(byte[] data) => "sha256:" + Hex(data);

    public static byte[] Gzip(byte[] data)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(data);
        return ms.ToArray();
    }

    public static byte[] Json(JsonNode node) => Encoding.UTF8.GetBytes(node.ToJsonString());

    /// <summary>A tar of the given files, in the given order; names are written as they are (no checks).</summary>
    public static byte[] Tar(IEnumerable<KeyValuePair<string, byte[]>> files)
    {
        var tar = new LayerTar();
        foreach (var (name, content) in files) tar.File(name, content);
        return tar.Bytes();
    }
}

/// <summary>One layer of an image to build: its tar, how its blob is compressed, and knobs to break it.</summary>
sealed record LayerSpec(byte[] Tar)
{
    public bool Gzip { get; init; } = true;
    /// <summary>The descriptor's media type; null: the right one for <see cref="Gzip"/>.</summary>
    public string? MediaType { get; init; }
    /// <summary>Changes the blob before its digest is taken (the descriptor then matches the changed blob; the diff id stays that of <see cref="Tar"/>).</summary>
    public Func<byte[], byte[]>? Blob { get; init; }

    public string DiffId => global::Strata.Core.Tests.Blob.DigestOf(Tar);
}

/// <summary>An image to build: layers, platform, and hooks that edit its JSON before it is digested.</summary>
sealed record ImageSpec(params LayerSpec[] Layers)
{
    public string Os { get; init; } = Platform.Host.Os!;
    public string Architecture { get; init; } = Platform.Host.Architecture!;
    public Action<JsonObject>? EditConfig { get; init; }
    public Action<JsonObject>? EditManifest { get; init; }
}

/// <summary>What <see cref="OciBuilder.Add"/> stored for an image.</summary>
sealed record BuiltImage(JsonObject Descriptor, string ConfigDigest, string ManifestDigest, List<string> LayerDigests, List<string> DiffIds)
{
    /// <summary>The chain ids of the layers, base first: the layer ids an import must give them.</summary>
    public List<string> ChainIds
    {
        get
        {
            var ids = new List<string>();
            string? below = null;
            foreach (var d in DiffIds)
            {
                below = below is null ? d : Blob.DigestOf(Encoding.ASCII.GetBytes($"{below} {d}"));
                ids.Add(below[7..]);
            }
            return ids;
        }
    }
}

/// <summary>
/// Builds OCI image layouts in memory (files by path: oci-layout, index.json, blobs/sha256/...), right by
/// default: every descriptor has its blob's digest and size. Tests break them through the specs' knobs
/// or by editing <see cref="Files"/> afterwards; then write them as a directory, an oci-archive, or gzip'd.
/// </summary>
sealed class OciBuilder
{
    public Dictionary<string, byte[]> Files { get; } = new(StringComparer.Ordinal)
    {
        ["oci-layout"] = Encoding.UTF8.GetBytes("""{"imageLayoutVersion":"1.0.0"}"""),
    };

    public static string PathOf(string digest) => "blobs/sha256/" + digest[7..];

    public JsonObject Blob(byte[] data, string mediaType)
    {
        Files[PathOf(Tests.Blob.DigestOf(data))] = data;
        return new JsonObject { ["mediaType"] = mediaType, ["digest"] = Tests.Blob.DigestOf(data), ["size"] = data.Length };
    }

    public byte[] Read(string digest) => Files[PathOf(digest)];

    /// <summary>Replaces a blob's content but keeps its name (so the content no longer has the digest it is named by).</summary>
    public void Tamper(string digest, Func<byte[], byte[]> change) => Files[PathOf(digest)] = change(Files[PathOf(digest)]);

    public BuiltImage Add(ImageSpec spec)
    {
        var layers = new JsonArray();
        var digests = new List<string>();
        foreach (var l in spec.Layers)
        {
            var blob = l.Gzip ? Tests.Blob.Gzip(l.Tar) : l.Tar;
            if (l.Blob is not null) blob = l.Blob(blob);
            var d = Blob(blob, l.MediaType ?? (l.Gzip ? MediaTypes.OciLayerGzip : MediaTypes.OciLayer));
            digests.Add(d["digest"]!.GetValue<string>());
            layers.Add(d);
        }
        var diffIds = spec.Layers.Select(l => l.DiffId).ToList();
        var config = new JsonObject
        {
            ["architecture"] = spec.Architecture,
            ["os"] = spec.Os,
            ["config"] = new JsonObject { ["Cmd"] = new JsonArray("/bin/sh") },
            ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = new JsonArray(diffIds.Select(d => (JsonNode)d).ToArray()) },
        };
        spec.EditConfig?.Invoke(config);
        var configDescriptor = Blob(Tests.Blob.Json(config), MediaTypes.OciConfig);
        var manifest = new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = MediaTypes.OciManifest,
            ["config"] = configDescriptor,
            ["layers"] = layers,
        };
        spec.EditManifest?.Invoke(manifest);
        var manifestDescriptor = Blob(Tests.Blob.Json(manifest), MediaTypes.OciManifest);
        manifestDescriptor["platform"] = new JsonObject { ["os"] = spec.Os, ["architecture"] = spec.Architecture };
        return new BuiltImage(manifestDescriptor, configDescriptor["digest"]!.GetValue<string>(), manifestDescriptor["digest"]!.GetValue<string>(), digests, diffIds);
    }

    /// <summary>Stores an image index over the given descriptors; returns its descriptor.</summary>
    public JsonObject Index(params JsonObject[] manifests) =>
        Blob(Tests.Blob.Json(IndexJson(manifests)), MediaTypes.OciIndex);

    /// <summary>Writes index.json over the given descriptors (each with a ref name when given).</summary>
    public OciBuilder Top(params JsonObject[] manifests)
    {
        Files["index.json"] = Tests.Blob.Json(IndexJson(manifests));
        return this;
    }

    /// <summary>A copy of a descriptor with the org.opencontainers.image.ref.name annotation.</summary>
    public static JsonObject Named(JsonObject descriptor, string refName)
    {
        var copy = (JsonObject)descriptor.DeepClone();
        copy["annotations"] = new JsonObject { ["org.opencontainers.image.ref.name"] = refName };
        return copy;
    }

    static JsonObject IndexJson(JsonObject[] manifests) => new()
    {
        ["schemaVersion"] = 2,
        ["mediaType"] = MediaTypes.OciIndex,
        ["manifests"] = new JsonArray(manifests.Select(m => (JsonNode)m.DeepClone()).ToArray()),
    };

    public string WriteDir(string path)
    {
        foreach (var (name, data) in Files)
        {
            string to = Path.Combine(path, name);
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.WriteAllBytes(to, data);
        }
        return path;
    }

    /// <summary>The layout as an oci-archive (skopeo's oci-archive: the layout's files in a tar).</summary>
    public byte[] Archive() => Tests.Blob.Tar(Files.OrderBy(f => f.Key, StringComparer.Ordinal));
}

/// <summary>
/// Builds docker-archives as `docker save` (before Docker 25) writes them: manifest.json, the config as
/// &lt;hex&gt;.json, each layer uncompressed as &lt;id&gt;/layer.tar. <see cref="EditManifest"/> and <see cref="Files"/>
/// are the knobs to break one.
/// </summary>
sealed class DockerArchiveBuilder
{
    public Dictionary<string, byte[]> Files { get; } = new(StringComparer.Ordinal);
    readonly JsonArray _manifest = [];
    public Action<JsonArray>? EditManifest { get; set; }

    /// <summary>Adds an image; returns its config digest (the image id).</summary>
    public string Add(ImageSpec spec, params string[] repoTags)
    {
        var layerPaths = new JsonArray();
        foreach (var l in spec.Layers)
        {
            string id = Blob.Hex(Encoding.UTF8.GetBytes("v1 id of " + l.DiffId));
            Files[$"{id}/layer.tar"] = l.Tar;
            layerPaths.Add($"{id}/layer.tar");
        }
        var config = new JsonObject
        {
            ["architecture"] = spec.Architecture,
            ["os"] = spec.Os,
            ["config"] = new JsonObject(),
            ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = new JsonArray(spec.Layers.Select(l => (JsonNode)l.DiffId).ToArray()) },
        };
        spec.EditConfig?.Invoke(config);
        var bytes = Blob.Json(config);
        Files[Blob.Hex(bytes) + ".json"] = bytes;
        _manifest.Add(new JsonObject
        {
            ["Config"] = Blob.Hex(bytes) + ".json",
            ["RepoTags"] = new JsonArray(repoTags.Select(t => (JsonNode)t).ToArray()),
            ["Layers"] = layerPaths,
        });
        return Blob.DigestOf(bytes);
    }

    /// <summary>The archive, manifest.json last as docker writes it; <paramref name="extra"/> entries go first.</summary>
    public byte[] Archive(params KeyValuePair<string, byte[]>[] extra)
    {
        var files = extra.Concat(Files.OrderBy(f => f.Key, StringComparer.Ordinal)).ToList();
        files.Add(new("manifest.json", Manifest()));
        return Blob.Tar(files);
    }

    /// <summary>The archive extracted into directory <paramref name="path"/>.</summary>
    public string WriteDir(string path)
    {
        foreach (var (name, data) in Files.Append(new("manifest.json", Manifest())))
        {
            string to = Path.Combine(path, name);
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.WriteAllBytes(to, data);
        }
        return path;
    }

    byte[] Manifest()
    {
        var manifest = (JsonArray)_manifest.DeepClone();
        EditManifest?.Invoke(manifest);
        return Blob.Json(manifest);
    }
}
