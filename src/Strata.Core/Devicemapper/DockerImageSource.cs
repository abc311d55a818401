using System.Text.Json;
using Strata.Archive.Tar;
using Strata.Core.Images;
using Strata.Native;

namespace Strata.Core.Devicemapper;

/// <summary>
/// One image of Docker's devicemapper storage as an extracted docker-archive for <see cref="ImageImporter"/>:
/// manifest.json made from Docker's image store, the config as Docker keeps it (ID.json), and each layer's tar
/// (layers/CHAIN.tar) written again, byte for byte, from its tar-split and the files of its device, mounted read-only
/// when the importer starts reading it. The importer checks each tar against its diff id, so a layer whose files
/// changed (or a damaged device) is refused, not imported.
/// </summary>
sealed class DockerImageSource(DockerStore docker, DockerImage image, IDeviceTrees trees) : ImageSource
{
    public override Stream? TryOpen(string path)
    {
        if (path == "manifest.json") return new MemoryStream(Manifest(), writable: false);
        if (path == image.Id.Hex + ".json") return new MemoryStream(image.Config, writable: false);
        if (LayerOf(path) is { } layer)
        {
            var (bytes, length) = Packed(layer);
            return new LayerTar(layer, bytes, length, trees);
        }
        return null;
    }

    public override byte[]? TarSplitOf(string path) => LayerOf(path) is { } layer ? Packed(layer).Bytes : null;

    DockerLayer? LayerOf(string path) =>
        path.StartsWith("layers/", StringComparison.Ordinal) ? image.Layers.FirstOrDefault(l => path == $"layers/{l.ChainId.Hex}.tar") : null;

    /// <summary>A layer's tar-split and the length of its tar, read and measured once: the importer opens a layer more
    /// than once (its length, its tar-split, then its bytes).</summary>
    (byte[] Bytes, long Length) Packed(DockerLayer layer)
    {
        if (!_packed.TryGetValue(layer.ChainId, out var packed))
        {
            byte[] bytes = docker.TarSplit(layer);
            _packed[layer.ChainId] = packed = (bytes, TarSplit.Length(new MemoryStream(bytes)));
        }
        return packed;
    }

    readonly Dictionary<Digest, (byte[] Bytes, long Length)> _packed = [];

    /// <summary>docker save's manifest.json of the one image: [{"Config", "RepoTags", "Layers"}].</summary>
    byte[] Manifest()
    {
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartArray();
            w.WriteStartObject();
            w.WriteString("Config", image.Id.Hex + ".json");
            w.WriteStartArray("RepoTags");
            foreach (var n in image.Names) w.WriteStringValue(n);
            w.WriteEndArray();
            w.WriteStartArray("Layers");
            foreach (var l in image.Layers) w.WriteStringValue($"layers/{l.ChainId.Hex}.tar");
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndArray();
        }
        return ms.ToArray();
    }

    protected override StrataException Missing(string path) => StrataException.Corrupt($"{path} is not part of image {image.Id} in {docker.Root}");

    /// <summary>A layer's tar, of the length its tar-split says, assembled as it is read.</summary>
    sealed class LayerTar : Strata.Archive.ReadOnlyStream
    {
        readonly DockerLayer _layer;
        readonly IDeviceTrees _trees;
        readonly byte[] _packed;
        MountedTree? _tree;
        Stream? _tar;

        public LayerTar(DockerLayer layer, byte[] packed, long length, IDeviceTrees trees)
        {
            _layer = layer;
            _trees = trees;
            _packed = packed;
            Length = length;
        }

        public override long Length { get; }

        public override int Read(Span<byte> buffer)
        {
            if (_tar is null)
            {
                var device = _layer.Device ?? throw StrataException.NotFound($"layer {_layer.DiffId} has no device record (cache-id {_layer.CacheId})");
                _tree = _trees.Mount(device.DeviceId);
                string rootfs = Path.Combine(_tree.Path, "rootfs");
                if (!Directory.Exists(rootfs)) throw StrataException.Corrupt($"thin device {device.DeviceId} of layer {_layer.DiffId} has no rootfs/");
                _tar = new TreeTar(new MemoryStream(_packed), rootfs);
            }
            return _tar.Read(buffer);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _tar?.Dispose();
                _tree?.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
