using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Strata.Core.Containers;
using Strata.Core.Images;
using Strata.Native;
using Strata.Testing;

namespace Strata.Core.Tests;

/// <summary>
/// What `strata run`'s caller changes, as docker reads it: -e and env files (comments, bare keys from the caller's
/// environment, values kept as written), variables laid over the image's, -w, -u and --entrypoint over the image's
/// config (an entrypoint given drops the image's cmd), -v and --read-only in runc's spec, the command looked for as
/// runc will (127/126 before runc starts), and the state a run records on the container.
/// </summary>
public sealed class RunOptionsTests : IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    static readonly Dictionary<string, string> Caller = new() { ["HOME"] = "/root", ["EMPTY"] = "" };

    static string? FromCaller(string key) => Caller.GetValueOrDefault(key);

    [Fact]
    public void AnOptionIsKeyValueOrAKeyFromTheCallersEnvironment()
    {
        Assert.Equal("A=1", ContainerEnv.FromOption("A=1", FromCaller));
        Assert.Equal("A=x=y", ContainerEnv.FromOption("A=x=y", FromCaller));
        Assert.Equal("A=", ContainerEnv.FromOption("A=", FromCaller));
        Assert.Equal("HOME=/root", ContainerEnv.FromOption("HOME", FromCaller));
        Assert.Equal("EMPTY=", ContainerEnv.FromOption("EMPTY", FromCaller));
        Assert.Null(ContainerEnv.FromOption("UNSET", FromCaller)); // left out, as docker does
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => ContainerEnv.FromOption("=1", FromCaller)).Kind);
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => ContainerEnv.FromOption("A B=1", FromCaller)).Kind);
    }

    [Fact]
    public void AnEnvFileIsReadAsDockerReadsIt()
    {
        var content = Encoding.UTF8.GetBytes("\uFEFF# a comment\n\n  A=1\nB= spaced value \nQ=\"quoted\"\r\n   # indented comment\nHOME\nUNSET\nC=a#b\nD=$HOME\n");
        Assert.Equal(["A=1", "B= spaced value ", "Q=\"quoted\"", "HOME=/root", "C=a#b", "D=$HOME"], ContainerEnv.ParseFile("f", content, FromCaller));

        var noName = Assert.Throws<StrataException>(() => ContainerEnv.ParseFile("f", "A=1\n=2\n"u8, FromCaller));
        Assert.Equal("env file f, line 2: no variable name", noName.Message);
        var space = Assert.Throws<StrataException>(() => ContainerEnv.ParseFile("f", "MY VAR=1\n"u8, FromCaller));
        Assert.Equal("env file f, line 1: the variable name 'MY VAR' contains white space", space.Message);
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => ContainerEnv.ParseFile("f", [0x41, 0x3d, 0xff, 0x0a], FromCaller)).Kind);
    }

    [Fact]
    public void AnEnvFileIsAFileOrAPipeAndBounded()
    {
        string file = _temp.Combine("env");
        File.WriteAllText(file, "A=1\n");
        Assert.Equal(["A=1"], ContainerEnv.ReadFile(file, FromCaller));
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => ContainerEnv.ReadFile(_temp.Combine("none"), FromCaller)).Kind);
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => ContainerEnv.ReadFile(_temp.Path, FromCaller)).Kind);
        File.WriteAllBytes(file, new byte[ContainerEnv.MaxFile + 1]);
        Assert.Contains("is more than", Assert.Throws<StrataException>(() => ContainerEnv.ReadFile(file, FromCaller)).Message);

        // bash's <(...) is a pipe: read to its end
        string fifo = _temp.Combine("fifo");
        Shell.Run("mkfifo", fifo).Check("mkfifo");
        using var writer = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", $"printf 'P=piped\\n' > {fifo}"]))!;
        Assert.Equal(["P=piped"], ContainerEnv.ReadFile(fifo, FromCaller));
        writer.WaitForExit();
    }

    [Fact]
    public void TheCallersVariablesReplaceTheImagesInPlace()
    {
        Assert.Equal(["PATH=/opt", "A=2", "B=1", "C=3"], ContainerEnv.Merge(["PATH=/opt", "A=1", "B=1"], ["A=0", "C=3", "A=2"]));
        var p = RuntimeBundle.Process(JsonNode.Parse("""{"Cmd":["sh"],"Env":["A=1"]}"""), "box", [], false, new RunOptions { Env = ["A=2", "HOSTNAME=mine", "PATH=/x"] });
        Assert.Equal(["A=2", "HOSTNAME=mine", "PATH=/x"], p.Env);
    }

    [Fact]
    public void WorkdirUserAndEntrypointReplaceTheImages()
    {
        var config = JsonNode.Parse("""{"Entrypoint":["/bin/tini","--"],"Cmd":["sh"],"WorkingDir":"/app","User":"app"}""");
        var p = RuntimeBundle.Process(config, "c", [], false, new RunOptions { WorkingDir = "/tmp", User = "0:0" });
        Assert.Equal(["/bin/tini", "--", "sh"], p.Args);
        Assert.Equal("/tmp", p.Cwd);
        Assert.Equal("0:0", p.User);

        // an entrypoint given drops the image's cmd (docker: "--entrypoint clears any default command")
        Assert.Equal(["/bin/echo"], RuntimeBundle.Process(config, "c", [], false, new RunOptions { Entrypoint = ["/bin/echo"] }).Args);
        Assert.Equal(["/bin/echo", "hi"], RuntimeBundle.Process(config, "c", ["hi"], false, new RunOptions { Entrypoint = ["/bin/echo"] }).Args);
        // --entrypoint '': neither entrypoint nor cmd
        Assert.Equal(["ls", "/"], RuntimeBundle.Process(config, "c", ["ls", "/"], false, new RunOptions { Entrypoint = [] }).Args);
        var none = Assert.Throws<StrataException>(() => RuntimeBundle.Process(config, "c", [], false, new RunOptions { Entrypoint = [] }));
        Assert.Equal(ErrorKind.InvalidArgument, none.Kind);
        Assert.Contains("--entrypoint ''", none.Message);
    }

    [Fact]
    public void TheWorkingDirectoryIsAbsoluteAndClean()
    {
        Assert.Equal("/a/b", RunOptions.ParseWorkingDir("/a//./b/"));
        Assert.Equal("/", RunOptions.ParseWorkingDir("/"));
        Assert.Equal("the working directory 'tmp' is not an absolute path", Assert.Throws<StrataException>(() => RunOptions.ParseWorkingDir("tmp")).Message);
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => RunOptions.ParseWorkingDir("/a/../b")).Kind);
    }

    [Fact]
    public void ABindMountIsAnExistingHostPathAtAnAbsoluteContainerPath()
    {
        static bool Exists(string p) => p is "/srv/data" or "/etc/hosts" or "/";
        Assert.Equal(new BindMount("/srv/data", "/data", false), BindMount.Parse("/srv/data:/data", Exists));
        Assert.Equal(new BindMount("/srv/data", "/data", true), BindMount.Parse("/srv/data/:/data/:ro", Exists));
        Assert.Equal(new BindMount("/etc/hosts", "/etc/hosts", false), BindMount.Parse("/etc/hosts:/etc//hosts:rw", Exists));

        void Refused(string spec, ErrorKind kind, string words)
        {
            var ex = Assert.Throws<StrataException>(() => BindMount.Parse(spec, Exists));
            Assert.Equal(kind, ex.Kind);
            Assert.Contains(words, ex.Message);
        }
        Refused("/srv/data", ErrorKind.InvalidArgument, "is not SRC:DST[:ro|rw]");
        Refused("/srv/data:/data:ro:z", ErrorKind.InvalidArgument, "is not SRC:DST[:ro|rw]");
        Refused("/srv/data:/data:z", ErrorKind.InvalidArgument, "unknown option 'z'");
        Refused("data:/data", ErrorKind.InvalidArgument, "no named volumes");
        Refused("/srv/data:data", ErrorKind.InvalidArgument, "not an absolute path in the container");
        Refused("/srv/data:/", ErrorKind.InvalidArgument, "cannot be the container's root");
        Refused("/srv/data:/a/../b", ErrorKind.InvalidArgument, "'..'");
        Refused("/srv/none:/data", ErrorKind.NotFound, "the source /srv/none does not exist");
    }

    [Fact]
    public void MountsAndAReadOnlyRootGoInRuncsSpec()
    {
        var spec = JsonNode.Parse("""{"process":{},"mounts":[{"destination":"/proc","type":"proc"},{"destination":"/dev","type":"tmpfs"}]}""")!;
        var options = new RunOptions { ReadOnlyRoot = true, Mounts = [new BindMount("/srv/dev", "/dev", false), new BindMount("/srv/data", "/data", true)] };
        RuntimeBundle.Fill(spec, "0123456789abcdef", "c", "/r", RuntimeBundle.Process(null, "c", ["true"], false, options), (0, 0), options);
        Assert.True(spec["root"]!["readonly"]!.GetValue<bool>());
        var mounts = spec["mounts"]!.AsArray();
        Assert.Equal(["/proc", "/dev", "/data"], mounts.Select(m => m!["destination"]!.GetValue<string>()));
        Assert.Equal("bind", mounts[1]!["type"]!.GetValue<string>()); // ours replaced runc's /dev
        Assert.Equal("/srv/data", mounts[2]!["source"]!.GetValue<string>());
        Assert.Equal(["rbind", "rprivate", "ro"], mounts[2]!["options"]!.AsArray().Select(o => o!.GetValue<string>()));
    }

    static FileStat Kind(FileKind kind, uint permissions) => default(FileStat) with { Mode = (uint)kind | permissions };

    [Fact]
    public void TheCommandIsLookedForAsRuncWill()
    {
        var files = new Dictionary<string, FileStat>
        {
            ["/bin/sh"] = Kind(FileKind.Regular, 0x1ED),
            ["/usr/bin/data"] = Kind(FileKind.Regular, 0x1A4),
            ["/bin/data"] = Kind(FileKind.Regular, 0x1ED),
            ["/etc"] = Kind(FileKind.Directory, 0x1ED),
            ["/etc/file"] = Kind(FileKind.Regular, 0x1A4),
            ["/app/run"] = Kind(FileKind.Regular, 0x1C0),
            ["/proc/self/exe"] = default,
        };
        (ExecutableProblem, string) Check(string cwd, params string[] args) =>
            ExecutableLookup.Check(new BundleProcess { Args = args, Env = ["PATH=/usr/bin:/bin"], Cwd = cwd, User = "", Terminal = false }, p => files.TryGetValue(p, out var s) ? s : null);

        Assert.Equal(ExecutableProblem.None, Check("/", "sh", "-c", "true").Item1);
        Assert.Equal(ExecutableProblem.None, Check("/", "data").Item1); // /usr/bin/data is not executable: the search goes on to /bin
        Assert.Equal(ExecutableProblem.None, Check("/app", "./run").Item1);
        Assert.Equal(ExecutableProblem.None, Check("/", "/proc/self/exe").Item1); // left to runc
        Assert.Equal((ExecutableProblem.NotFound, "\"nosuch\": executable file not found in the container's $PATH"), Check("/", "nosuch"));
        Assert.Equal((ExecutableProblem.NotFound, "\"file\": executable file not found in the container's $PATH"), Check("/etc", "file"));
        Assert.Equal((ExecutableProblem.NotFound, "\"/bin/nosuch\": no such file in the container"), Check("/", "/bin/nosuch"));
        Assert.Equal((ExecutableProblem.NotExecutable, "\"/etc/file\" is not executable in the container (permission denied)"), Check("/", "/etc/file"));
        Assert.Equal((ExecutableProblem.NotExecutable, "\"./file\" is not executable in the container (permission denied)"), Check("/etc", "./file"));
        Assert.Equal(ExecutableProblem.NotExecutable, Check("/", "/etc").Item1);
        Assert.Equal(ExecutableProblem.NotFound, Check("/", "").Item1);
    }

    [Fact]
    public void TheCommandIsLookedForInTheContainersTreeAndItsBindMounts()
    {
        string rootfs = _temp.Dir("rootfs"), host = _temp.Dir("host");
        Directory.CreateDirectory(Path.Combine(rootfs, "bin"));
        File.WriteAllText(Path.Combine(rootfs, "bin", "tool"), "#!/bin/sh\n");
        Shell.Run("chmod", "500", Path.Combine(rootfs, "bin", "tool")).Check("chmod");
        File.CreateSymbolicLink(Path.Combine(rootfs, "bin", "abs"), "/bin/tool"); // absolute: resolved in the container, not the host
        File.WriteAllText(Path.Combine(host, "hosttool"), "");
        Shell.Run("chmod", "500", Path.Combine(host, "hosttool")).Check("chmod");
        BundleProcess P(string arg) => new() { Args = [arg], Env = ["PATH=/bin"], Cwd = "/", User = "", Terminal = false };
        BindMount[] mounts = [new(host, "/opt/host", true)];
        Assert.Equal(ExecutableProblem.None, ExecutableLookup.Check(rootfs, P("tool"), []).Problem);
        Assert.Equal(ExecutableProblem.None, ExecutableLookup.Check(rootfs, P("/bin/abs"), []).Problem);
        Assert.Equal(ExecutableProblem.NotFound, ExecutableLookup.Check(rootfs, P("sh"), []).Problem); // the host's /bin/sh is not the container's
        Assert.Equal(ExecutableProblem.None, ExecutableLookup.Check(rootfs, P("/opt/host/hosttool"), mounts).Problem);
        Assert.Equal(ExecutableProblem.NotFound, ExecutableLookup.Check(rootfs, P("/opt/host/other"), mounts).Problem);
        Assert.Equal(ExecutableProblem.NotFound, ExecutableLookup.Check(rootfs, P("/opt/host/hosttool"), []).Problem);
    }

    [Fact]
    public void ARunIsRecordedOnTheContainer()
    {
        using var layers = LayerStore.Open(new StoreOptions { Root = _temp.Combine("store"), Driver = "vfs" });
        var containers = ContainerStore.For(layers);
        string tar = _temp.Combine("rootfs.tar");
        File.WriteAllBytes(tar, new LayerTar().Dir("etc/").Bytes());
        new ImageImporter(containers.Images).Import(tar, new ImageImporter.Options { Name = "img:1" });
        var c = containers.Create("img:1", "web");
        Assert.Equal(new ContainerState(), containers.StateOf(containers.Get("web")));
        Assert.Null(containers.Get("web").Command);

        // a live runc: running; its pid gone: exited without a code (a pid taken by another program is not the run's)
        string runcName = _temp.Combine("runc");
        File.Copy("/bin/sleep", runcName);
        Shell.Run("chmod", "500", runcName).Check("chmod");
        using var runc = Process.Start(new ProcessStartInfo(runcName, ["600"]))!;
        using var other = Process.Start(new ProcessStartInfo("/bin/sleep", ["600"]))!;
        try
        {
            containers.Started("web", ["sh", "-c", "exit 3"], runc.Id);
            var recorded = containers.Get(c.Id);
            Assert.Equal(["sh", "-c", "exit 3"], recorded.Command);
            Assert.Equal(ContainerState.Running, recorded.State.Status);
            Assert.Equal(runc.Id, recorded.State.Pid);
            Assert.NotNull(recorded.State.StartedAt);
            Assert.Equal(recorded.State, containers.StateOf(recorded));
            runc.Kill();
            runc.WaitForExit();
            var read = containers.StateOf(recorded);
            Assert.Equal(ContainerState.Exited, read.Status);
            Assert.Null(read.ExitCode);
            Assert.Null(read.Pid);
            Assert.Equal(ContainerState.Exited, containers.StateOf(recorded with { State = recorded.State with { Pid = other.Id } }).Status);
        }
        finally
        {
            foreach (var p in new[] { runc, other })
                if (!p.HasExited)
                {
                    p.Kill();
                    p.WaitForExit();
                }
        }

        containers.Exited("web", 3);
        var exited = containers.StateOf(containers.Get("web"));
        Assert.Equal(ContainerState.Exited, exited.Status);
        Assert.Equal(3, exited.ExitCode);
        Assert.Null(exited.Pid);
        Assert.NotNull(exited.FinishedAt);
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => containers.Exited("nosuch", 0)).Kind);

        // a record written before states existed reads as created
        string record = Path.Combine(layers.Root, "containers", c.Id + ".json");
        var old = JsonNode.Parse(File.ReadAllText(record))!.AsObject();
        old.Remove("State");
        old.Remove("Command");
        File.WriteAllText(record, old.ToJsonString());
        Assert.Equal(ContainerState.Created, containers.StateOf(containers.Get("web")).Status);
        containers.Remove("web");
    }
}
