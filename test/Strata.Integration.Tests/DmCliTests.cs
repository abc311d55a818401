using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>`strata dm ls` and `strata dm serve` on dm-thin pools thin_restore made: the listing equals thin_dump's
/// mappings and thin_ls's counts; served devices read (nbdcopy, the FUSE file, an ext4 mounted from it) as they were
/// written, writes are refused, and neither file changes.</summary>
[Collection(HeavyIo.Name)]
public sealed class DmCliTests : IDisposable
{
    const int Bs = DmThinFixture.BlockSize;
    readonly TempRoot _temp = new();
    readonly Cli _cli;

    public DmCliTests() => _cli = new Cli(_temp.Combine("store"));

    public void Dispose() => _temp.Dispose();

    static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    [ThinToolsFact]
    public void LsListsWhatThinDumpAndThinLsSee()
    {
        var f = DmThinFixture.Create(_temp.Path);
        string table = _cli.Ok("dm", "ls", "--data", f.Data, "--metadata", f.Metadata);
        Assert.StartsWith("ID ", table);
        Assert.Equal(5, table.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Equal("1\n2\n3\n4", _cli.Ok("dm", "ls", "-q", "--data", f.Data, "--metadata", f.Metadata));

        string json = _cli.Ok("dm", "ls", "--format", "json", "--mappings", "--data", f.Data, "--metadata", f.Metadata);
        JsonSchemas.AssertValid("dm-device", json, array: true);
        var dumped = DmThinFixture.ParseDump(Shell.Run("thin_dump", f.Metadata).Check("thin_dump").Stdout);
        var ls = Shell.Run("thin_ls", "--no-headers", "-o", "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS", f.Metadata).Check("thin_ls").Stdout
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray()).ToList();
        using var doc = JsonDocument.Parse(json);
        int i = 0;
        foreach (var dev in doc.RootElement.EnumerateArray())
        {
            uint id = dev.GetProperty("Id").GetUInt32();
            var ours = new SortedDictionary<long, (long, uint)>();
            foreach (var m in dev.GetProperty("Mappings").EnumerateArray())
                for (long k = 0; k < m.GetProperty("Length").GetInt64(); k++)
                    ours[m.GetProperty("Virtual").GetInt64() + k] = (m.GetProperty("Data").GetInt64() + k, m.GetProperty("Time").GetUInt32());
            Assert.Equal(dumped[id], ours);
            Assert.Equal(ls[i++], new long[] { id, dev.GetProperty("MappedBlocks").GetInt64(), dev.GetProperty("ExclusiveBlocks").GetInt64(), dev.GetProperty("SharedBlocks").GetInt64() });
        }
        Assert.Equal(4, i);

        // the wrong files: one line, exit non-zero, nothing written
        string hash = Hash(f.Data);
        var swapped = _cli.Run("dm", "ls", "--data", f.Metadata, "--metadata", f.Data);
        Assert.NotEqual(0, swapped.ExitCode);
        Assert.Single(swapped.Stderr.TrimEnd('\n').Split('\n'));
        Assert.Contains("is not dm-thin metadata", swapped.Stderr);
        Assert.Equal(hash, Hash(f.Data));
    }

    Process Serve(string data, string metadata, string socket, string? fuse, System.Text.StringBuilder log)
    {
        var args = new List<string> { "dm", "serve", "--data", data, "--metadata", metadata, "--socket", socket };
        if (fuse is not null) args.AddRange(["--fuse", fuse]);
        var p = _cli.Start([.. args]);
        p.StandardInput.Close();
        p.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        var line = p.StandardOutput.ReadLineAsync();
        Assert.True(line.Wait(TimeSpan.FromSeconds(30)), $"strata dm serve did not start: {log}");
        Assert.StartsWith("serving ", line.Result);
        return p;
    }

