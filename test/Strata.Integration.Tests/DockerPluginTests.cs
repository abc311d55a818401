using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>A real dockerd (Debian's 20.10) running its containers on Strata through the graphdriver plugin
/// protocol: `strata serve` on a store of the driver under test, a private dockerd started with
/// `--experimental -s` the plugin's (unique) name. One pair per test.</summary>
public abstract class DockerPluginTests(ITestOutputHelper output) : IDisposable
{
    readonly TempRoot _temp = new();
    readonly List<IDisposable> _owned = [];

    protected abstract string DriverName { get; }

    /// <summary>Mounts of the store that are not layers' (thin: its pool server's FUSE export, up while strata serves).</summary>
    protected virtual bool IsLayerMount(string mountPoint) => true;

    /// <summary>What the driver's directory holds once every layer is gone and should not (overlay keeps l/).</summary>
    protected virtual IEnumerable<string> LeftoverData() =>
        Directory.GetDirectories(Path.Combine(Store, DriverName)).Where(d => Path.GetFileName(d) != "l");

    void AssertNoLayerMounts() =>
        Assert.DoesNotContain(MountTable.Read(), m => m.MountPoint.StartsWith(Posix.RealPath(Store) + "/", StringComparison.Ordinal) && IsLayerMount(m.MountPoint));

    protected string StorePath => Store;

    string Store => _temp.Combine("store");

    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        _temp.Dispose();
    }

    (StrataServe Strata, PrivateDockerd Docker) Start(params string[] dockerdArgs)
    {
        string plugin = "strata-test-" + Guid.NewGuid().ToString("N")[..10];
        var strata = new StrataServe(Store, DriverName, plugin, _temp.Combine("strata.log"));
        _owned.Add(strata);
        var docker = new PrivateDockerd(_temp.Dir("docker"), plugin, dockerdArgs);
        _owned.Add(docker);
        return (strata, docker);
    }

    PrivateDockerd StartBuiltIn()
    {
        var docker = new PrivateDockerd(_temp.Dir("docker-overlay2"), "overlay2");
        _owned.Add(docker);
        return docker;
    }

    /// <summary>A tiny rootfs: static busybox and its applets, and a few files in image paths.</summary>
    string RootfsTar()
    {
        string root = _temp.Dir("rootfs");
        Directory.CreateDirectory(Path.Combine(root, "bin"));
        File.Copy("/bin/busybox", Path.Combine(root, "bin", "busybox"));
        foreach (var applet in new[] { "sh", "echo", "rm", "mkdir", "ls", "cat", "true", "mv", "touch", "find", "sort" })
            File.CreateSymbolicLink(Path.Combine(root, "bin", applet), "busybox");
        Directory.CreateDirectory(Path.Combine(root, "etc"));
        File.WriteAllText(Path.Combine(root, "etc", "motd"), "hello\n");
        Directory.CreateDirectory(Path.Combine(root, "data", "sub"));
        File.WriteAllText(Path.Combine(root, "data", "keep"), "keep\n");
        File.WriteAllText(Path.Combine(root, "data", "sub", "gone"), "gone\n");
        string tar = _temp.Combine("rootfs.tar");
        Shell.Run("tar", "-C", root, "-cf", tar, ".").Check("tar");
        return tar;
    }

    const string Changes = "echo new > /etc/new; echo changed >> /etc/motd; rm -rf /data/sub; mkdir /made; touch /made/file";
    const string Show = "cat /etc/new /etc/motd; find /data /made | sort";

    void RequireBusybox()
    {
        if (!File.Exists("/bin/busybox") || Shell.Run("ldd", "/bin/busybox").ExitCode == 0)
            throw new InvalidOperationException("a static /bin/busybox is needed (test.sh installs busybox-static)");
    }

    [DockerFact]
    public void ImportRunDiffCommitAndSaveToOverlay2()
    {
        RequireBusybox();
        var (strata, docker) = Start();
        docker.Ok("import", RootfsTar(), "strata-test:base");
        docker.Ok("run", "--name", "c1", "strata-test:base", "sh", "-c", Changes);
        Assert.Equal("C /data\nD /data/sub\nC /etc\nC /etc/motd\nA /etc/new\nA /made\nA /made/file", docker.Ok("diff", "c1"));
        docker.Ok("commit", "c1", "strata-test:next");
        string seen = docker.Ok("run", "--rm", "strata-test:next", "sh", "-c", Show);
        Assert.Equal("new\nhello\nchanged\n/data\n/data/keep\n/made\n/made/file", seen);
        Assert.Equal(docker.StorageDriver, docker.Ok("inspect", "--format", "{{.GraphDriver.Name}}", "c1"));
        Assert.Contains($"\"{Posix.RealPath(Store)}/{DriverName}/", docker.Ok("inspect", "--format", "{{json .GraphDriver.Data}}", "c1")); // GetMetadata

        // the same image through docker save into a dockerd with its built-in overlay2
        string saved = _temp.Combine("next.tar");
        docker.Ok("save", "-o", saved, "strata-test:next");
        var builtIn = StartBuiltIn();
        builtIn.Ok("load", "-i", saved);
        Assert.Equal(seen, builtIn.Ok("run", "--rm", "strata-test:next", "sh", "-c", Show));
        // every file of the image, with its type, mode, owner and size, as each daemon exports it
        string mine = Exported(docker);
        output.WriteLine(mine);
        Assert.Equal(mine, Exported(builtIn));
        Assert.Contains(" etc/new", mine);
        Assert.Contains("\"ID\"", strata.Log()); // the layers came through the plugin
    }

    string Exported(PrivateDockerd d)
    {
        string id = d.Ok("create", "strata-test:next", "true");
        string tar = _temp.Combine($"export-{id}.tar");
        d.Ok("export", "-o", tar, id);
        d.Ok("rm", id);
        var listing = Shell.Run("tar", "--numeric-owner", "-tvf", tar).Check("tar -t").Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(f => $"{f[0]} {f[1]} {f[2]} {string.Join(' ', f.Skip(5))}") // mode, owner, size, name (not times)
            .Where(l => !l.Contains(" .dockerenv") && !l.Contains(" dev/") && !l.Contains(" etc/hostname") && !l.Contains(" etc/hosts") && !l.Contains(" etc/resolv.conf") && !l.Contains(" proc/") && !l.Contains(" sys/"))
            .Order(StringComparer.Ordinal);
        return string.Join("\n", listing);
    }

    [DockerFact]
    public void DockerInfoShowsStrataStatus()
    {
        var (_, docker) = Start();
        string info = docker.Ok("info");
        Assert.Contains($"Storage Driver: {docker.StorageDriver}\n", info);
        Assert.Contains($"  Strata Driver: {DriverName}\n", info);
        Assert.Contains($"  Root Dir: {Posix.RealPath(Store)}\n", info);
        Assert.Contains("  Layers: 0\n", info);
        if (DriverName == "overlay") Assert.Contains("  Native Overlay Diff: true\n", info);
    }

    [DockerFact]
    public void ContainersStartAfterRestartsOfDockerdAndOfStrata()
    {
        RequireBusybox();
        var (strata, docker) = Start();
        docker.Ok("import", RootfsTar(), "strata-test:base");
        docker.Ok("create", "--name", "c1", "strata-test:base", "sh", "-c", "echo run >> /runs; cat /runs");
        Assert.Equal("run", docker.Ok("start", "-a", "c1"));
        docker.Stop();
        docker.Start();
        Assert.Equal("run\nrun", docker.Ok("start", "-a", "c1"));
        Assert.Equal(0, strata.Stop());
        Assert.False(File.Exists(strata.Socket));
        strata.Start();
        Assert.Equal("run\nrun\nrun", docker.Ok("start", "-a", "c1"));
    }

    [DockerFact]
    public void ARunningContainerOutlivesARestartOfStrata()
    {
        // stopping `strata serve` must not pull the root from under a running container, and the restarted
        // daemon must take over its mount count (no second mount at the next Get, no failed Put at its stop)
        RequireBusybox();
        var (strata, docker) = Start();
        docker.Ok("import", RootfsTar(), "strata-test:base");
        docker.Ok("run", "-d", "--name", "r1", "strata-test:base", "sh", "-c", "echo up > /state; exec sleep 600");
        Assert.Equal(0, strata.Stop());
        strata.Start();
        Assert.Equal("up", docker.Ok("exec", "r1", "cat", "/state"));
        docker.Ok("restart", "-t", "0", "r1");
        Assert.Equal("up", docker.Ok("exec", "r1", "cat", "/state"));
        docker.Ok("rm", "-f", "r1");
        docker.Ok("rmi", "strata-test:base");
        Assert.Empty(Directory.GetFiles(Path.Combine(Store, "layers")));
        AssertNoLayerMounts();
        Assert.DoesNotContain("fail", strata.Log(), StringComparison.OrdinalIgnoreCase);
    }

    [DockerFact]
    public void RemovingEverythingLeavesTheStoreEmpty()
    {
        RequireBusybox();
        var (strata, docker) = Start();
        docker.Ok("import", RootfsTar(), "strata-test:base");
        docker.Ok("run", "--name", "c1", "strata-test:base", "sh", "-c", Changes);
        docker.Ok("commit", "c1", "strata-test:next");
        docker.Ok("create", "--name", "c2", "strata-test:next", "true");
        docker.Ok("rm", "-f", "c1", "c2");
        docker.Ok("system", "prune", "-af");
        Assert.Equal("", docker.Ok("images", "-q"));
        Assert.Empty(Directory.GetFiles(Path.Combine(Store, "layers")));
        Assert.Empty(Directory.GetFiles(Path.Combine(Store, "mounts")));
        Assert.Empty(LeftoverData());
        AssertNoLayerMounts();
        Assert.DoesNotContain("fail", strata.Log(), StringComparison.OrdinalIgnoreCase);
    }

    [DockerFact]
    public void DockerdsStorageOptionsPickTheDriverOfAnEmptyStore()
    {
        string other = DriverName == "overlay" ? "vfs" : "overlay";
        var (strata, docker) = Start("--storage-opt", "strata.driver=" + other);
        string info = docker.Ok("info");
        Assert.Contains(other == "vfs" ? "  Reflink Copies: " : "  Native Overlay Diff: ", info);
        Assert.StartsWith(other + "\n", File.ReadAllText(Path.Combine(Store, "driver")));
        Assert.Contains($"uses driver {other}", strata.Log());
    }

    [DockerFact]
    public void ErrorsReachTheDockerUser()
    {
        RequireBusybox();
        var (_, docker) = Start();
        docker.Ok("import", RootfsTar(), "strata-test:base");
        var r = docker.Docker("run", "--rm", "--storage-opt", "size=lots", "strata-test:base", "true");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains(DriverName == "vfs" ? "vfs does not support storage options (size)" : "size 'lots' is not a size", r.Stderr);
    }
}

public sealed class DockerOnOverlayTests(ITestOutputHelper output) : DockerPluginTests(output)
{
    protected override string DriverName => "overlay";
}

public sealed class DockerOnVfsTests(ITestOutputHelper output) : DockerPluginTests(output)
{
    protected override string DriverName => "vfs";
}

/// <summary>dockerd on the thin driver: every image layer and container a thin device with ext4, attached by the pool
/// server that `strata serve`'s thin driver starts.</summary>
public sealed class DockerOnThinTests(ITestOutputHelper output) : DockerPluginTests(output)
{
    protected override string DriverName => "thin";

    protected override bool IsLayerMount(string mountPoint) => mountPoint != Path.Combine(Posix.RealPath(StorePath), "thin", "dev");

    protected override IEnumerable<string> LeftoverData() => Directory.GetFileSystemEntries(Path.Combine(StorePath, "thin", "mnt"));
}
