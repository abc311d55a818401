// A private containerd for tests, configured with contrib/containerd/config.toml, and the calls the tests make to it.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>Debian's containerd (1.6) with its own root, state dir, gRPC socket and config.toml under <c>dir</c>, started
/// by pid and stopped by pid on dispose. Its config is contrib/containerd/config.toml as shipped (the proxy plugin
/// "strata", the CRI plugin's snapshotter "strata" with snapshot annotations) with the snapshotter socket's address
/// replaced, plus the private paths. Containers it runs keep their runc state and IO fifos under <c>dir</c> too; on dispose
/// the tasks, containers and images of every namespace the tests used are removed, and any shim left is killed by pid.</summary>
sealed class PrivateContainerd : IDisposable
{
    /// <summary>The snapshotter socket's address in contrib/containerd/config.toml, replaced by the test's.</summary>
    public const string ContribSocket = "/run/strata/snapshotter.sock";

    const string SearchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(2);

    readonly string _dir;
    readonly HashSet<string> _namespaces = new(StringComparer.Ordinal);
    Process? _process;

    public PrivateContainerd(string dir, string snapshotterSocket)
    {
        _dir = dir;
        Directory.CreateDirectory(dir);
        Directory.CreateDirectory(RuncRoot);
        Directory.CreateDirectory(FifoDir);
        File.WriteAllText(ConfigFile, Config(File.ReadAllText(ContribConfig), snapshotterSocket));
        Start();
    }

    /// <summary>contrib/containerd/config.toml of this repository.</summary>
    public static string ContribConfig => Path.Combine(RepositoryRoot(), "contrib", "containerd", "config.toml");

    public string Socket => Path.Combine(_dir, "containerd.sock");
    public string ConfigFile => Path.Combine(_dir, "config.toml");
    public string StateDir => Path.Combine(_dir, "state");
    public string RuncRoot => Path.Combine(_dir, "runc");
    public string FifoDir => Path.Combine(_dir, "fifo");

    /// <summary>Where the runc shim mounts container <paramref name="id"/>'s rootfs.</summary>
    public string RootfsOf(string ns, string id) => Path.Combine(StateDir, "io.containerd.runtime.v2.task", ns, id, "rootfs");

    public string Log() => Processes.ReadLog(Path.Combine(_dir, "containerd.log"));

    string Config(string contrib, string snapshotterSocket)
    {
        if (!contrib.Contains(ContribSocket, StringComparison.Ordinal))
            throw new InvalidOperationException($"{ContribConfig} does not name {ContribSocket}");
        // top-level keys before the contrib file's tables, our tables after them
        return $"""
            root = "{Path.Combine(_dir, "root")}"
            state = "{StateDir}"

            {contrib.Replace(ContribSocket, snapshotterSocket, StringComparison.Ordinal)}

            [grpc]
              address = "{Socket}"

            [plugins."io.containerd.internal.v1.opt"]
              path = "{Path.Combine(_dir, "opt")}"
            """;
    }

