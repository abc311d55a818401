using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>`--metrics` of `strata serve` and `strata pool serve`: the text Prometheus' own checker (promtool, Debian's
/// `prometheus`) accepts, holding the requests the CLI made through the daemon (errors counted apart) and the store's
/// layers; and a real Prometheus, started here on loopback with its own data directory, scraping a pool server and
/// answering a PromQL query with the bytes a client wrote.</summary>
[Collection(HeavyIo.Name)]
public sealed class MetricsTests(ITestOutputHelper output) : IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    static void RequirePrometheus()
    {
        foreach (var tool in new[] { "promtool", "prometheus", "curl" })
            if (!Shell.Has(tool)) Assert.Fail($"{tool} is missing (test.sh installs prometheus and curl)");
    }

    static string Scrape(string socket) =>
        Shell.Run("curl", "-sf", "--unix-socket", socket, "http://localhost/metrics").Check("curl /metrics").Stdout;

    /// <summary>promtool's verdict on the text (its lint included); fails the test with what it said.</summary>
    void CheckWithPromtool(string text)
    {
        string file = _temp.Combine("metrics.txt");
        File.WriteAllText(file, text);
        var check = Shell.Run("sh", "-c", $"promtool check metrics < '{file}'");
        output.WriteLine($"promtool: exit {check.ExitCode} {check.Stdout}{check.Stderr}");
        Assert.True(check.ExitCode == 0, $"promtool check metrics refused the output: {check.Stdout}{check.Stderr}");
    }

    [Fact]
    public void TheDaemonsMetricsCountTheCommandsItRanAndPromtoolAcceptsThem()
    {
        RequirePrometheus();
        string root = _temp.Combine("store"), socket = _temp.Combine("metrics.sock");
        using (var serve = new StrataServe(["--root", root, "serve", "--plugin-dir", _temp.Combine("plugins"), "--metrics", socket], socket, _temp.Combine("serve.log")))
        {
            var cli = new Cli(root);
            cli.Ok("layer", "create", "base");
            cli.Ok("layer", "create", "c", "--parent", "base", "--rw");
            cli.Ok("layer", "ls");
            Assert.Equal(3, cli.Run("layer", "inspect", "nosuch").ExitCode);
            // the socket is the daemon's, private
            Assert.Equal("600", Shell.Run("stat", "-c", "%a", socket).Check("stat").Stdout.Trim());
            string text = Scrape(socket);
            Assert.Contains("strata_requests_total{frontend=\"cli\",method=\"layer create\"} 2", text);
            Assert.Contains("strata_requests_total{frontend=\"cli\",method=\"layer inspect\"} 1", text);
            Assert.Contains("strata_request_errors_total{frontend=\"cli\",method=\"layer inspect\"} 1", text);
            Assert.DoesNotContain("strata_request_errors_total{frontend=\"cli\",method=\"layer create\"}", text);
            Assert.Contains("strata_request_duration_seconds_count{frontend=\"cli\",method=\"layer ls\"} 1", text);
            Assert.Contains("strata_layers{kind=\"ro\"} 1", text);
            Assert.Contains("strata_layers{kind=\"rw\"} 1", text);
            // the plugin's socket answers nothing but its protocol, and the metrics socket nothing but /metrics
            Assert.Equal("404", Shell.Run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", socket, "-X", "POST", "http://localhost/v1/command").Stdout);
            CheckWithPromtool(text);
            Assert.Equal(0, serve.Stop());
        }
        Assert.False(File.Exists(socket), "the metrics socket outlived the daemon");
    }

    [Fact]
    public void ARealPrometheusScrapesAPoolServerAndAnswersAQueryWithTheBytesWritten()
    {
        RequirePrometheus();
        var cli = new Cli(_temp.Combine("store"));
        cli.Ok("pool", "create", "--data-size", "256M", "--metadata-size", "16M");
        cli.Ok("pool", "device", "create", "vol", "--size", "64M");
        var (server, started) = PoolServe.Start(cli, null, "--socket", _temp.Combine("nbd.sock"), "--metrics", "127.0.0.1:0");
        Process? prometheus = null;
        try
        {
            string target = System.Text.RegularExpressions.Regex.Match(started, @"metrics on http://(127\.0\.0\.1:\d+)").Groups[1].Value;
            Assert.False(string.IsNullOrEmpty(target), started);
            var data = new byte[3 << 20];
            new Random(4).NextBytes(data);
            var write = cli.Run(data, "pool", "device", "write", "vol");
            Assert.Equal((0, "3145728"), (write.ExitCode, write.Stdout.Trim()));
            CheckWithPromtool(Shell.Run("curl", "-sf", $"http://{target}/metrics").Check("curl").Stdout);

            int port = FreePort();
            string config = _temp.Combine("prometheus.yml");
            File.WriteAllText(config, $"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: strata\n    static_configs:\n      - targets: ['{target}']\n");
            var psi = new ProcessStartInfo("prometheus") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var a in new[] { $"--config.file={config}", $"--storage.tsdb.path={_temp.Dir("tsdb")}", $"--web.listen-address=127.0.0.1:{port}" })
                psi.ArgumentList.Add(a);
            prometheus = Process.Start(psi)!;
            prometheus.ErrorDataReceived += (_, _) => { };
            prometheus.OutputDataReceived += (_, _) => { };
            prometheus.BeginErrorReadLine();
            prometheus.BeginOutputReadLine();

            string query = Uri.EscapeDataString("strata_device_written_bytes_total{device=\"vol\",job=\"strata\"}");
            string? value = null;
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (value != "3145728" && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(500);
                var reply = Shell.Run("curl", "-sf", $"http://127.0.0.1:{port}/api/v1/query?query={query}");
                if (reply.ExitCode != 0) continue; // not up yet
                using var doc = JsonDocument.Parse(reply.Stdout);
                var result = doc.RootElement.GetProperty("data").GetProperty("result");
                value = result.GetArrayLength() == 1 ? result[0].GetProperty("value")[1].GetString() : null;
            }
            Assert.Equal("3145728", value);
        }
        finally
        {
            if (prometheus is not null)
            {
                Shell.Run("kill", "-TERM", prometheus.Id.ToString());
                if (!prometheus.WaitForExit(TimeSpan.FromSeconds(30))) prometheus.Kill();
            }
            PoolServe.Stop(server);
        }
    }

    static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
