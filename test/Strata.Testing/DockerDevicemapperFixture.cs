using System.Security.Cryptography;
using System.Text;

namespace Strata.Testing;

/// <summary>
/// A Docker root of the devicemapper driver, made from its documented layout (not by dockerd: test/vm does that
/// with the real one): a dm-thin pool made by thin_restore whose devices hold ext4 filesystems made by mkfs.ext4 -d
/// (the base device, one image layer, a container's init layer and its writable layer, each with its tree under
/// rootfs/ as Docker keeps it), and Docker's records of them: devicemapper/metadata, the layer and image stores,
/// repositories.json and the container's config.
/// </summary>
public sealed class DockerDevicemapperFixture
{
    public required string Root { get; init; }
    public required string ImageId { get; init; }
    public required string ContainerId { get; init; }
    public required string LayerCacheId { get; init; }
    public required string MountId { get; init; }
    public required string DiffId { get; init; }

    static readonly DateTime FileTime = new(2020, 1, 2, 3, 4, 5, DateTimeKind.Utc);

    static string Hex(string seed) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(seed)));

    static void Write(string path, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }

    /// <summary>A tree under <paramref name="dir"/>/rootfs from (path, content) pairs, made into a 32 MiB ext4.</summary>
    static string Filesystem(string dir, string name, IEnumerable<(string Path, string Content)> files)
    {
        string tree = Path.Combine(dir, name + ".tree"), image = Path.Combine(dir, name + ".img");
        Directory.CreateDirectory(Path.Combine(tree, "rootfs"));
        foreach (var (p, content) in files) Write(Path.Combine(tree, "rootfs", p), content);
        // one time for every file of every device, as Docker's snapshots keep the times of what they did not change: a
        // file written again for another device a second later (these small ext4s keep whole seconds) would differ
        foreach (var entry in Directory.EnumerateFileSystemEntries(tree, "*", SearchOption.AllDirectories))
            File.SetLastWriteTimeUtc(entry, FileTime);
        Shell.Run("truncate", "-s", "32M", image).Check("truncate");
        Shell.Run("mkfs.ext4", "-q", "-d", tree, image).Check("mkfs.ext4");
        return image;
    }

    public static DockerDevicemapperFixture Create(string dir)
    {
        string root = Path.Combine(dir, "docker"), work = Path.Combine(dir, "docker-work");
        Directory.CreateDirectory(work);
        (string, string)[] image = [("bin/tool", "#!/bin/sh\necho tool\n"), ("etc/motd", "hello from the image\n")];
        (string, string)[] init = [.. image, ("etc/hosts", "127.0.0.1 localhost\n"), (".dockerenv", "")];
        (string, string)[] container = [.. init.Where(f => f.Item1 != "etc/motd"), ("answer", "42\n")];
        string pool = Path.Combine(root, "devicemapper", "devicemapper");
        Directory.CreateDirectory(pool);
        DmThinFixture.FromImages(pool, new Dictionary<uint, string>
        {
            [1] = Filesystem(work, "base", []),
            [2] = Filesystem(work, "layer", image),
            [3] = Filesystem(work, "init", init),
            [4] = Filesystem(work, "container", container),
        });
        File.Delete(Path.Combine(pool, "pool.xml"));
        Directory.Delete(work, recursive: true);

        // the layer's tar as docker load gets it, and its tar-split: its diff id is the tar's sha256
        var tar = new MemoryStream();
        var names = new List<string>();
        using (var w = new System.Formats.Tar.TarWriter(tar, System.Formats.Tar.TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var d in new[] { "bin/", "etc/" })
            {
                w.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.Directory, d));
                names.Add(d);
            }
            foreach (var (path, content) in image)
            {
                w.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, path) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) });
                names.Add(path);
            }
        }
        byte[] layerTar = tar.ToArray();
        string layer = Hex("layer"), mount = Hex("mount"), cid = Hex("container"), diffId = Convert.ToHexStringLower(SHA256.HashData(layerTar));
        string meta = Path.Combine(root, "devicemapper", "metadata");
        string Record(int id) => $"{{\"device_id\":{id},\"size\":33554432,\"transaction_id\":{id},\"initialized\":false,\"deleted\":false}}";
        Write(Path.Combine(meta, "base"), Record(1));
        Write(Path.Combine(meta, layer), Record(2));
        Write(Path.Combine(meta, mount + "-init"), Record(3));
        Write(Path.Combine(meta, mount), Record(4));
        Write(Path.Combine(meta, "deviceset-metadata"), "{\"next_device_id\":5,\"BaseDeviceUUID\":\"\",\"BaseDeviceFilesystem\":\"ext4\"}");
        Write(Path.Combine(meta, "transaction-metadata"), "{\"open_transaction_id\":4,\"device_hash\":\"\",\"device_id\":0}");

        string graph = Path.Combine(root, "image", "devicemapper");
        string layerDir = Path.Combine(graph, "layerdb", "sha256", diffId);
        Write(Path.Combine(layerDir, "diff"), "sha256:" + diffId);
        Write(Path.Combine(layerDir, "cache-id"), layer);
        Write(Path.Combine(layerDir, "size"), "42");
        File.WriteAllBytes(Path.Combine(layerDir, "tar-split.json.gz"), TarSplitMaker.Split(layerTar, names));
        string config = $"{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Cmd\":[\"/bin/tool\"]}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"sha256:{diffId}\"]}}}}";
        string imageId = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(config)));
        Write(Path.Combine(graph, "imagedb", "content", "sha256", imageId), config);
        Write(Path.Combine(graph, "repositories.json"), $"{{\"Repositories\":{{\"demo\":{{\"demo:1\":\"sha256:{imageId}\"}}}}}}");
        string mounts = Path.Combine(graph, "layerdb", "mounts", cid);
        Write(Path.Combine(mounts, "mount-id"), mount);
        Write(Path.Combine(mounts, "init-id"), mount + "-init");
        Write(Path.Combine(mounts, "parent"), "sha256:" + diffId);
        Write(Path.Combine(root, "containers", cid, "config.v2.json"),
            $"{{\"ID\":\"{cid}\",\"Name\":\"/work\",\"Image\":\"sha256:{imageId}\",\"Driver\":\"devicemapper\",\"Config\":{{\"Cmd\":[\"sh\"]}}}}");
        return new DockerDevicemapperFixture { Root = root, ImageId = imageId, ContainerId = cid, LayerCacheId = layer, MountId = mount, DiffId = diffId };
    }
}
