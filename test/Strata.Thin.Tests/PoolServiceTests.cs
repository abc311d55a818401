using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;
using Strata.Testing;
using Strata.Thin.Service;

namespace Strata.Thin.Tests;

/// <summary>The pool service: its wire codec, its dispatcher, and that the same calls on a <see cref="LocalPool"/> and on
/// a <see cref="RemotePool"/> (through a server on a unix socket, dispatching to a LocalPool as `strata pool serve`
/// does) give the same results and the same errors.</summary>
public sealed class PoolServiceTests : IDisposable
{
    readonly TempRoot _temp = new();

    public void Dispose() => _temp.Dispose();

    static readonly PoolCall[] EveryCall =
    [
        new CreateCall("d", 1 << 20, "layer x"), new SnapshotCall("d", "s"), new DeleteCall("d", Defer: true, Owner: "o", Force: true),
        new ResizeCall("d", 2 << 20), new RollbackCall("d", "s", "layer d", Force: true), new DeviceCall("d"), new DeviceNamesCall(), new DevicesCall(), new StatusCall(),
        new SuperblockProblemsCall(), new AttachCall("d"), new DetachCall("d"), new AttachedCall("d"), new ReadCall("d", 5, 7),
        new WriteCall("d", 9), new CheckCall(), new DumpCall(), new DisksCall(new DiskChange(DiskAction.Replace, "/a", "/b", 1 << 30)), new ScrubCall(Repair: true),
        new StatsCall(["a", "b"]),
    ];

    [Fact]
    public void EveryCallRoundTripsThroughTheCodecUnderANameOfItsOwn()
    {
        foreach (var call in EveryCall)
        {
            var body = new MemoryStream([.. PoolWire.EncodeCall(call), 1, 2, 3]);
            Assert.Equal(call, PoolWire.ReadCall(body));
            Assert.Equal(3, body.Length - body.Position); // a write's bytes follow the call, untouched
        }
        Assert.Equal(EveryCall.Length, EveryCall.Select(PoolWire.NameOf).Distinct().Count());
        Assert.Equal(EveryCall.Length, PoolServiceJson.Default.PoolCall.PolymorphismOptions!.DerivedTypes.Count); // none left out here
    }

    [Fact]
    public void AReplyCarriesDataThenAValueOrAnError()
    {
        var call = new ReadCall("d", 0, 3);
        var body = new MemoryStream();
        using (var data = PoolWire.DataWriter(body)) data.Write([1, 2, 3]);
        PoolWire.WriteValue(body, call, Done.Value);
        body.Position = 0;
        var received = new MemoryStream();
        Assert.Equal(Done.Value, PoolWire.ReadReply(body, call, received));
        Assert.Equal([1, 2, 3], received.ToArray());

        body = new MemoryStream();
        PoolWire.WriteError(body, StrataException.NotFound("thin device d does not exist"));
        body.Position = 0;
        var ex = Assert.Throws<StrataException>(() => PoolWire.ReadReply(body, new DeviceCall("d"), null));
        Assert.Equal((ErrorKind.NotFound, "thin device d does not exist"), (ex.Kind, ex.Message));

        // a reply cut short, or data where the call takes none
        Assert.Throws<EndOfStreamException>(() => PoolWire.ReadReply(new MemoryStream([2, 0, 0, 0, 9, (byte)'t']), new DeleteCall("d"), null));
        Assert.Throws<InvalidDataException>(() => PoolWire.ReadReply(new MemoryStream([1, 0, 0, 0, 1, 7]), new DeleteCall("d"), null));
    }

    [Fact]
    public void TheDispatcherAnswersWhatIsNoCallWithOneMalformedLine()
    {
        using var pool = NewLocal("pool");
        foreach (var json in new[] { "[]", "null", "{}", """{"Op":"nothing"}""", """{"Op":"create","Name":"d"}""", """{"Op":"device","Name":null}""", """{"Op":"device","Name":"a\nb","Extra":[]}""" })
        {
            var bytes = Encoding.UTF8.GetBytes(json);
            var request = new MemoryStream([.. new byte[] { 0, 0, 0, (byte)bytes.Length }, .. bytes]);
            var reply = new MemoryStream();
            PoolDispatcher.Serve(pool, request, reply);
            reply.Position = 0;
            var ex = Assert.Throws<StrataException>(() => PoolWire.ReadReply(reply, new DeviceCall("x"), null));
            if (json.Contains("Extra", StringComparison.Ordinal)) Assert.Equal(ErrorKind.NotFound, ex.Kind); // well formed: the pool's answer
            else Assert.True(ex.Kind == ErrorKind.InvalidArgument && ex.Message.StartsWith("malformed request: ", StringComparison.Ordinal), $"{json}: {ex.Kind} {ex.Message}");
        }
    }

