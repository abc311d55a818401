using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Strata.Testing;
using Strata.Thin;

namespace Strata.Daemon.Tests;

/// <summary>`strata pool serve` run in this process on a fresh pool of sparse files, and an HTTP client on its
/// control socket speaking as <see cref="PoolClient"/> does (a POST of JSON to /v1/pool), but with any body.</summary>
sealed class PoolServer : IDisposable
{
    readonly CancellationTokenSource _stop = new();
    readonly Task _run = Task.CompletedTask;
    readonly SocketsHttpHandler _handler;
    readonly List<string> _log = [];

    public PoolServer(TempRoot temp)
    {
        Pool = temp.Combine("pool");
        using (PoolDirectory.Create(Pool, 64 << 20, 8 << 20, ThinPool.DefaultBlockSize)) { }
        // a child that a parallel test forks holds a copy of the pool lock's descriptor until it execs: a start that
        // finds the pool locked is tried again
        for (int attempt = 0; ; attempt++)
        {
            var started = new TaskCompletionSource();
            _run = Task.Run(() => PoolDaemon.RunAsync(new PoolDaemonOptions
            {
                Pool = Pool,
                NbdSocket = temp.Combine("nbd.sock"),
                Started = (_, _) => started.TrySetResult(),
                Log = line =>
                {
                    lock (_log) _log.Add(line);
                },
            }, _stop.Token));
            if (Task.WaitAny([started.Task, _run], TimeSpan.FromSeconds(60)) == 0) break;
            if (!_run.IsCompleted) throw new TimeoutException("the pool server did not start");
            if (attempt < 20 && _run.Exception?.GetBaseException() is StrataException { Kind: ErrorKind.InUse })
            {
                Thread.Sleep(100);
                continue;
            }
            _run.GetAwaiter().GetResult(); // its failure, as it was
        }
        Socket = Path.Combine(Pool, "strata.sock");
        _handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await s.ConnectAsync(new UnixDomainSocketEndPoint(Socket), ct);
                return new NetworkStream(s, ownsSocket: true);
            },
        };
        Http = new HttpClient(_handler) { BaseAddress = new Uri("http://strata/"), Timeout = TimeSpan.FromSeconds(60) };
    }

    public string Pool { get; }
    public string Socket { get; }
    public HttpClient Http { get; }

    /// <summary>What the server logged (its one-line notices).</summary>
    public List<string> Log()
    {
        lock (_log) return [.. _log];
    }

    /// <summary>One call with <paramref name="body"/> as it is: the status code and the reply's text.</summary>
    public (int Status, string Reply) Call(byte[] body)
    {
        using var response = Http.Send(new HttpRequestMessage(HttpMethod.Post, "v1/pool") { Content = new ByteArrayContent(body) });
        return ((int)response.StatusCode, new StreamReader(response.Content.ReadAsStream()).ReadToEnd());
    }

    public (int Status, string Reply) Call(string json) => Call(Encoding.UTF8.GetBytes(json));

    public PoolReply Reply(string json)
    {
        var (status, text) = Call(json);
        Assert.True(status == 200, $"{json}: {status} {text}");
        return JsonSerializer.Deserialize(text, PoolWireJson.Default.PoolReply)!;
    }

    public void Dispose()
    {
        try
        {
            _stop.Cancel();
            Assert.True(_run.Wait(TimeSpan.FromSeconds(90)), "the pool server did not stop");
        }
        finally
        {
            Http.Dispose();
            _handler.Dispose();
        }
    }
}
