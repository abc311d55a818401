using System.Text.Json;
using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>Images and containers against the real tools of the ecosystem: images built with umoci, exports
/// read by skopeo, umoci and a real dockerd (its built-in overlay2), `docker save` archives imported, and
/// `strata run` through runc. Each test has its own stores (of the driver under test) and daemons.</summary>
public abstract class ImageTests(ITestOutputHelper output) : IDisposable
{
    readonly TempRoot _temp = new();
    readonly List<IDisposable> _owned = [];
    readonly List<string> _stores = [];

    protected abstract string DriverName { get; }

    public void Dispose()
    {
        try
        {
            for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
            // whatever a failed run left to runc (strata run deletes its own; this is for a test killed midway)
            foreach (var store in _stores)
            {
                var ls = new Cli(store).Run("container", "ls", "-a", "--format", "json");
                if (ls.ExitCode != 0) continue;
                foreach (var c in JsonDocument.Parse(ls.Stdout).RootElement.EnumerateArray())
                    Shell.Run("runc", "--root", "/run/strata/runc", "delete", "--force", c.GetProperty("Id").GetString()!);
            }
        }
        finally
        {
            _temp.Dispose();
        }
    }

    /// <summary>A new store of the driver under test.</summary>
    Store NewStore(string name = "store")
    {
        var s = new Store(_temp.Combine(name), DriverName);
        _stores.Add(s.Root);
        return s;
    }

    sealed class Store(string root, string driver)
    {
        readonly Cli _cli = new(root);

        public string Root => root;

        public Cli.Result Run(params string[] args) => _cli.Run(["--driver", driver, .. args]);

        public string Ok(params string[] args) => _cli.Ok(["--driver", driver, .. args]);

        /// <summary>The JSON a command prints; of an `inspect` of one name, the array's one document.</summary>
        public JsonElement Json(params string[] args)
        {
            var e = JsonDocument.Parse(Ok(args)).RootElement.Clone();
            return args.Contains("inspect") ? Assert.Single(e.EnumerateArray().ToList()) : e;
        }

        public string[] LayerRecords() => Directory.GetFiles(Path.Combine(root, "layers"), "*.json");

        public string[] Blobs()
        {
            string dir = Path.Combine(root, "images", "blobs", "sha256");
            return Directory.Exists(dir) ? Directory.GetFiles(dir).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToArray() : [];
        }

        public List<string> MountsUnder()
        {
            string real = Posix.RealPath(root);
            return MountTable.Read().Select(m => m.MountPoint).Where(m => m.StartsWith(real + "/", StringComparison.Ordinal)).ToList();
        }

        /// <summary>Everything removed: no layer, no blob, no image, no container, nothing mounted.</summary>
        public void AssertEmpty()
        {
            Assert.Empty(LayerRecords());
            Assert.Empty(Blobs());
            Assert.Equal(0, Json("image", "ls", "--format", "json").GetArrayLength());
            Assert.Equal(0, Json("container", "ls", "-a", "--format", "json").GetArrayLength());
            Assert.Empty(MountsUnder());
        }
    }

    /// <summary>An umoci layout with one image, tag <c>img</c>: the base layer and a second that deletes, replaces and adds.</summary>
    string TwoLayerLayout()
    {
        string layout = _temp.Combine("layout");
        Images.BuildBase(layout, "img", _temp.Path);
        Images.SecondLayer(layout, "img", "img", _temp.Path);
        return layout;
    }

    /// <summary>Mounts a new container of <paramref name="image"/>, hands its rootfs to <paramref name="check"/>, then removes it.</summary>
    static void WithRootfs(Store s, string image, Action<string> check)
    {
        string id = s.Ok("container", "create", image);
        string rootfs = s.Ok("container", "mount", id);
        try
        {
            check(rootfs);
        }
        finally
        {
            s.Ok("container", "unmount", id);
            s.Ok("container", "rm", id);
        }
    }