    static void Stop(Process p)
    {
        Shell.Run("kill", "-TERM", p.Id.ToString());
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)), "strata dm serve did not stop on SIGTERM");
        Assert.Equal(0, p.ExitCode);
    }

    [DmServeFact]
    public void ServeExportsEveryDeviceReadOnlyOverNbdAndFuse()
    {
        var f = DmThinFixture.Create(_temp.Path);
        string dataHash = Hash(f.Data), metaHash = Hash(f.Metadata);
        string socket = _temp.Combine("nbd.sock"), fuse = _temp.Combine("fuse");
        var log = new System.Text.StringBuilder();
        var server = Serve(f.Data, f.Metadata, socket, fuse, log);
        try
        {
            string list = Shell.Run("nbdinfo", "--list", $"nbd+unix:///?socket={socket}").Check("nbdinfo --list").Stdout;
            foreach (var id in new[] { "1", "2", "3", "4" }) Assert.Contains($"export=\"{id}\"", list);
            Assert.DoesNotContain("is_read_only: false", list);
            foreach (uint id in new uint[] { 1, 2 })
            {
                string copy = _temp.Combine($"dev{id}");
                Shell.Run("nbdcopy", $"nbd+unix:///{id}?socket={socket}", copy).Check("nbdcopy");
                var bytes = File.ReadAllBytes(copy);
                Assert.Equal((f.Mappings[id].Keys.Max() + 1) * Bs, bytes.Length);
                for (long b = 0; b < bytes.Length / Bs; b++)
                    Assert.True(f.Expected(id, b).AsSpan().SequenceEqual(bytes.AsSpan((int)(b * Bs), Bs)), $"device {id} block {b} over NBD");
                // the FUSE file holds the same bytes
                Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(fuse, id.ToString())));
            }
            // block status: device 3 maps every other block
            var map = Shell.Run("nbdinfo", "--map", $"nbd+unix:///3?socket={socket}").Check("nbdinfo --map").Stdout
                .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
                .Select(c => (Offset: long.Parse(c[0]), Length: long.Parse(c[1]), Type: int.Parse(c[2]))).Take(4);
            Assert.Equal([(0L, (long)Bs, 0), (Bs, Bs, 3), (2L * Bs, Bs, 0), (3L * Bs, Bs, 3)], map);
            // writes are refused, over NBD and through the file
            var write = Shell.Run("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 64k", $"nbd+unix:///1?socket={socket}");
            Assert.NotEqual(0, write.ExitCode); // qemu-io opens read-write, and a read-only export refuses that
            Assert.Contains("Permission denied", write.Stderr);
            Assert.ThrowsAny<IOException>(() => File.WriteAllBytes(Path.Combine(fuse, "1"), [1]));
        }
        finally
        {
            Stop(server);
        }
        Assert.False(File.Exists(socket));
        Assert.False(Mounts.Under(_temp.Path).Any(), "the FUSE mount is still there");
        Assert.Equal(dataHash, Hash(f.Data));
        Assert.Equal(metaHash, Hash(f.Metadata));
    }

    [DmServeFact]
    public void AnExt4OnAThinDeviceMountsFromTheFuseFile()
    {
        // an ext4 of 96 MiB with files, made without mounting; its last blocks are zeros, so only its superblock says its size
        string tree = _temp.Dir("tree"), image = _temp.Combine("fs.img");
        Directory.CreateDirectory(Path.Combine(tree, "etc"));
        File.WriteAllText(Path.Combine(tree, "etc", "hostname"), "thin\n");
        var big = new byte[3 << 20];
        new Random(5).NextBytes(big);
        File.WriteAllBytes(Path.Combine(tree, "big.bin"), big);
        Shell.Run("truncate", "-s", "96M", image).Check("truncate");
        Shell.Run("mkfs.ext4", "-q", "-d", tree, image).Check("mkfs.ext4");
        var f = DmThinFixture.FromImages(_temp.Path, new Dictionary<uint, string> { [7] = image });
        string socket = _temp.Combine("nbd.sock"), fuse = _temp.Combine("fuse"), mnt = _temp.Dir("mnt");
        var log = new System.Text.StringBuilder();
        var server = Serve(f.Data, f.Metadata, socket, fuse, log);
        try
        {
            Assert.Equal(96L << 20, new FileInfo(Path.Combine(fuse, "7")).Length);
            Shell.Run("mount", "-t", "ext4", "-o", "ro,noload,loop", Path.Combine(fuse, "7"), mnt).Check("mount");
            try
            {
                Assert.Equal("thin\n", File.ReadAllText(Path.Combine(mnt, "etc", "hostname")));
                Assert.Equal(big, File.ReadAllBytes(Path.Combine(mnt, "big.bin")));
            }
            finally
            {
                Shell.Run("umount", mnt).Check("umount");
            }
        }
        finally
        {
            Stop(server);
        }
    }

    [DmServeFact]
    public void DockerListsImagesAndContainersWithTheirThinDevices()
    {
        var f = DockerDevicemapperFixture.Create(_temp.Path);
        string text = _cli.Ok("dm", "docker", f.Root);
        Assert.Contains("(devicemapper, ext4, blocks of 64 KiB)", text);
        var image = text.Split('\n').Single(l => l.StartsWith("demo:1 "));
        Assert.Equal(["demo:1", f.ImageId[..12], "1", "2", "ok"], image.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var container = text.Split('\n').Single(l => l.StartsWith("work "));
        Assert.Equal(["work", f.ContainerId[..12], "demo:1", "4", "3", "ok"], container.Split(' ', StringSplitOptions.RemoveEmptyEntries));

        using var doc = JsonDocument.Parse(_cli.Ok("dm", "docker", f.Root, "--format", "json"));
        var layer = doc.RootElement.GetProperty("Images")[0].GetProperty("Layers")[0];
        Assert.Equal(f.LayerCacheId, layer.GetProperty("CacheId").GetString());
        Assert.Equal(2, layer.GetProperty("ThinId").GetInt32());
        var c = doc.RootElement.GetProperty("Containers")[0];
        Assert.Equal(f.MountId, c.GetProperty("MountId").GetString());
        Assert.Equal("ext4", doc.RootElement.GetProperty("Filesystem").GetString());

        // what Docker recorded is checked: a cache-id that is not an id, a device record of the wrong type, garbage JSON,
        // a root that is no Docker devicemapper root; one line each, nothing written
        string hash = Hash(Path.Combine(f.Root, "devicemapper", "devicemapper", "metadata"));
        void Refused(string fragment)
        {
            var r = _cli.Run("dm", "docker", f.Root);
            Assert.NotEqual(0, r.ExitCode);
            Assert.Single(r.Stderr.TrimEnd('\n').Split('\n'));
            Assert.Contains(fragment, r.Stderr);
        }
        string cacheId = Directory.GetFiles(Path.Combine(f.Root, "image", "devicemapper", "layerdb", "sha256"), "cache-id", SearchOption.AllDirectories).Single();
        File.WriteAllText(cacheId, "../../../../etc");
        Refused("is not a graph driver id");
        File.WriteAllText(cacheId, f.LayerCacheId);
        string record = Path.Combine(f.Root, "devicemapper", "metadata", f.MountId);
        string good = File.ReadAllText(record);
        File.WriteAllText(record, good.Replace("\"device_id\":4", "\"device_id\":\"4\""));
        Refused("device_id is missing or not a number");
        File.WriteAllText(record, "{not json");
        Refused("is not JSON");
        File.WriteAllText(record, good);
        var notDocker = _cli.Run("dm", "docker", _temp.Dir("empty"));
        Assert.NotEqual(0, notDocker.ExitCode);
        Assert.Contains("holds no devicemapper storage", notDocker.Stderr);
        Assert.Equal(hash, Hash(Path.Combine(f.Root, "devicemapper", "devicemapper", "metadata")));
    }

    [DmServeFact]
    public void DockerMountShowsAContainerOrAnImageReadOnlyUntilStopped()
    {
        var f = DockerDevicemapperFixture.Create(_temp.Path);
        string mnt = _temp.Dir("mnt");
        Process Mount(string name)
        {
            var p = _cli.Start("dm", "docker", f.Root, "mount", name, mnt);
            p.StandardInput.Close();
            var log = new System.Text.StringBuilder();
            p.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
            p.BeginErrorReadLine();
            var line = p.StandardOutput.ReadLineAsync();
            Assert.True(line.Wait(TimeSpan.FromSeconds(30)), $"strata dm docker mount did not mount: {log}");
            Assert.StartsWith("mounted ", line.Result);
            return p;
        }
        var container = Mount("work");
        try
        {
            Assert.Equal("42\n", File.ReadAllText(Path.Combine(mnt, "answer")));
            Assert.False(File.Exists(Path.Combine(mnt, "etc", "motd")));
            Assert.True(File.Exists(Path.Combine(mnt, ".dockerenv")));
            var ex = Assert.ThrowsAny<IOException>(() => File.WriteAllText(Path.Combine(mnt, "new"), "x"));
            Assert.Contains("Read-only", ex.Message);
        }
        finally
        {
            Stop(container);
        }
        Assert.False(Mounts.Under(_temp.Path).Any(), "a mount is left after the stop");
        Assert.Empty(Strata.Native.Posix.LoopDevicesIn(_temp.Path));
        var image = Mount("demo:1");
        try
        {
            Assert.Equal("hello from the image\n", File.ReadAllText(Path.Combine(mnt, "etc", "motd")));
            Assert.False(File.Exists(Path.Combine(mnt, "answer")));
        }
        finally
        {
            Stop(image);
        }
        var missing = _cli.Run("dm", "docker", f.Root, "mount", "nothing", mnt);
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("no container, image or layer 'nothing'", missing.Stderr);
        Assert.False(Mounts.Under(_temp.Path).Any());
    }

    [DmServeFact]
    public void MigrateImportsDockersImagesAndContainers()
    {
        var f = DockerDevicemapperFixture.Create(_temp.Path);
        string hash = Hash(Path.Combine(f.Root, "devicemapper", "devicemapper", "data"));
        string first = _cli.Ok("dm", "docker", f.Root, "migrate");
        Assert.Equal($"image demo:1 ({f.ImageId[..12]}): imported\ncontainer work ({f.ContainerId[..12]}): imported", first);
        // the container's changes, as docker diff showed them: against its init layer, not the image
        Assert.Equal("A /answer\nC /etc\nD /etc/motd", _cli.Ok("container", "diff", "work"));
        using (var doc = JsonDocument.Parse(_cli.Ok("image", "inspect", "demo:1")))
        {
            var image = doc.RootElement[0];
            Assert.Equal("sha256:" + f.ImageId, image.GetProperty("Image").GetProperty("Id").GetString());
            Assert.Equal("sha256:" + f.DiffId, image.GetProperty("Config").GetProperty("rootfs").GetProperty("diff_ids")[0].GetString());
        }
        // the image's files are the layer's
        _cli.Ok("container", "create", "--name", "check", "demo:1");
        string mounted = _cli.Ok("container", "mount", "check");
        Assert.Equal("hello from the image\n", File.ReadAllText(Path.Combine(mounted, "etc", "motd")));
        Assert.Equal("#!/bin/sh\necho tool\n", File.ReadAllText(Path.Combine(mounted, "bin", "tool")));
        _cli.Ok("container", "unmount", "check");
        _cli.Ok("container", "rm", "check");
        // again, with the root after `migrate` (as the issue wrote it): nothing to do; Docker's files unchanged, nothing
        // left mounted
        Assert.Equal($"image demo:1 ({f.ImageId[..12]}): already in the store\ncontainer work ({f.ContainerId[..12]}): already in the store",
            _cli.Ok("dm", "docker", "migrate", f.Root));
        var twice = _cli.Run("dm", "docker", f.Root, "migrate", f.Root);
        Assert.NotEqual(0, twice.ExitCode);
        Assert.Equal("strata: dockerd's root is given twice (before and after `migrate`): give it once\n", twice.Stderr);
        Assert.Equal(hash, Hash(Path.Combine(f.Root, "devicemapper", "devicemapper", "data")));
        Assert.False(Mounts.Under(_temp.Path).Any(m => !m.StartsWith(_temp.Combine("store"), StringComparison.Ordinal)), "a device is left mounted");
        Assert.Empty(Strata.Native.Posix.LoopDevicesIn(_temp.Path));
    }

    [DmServeFact]
    public void AContainerMigrationACrashCutShortIsMadeAgain()
    {
        var f = DockerDevicemapperFixture.Create(_temp.Path);
        _cli.Ok("dm", "docker", f.Root, "migrate");
        _cli.Ok("container", "rm", "work");
        // what a crash while the container was made leaves: its layer, labelled with its name, and no record (a container
        // is recorded only once its layer holds the changes)
        _cli.Ok("layer", "create", "--rw", "--parent", f.DiffId, "--label", "strata.container=work", new string('c', 64));
        Assert.Equal($"image demo:1 ({f.ImageId[..12]}): already in the store\ncontainer work ({f.ContainerId[..12]}): imported",
            _cli.Ok("dm", "docker", f.Root, "migrate"));
        Assert.Equal("A /answer\nC /etc\nD /etc/motd", _cli.Ok("container", "diff", "work"));
        Assert.DoesNotContain(new string('c', 64), _cli.Ok("layer", "ls", "-q", "--no-trunc"));
    }

    [DmServeFact]
    public void AMigratedLayerIsKeptAsItsTarSplitAndExportedAsDockerHadIt()
    {
        var f = DockerDevicemapperFixture.Create(_temp.Path);
        _cli.Ok("dm", "docker", f.Root, "migrate");
        // no second copy of the layer's tar: its tar-split stands for it
        string store = _temp.Combine("store");
        string blob = Path.Combine(store, "images", "blobs", "sha256", f.DiffId);
        string split = Path.Combine(store, "images", "tar-split", f.DiffId + ".json.gz");
        Assert.False(File.Exists(blob));
        Assert.True(File.Exists(split));
        // an export writes the tar again from the layer's files: the very tar Docker had, by its diff id
        string archive = _temp.Combine("demo.tar");
        _cli.Ok("image", "export", "demo:1", "--format", "docker-archive", "-o", archive);
        using (var reader = new System.Formats.Tar.TarReader(File.OpenRead(archive)))
        {
            bool found = false;
            while (reader.GetNextEntry() is { } e)
            {
                if (e.Name != "blobs/sha256/" + f.DiffId) continue;
                using var data = new MemoryStream();
                e.DataStream!.CopyTo(data);
                Assert.Equal(f.DiffId, Convert.ToHexStringLower(SHA256.HashData(data.ToArray())));
                found = true;
            }
            Assert.True(found, "the export has no blob of the layer");
        }
        Assert.True(File.Exists(blob));
        // which the store keeps from then on, as any import's; the tar-split goes with the next collection (a command
        // that writes), and the blob with the image
        _cli.Ok("image", "tag", "demo:1", "demo:2");
        Assert.True(File.Exists(blob));
        Assert.False(File.Exists(split));
        _cli.Ok("container", "rm", "work");
        _cli.Ok("image", "rm", "demo:1");
        _cli.Ok("image", "rm", "demo:2");
        Assert.False(File.Exists(blob));
    }

    [DmServeFact]
    public void AnExportRefusesALayerWhoseTarSplitNoLongerMatchesItsFiles()
    {
        var f = DockerDevicemapperFixture.Create(_temp.Path);
        _cli.Ok("dm", "docker", f.Root, "migrate");
        string store = _temp.Combine("store");
        RewriteTarSplit(Path.Combine(store, "images", "tar-split", f.DiffId + ".json.gz"));
        string archive = _temp.Combine("demo.tar");
        var r = _cli.Run("image", "export", "demo:1", "-o", archive);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith($"strata: layer sha256:{f.DiffId} is kept as its tar-split, and its tar cannot be written again from it and the files of layer {f.DiffId}: ", r.Stderr);
        Assert.Single(r.Stderr.TrimEnd('\n').Split('\n'));
        Assert.False(File.Exists(archive));
        Assert.False(File.Exists(Path.Combine(store, "images", "blobs", "sha256", f.DiffId)));
        Assert.Empty(Directory.GetFiles(Path.Combine(store, "tmp")));
        // a tar-split goes with its image
        _cli.Ok("container", "rm", "work");
        _cli.Ok("image", "rm", "demo:1");
        Assert.Empty(Directory.GetFiles(Path.Combine(store, "images", "tar-split")));
    }

    /// <summary>Makes etc/motd one byte shorter in the tar-split at <paramref name="path"/>: the tar it describes is not
    /// the one it was.</summary>
    static void RewriteTarSplit(string path)
    {
        var lines = new System.Text.StringBuilder();
        using (var gz = new System.IO.Compression.GZipStream(File.OpenRead(path), System.IO.Compression.CompressionMode.Decompress))
        using (var reader = new StreamReader(gz))
            lines.Append(reader.ReadToEnd().Replace("\"name\":\"etc/motd\",\"size\":21", "\"name\":\"etc/motd\",\"size\":20"));
        Assert.Contains("\"size\":20", lines.ToString());
        using (var gz = new System.IO.Compression.GZipStream(File.Create(path), System.IO.Compression.CompressionLevel.Fastest))
            gz.Write(System.Text.Encoding.UTF8.GetBytes(lines.ToString()));
    }

    [DmServeFact]
    public void MigrateRefusesALayerWhoseFilesAreNotWhatItsDiffIdSays()
    {
        var f = DockerDevicemapperFixture.Create(_temp.Path);
        // a tar-split that names a file of another size: the tar written again is not the layer Docker had
        RewriteTarSplit(Directory.GetFiles(f.Root, "tar-split.json.gz", SearchOption.AllDirectories).Single());
        var r = _cli.Run("dm", "docker", f.Root, "migrate");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Equal(2, r.Stderr.TrimEnd('\n').Split('\n').Length); // the image, then its container, one line each
        Assert.StartsWith("strata: image demo:1", r.Stderr);
        Assert.Contains("strata: container work", r.Stderr);
        Assert.Equal("", _cli.Ok("image", "ls", "-q"));
        Assert.Equal("", _cli.Ok("container", "ls", "-a", "-q"));
        Assert.False(Mounts.Under(_temp.Path).Any(m => !m.StartsWith(_temp.Combine("store"), StringComparison.Ordinal)), "a device is left mounted");
    }
}
