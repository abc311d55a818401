using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Strata.Core;
using Strata.Testing;

namespace Strata.Daemon.Tests;

/// <summary>`strata serve`'s daemon run in this process on a private store and plugin directory, and an HTTP
/// client on its plugin socket speaking as dockerd does (POST of JSON to /GraphDriver.Method).</summary>
sealed class PluginServer : IDisposable
{
    readonly CancellationTokenSource _stop = new();
    readonly Task _run;
    readonly SocketsHttpHandler _handler;
    readonly ErrorLog _errors = new();

    public PluginServer(TempRoot temp, string driver, IReadOnlyDictionary<string, string>? driverOptions = null)
    {
        Store = temp.Combine("store");
        string plugins = temp.Dir("plugins-" + Guid.NewGuid().ToString("N")[..8]);
        Socket = Path.Combine(plugins, "strata-test.sock");
        _run = Task.Run(() => StrataDaemon.RunAsync(new DaemonOptions
        {
            Store = new StoreOptions { Root = Store, Driver = driver, DriverOptions = driverOptions ?? new Dictionary<string, string>() },
            DockerPlugin = "strata-test",
            PluginDir = plugins,
            LogLevel = LogLevel.Warning,
            AlsoLogTo = _errors,
        }, _stop.Token));
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!Answers())
        {
            if (_run.IsCompleted) _run.GetAwaiter().GetResult(); // its failure, as it was
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the daemon did not start");
            Thread.Sleep(50);
        }
        _handler = Strata.Native.UnixSocketHttp.Handler(Socket);
        Http = new HttpClient(_handler) { BaseAddress = new Uri("http://plugin/"), Timeout = TimeSpan.FromSeconds(60) };
    }

    public string Store { get; }
    public string Socket { get; }
    public HttpClient Http { get; }

    bool Answers()
    {
        if (!File.Exists(Socket)) return false;
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            s.Connect(new UnixDomainSocketEndPoint(Socket));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>What the daemon logged as an error or with an exception (a stack trace), one string each.</summary>
    public List<string> Errors() => _errors.Entries();

    /// <summary>A POST as it is (synchronous: the daemon answers from other threads).</summary>
    public HttpResponseMessage Post(string path, HttpContent? content) =>
        Http.Send(new HttpRequestMessage(HttpMethod.Post, path) { Content = content });

    public static string Text(HttpResponseMessage response) => new StreamReader(response.Content.ReadAsStream()).ReadToEnd();

    public static byte[] Bytes(HttpResponseMessage response)
    {
        using var ms = new MemoryStream();
        response.Content.ReadAsStream().CopyTo(ms);
        return ms.ToArray();
    }

    /// <summary>One call: the status code and the reply's JSON.</summary>
    public (int Status, JsonElement Reply) Call(string method, string json = "{}")
    {
        using var content = new StringContent(json, Encoding.UTF8);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = Post("GraphDriver." + method, content);
        string body = Text(response);
        return ((int)response.StatusCode, JsonDocument.Parse(body).RootElement.Clone());
    }

    /// <summary>A call that must succeed; its reply.</summary>
    public JsonElement Ok(string method, string json = "{}")
    {
        var (status, reply) = Call(method, json);
        Assert.True(status == 200, $"{method}: {status} {reply}");
        Assert.False(reply.TryGetProperty("Err", out var err) && err.GetString() is { Length: > 0 }, $"{method}: {reply}");
        return reply;
    }

    /// <summary>A call that must fail with {"Err": "..."}; the message.</summary>
    public string Err(string method, string json = "{}")
    {
        var (status, reply) = Call(method, json);
        Assert.NotEqual(200, status);
        return reply.GetProperty("Err").GetString()!;
    }

    /// <summary>SIGTERM's path: stop taking requests, finish those in flight, release the store.</summary>
    public void Stop()
    {
        if (_run.IsCompleted) return;
        _stop.Cancel();
        Assert.True(_run.Wait(TimeSpan.FromSeconds(90)), "the daemon did not stop");
    }

    public void Dispose()
    {
        try
        {
            Stop();
        }
        finally
        {
            Http.Dispose();
            _handler.Dispose();
        }
    }
}

/// <summary>Keeps the log entries that are errors or carry an exception.</summary>
sealed class ErrorLog : ILoggerProvider, ILogger
{
    readonly List<string> _entries = [];

    public List<string> Entries()
    {
        lock (_entries) return [.. _entries];
    }

    public ILogger CreateLogger(string categoryName) => this;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (logLevel < LogLevel.Error && exception is null) return;
        lock (_entries) _entries.Add($"{logLevel}: {formatter(state, exception)} {exception}");
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public void Dispose() { }
}