    [ToolsFact("umoci")]
    public void AnUmociImageUnpacksAsUmociUnpacksIt()
    {
        string layout = TwoLayerLayout();
        var s = NewStore();
        string imported = s.Ok("image", "import", layout, "--name", "x:1", "-q");
        Assert.Matches("^sha256:[0-9a-f]{64} x:1$", imported);
        var inspect = s.Json("image", "inspect", "x:1");
        Assert.Equal(2, inspect.GetProperty("Image").GetProperty("Layers").GetArrayLength());
        Assert.Equal(imported.Split(' ')[0], inspect.GetProperty("Image").GetProperty("Id").GetString());

        var expected = Images.Capture(Images.UmociRootfs(layout, "img", _temp.Path));
        // the tree really has what it is meant to test
        Assert.Contains(expected, n => n.Path == "etc/hard3" && n.LinkGroup != "");
        Assert.Contains(expected, n => n.Path == "data/fifo" && n.Kind == FileKind.Fifo);
        Assert.Contains(expected, n => n.Path == "usr/local/bin/suid" && n.Permissions == 0x9ED); // 04755
        Assert.Contains(expected, n => n.Path == "etc/file" && n.Xattrs.Contains("user.strata"));
        Assert.DoesNotContain(expected, n => n.Path is "data/keep" or "etc/motd" or "data/sub/gone");
        WithRootfs(s, "x:1", rootfs => TreeSnapshot.AssertSame(expected, Images.Capture(rootfs)));
        s.Ok("image", "rm", "x:1");
        s.AssertEmpty();
    }

    [ToolsFact("umoci", "skopeo")]
    public void ExportsAreReadBySkopeoAndUmoci()
    {
        string layout = TwoLayerLayout();
        var s = NewStore();
        s.Ok("image", "import", layout, "--name", "x:1", "-q");
        var manifest = s.Json("image", "inspect", "x:1").GetProperty("Manifest");
        var layers = manifest.GetProperty("layers").EnumerateArray().Select(l => l.GetProperty("digest").GetString()).ToList();
        var expected = Images.Capture(Images.UmociRootfs(layout, "img", _temp.Path));

        // an OCI layout directory
        string dir = _temp.Combine("export-oci");
        s.Ok("image", "export", "x:1", "-o", dir, "--format", "oci", "-q");
        var seen = JsonDocument.Parse(Shell.Run("skopeo", "inspect", "oci:" + dir).Check("skopeo inspect oci:").Stdout).RootElement;
        Assert.Equal(layers, seen.GetProperty("Layers").EnumerateArray().Select(l => l.GetString()));
        Assert.Equal(manifest.GetProperty("config").GetProperty("digest").GetString(),
            JsonDocument.Parse(Shell.Run("skopeo", "inspect", "--raw", "oci:" + dir).Check("skopeo inspect --raw").Stdout).RootElement.GetProperty("config").GetProperty("digest").GetString());
        TreeSnapshot.AssertSame(expected, Images.Capture(Images.UmociRootfs(dir, "1", _temp.Path)));

        // an oci-archive: skopeo reads it, and copies it (checking every digest) to a layout umoci unpacks
        string archive = _temp.Combine("export.tar");
        s.Ok("image", "export", "x:1", "-o", archive, "-q");
        seen = JsonDocument.Parse(Shell.Run("skopeo", "inspect", "oci-archive:" + archive).Check("skopeo inspect oci-archive:").Stdout).RootElement;
        Assert.Equal(layers, seen.GetProperty("Layers").EnumerateArray().Select(l => l.GetString()));
        string copy = _temp.Combine("copy");
        Shell.Run("skopeo", "copy", "oci-archive:" + archive, $"oci:{copy}:copied").Check("skopeo copy");
        TreeSnapshot.AssertSame(expected, Images.Capture(Images.UmociRootfs(copy, "copied", _temp.Path)));

        // a docker-archive, as skopeo reads `docker save`'s (naming the image by its RepoTags)
        string docker = _temp.Combine("export-docker.tar");
        s.Ok("image", "export", "x:1", "-o", docker, "--format", "docker-archive", "-q");
        seen = JsonDocument.Parse(Shell.Run("skopeo", "inspect", $"docker-archive:{docker}:x:1").Check("skopeo inspect docker-archive:").Stdout).RootElement;
        Assert.Equal(layers.Count, seen.GetProperty("Layers").GetArrayLength());
        string fromDocker = _temp.Combine("from-docker");
        Shell.Run("skopeo", "copy", $"docker-archive:{docker}:x:1", $"oci:{fromDocker}:copied").Check("skopeo copy docker-archive:");
        TreeSnapshot.AssertSame(expected, Images.Capture(Images.UmociRootfs(fromDocker, "copied", _temp.Path)));
    }

