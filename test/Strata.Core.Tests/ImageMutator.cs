using System.Text;
using System.Text.Json.Nodes;
using Strata.Archive.Tar;
using Strata.Core.Images;
using Strata.Native;

namespace Strata.Core.Tests;

/// <summary>The formats the fuzz test writes an image in.</summary>
enum FuzzFormat
{
    OciDirectory,
    OciArchive,
    DockerArchive,
    DockerDirectory,
}

/// <summary>
/// Breaks a good image in one random way, reproducibly from a <see cref="Random"/>: a JSON document (oci-layout,
/// index.json, a nested index, the manifest, the config, manifest.json) gets a node set to null, a wrong type, a huge
/// or negative number, a lying media type or digest, deep nesting, a long or multi-line string, or is truncated or
/// replaced; a layer blob is cut, flipped or swapped; a file of a layout becomes a symlink out of it, a FIFO, a
/// device, a directory or nothing; a tar member becomes a FIFO, a device or a link, lies about its size, or the
/// archive is cut. Descriptors above a broken document are resealed (its new digest and size written into them)
/// most of the time, so that the break reaches the code that reads the document rather than the digest check.
/// <see cref="Describe"/> says what was done, for a failure's message.
/// </summary>
sealed class ImageMutator(Random random, FuzzFormat format)
{
    static readonly byte[] Base = new LayerTar().Dir("etc/").File("etc/os-release", "ID=fuzz\n").File("etc/hostname", "fuzz").Bytes();
    static readonly byte[] Top = new LayerTar().File("etc/os-release", "ID=top\n").Dir("app/").File("app/run", "run").Bytes();
    static readonly byte[] Other = new LayerTar().File("other", "other").Bytes();

    readonly List<string> _done = [];
    string? _target;     // which document the JSON mutation goes to
    bool _reseal = true; // whether descriptors above a changed document are updated
    bool _nested;        // OCI: index.json -> nested index -> manifest

    public string Describe() => $"{format}: {string.Join("; ", _done)}";

    /// <summary>Whether the break leaves the image unusable whatever the importer makes of the rest: a file it needs
    /// (no JSON was changed, so every file is needed) is a link out, a FIFO, a device, a directory, or gone.</summary>
    public bool MustFail { get; private set; }

    /// <summary>Writes the broken image to <paramref name="path"/> (a directory or a tar file, by format); returns the path to import.</summary>
    public string Write(string path, string outside)
    {
        _nested = format is FuzzFormat.OciDirectory or FuzzFormat.OciArchive && random.Next(3) == 0;
        if (_nested) _done.Add("nested index");
        string[] documents = format is FuzzFormat.DockerArchive or FuzzFormat.DockerDirectory
            ? ["manifest.json", "config", "layer"]
            : _nested ? ["oci-layout", "index.json", "nested", "manifest", "config", "layer"] : ["oci-layout", "index.json", "manifest", "config", "layer"];
        // most runs break one document; some break nothing there and only the files or the archive
        if (random.Next(5) > 0) _target = documents[random.Next(documents.Length)];
        if (random.Next(10) == 0)
        {
            _reseal = false;
            _done.Add("descriptors not resealed");
        }
        var files = format is FuzzFormat.DockerArchive or FuzzFormat.DockerDirectory ? DockerFiles() : OciFiles();
        bool directory = format is FuzzFormat.OciDirectory or FuzzFormat.DockerDirectory;
        if (directory)
        {
            WriteDirectory(path, files);
            if (random.Next(4) == 0) BreakFile(path, files, outside);
            return path;
        }
        File.WriteAllBytes(path, Archive(files));
        return path;
    }

    // ---- documents ----

