using System.Diagnostics;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>A private dockerd (its own data root, exec root, API socket and pid file; no iptables, no
/// bridge), stopped by pid on dispose. With <c>storageDriver</c> a graphdriver plugin, experimental mode.</summary>
sealed class PrivateDockerd : IDisposable
{
    readonly string _dir;
    readonly string[] _extra;
    Process? _process;

    public string Socket => Path.Combine(_dir, "docker.sock");
    public string StorageDriver { get; }

    public PrivateDockerd(string dir, string storageDriver, params string[] extraArgs)
    {
        _dir = dir;
        StorageDriver = storageDriver;
        _extra = extraArgs;
        Start();
    }

    public void Start()
    {
        var psi = new ProcessStartInfo("/usr/sbin/dockerd") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[]
        {
            "--data-root", Path.Combine(_dir, "data"), "--exec-root", Path.Combine(_dir, "exec"), "-H", "unix://" + Socket,
            "--pidfile", Path.Combine(_dir, "docker.pid"), "--iptables=false", "--ip-masq=false", "--bridge=none",
            "--experimental", "-s", StorageDriver,
        }.Concat(_extra)) psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        var log = File.CreateText(Path.Combine(_dir, "dockerd.log"));
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) { log.WriteLine(e.Data); log.Flush(); } };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (Docker("version").ExitCode != 0)
        {
            if (_process.HasExited || DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"dockerd did not start: {Tail()}");
            Thread.Sleep(200);
        }
    }

    public string Tail() => string.Join("\n", Processes.ReadLog(Path.Combine(_dir, "dockerd.log")).Split('\n').TakeLast(15));

    public Shell.Result Docker(params string[] args) => Shell.Run("/usr/bin/docker", ["-H", "unix://" + Socket, .. args]);

    /// <summary>Runs a docker command and returns its stdout, failing the test with dockerd's log if it fails.</summary>
    public string Ok(params string[] args)
    {
        var r = Docker(args);
        Assert.True(r.ExitCode == 0, $"docker {string.Join(' ', args)} failed ({r.ExitCode}): {r.Stderr}\ndockerd log:\n{Tail()}");
        return r.Stdout.TrimEnd('\n');
    }

    public void Stop()
    {
        if (_process is null) return;
        Processes.Stop(_process, TimeSpan.FromSeconds(30));
        _process = null;
    }

    public void Dispose() => Stop();
}

/// <summary>`strata serve` as a child process, stopped by pid (SIGTERM, then SIGKILL) on dispose.</summary>
sealed class StrataServe : IDisposable
{
    readonly string[] _args;
    readonly string _log;
    readonly IReadOnlyDictionary<string, string>? _environment;
    Process? _process;

    public StrataServe(string root, string driver, string pluginName, string logFile, IReadOnlyDictionary<string, string>? environment = null)
    {
        _environment = environment;
        _args = ["--root", root, "--driver", driver, "serve", "--docker-plugin", pluginName, "--log-level", "debug"];
        _log = logFile;
        Socket = $"/run/docker/plugins/{pluginName}.sock";
        Start();
    }

    /// <summary>`strata ARGS` (a serve command line of the caller's), ready once <paramref name="socket"/> exists and it logs
    /// that it serves.</summary>
    public StrataServe(string[] args, string socket, string logFile)
    {
        _args = args;
        _log = logFile;
        Socket = socket;
        Start();
    }

    public string Socket { get; }

    public int Pid => _process?.Id ?? throw new InvalidOperationException("not running");

    public bool IsRunning => _process is not null;

    public void Start()
    {
        // from / as systemd starts it
        var psi = new ProcessStartInfo(Cli.Binary) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true, WorkingDirectory = "/" };
        foreach (var a in _args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("STRATA_ROOT");
        foreach (var (k, v) in _environment ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        _process = Process.Start(psi)!;
        var log = new StreamWriter(_log, append: true);
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) { log.WriteLine(e.Data); log.Flush(); } };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) { log.WriteLine(e.Data); log.Flush(); } };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!File.Exists(Socket) || !Log().Contains("serving store"))
        {
            if (_process.HasExited || DateTime.UtcNow > deadline) throw new InvalidOperationException($"strata serve did not start: {Log()}");
            Thread.Sleep(100);
        }
    }

    public string Log() => Processes.ReadLog(_log);

    /// <summary>SIGTERM, as systemd stops it; returns the exit code.</summary>
    public int Stop()
    {
        if (_process is null) return 0;
        int code = Processes.Stop(_process, TimeSpan.FromSeconds(60));
        _process = null;
        return code;
    }

    public void Dispose() => Stop();
}

static class Processes
{
    /// <summary>A log file another process is still writing ("" before it exists).</summary>
    public static string ReadLog(string path)
    {
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return new StreamReader(f).ReadToEnd();
        }
        catch (IOException)
        {
            return "";
        }
    }

    /// <summary>SIGTERM, wait, then SIGKILL; returns the exit code.</summary>
    public static int Stop(Process p, TimeSpan grace)
    {
        using (p)
        {
            if (!p.HasExited)
            {
                Shell.Run("kill", "-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
                if (!p.WaitForExit(grace)) p.Kill(entireProcessTree: true);
            }
            p.WaitForExit();
            return p.ExitCode;
        }
    }
}