    [DockerFact]
    public void DockerArchivesGoBothWaysWithARealDockerd()
    {
        string layout = TwoLayerLayout();
        var s = NewStore();
        string id = s.Ok("image", "import", layout, "--name", "x:1", "-q").Split(' ')[0];
        string archive = _temp.Combine("x.tar");
        s.Ok("image", "export", "x:1", "-o", archive, "--format", "docker-archive", "-q");
        var expected = Images.Capture(Images.UmociRootfs(layout, "img", _temp.Path));

        var docker = new PrivateDockerd(_temp.Dir("docker"), "overlay2");
        _owned.Add(docker);
        Assert.Contains("Loaded image: x:1", docker.Ok("load", "-i", archive));
        Assert.Equal(id, docker.Ok("image", "inspect", "--format", "{{.Id}}", "x:1"));
        Assert.Equal("replaced", docker.Ok("run", "--rm", "x:1", "cat", "/etc/file"));
        // what a process in the container sees, under docker and under strata run
        const string look = "cat /etc/file /data/sub/new /opt/app/run; cd /; " +
            "find data etc usr sticky empty opt -type f -exec stat -c '%n %A %u:%g %s %h %Y' {} + | grep -v -e hostname -e hosts -e resolv.conf | sort; " +
            "find data etc usr sticky empty opt ! -type f -exec stat -c '%n %A %u:%g' {} + | grep -v mtab | sort";
        string underDocker = docker.Ok("run", "--rm", "x:1", "sh", "-c", look);
        output.WriteLine(underDocker);
        var run = s.Run("run", "--rm", "x:1", "sh", "-c", look);
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal(underDocker, run.Out);
        // every file, as `docker export` writes the container's tree (docker keeps no user.* xattrs there)
        string container = docker.Ok("create", "x:1", "true");
        string exported = _temp.Combine("docker-export.tar");
        docker.Ok("export", "-o", exported, container);
        var fromDocker = Images.Capture(Images.Extract(exported, _temp.Combine("docker-export")),
            [.. Images.InitPaths, ".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab"]);
        TreeSnapshot.AssertSame(Images.AsDockerKeepsIt(expected), Images.AsDockerKeepsIt(fromDocker));

        // and back: docker save from that dockerd, imported into a new store, is the same image and tree
        string saved = _temp.Combine("saved.tar");
        docker.Ok("save", "-o", saved, "x:1");
        var s2 = NewStore("store2");
        Assert.Equal($"{id} x:1", s2.Ok("image", "import", saved, "-q"));
        WithRootfs(s2, "x:1", rootfs => TreeSnapshot.AssertSame(expected, Images.Capture(rootfs)));
        Assert.Equal(
            s.Json("image", "inspect", "x:1").GetProperty("Config").GetProperty("rootfs").ToString(),
            s2.Json("image", "inspect", "x:1").GetProperty("Config").GetProperty("rootfs").ToString());
    }

