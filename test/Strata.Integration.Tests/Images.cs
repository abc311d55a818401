using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Strata.Native;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>A fact that needs tools beyond the base set (umoci, skopeo, runc); skipped, naming the first one
/// missing, on machines without them.</summary>
public sealed class ToolsFactAttribute : FactAttribute
{
    public ToolsFactAttribute(params string[] tools)
    {
        if (tools.FirstOrDefault(t => !Shell.Has(t)) is { } missing)
            Skip = $"{missing} is not installed (test.sh installs it)";
        else if (!File.Exists("/bin/busybox") || Shell.Run("ldd", "/bin/busybox").ExitCode == 0)
            Skip = "a static /bin/busybox is needed (test.sh installs busybox-static)";
    }
}

/// <summary>OCI image layouts built with umoci (the reference implementation of the OCI image spec), and
/// trees compared as the tests need them.</summary>
static class Images
{
    public static readonly string[] Applets = ["sh", "echo", "rm", "mkdir", "ls", "cat", "true", "find", "sort", "stat"];

    public static void Umoci(params string[] args) => Shell.Run("umoci", args).Check("umoci " + string.Join(' ', args));

    /// <summary>A new image <paramref name="tag"/> in layout <paramref name="layout"/> (created when missing) with one
    /// layer: static busybox, and files of every kind and attribute a layer carries.</summary>
    public static void BuildBase(string layout, string tag, string work)
    {
        if (!Directory.Exists(layout)) Umoci("init", "--layout", layout);
        Umoci("new", "--image", $"{layout}:{tag}");
        Change(layout, tag, tag, work, rootfs =>
        {
            Sh(rootfs, $$"""
                mkdir -p bin etc data/sub empty usr/local/bin sticky
                cp /bin/busybox bin/busybox
                for a in {{string.Join(' ', Applets)}}; do ln -s busybox bin/$a; done
                echo hello > etc/file
                echo motd > etc/motd
                echo keep > data/keep
                echo gone > data/sub/gone
                echo shared > data/hard1
                ln data/hard1 data/hard2
                ln data/hard1 etc/hard3
                chown 1000:1001 data/hard1
                printf 'suid' > usr/local/bin/suid
                chmod 4755 usr/local/bin/suid
                printf 'sgid' > usr/local/bin/sgid
                chown 0:50 usr/local/bin/sgid
                chmod 2711 usr/local/bin/sgid
                chmod 1777 sticky
                chmod 0700 empty
                chown 7:8 empty
                printf 'secret' > etc/secret
                chmod 0600 etc/secret
                chown 33:33 etc/secret
                setfattr -n user.strata -v value etc/file
                setfattr -n user.empty.dir -v 0x00ff01 empty
                ln -s ../etc/file data/relative-link
                ln -s /etc/motd data/absolute-link
                ln -s /does/not/exist data/dangling
                mkfifo data/fifo
                printf 'spaces' > 'data/a name with spaces'
                printf 'u' > "data/$(printf 'caf\303\251')"
                head -c 300000 /bin/busybox > data/big
                touch -h -d '2001-02-03 04:05:06' data/relative-link data/keep
                find . -type d -exec touch -d '2000-01-01 00:00:00' {} +
                """);
        });
    }

    /// <summary>A second layer on <paramref name="from"/>, tagged <paramref name="to"/>: a change made by
    /// <paramref name="edit"/> to the unpacked rootfs, repacked as a new layer.</summary>
    public static void Change(string layout, string from, string to, string work, Action<string> edit)
    {
        string bundle = Path.Combine(work, "bundle-" + Guid.NewGuid().ToString("N")[..8]);
        Umoci("unpack", "--image", $"{layout}:{from}", bundle);
        edit(Path.Combine(bundle, "rootfs"));
        if (from != to) Umoci("tag", "--image", $"{layout}:{from}", to);
        Umoci("repack", "--image", $"{layout}:{to}", bundle);
        Shell.Run("rm", "-rf", bundle).Check("rm");
    }

