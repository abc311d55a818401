// A private image registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>Debian's docker-registry serving plain HTTP on 127.0.0.1 at a free port, with its own storage directory and
/// config file under <c>dir</c>; stopped by pid on dispose. <see cref="Push"/> copies an OCI layout's image into it with
/// skopeo.</summary>
sealed class PrivateRegistry : IDisposable
{
    readonly string _dir;
    Process? _process;

    public PrivateRegistry(string dir)
    {
        _dir = dir;
        Directory.CreateDirectory(Path.Combine(dir, "storage"));
        // a port found free may be taken before the registry binds it: then try another
        for (int attempt = 1; ; attempt++)
        {
            Port = FreePort();
            if (TryStart()) return;
            if (attempt == 3) throw new InvalidOperationException($"docker-registry did not start: {Log()}");
        }
    }

    public int Port { get; private set; }

    /// <summary>"127.0.0.1:PORT", the host part of the registry's image references.</summary>
    public string Host => $"127.0.0.1:{Port}";

    /// <summary>Copies image <paramref name="tag"/> of OCI layout <paramref name="layout"/> to NAME:TAG here; returns its
    /// reference (HOST/NAME:TAG).</summary>
    public string Push(string layout, string tag, string name)
    {
        string reference = $"{Host}/{name}:{tag}";
        // our own image from our own layout: no signature policy to apply
        Shell.Run("skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", $"oci:{layout}:{tag}", "docker://" + reference)
            .Check($"skopeo copy to {reference}");
        return reference;
    }

    public string Log() => Processes.ReadLog(Path.Combine(_dir, "registry.log"));

    bool TryStart()
    {
        string config = Path.Combine(_dir, "config.yml");
        File.WriteAllText(config, $"""
            version: 0.1
            log:
              level: info
            storage:
              filesystem:
                rootdirectory: {Path.Combine(_dir, "storage")}
              delete:
                enabled: true
            http:
              addr: {Host}
            """);
        var psi = new ProcessStartInfo("docker-registry") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("serve");
        psi.ArgumentList.Add(config);
        _process = Process.Start(psi)!;
        var log = new StreamWriter(Path.Combine(_dir, "registry.log"), append: true);
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) { log.WriteLine(e.Data); log.Flush(); } };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) { log.WriteLine(e.Data); log.Flush(); } };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited)
            {
                Stop();
                return false;
            }
            try
            {
                using var response = http.Send(new HttpRequestMessage(HttpMethod.Get, $"http://{Host}/v2/"));
                if (response.StatusCode == HttpStatusCode.OK) return true;
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }
            Thread.Sleep(100);
        }
        Stop();
        throw new InvalidOperationException($"docker-registry did not answer on {Host}: {Log()}");
    }

    static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    void Stop()
    {
        if (_process is null) return;
        Processes.Stop(_process, TimeSpan.FromSeconds(30));
        _process = null;
    }

    public void Dispose() => Stop();
}