    [ToolsFact("umoci", "skopeo")]
    public void ImagesOnACommonBaseShareItsLayer()
    {
        string layout = _temp.Combine("layout");
        Images.BuildBase(layout, "base", _temp.Path);
        Images.Change(layout, "base", "a", _temp.Path, rootfs => File.WriteAllText(Path.Combine(rootfs, "a"), "a\n"));
        Images.Change(layout, "base", "b", _temp.Path, rootfs => File.WriteAllText(Path.Combine(rootfs, "b"), "b\n"));
        // the same base through two archives: its blob differs (gzip, or not), its diff id and so its chain id do not
        string a = _temp.Combine("a.tar"), b = _temp.Combine("b");
        Shell.Run("skopeo", "copy", $"oci:{layout}:a", "oci-archive:" + a).Check("skopeo copy a");
        Shell.Run("skopeo", "copy", "--dest-decompress", $"oci:{layout}:b", $"oci:{b}:b").Check("skopeo copy b");
        var s = NewStore();
        s.Ok("image", "import", a, "--name", "x/a:1", "-q");
        s.Ok("image", "import", b, "--name", "y/b:1", "-q");

        var la = s.Json("image", "inspect", "x/a:1").GetProperty("Image").GetProperty("Layers").EnumerateArray().Select(l => l.GetString()!).ToList();
        var lb = s.Json("image", "inspect", "y/b:1").GetProperty("Image").GetProperty("Layers").EnumerateArray().Select(l => l.GetString()!).ToList();
        Assert.Equal(2, la.Count);
        Assert.Equal(la[0], lb[0]);
        Assert.NotEqual(la[1], lb[1]);
        var layers = s.Json("layer", "ls", "--format", "json").EnumerateArray().ToList();
        Assert.Equal(3, layers.Count);
        Assert.Equal(3, s.LayerRecords().Length);
        Assert.Single(layers, l => l.GetProperty("Parent").ValueKind == JsonValueKind.Null);
        Assert.Equal(2, layers.Count(l => l.GetProperty("Parent").GetString() == la[0]));
        var blobsBefore = s.Blobs().ToHashSet();

        s.Ok("image", "rm", "x/a:1");
        Assert.Equal(new[] { la[0], lb[1] }.Order(StringComparer.Ordinal),
            s.Json("layer", "ls", "--format", "json").EnumerateArray().Select(l => l.GetProperty("Id").GetString()!).Order(StringComparer.Ordinal));
        Assert.Equal(2, s.LayerRecords().Length);
        // b's blobs stay (manifest, config, its two layers), a's go
        var b1 = s.Json("image", "inspect", "y/b:1");
        var manifestB = b1.GetProperty("Manifest");
        var wantedB = manifestB.GetProperty("layers").EnumerateArray().Select(l => l.GetProperty("digest").GetString()!)
            .Append(manifestB.GetProperty("config").GetProperty("digest").GetString()!)
            .Append(b1.GetProperty("Image").GetProperty("Manifest").GetString()!)
            .Select(d => d["sha256:".Length..]).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(wantedB, s.Blobs());
        Assert.Subset(blobsBefore, s.Blobs().ToHashSet());
        WithRootfs(s, "y/b:1", rootfs =>
        {
            Assert.Equal("b\n", File.ReadAllText(Path.Combine(rootfs, "b")));
            Assert.Equal("hello\n", File.ReadAllText(Path.Combine(rootfs, "etc", "file")));
            Assert.False(File.Exists(Path.Combine(rootfs, "a")));
        });

        s.Ok("image", "rm", "y/b:1");
        s.AssertEmpty();
    }

    [ToolsFact("umoci", "runc")]
    public void RunRefusesAnImageWhosePasswdOrGroupIsNotARegularFile()
    {
        string layout = _temp.Combine("layout");
        Images.BuildBase(layout, "img", _temp.Path);
        // a FIFO would keep the user lookup waiting for a writer, /dev/zero would feed it without end
        Images.Change(layout, "img", "fifo", _temp.Path, rootfs => Images.Sh(rootfs, "mkfifo etc/passwd"));
        Images.Change(layout, "img", "zero", _temp.Path, rootfs => Images.Sh(rootfs, "echo 'someone:x:1000:1000::/:/bin/sh' > etc/passwd; mknod etc/group c 1 5"));
        Images.Umoci("config", "--image", $"{layout}:fifo", "--config.user", "someone");
        Images.Umoci("config", "--image", $"{layout}:zero", "--config.user", "someone:staff");
        var s = NewStore();
        s.Ok("image", "import", layout, "-q");

        var fifo = s.Run("run", "--rm", "strata/image:fifo", "true");
        Assert.True(fifo.ExitCode != 0, fifo.Stderr);
        Assert.Contains("the image's /etc/passwd is a fifo, not a regular file", fifo.Stderr);
        var zero = s.Run("run", "--rm", "strata/image:zero", "true");
        Assert.True(zero.ExitCode != 0, zero.Stderr);
        Assert.Contains("the image's /etc/group is a character device, not a regular file", zero.Stderr);
        Assert.Equal(0, s.Json("container", "ls", "-a", "--format", "json").GetArrayLength());
    }