    [Fact]
    public void LocalAndRemotePoolsGiveTheSameResultsAndErrors()
    {
        List<string> local, remote;
        using (var pool = NewLocal("local")) local = Transcript(pool, _temp.Combine("local"));
        using (var server = new TestServer(_temp, "remote"))
        using (var pool = new RemotePool(server.Socket))
        {
            Assert.True(pool.Answers());
            remote = Transcript(pool, _temp.Combine("remote"));
        }
        Assert.Equal(local, remote);
        Assert.Contains(local, l => l.StartsWith("write past the end: InvalidArgument: the input runs past the end of device a", StringComparison.Ordinal));
        Assert.Contains(local, l => l.StartsWith("write at the largest offset: InvalidArgument: the input runs past the end of device a", StringComparison.Ordinal));
    }

    [Fact]
    public void AServerOfAnotherVersionIsSaidSoInOneLine()
    {
        // a server that has no endpoint of this version's protocol (an older strata's, still running after an upgrade)
        using var server = new TestServer(_temp, "old", endpoint: "/v1/pool");
        using var pool = new RemotePool(server.Socket);
        var ex = Assert.Throws<StrataException>(() => pool.DeviceNames());
        Assert.Equal(ErrorKind.Unsupported, ex.Kind);
        Assert.Contains("speaks another version of the pool's protocol", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void TheCallersOwnStreamsFailWithTheirOwnErrorsNotTheServers()
    {
        using var server = new TestServer(_temp, "streams");
        using var pool = new RemotePool(server.Socket);
        pool.Create("d", 1 << 20);
        // the output of a read fails (a full disk, a closed pipe): that error, not "the pool server failed"
        var output = Assert.Throws<IOException>(() => pool.Read("d", 0, 1 << 20, new FailingStream("No space left on device")));
        Assert.Equal("No space left on device", output.Message);
        // the input of a write fails
        var input = Assert.Throws<IOException>(() => pool.Write("d", 0, new FailingStream("Input/output error")));
        Assert.Equal("Input/output error", input.Message);
        Assert.Equal("d", pool.Device("d").Name); // the server took both in its stride
    }

    [Fact]
    public void APerCallPoolRunsACallHereWhenNoServerTakesIt()
    {
        using (PoolDirectory.Create(_temp.Combine("gone"), 64 << 20, 8 << 20, ThinPool.DefaultBlockSize)) { }
        File.WriteAllText(Path.Combine(_temp.Combine("gone"), PoolWire.SocketName), ""); // left by a server that is gone
        using (var pool = new PerCallPool(_temp.Combine("gone"), callTimeout: null))
            Assert.Equal("d", pool.Create("d", 1 << 20).Name);
        using var local = Opening(() => LocalPool.Open(_temp.Combine("gone"), TimeSpan.Zero));
        Assert.Equal(["d"], local.DeviceNames());
    }

    /// <summary>A stream whose every read and write fails with an IO error.</summary>
    sealed class FailingStream(string message) : Stream
    {
        public override int Read(byte[] buffer, int offset, int count) => throw new IOException(message);
        public override void Write(byte[] buffer, int offset, int count) => throw new IOException(message);
        public override void Flush() { }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    [Fact]
    public void ACallNoServerTakesIsUnreachable()
    {
        using var pool = new RemotePool(_temp.Combine("nothing.sock"));
        Assert.False(pool.Answers());
        File.WriteAllText(_temp.Combine("nothing.sock"), ""); // a socket's name left behind, no listener
        Assert.False(pool.Answers());
        Assert.Throws<PoolUnreachableException>(() => pool.DeviceNames());
    }

    /// <summary>Opens a pool just made, waiting out the moment a process that another test forks holds a copy of its lock
    /// (the child of a fork has our descriptors until it execs: the pool's flock with them), as PerCallPool does.</summary>
    static T Opening<T>(Func<T> open)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try
            {
                return open();
            }
            catch (StrataException ex) when (ex.Kind == ErrorKind.InUse && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(5);
            }
        }
    }

    LocalPool NewLocal(string name)
    {
        using (PoolDirectory.Create(_temp.Combine(name), 64 << 20, 8 << 20, ThinPool.DefaultBlockSize)) { }
        return Opening(() => LocalPool.Open(_temp.Combine(name), TimeSpan.Zero));
    }

    /// <summary>The same calls on <paramref name="pool"/>, each result or error as a line (device creation times left out,
    /// the pool's directory named POOL).</summary>
    static List<string> Transcript(IPoolService pool, string dir)
    {
        var lines = new List<string>();
        void Step(string what, Func<object?> call)
        {
            string result;
            try
            {
                result = Describe(call());
            }
            catch (StrataException ex)
            {
                result = $"{ex.Kind}: {ex.Message}";
            }
            lines.Add($"{what}: {result.Replace(dir, "POOL", StringComparison.Ordinal)}");
        }
        var pattern = new byte[300_000];
        new Random(18).NextBytes(pattern);
        Step("create", () => pool.Create("a", 4 << 20));
        Step("create again", () => pool.Create("a", 4 << 20));
        Step("create held", () => pool.Create("h", 1 << 20, "layer h"));
        Step("create bad size", () => pool.Create("z", -1));
        Step("write", () => pool.Write("a", 65536 - 7, new MemoryStream(pattern)));
        Step("write past the end", () => pool.Write("a", (4 << 20) - 10, new MemoryStream(new byte[8 << 20])));
        Step("write missing", () => pool.Write("nope", 0, new MemoryStream(pattern)));
        Step("write at the largest offset", () => pool.Write("a", long.MaxValue - 5, new MemoryStream(new byte[10])));
        Step("snapshot", () => pool.Snapshot("a", "s", "layer s"));
        Step("snapshot missing", () => pool.Snapshot("nope", "t"));
        Step("read", () => Hash(to => pool.Read("s", 65536 - 7, pattern.Length, to)));
        Step("read all", () => Hash(to => pool.Read("a", 0, 4 << 20, to)));
        Step("read outside", () => Hash(to => pool.Read("a", 1, 4 << 20, to)));
        Step("resize", () => pool.Resize("a", 8 << 20));
        Step("shrink", () => pool.Resize("a", 1 << 20));
        Step("rollback held", () => pool.Rollback("s", "a"));
        Step("rollback missing", () => pool.Rollback("a", "nope"));
        Step("rollback to itself", () => pool.Rollback("a", "a"));
        Step("device", () => pool.Device("s"));
        Step("device missing", () => pool.Device("nope"));
        Step("names", () => pool.DeviceNames());
        Step("devices", () => pool.Devices());
        Step("delete held", () => pool.Delete("h"));
        Step("delete held by its owner", () => pool.Delete("h", owner: "layer h"));
        Step("delete forced", () => pool.Delete("s", force: true));
        Step("delete missing", () => pool.Delete("nope"));
        Step("status", () => pool.Status());
        Step("problems", () => pool.SuperblockProblems());
        Step("check", () => pool.Check());
        Step("dump", () => Hash(pool.Dump));
        Step("stats", () => pool.Stats());
        Step("stats named", () => pool.Stats(["a"]));
        Step("stats missing", () => pool.Stats(["a", "nope"]));
        Step("attach", () => pool.Attach("a"));
        Step("attached", () => pool.Attached("a"));
        Step("detach", () => { pool.Detach("a"); return null; });
        return lines;
    }

    static string Hash(Action<Stream> write)
    {
        var ms = new MemoryStream();
        write(ms);
        return $"{ms.Length} bytes, sha256 {Convert.ToHexString(SHA256.HashData(ms.ToArray()))}";
    }

    static string Describe(object? value) => value switch
    {
        null => "null",
        ThinDeviceInfo d => $"{d.Name} id {d.Id} size {d.Size} mapped {d.Mapped} exclusive {d.Exclusive} shared {d.Shared} origin {d.Origin} owner {d.Owner ?? "-"}",
        IEnumerable<ThinDeviceInfo> list => string.Join(" | ", list.Select(Describe)),
        IEnumerable<string> list => string.Join(", ", list),
        // the space left on the disk under the data file changes between calls
        PoolInfo i => $"{i.Directory} {i.Layout} {i.Status with { DataBytesAvailable = 0, SuperblockProblems = null }} problems [{string.Join("; ", i.Status.SuperblockProblems ?? [])}] deferred {i.DeferredDeletes} open {i.OpenFiles}",
        // times differ from run to run, and commits with a server's timer
        PoolStats s => string.Join(" | ", s.Devices.Select(d => $"{d.Name} {d with { ReadNs = 0, WriteNs = 0, FlushNs = 0, DiscardNs = 0, BusyNs = 0 }}")) + $" data {s.DataBytesUsed}/{s.DataBytes}",
        PoolCheck c => $"transaction {c.Transaction} devices {c.Devices} mapped {c.MappedBlocks} metadata {c.MetadataBlocksUsed} clean {c.Clean} errors [{string.Join("; ", c.Errors)}] leaks [{string.Join("; ", c.Leaks)}]",
        _ => value.ToString() ?? "",
    };

    /// <summary>A pool served on a unix socket the way `strata pool serve` serves it: Kestrel, one endpoint, the dispatcher
    /// on a <see cref="LocalPool"/> over the open pool.</summary>
    sealed class TestServer : IDisposable
    {
        readonly PoolDirectory _dir;
        readonly WebApplication _app;

        public TestServer(TempRoot temp, string name, string endpoint = PoolWire.Endpoint)
        {
            using (PoolDirectory.Create(temp.Combine(name), 64 << 20, 8 << 20, ThinPool.DefaultBlockSize)) { }
            _dir = Opening(() => PoolDirectory.Open(temp.Combine(name), TimeSpan.Zero));
            Socket = temp.Combine(name + ".sock");
            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory, Args = ["--hostBuilder:reloadConfigOnChange=false"] });
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.AllowSynchronousIO = true;
                k.Limits.MaxRequestBodySize = null;
                k.ListenUnixSocket(Socket);
            });
            _app = builder.Build();
            var service = new LocalPool(_dir);
            _app.MapPost(endpoint, async context => await PoolDispatcher.ServeAsync(service, context.Request.Body, context.Response.Body, context.RequestAborted));
            _app.StartAsync().GetAwaiter().GetResult();
        }

        public string Socket { get; }

        public void Dispose()
        {
            try
            {
                _app.StopAsync().GetAwaiter().GetResult();
                ((IDisposable)_app).Dispose();
            }
            finally
            {
                _dir.Dispose();
            }
        }
    }
}