    /// <summary>A layer that deletes, replaces and adds (whiteouts, an opaque directory).</summary>
    public static void SecondLayer(string layout, string from, string to, string work) => Change(layout, from, to, work, rootfs => Sh(rootfs, """
        rm data/keep etc/motd
        rm -r data/sub
        mkdir data/sub
        echo again > data/sub/new
        echo replaced > etc/file
        setfattr -n user.strata -v second etc/file
        chmod 0640 etc/file
        chown 0:4 etc/file
        mkdir -p opt/app
        echo app > opt/app/run
        touch -d '2002-02-02 02:02:02' . data data/sub etc opt opt/app
        """));

    /// <summary>The rootfs umoci itself unpacks from an image.</summary>
    public static string UmociRootfs(string layout, string tag, string work)
    {
        string bundle = Path.Combine(work, "expected-" + Guid.NewGuid().ToString("N")[..8]);
        Umoci("unpack", "--image", $"{layout}:{tag}", bundle);
        return Path.Combine(bundle, "rootfs");
    }

    public static void Sh(string dir, string script) => Shell.RunIn(dir, "/bin/sh", "-ec", script).Check("sh: " + script);

    /// <summary>The paths a runtime's init layer adds to every container (Strata's: /dev, /proc, /sys).</summary>
    public static readonly string[] InitPaths = ["dev", "proc", "sys"];

    /// <summary>A container's tree without the init layer's mount points (and what is mounted or made there).</summary>
    public static List<NodeInfo> Capture(string root, IEnumerable<string>? ignore = null)
    {
        var skip = new HashSet<string>(ignore ?? InitPaths, StringComparer.Ordinal);
        return TreeSnapshot.Capture(root).Where(n => !skip.Contains(n.Path) && !skip.Any(s => n.Path.StartsWith(s + "/", StringComparison.Ordinal))).ToList();
    }

    /// <summary>Without what docker's archives drop (xattrs other than security.capability), and without directory
    /// times (docker's init layer touches the directories it adds to).</summary>
    public static List<NodeInfo> AsDockerKeepsIt(IEnumerable<NodeInfo> nodes) =>
        nodes.Select(n => n with { Xattrs = "", Mtime = n.Kind == FileKind.Directory ? default : n.Mtime }).ToList();

    /// <summary>Extracts a tar as root keeps it: owners, modes, xattrs.</summary>
    public static string Extract(string tar, string to)
    {
        Directory.CreateDirectory(to);
        Shell.Run("tar", "--xattrs", "--xattrs-include=*", "--same-owner", "--numeric-owner", "-xpf", tar, "-C", to).Check("tar -x " + tar);
        return to;
    }

    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    public static string Sha256(string file)
    {
        using var f = File.OpenRead(file);
        return Convert.ToHexStringLower(SHA256.HashData(f));
    }

