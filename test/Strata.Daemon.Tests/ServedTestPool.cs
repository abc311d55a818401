using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Strata.Testing;
using Strata.Thin;
using Strata.Thin.Service;

namespace Strata.Daemon.Tests;

/// <summary>`strata pool serve` run in this process on a fresh pool of sparse files, and an HTTP client on its
/// control socket speaking as <see cref="RemotePool"/> does (a POST to its endpoint, see <see cref="PoolWire"/>), but with
/// any body.</summary>
sealed class ServedTestPool : IDisposable
{
    readonly CancellationTokenSource _stop = new();
    readonly Task _run = Task.CompletedTask;
    readonly SocketsHttpHandler _handler;
    readonly List<string> _log = [];

    public ServedTestPool(TempRoot temp)
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
        _handler = Strata.Native.UnixSocketHttp.Handler(Socket);
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

    /// <summary>One call with <paramref name="body"/> as it is: the status code and the reply's bytes.</summary>
    public (int Status, byte[] Reply) Call(byte[] body)
    {
        using var response = Http.Send(new HttpRequestMessage(HttpMethod.Post, PoolWire.Endpoint.TrimStart('/')) { Content = new ByteArrayContent(body) });
        using var reply = new MemoryStream();
        response.Content.ReadAsStream().CopyTo(reply);
        return ((int)response.StatusCode, reply.ToArray());
    }

    /// <summary>A request body holding <paramref name="json"/> as its call: its length, then its bytes.</summary>
    public static byte[] Framed(string json)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(json);
        var body = new byte[4 + bytes.Length];
        BinaryPrimitives.WriteInt32BigEndian(body, bytes.Length);
        bytes.CopyTo(body, 4);
        return body;
    }

    /// <summary>The error a reply holds when it is one error frame and nothing else (null: it is not).</summary>
    public static PoolError? ErrorOf(byte[] reply)
    {
        if (reply.Length < 5 || reply[0] != 3 || BinaryPrimitives.ReadInt32BigEndian(reply.AsSpan(1)) != reply.Length - 5) return null;
        try
        {
            return JsonSerializer.Deserialize(reply.AsSpan(5), PoolServiceJson.Default.PoolError);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>A typed call, as <see cref="RemotePool"/> makes it.</summary>
    public T Value<T>(PoolCall<T> call)
    {
        var (status, reply) = Call(PoolWire.EncodeCall(call));
        Assert.True(status == 200, $"{PoolWire.NameOf(call)}: {status}");
        return PoolWire.ReadReply(new MemoryStream(reply), call, null);
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