    [ToolsFact("umoci", "runc")]
    public void RunWritesOnlyToTheContainerLayer()
    {
        string layout = _temp.Combine("layout");
        Images.BuildBase(layout, "img", _temp.Path);
        var s = NewStore();
        s.Ok("image", "import", layout, "--name", "x:1", "-q");

        var r = s.Run("run", "--name", "c1", "x:1", "sh", "-c", "echo x > /new; rm /etc/file; exit 7");
        Assert.True(r.ExitCode == 7, $"exit {r.ExitCode}: {r.Stderr}");
        Assert.Equal("C /etc\nD /etc/file\nA /new", s.Ok("container", "diff", "c1"));
        var c1 = s.Json("container", "inspect", "c1");
        Assert.Equal(0, c1.GetProperty("Mounts").GetInt32());

        // the image is as it was: a new container of it has /etc/file and no /new
        WithRootfs(s, "x:1", rootfs =>
        {
            Assert.Equal("hello\n", File.ReadAllText(Path.Combine(rootfs, "etc", "file")));
            Assert.False(File.Exists(Path.Combine(rootfs, "new")));
        });
        Assert.Equal("hello", s.Ok("run", "--rm", "x:1", "cat", "/etc/file"));

        Assert.Matches("^sha256:[0-9a-f]{64}$", s.Ok("container", "commit", "c1", "y:2"));
        Assert.Equal("x", s.Ok("run", "--rm", "y:2", "cat", "/new"));
        var gone = s.Run("run", "--rm", "y:2", "cat", "/etc/file");
        Assert.Equal(1, gone.ExitCode);
        // the committed layer carries the container's changes only, not the init layer's mount points
        var committed = s.Json("image", "inspect", "y:2");
        Assert.Equal(2, committed.GetProperty("Image").GetProperty("Layers").GetArrayLength());
        // --rm left no container: c1 is the only one
        Assert.Equal(["c1"], s.Json("container", "ls", "-a", "--format", "json").EnumerateArray().Select(c => c.GetProperty("Name").GetString()));
        Assert.DoesNotContain(Shell.Run("runc", "--root", "/run/strata/runc", "list", "-q").Stdout.Split('\n'), l => l == c1.GetProperty("Container").GetProperty("Id").GetString());

        WithRootfs(s, "y:2", rootfs =>
        {
            Assert.Equal("x\n", File.ReadAllText(Path.Combine(rootfs, "new")));
            Assert.False(File.Exists(Path.Combine(rootfs, "etc", "file")));
            Assert.Equal("motd\n", File.ReadAllText(Path.Combine(rootfs, "etc", "motd")));
        });

        var refused = s.Run("image", "rm", "x:1");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("c1", refused.Stderr);
        s.Ok("container", "rm", "c1");
        Assert.Equal(2, s.LayerRecords().Length); // x:1's, and y:2's own (an image layer: c1's and its init layer went)
        s.Ok("image", "rm", "x:1", "y:2");
        s.AssertEmpty();
    }