    /// <summary>A docker-archive as `docker save` writes one for an image whose last two layers are the same tar:
    /// the repeated layer.tar a symlink to the first; the middle layer gzip-compressed (docker load takes that).</summary>
    public static string RepeatedLayerArchive(string rootfsTar, string changeTar, string work, string repoTag)
    {
        string dir = Path.Combine(work, "repeated");
        Directory.CreateDirectory(dir);
        string baseDiff = Sha256(rootfsTar), changeDiff = Sha256(changeTar);
        // ids as docker save names its layer directories (any unique names do)
        string l1 = Sha256(System.Text.Encoding.UTF8.GetBytes("l1" + baseDiff)), l2 = Sha256(System.Text.Encoding.UTF8.GetBytes("l2" + changeDiff)),
            l3 = Sha256(System.Text.Encoding.UTF8.GetBytes("l3" + changeDiff));
        foreach (var l in new[] { l1, l2, l3 }) Directory.CreateDirectory(Path.Combine(dir, l));
        File.Copy(rootfsTar, Path.Combine(dir, l1, "layer.tar"));
        using (var input = File.OpenRead(changeTar))
        using (var output = File.Create(Path.Combine(dir, l2, "layer.tar")))
        using (var gz = new GZipStream(output, CompressionLevel.Fastest))
            input.CopyTo(gz);
        File.CreateSymbolicLink(Path.Combine(dir, l3, "layer.tar"), $"../{l2}/layer.tar");
        var host = System.Runtime.InteropServices.RuntimeInformation.OSArchitecture switch
        {
            System.Runtime.InteropServices.Architecture.Arm64 => "arm64",
            _ => "amd64",
        };
        var config = new JsonObject
        {
            ["architecture"] = host,
            ["os"] = "linux",
            ["created"] = "2024-01-02T03:04:05Z",
            ["config"] = new JsonObject { ["Cmd"] = new JsonArray("sh") },
            ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = new JsonArray("sha256:" + baseDiff, "sha256:" + changeDiff, "sha256:" + changeDiff) },
        };
        byte[] configBytes = System.Text.Encoding.UTF8.GetBytes(config.ToJsonString());
        string configName = Sha256(configBytes) + ".json";
        File.WriteAllBytes(Path.Combine(dir, configName), configBytes);
        var manifest = new JsonArray(new JsonObject
        {
            ["Config"] = configName,
            ["RepoTags"] = new JsonArray(repoTag),
            ["Layers"] = new JsonArray($"{l1}/layer.tar", $"{l2}/layer.tar", $"{l3}/layer.tar"),
        });
        File.WriteAllText(Path.Combine(dir, "manifest.json"), manifest.ToJsonString());
        string archive = Path.Combine(work, "repeated.tar");
        // GNU tar keeps the symlink a symlink, as docker save's archive has it
        Shell.Run("tar", "-C", dir, "-cf", archive, "manifest.json", configName, l1, l2, l3).Check("tar -c");
        Assert.Contains($"{l3}/layer.tar -> ../{l2}/layer.tar", Shell.Run("tar", "-tvf", archive).Check("tar -t").Stdout);
        return archive;
    }

    /// <summary>A docker-archive of <paramref name="count"/> one-file layers, laid out as `docker save` writes it: the
    /// layer directories first, manifest.json at the end.</summary>
    public static string ManyLayerArchive(int count, string work, string repoTag)
    {
        string dir = Path.Combine(work, "many");
        var layers = new JsonArray();
        var diffIds = new JsonArray();
        for (int i = 0; i < count; i++)
        {
            string files = Path.Combine(work, "many-files", i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Directory.CreateDirectory(files);
            File.WriteAllText(Path.Combine(files, $"f{i}"), $"{i}\n");
            string id = Sha256(System.Text.Encoding.UTF8.GetBytes("layer" + i));
            Directory.CreateDirectory(Path.Combine(dir, id));
            string tar = Path.Combine(dir, id, "layer.tar");
            Shell.Run("tar", "-C", files, "-cf", tar, $"f{i}").Check("tar -c");
            layers.Add($"{id}/layer.tar");
            diffIds.Add("sha256:" + Sha256(tar));
        }
        var config = new JsonObject
        {
            ["architecture"] = System.Runtime.InteropServices.RuntimeInformation.OSArchitecture == System.Runtime.InteropServices.Architecture.Arm64 ? "arm64" : "amd64",
            ["os"] = "linux",
            ["config"] = new JsonObject(),
            ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = diffIds },
        };
        byte[] configBytes = System.Text.Encoding.UTF8.GetBytes(config.ToJsonString());
        string configName = Sha256(configBytes) + ".json";
        File.WriteAllBytes(Path.Combine(dir, configName), configBytes);
        File.WriteAllText(Path.Combine(dir, "manifest.json"), new JsonArray(new JsonObject
        {
            ["Config"] = configName,
            ["RepoTags"] = new JsonArray(repoTag),
            ["Layers"] = layers,
        }).ToJsonString());
        string archive = Path.Combine(work, "many.tar");
        var members = Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToArray();
        Shell.Run("tar", ["-C", dir, "--no-recursion", "-cf", archive, .. members.SelectMany(m => Directory.Exists(Path.Combine(dir, m)) ? new[] { m, m + "/layer.tar" } : [m])]).Check("tar -c");
        return archive;
    }
}