    Dictionary<string, byte[]> OciFiles()
    {
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var layers = new List<(string Digest, long Size, byte[] Blob, string MediaType)>();
        foreach (var (tar, gzip) in new[] { (Base, true), (Top, false) })
        {
            byte[] blob = gzip ? Blob.Gzip(tar) : tar;
            string type = gzip ? MediaTypes.OciLayerGzip : MediaTypes.OciLayer;
            if (_target == "layer" && layers.Count == random.Next(2)) blob = BreakBlob(blob);
            layers.Add((Blob.DigestOf(blob), blob.Length, blob, type));
            files[OciBuilder.PathOf(Blob.DigestOf(blob))] = blob;
        }
        var config = new JsonObject
        {
            ["created"] = "2024-01-01T00:00:00Z",
            ["architecture"] = Platform.Host.Architecture,
            ["os"] = Platform.Host.Os,
            ["config"] = new JsonObject { ["Env"] = new JsonArray("PATH=/bin"), ["Cmd"] = new JsonArray("/bin/sh"), ["Labels"] = new JsonObject { ["a"] = "b" } },
            ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = new JsonArray(Blob.DigestOf(Base), Blob.DigestOf(Top)) },
            ["history"] = new JsonArray(new JsonObject { ["created_by"] = "base" }, new JsonObject { ["created_by"] = "top" }),
        };
        var (configDigest, configSize) = Store(files, config, "config");
        var manifest = new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = MediaTypes.OciManifest,
            ["config"] = new JsonObject { ["mediaType"] = MediaTypes.OciConfig, ["digest"] = configDigest, ["size"] = configSize },
            ["layers"] = new JsonArray(layers.Select(l => (JsonNode)new JsonObject { ["mediaType"] = l.MediaType, ["digest"] = l.Digest, ["size"] = l.Size }).ToArray()),
        };
        var (manifestDigest, manifestSize) = Store(files, manifest, "manifest");
        var platform = new JsonObject { ["os"] = Platform.Host.Os, ["architecture"] = Platform.Host.Architecture };
        var entry = new JsonObject { ["mediaType"] = MediaTypes.OciManifest, ["digest"] = manifestDigest, ["size"] = manifestSize, ["platform"] = platform };
        if (_nested)
        {
            var nested = new JsonObject { ["schemaVersion"] = 2, ["mediaType"] = MediaTypes.OciIndex, ["manifests"] = new JsonArray(entry) };
            var (nestedDigest, nestedSize) = Store(files, nested, "nested");
            entry = new JsonObject { ["mediaType"] = MediaTypes.OciIndex, ["digest"] = nestedDigest, ["size"] = nestedSize };
        }
        entry["annotations"] = new JsonObject { ["org.opencontainers.image.ref.name"] = "fuzz:1" };
        files["index.json"] = Document("index.json", new JsonObject { ["schemaVersion"] = 2, ["mediaType"] = MediaTypes.OciIndex, ["manifests"] = new JsonArray(entry) });
        files["oci-layout"] = Document("oci-layout", new JsonObject { ["imageLayoutVersion"] = "1.0.0" });
        return files;
    }

    Dictionary<string, byte[]> DockerFiles()
    {
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var paths = new JsonArray();
        foreach (var tar in new[] { Base, Top })
        {
            string path = Blob.Hex(tar) + "/layer.tar";
            files[path] = _target == "layer" && paths.Count == random.Next(2) ? BreakBlob(tar) : tar;
            paths.Add(path);
        }
        var config = new JsonObject
        {
            ["architecture"] = Platform.Host.Architecture,
            ["os"] = Platform.Host.Os,
            ["config"] = new JsonObject { ["Env"] = new JsonArray("PATH=/bin"), ["Cmd"] = new JsonArray("/bin/sh") },
            ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = new JsonArray(Blob.DigestOf(Base), Blob.DigestOf(Top)) },
        };
        string goodName = Blob.Hex(Encoding.UTF8.GetBytes(config.ToJsonString())) + ".json";
        byte[] configBytes = Document("config", config);
        string configName = _reseal ? Blob.Hex(configBytes) + ".json" : goodName;
        files[configName] = configBytes;
        var manifest = new JsonArray(new JsonObject { ["Config"] = configName, ["RepoTags"] = new JsonArray("fuzz:1"), ["Layers"] = paths });
        files["manifest.json"] = Document("manifest.json", manifest);
        return files;
    }

    /// <summary>Stores a document as a blob, broken when it is the target; returns what its descriptor says: its own
    /// digest and size (resealed), or when not resealing those the unbroken document had.</summary>
    (string Digest, long Size) Store(Dictionary<string, byte[]> files, JsonNode node, string name)
    {
        byte[] good = Encoding.UTF8.GetBytes(node.ToJsonString());
        byte[] data = Document(name, node);
        files[OciBuilder.PathOf(Blob.DigestOf(data))] = data;
        return _reseal ? (Blob.DigestOf(data), data.Length) : (Blob.DigestOf(good), good.Length);
    }

    /// <summary>A document's bytes, broken when it is the target.</summary>
    byte[] Document(string name, JsonNode node)
    {
        if (_target != name) return Encoding.UTF8.GetBytes(node.ToJsonString());
        switch (random.Next(10))
        {
            case 0:
                byte[] whole = Encoding.UTF8.GetBytes(node.ToJsonString());
                int cut = random.Next(whole.Length);
                _done.Add($"{name} cut at byte {cut}");
                return whole[..cut];
            case 1:
                string[] replacements = ["null", "[]", "{}", "", "7", "\"x\"", "[null]", "\uFEFF{}", "{\"a\":1,\"a\":2}", new string('[', 5000) + new string(']', 5000)];
                string replacement = replacements[random.Next(replacements.Length)];
                _done.Add($"{name} replaced by {Shorten(replacement)}");
                return Encoding.UTF8.GetBytes(replacement);
            default:
                int count = 1 + (random.Next(4) == 0 ? random.Next(1, 4) : 0);
                string text = node.ToJsonString();
                for (int i = 0; i < count; i++) (node, text) = MutateNode(name, node);
                return Encoding.UTF8.GetBytes(text);
        }
    }

    /// <summary>One node of the document changed; returns the new document and its text (deep nesting is written as text).</summary>
    (JsonNode Root, string Text) MutateNode(string name, JsonNode root)
    {
        var nodes = new List<(JsonNode? Parent, string? Key, int Index, string Path)>();
        void Walk(JsonNode? node, JsonNode? parent, string? key, int index, string path)
        {
            nodes.Add((parent, key, index, path));
            if (node is JsonObject o)
                foreach (var (k, v) in o.ToList()) Walk(v, o, k, -1, $"{path}.{k}");
            else if (node is JsonArray a)
                for (int i = 0; i < a.Count; i++) Walk(a[i], a, null, i, $"{path}[{i}]");
        }
        Walk(root, null, null, -1, "$");
        var (parentNode, key, index, path) = nodes[random.Next(nodes.Count)];
        string what;
        JsonNode? value;
        bool delete = false;
        switch (random.Next(11))
        {
            case 0: value = null; what = "null"; break;
            case 1:
                JsonNode?[] wrong = [0, -1, 1.5, "x", true, new JsonArray(), new JsonObject(), new JsonArray((JsonNode?)null), new JsonObject { ["x"] = null }];
                value = wrong[random.Next(wrong.Length)];
                what = $"a wrong type ({value?.ToJsonString() ?? "null"})";
                break;
            case 2:
                string[] numbers = ["9223372036854775807", "-9223372036854775808", "-1", "1e308", "18446744073709551616", "-0", "2147483648", "67108865"];
                string number = numbers[random.Next(numbers.Length)];
                value = JsonNode.Parse(number);
                what = $"the number {number}";
                break;
            case 3:
                string[] types = [MediaTypes.OciIndex, MediaTypes.OciManifest, MediaTypes.OciConfig, MediaTypes.OciLayer, MediaTypes.OciLayerGzip, MediaTypes.OciLayerZstd,
                    MediaTypes.DockerManifestList, MediaTypes.DockerManifest, MediaTypes.DockerConfig, MediaTypes.DockerLayer, "application/x\ny", "", "text/plain"];
                value = types[random.Next(types.Length)];
                what = $"the media type {value.ToJsonString()}";
                break;
            case 4:
                string[] digests = ["sha256:" + Convert.ToHexStringLower(RandomBytes(32)), "sha256:abc", "sha512:" + Convert.ToHexStringLower(RandomBytes(64)),
                    "sha256:" + Convert.ToHexString(RandomBytes(32)), "md5:00", "sha256:" + new string('0', 63) + "\n", "sha256:../../../etc/passwd", Blob.DigestOf(Base)];
                value = digests[random.Next(digests.Length)];
                what = $"the digest {value.ToJsonString()}";
                break;
            case 5:
                if (parentNode is null) goto case 0;
                delete = true;
                value = null;
                what = "deleted";
                break;
            case 6:
                value = "\u0000deep\u0000"; // written as text below: a JsonNode cannot hold it
                what = "deep nesting";
                break;
            case 7:
                string[] strings = [new string('a', 100_000), "two\nlines", "\u0000", "esc\u001b[31mred", "../..", "/etc/passwd", "fuzz:1\r\nx", "\uD800"];
                value = strings[random.Next(strings.Length)];
                what = $"the string {Shorten(value.ToJsonString())}";
                break;
            case 8:
                long[] sizes = [0, 1, -1, long.MaxValue, 64L << 20, (64L << 20) + 1];
                value = sizes[random.Next(sizes.Length)];
                what = $"the size {value}";
                break;
            case 9:
                // the node repeated: a list that says more than there is (layers 1,000 times, a manifest twice)
                if (parentNode is not JsonArray) goto case 1;
                var array = (JsonArray)parentNode;
                int times = random.Next(2) == 0 ? 2 : 1000;
                var copy = array[index]?.DeepClone();
                for (int i = 0; i < times; i++) array.Add(copy?.DeepClone());
                _done.Add($"{name}: {path} repeated {times} times");
                return (root, root.ToJsonString());
            default:
                value = new JsonArray();
                what = "an empty array";
                break;
        }
        _done.Add($"{name}: {path} {(delete ? "deleted" : "set to " + what)}");
        if (parentNode is null)
        {
            if (value is null) return (new JsonObject(), "null");
            root = value.DeepClone();
        }
        else if (parentNode is JsonObject o)
        {
            if (delete) o.Remove(key!);
            else o[key!] = value?.DeepClone();
        }
        else if (parentNode is JsonArray a)
        {
            if (delete) a.RemoveAt(index);
            else a[index] = value?.DeepClone();
        }
        string text = root.ToJsonString();
        return (root, text.Replace("\"\\u0000deep\\u0000\"", new string('[', 3000) + new string(']', 3000), StringComparison.Ordinal));
    }

    byte[] BreakBlob(byte[] blob)
    {
        switch (random.Next(6))
        {
            case 0:
                int cut = random.Next(blob.Length);
                _done.Add($"layer blob cut at {cut}");
                return blob[..cut];
            case 1:
                var flipped = blob.ToArray();
                int at = random.Next(flipped.Length);
                flipped[at] ^= (byte)(1 << random.Next(8));
                _done.Add($"layer blob byte {at} flipped");
                return flipped;
            case 2:
                _done.Add("layer blob swapped for another tar");
                return Other;
            case 3:
                _done.Add("layer blob empty");
                return [];
            case 4:
                _done.Add("layer blob gzipped once more");
                return Blob.Gzip(blob);
            default:
                _done.Add("layer blob random bytes");
                return RandomBytes(random.Next(1, 4096));
        }
    }

    byte[] RandomBytes(int n)
    {
        var b = new byte[n];
        random.NextBytes(b);
        return b;
    }

    // ---- files of a directory ----

    static void WriteDirectory(string path, Dictionary<string, byte[]> files)
    {
        foreach (var (name, data) in files)
        {
            string to = Path.Combine(path, name);
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.WriteAllBytes(to, data);
        }
    }

    void BreakFile(string root, Dictionary<string, byte[]> files, string outside)
    {
        var names = files.Keys.Order(StringComparer.Ordinal).ToList();
        string name = names[random.Next(names.Count)];
        string file = Path.Combine(root, name);
        MustFail = _target is null && _reseal;
        string copy = Path.Combine(outside, Guid.NewGuid().ToString("N"));
        File.Copy(file, copy);
        File.Delete(file);
        switch (random.Next(9))
        {
            case 0: File.CreateSymbolicLink(file, copy); _done.Add($"{name} a symlink out of the image"); break;
            case 1: File.CreateSymbolicLink(file, Path.GetRelativePath(Path.GetDirectoryName(file)!, copy)); _done.Add($"{name} a relative symlink out of the image"); break;
            case 2: File.CreateSymbolicLink(file, "/dev/zero"); _done.Add($"{name} a symlink to /dev/zero"); break;
            case 3: File.CreateSymbolicLink(file, Path.GetFileName(file)); _done.Add($"{name} a symlink to itself"); break;
            case 4: Posix.MknodAt(FileDescriptor.Cwd, file, 0x1000 | 0x180, 0, 0); _done.Add($"{name} a FIFO"); break;
            case 5: Posix.MknodAt(FileDescriptor.Cwd, file, 0x2000 | 0x1B6, 1, 5); _done.Add($"{name} a device (1,5)"); break;
            case 6: Directory.CreateDirectory(file); _done.Add($"{name} a directory"); break;
            case 7:
                // the blob directory itself a link out, to a copy of it
                string blobs = Path.Combine(root, "blobs");
                if (!Directory.Exists(blobs)) goto default;
                File.Move(copy, file);
                string moved = Path.Combine(outside, Guid.NewGuid().ToString("N"));
                Directory.Move(blobs, moved);
                Directory.CreateSymbolicLink(blobs, moved);
                _done.Add("blobs a symlink out of the image");
                break;
            default: _done.Add($"{name} missing"); break;
        }
    }

    // ---- archives ----

    byte[] Archive(Dictionary<string, byte[]> files)
    {
        var tar = new LayerTar();
        var names = files.Keys.Order(StringComparer.Ordinal).ToList();
        // docker save writes manifest.json last
        if (names.Remove("manifest.json")) names.Add("manifest.json");
        string? odd = random.Next(4) == 0 ? names[random.Next(names.Count)] : null;
        foreach (var name in names)
        {
            if (name == odd) OddMember(tar, name, names);
            else tar.File(name, files[name]);
        }
        byte[] bytes = tar.Bytes();
        int archiveBreak = random.Next(12);
        // a cut archive or a member that lies about its size may read as a good rootfs tar (a layer tar's own members
        // then read as the archive's), which imports
        if (archiveBreak is 0 or 1 or 3) MustFail = false;
        switch (archiveBreak)
        {
            case 0:
                int cut = random.Next(bytes.Length);
                _done.Add($"archive cut at {cut}");
                return bytes[..cut];
            case 1:
                // a member's header says another size than its data has
                var offsets = HeaderOffsets(bytes);
                int header = offsets[random.Next(offsets.Count)];
                long[] sizes = [0, 1, 1L << 33, 0x7FFFFFFFFF];
                long size = sizes[random.Next(sizes.Length)];
                Encoding.ASCII.GetBytes(Convert.ToString(size, 8).PadLeft(11, '0') + "\0").CopyTo(bytes, header + 124);
                FixChecksum(bytes.AsSpan(header, 512));
                _done.Add($"archive member at {header} says {size} bytes");
                return bytes;
            case 2:
                _done.Add("archive gzipped");
                return Blob.Gzip(bytes);
            case 3:
                var gz = Blob.Gzip(bytes);
                int gzCut = random.Next(gz.Length);
                _done.Add($"archive gzipped and cut at {gzCut}");
                return gz[..gzCut];
            default:
                return bytes;
        }
    }

    void OddMember(LayerTar tar, string name, List<string> names)
    {
        TarEntry Entry(TarEntryType type, string link = "") => new() { Name = name, Type = type, LinkName = link, Mode = 0x1A4, DevMajor = 1, DevMinor = 5 };
        MustFail = _target is null && _reseal;
        switch (random.Next(9))
        {
            case 0: tar.Entry(Entry(TarEntryType.Fifo)); _done.Add($"member {name} a FIFO"); break;
            case 1: tar.Entry(Entry(TarEntryType.CharDevice)); _done.Add($"member {name} a character device"); break;
            case 2: tar.Entry(Entry(TarEntryType.BlockDevice)); _done.Add($"member {name} a block device"); break;
            case 3: tar.Entry(Entry(TarEntryType.Symlink, "/dev/zero")); _done.Add($"member {name} a symlink to /dev/zero"); break;
            case 4: tar.Entry(Entry(TarEntryType.Symlink, "../../../../etc/passwd")); _done.Add($"member {name} a symlink out"); break;
            case 5: tar.Entry(Entry(TarEntryType.Symlink, Path.GetFileName(name))); _done.Add($"member {name} a symlink to itself"); break;
            case 6: tar.Entry(Entry(TarEntryType.HardLink, "missing")); _done.Add($"member {name} a hardlink to nothing"); break;
            case 7:
                string other = names[random.Next(names.Count)];
                tar.Entry(Entry(TarEntryType.HardLink, other));
                _done.Add($"member {name} a hardlink to {other}");
                MustFail = false; // a file of the archive with another's bytes: a blob the store has already is never read
                break;
            default: tar.Entry(Entry(TarEntryType.Directory)); _done.Add($"member {name} a directory"); break;
        }
    }

    /// <summary>Where the tar headers are: each 512-byte block that a member starts with.</summary>
    static List<int> HeaderOffsets(byte[] tar)
    {
        var offsets = new List<int>();
        int at = 0;
        while (at + 512 <= tar.Length && tar[at] != 0)
        {
            offsets.Add(at);
            string octal = Encoding.ASCII.GetString(tar, at + 124, 11).Trim('\0', ' ');
            long size = octal.Length > 0 ? Convert.ToInt64(octal, 8) : 0;
            at += 512 + (int)((size + 511) / 512 * 512);
        }
        return offsets.Count > 0 ? offsets : [0];
    }

    static void FixChecksum(Span<byte> header)
    {
        header[148..156].Fill((byte)' ');
        int sum = 0;
        foreach (byte b in header) sum += b;
        Encoding.ASCII.GetBytes(Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ").CopyTo(header[148..]);
    }

    static string Shorten(string s) => s.Length <= 40 ? s : s[..40] + $"...({s.Length} chars)";
}