    void Start()
    {
        var psi = new ProcessStartInfo("containerd") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true, WorkingDirectory = "/" };
        psi.ArgumentList.Add("--config");
        psi.ArgumentList.Add(ConfigFile);
        psi.Environment["PATH"] = SearchPath; // the runc shim and runc
        _process = Process.Start(psi)!;
        var log = new StreamWriter(Path.Combine(_dir, "containerd.log"), append: true);
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) { log.WriteLine(e.Data); log.Flush(); } };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) { log.WriteLine(e.Data); log.Flush(); } };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (Run("ctr", ["--address", Socket, "version"]).ExitCode != 0)
        {
            if (_process.HasExited || DateTime.UtcNow > deadline)
            {
                Processes.Stop(_process, TimeSpan.FromSeconds(30));
                _process = null;
                throw new InvalidOperationException($"containerd did not start: {Tail()}");
            }
            Thread.Sleep(100);
        }
    }

    public string Tail(int lines = 30) => string.Join("\n", Log().Split('\n').TakeLast(lines));

    /// <summary>`ctr --address SOCK --namespace NS ARGS`; the namespace is cleaned up on dispose.</summary>
    public Shell.Result Ctr(string ns, params string[] args)
    {
        lock (_namespaces) _namespaces.Add(ns);
        return Run("ctr", ["--address", Socket, "--namespace", ns, .. args]);
    }

    /// <summary>As <see cref="Ctr"/>, failing the test (with containerd's log) unless it succeeds; returns stdout.</summary>
    public string CtrOk(string ns, params string[] args)
    {
        var r = Ctr(ns, args);
        Assert.True(r.ExitCode == 0, $"ctr -n {ns} {string.Join(' ', args)} failed ({r.ExitCode}): {r.Stderr}{r.Stdout}\ncontainerd log:\n{Tail()}");
        return r.Stdout;
    }

    /// <summary>`ctr run` with the container's runc state and IO fifos under this containerd's directory.</summary>
    public Shell.Result CtrRun(string ns, params string[] args) =>
        Ctr(ns, ["run", "--runc-root", RuncRoot, "--fifo-dir", FifoDir, .. args]);

    /// <summary>Kubernetes' image pull: the CRI plugin's ImageService/PullImage (gRPC over containerd's socket), which
    /// unpacks with the snapshotter and the annotations of the CRI config (containerd.io/snapshot.ref on each layer's
    /// Prepare). The images land in namespace k8s.io; returns the image id.</summary>
    public async Task<string> CriPullImage(string image)
    {
        lock (_namespaces) _namespaces.Add("k8s.io");
        // runtime.v1.PullImageRequest { ImageSpec image = 1 { string image = 1 } }
        byte[] spec = Field(1, Encoding.UTF8.GetBytes(image));
        byte[] message = Field(1, spec);
        var frame = new byte[5 + message.Length]; // gRPC: uncompressed flag, big-endian length, message
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(1), message.Length);
        message.CopyTo(frame, 5);
        using var http = new HttpClient(Strata.Native.UnixSocketHttp.Handler(Socket)) { Timeout = CommandTimeout };
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://containerd/runtime.v1.ImageService/PullImage")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(frame),
        };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        using var response = await http.SendAsync(request); // HTTP/2 has no synchronous client
        byte[] body = await response.Content.ReadAsByteArrayAsync();
        string? status = Header(response, "grpc-status");
        Assert.True(status == "0", $"CRI PullImage {image}: grpc-status {status} {Header(response, "grpc-message")}\ncontainerd log:\n{Tail()}");
        // runtime.v1.PullImageResponse { string image_ref = 1 }
        var reply = body.AsSpan(5);
        Assert.True(reply.Length > 2 && reply[0] == 0x0A, $"CRI PullImage {image}: unexpected reply {Convert.ToHexString(reply)}");
        int at = 1;
        int length = ReadVarint(reply, ref at);
        return Encoding.UTF8.GetString(reply.Slice(at, length));
    }

    static string? Header(HttpResponseMessage response, string name) =>
        response.TrailingHeaders.TryGetValues(name, out var v) || response.Headers.TryGetValues(name, out v) ? v.FirstOrDefault() : null;

    static byte[] Field(int number, byte[] value)
    {
        var bytes = new List<byte> { (byte)(number << 3 | 2) };
        for (uint n = (uint)value.Length; ; n >>= 7)
        {
            if (n < 0x80)
            {
                bytes.Add((byte)n);
                break;
            }
            bytes.Add((byte)(n & 0x7F | 0x80));
        }
        bytes.AddRange(value);
        return [.. bytes];
    }

    static int ReadVarint(ReadOnlySpan<byte> bytes, ref int at)
    {
        int value = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = bytes[at++];
            value |= (b & 0x7F) << shift;
            if (b < 0x80) return value;
        }
    }

    /// <summary>Removes the tasks (killed), containers and images of <paramref name="ns"/>; the images synchronously, so
    /// that containerd's garbage collection has removed what they held when this returns.</summary>
    public void Purge(string ns)
    {
        foreach (var task in Lines(Ctr(ns, "tasks", "ls", "-q").Stdout)) Ctr(ns, "tasks", "rm", "--force", task);
        foreach (var container in Lines(Ctr(ns, "containers", "ls", "-q").Stdout)) Ctr(ns, "containers", "rm", container);
        var images = Lines(Ctr(ns, "images", "ls", "-q").Stdout);
        if (images.Count > 0) Ctr(ns, ["images", "rm", "--sync", .. images]);
    }

    public static List<string> Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    public void Dispose()
    {
        if (_process is null) return;
        List<string> namespaces;
        lock (_namespaces) namespaces = [.. _namespaces];
        foreach (var ns in namespaces)
        {
            try
            {
                Purge(ns);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or TimeoutException)
            {
                // best effort: the shims are killed below in any case
            }
        }
        Processes.Stop(_process, TimeSpan.FromSeconds(30));
        _process = null;
        KillShims();
    }

    /// <summary>The runc shims this containerd started (they outlive it by design), and the container processes under
    /// them, killed by pid.</summary>
    void KillShims()
    {
        var shims = new List<int>();
        var parents = new Dictionary<int, int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                parents[pid] = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], CultureInfo.InvariantCulture);
                string cmdline = File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (cmdline.Contains("containerd-shim", StringComparison.Ordinal) && cmdline.Contains("\0" + Socket + "\0", StringComparison.Ordinal)) shims.Add(pid);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
            {
            }
        }
        foreach (var shim in shims)
        {
            foreach (var (pid, parent) in parents)
                if (parent == shim) Strata.Native.Posix.TryKill(pid, Strata.Native.Posix.SIGKILL);
            Strata.Native.Posix.TryKill(shim, Strata.Native.Posix.SIGKILL);
        }
    }

    /// <summary>Runs a tool with this machine's sbin directories on the PATH; a tool that hangs is killed after
    /// <see cref="CommandTimeout"/> and the test fails.</summary>
    static Shell.Result Run(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["PATH"] = SearchPath;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var outp = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(CommandTimeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish");
        }
        p.WaitForExit();
        return new Shell.Result(p.ExitCode, outp.Result, err.Result);
    }

    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Strata.slnx"))) return dir.FullName;
        throw new InvalidOperationException($"no Strata.slnx above {AppContext.BaseDirectory}");
    }
}