    [ToolsFact]
    public void DockerArchivesWithGzipAndSymlinkedRepeatedLayersImport()
    {
        // a rootfs and a change, as tars
        string root = _temp.Dir("rootfs");
        Images.Sh(root, $"""
            mkdir bin etc
            cp /bin/busybox bin/busybox
            for a in {string.Join(' ', Images.Applets)}; do ln -s busybox bin/$a; done
            echo hello > etc/motd
            """);
        string rootTar = _temp.Combine("rootfs.tar");
        Shell.Run("tar", "-C", root, "-cf", rootTar, ".").Check("tar");
        string change = _temp.Dir("change");
        Images.Sh(change, "mkdir etc; echo added > etc/added; chmod 0600 etc/added; chown 12:34 etc/added; touch -d '2010-01-01 00:00:00' etc/added etc");
        string changeTar = _temp.Combine("change.tar");
        Shell.Run("tar", "-C", change, "-cf", changeTar, "./etc").Check("tar");
        string archive = Images.RepeatedLayerArchive(rootTar, changeTar, _temp.Path, "rep:1");

        // what the image's tree is: both tars extracted in order
        string expected = _temp.Dir("expected");
        Images.Extract(rootTar, expected);
        Images.Extract(changeTar, expected);
        Images.Extract(changeTar, expected);

        var s = NewStore();
        string imported = s.Ok("image", "import", archive, "-q");
        Assert.Matches("^sha256:[0-9a-f]{64} rep:1$", imported);
        var image = s.Json("image", "inspect", "rep:1");
        var layers = image.GetProperty("Image").GetProperty("Layers").EnumerateArray().Select(l => l.GetString()).ToList();
        Assert.Equal(3, layers.Distinct().Count()); // by chain id: the repeated tar is two layers
        WithRootfs(s, "rep:1", rootfs => TreeSnapshot.AssertSame(Images.Capture(expected), Images.Capture(rootfs)));
        // the stored manifest names the gzip layer as gzip
        var types = image.GetProperty("Manifest").GetProperty("layers").EnumerateArray().Select(l => l.GetProperty("mediaType").GetString()).ToList();
        Assert.EndsWith("gzip", types[1]);
        Assert.EndsWith("gzip", types[2]);
        Assert.DoesNotContain("gzip", types[0]);

        // the same archive gzipped whole (docker load takes that too)
        Shell.Run("gzip", "-k", archive).Check("gzip");
        var s2 = NewStore("store2");
        Assert.Equal(imported, s2.Ok("image", "import", archive + ".gz", "-q"));
        WithRootfs(s2, "rep:1", rootfs => TreeSnapshot.AssertSame(Images.Capture(expected), Images.Capture(rootfs)));

        s.Ok("image", "rm", "rep:1");
        s.AssertEmpty();
    }

    [Fact]
    public void ADockerArchiveOfManyLayersImportsAsAnImage()
    {
        // docker save writes manifest.json after the layer directories; 70 layers (docker allows 127) put it far in
        string archive = Images.ManyLayerArchive(70, _temp.Path, "many:1");
        var s = NewStore();
        Assert.Matches("^sha256:[0-9a-f]{64} many:1$", s.Ok("image", "import", archive, "-q"));
        Assert.Equal(70, s.Json("image", "inspect", "many:1").GetProperty("Image").GetProperty("Layers").GetArrayLength());
        WithRootfs(s, "many:1", rootfs =>
        {
            Assert.Equal("0\n", File.ReadAllText(Path.Combine(rootfs, "f0")));
            Assert.Equal("69\n", File.ReadAllText(Path.Combine(rootfs, "f69")));
        });
        s.Ok("image", "rm", "many:1");
        s.AssertEmpty();
    }

    [ToolsFact("umoci")]
    public void AnOciLayoutTarredAndGzippedByHandImports()
    {
        // `tar -czf image.tar.gz -C layout .`: an oci-archive as people make one, with a "./" entry and gzip around it all
        string layout = TwoLayerLayout();
        string archive = _temp.Combine("layout.tar.gz");
        Shell.Run("tar", "-C", layout, "-czf", archive, ".").Check("tar -cz");
        var s = NewStore();
        Assert.Matches("^sha256:[0-9a-f]{64} x:1$", s.Ok("image", "import", archive, "--name", "x:1", "-q"));
        WithRootfs(s, "x:1", rootfs => TreeSnapshot.AssertSame(Images.Capture(Images.UmociRootfs(layout, "img", _temp.Path)), Images.Capture(rootfs)));
        s.Ok("image", "rm", "x:1");
        s.AssertEmpty();
    }
}

public sealed class OverlayImageTests(ITestOutputHelper output) : ImageTests(output)
{
    protected override string DriverName => "overlay";
}

public sealed class VfsImageTests(ITestOutputHelper output) : ImageTests(output)
{
    protected override string DriverName => "vfs";
}
