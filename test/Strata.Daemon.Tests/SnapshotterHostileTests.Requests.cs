// SnapshotterHostileTests: one client's bad requests: keys, labels, parents, Commit and Mounts of the wrong kind, Remove,
// Update, List's filters, the remote-snapshot label naming garbage.
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Strata.Daemon.Snapshotter.Api;

namespace Strata.Daemon.Tests;

public sealed partial class SnapshotterHostileTests
{
    // ---- keys ----

    [Fact]
    public async Task KeysThatLookLikePathsOrHoldControlCharactersAreKeys()
    {
        // containerd's keys are any string; none is a file name here, so none escapes the store or breaks a message
        string[] keys =
        [
            "../", "..", ".", "../../../../etc/passwd", "/", "//", "/abs", "trailing/", "a//b", "a/../b", "default/1/../../x",
            " ", "\t", "a\nb", "a\rb", "\u0001\u001f", "\u007f", "\u0085", "\u2028", "ключ", "😀", "a\u200Bb", "%2e%2e%2f",
        ];
        foreach (var key in keys)
        {
            await Prepare(key);
            Assert.Equal(key, (await Stat(key)).Name);
            Assert.NotEmpty((await Mounts(key)).Mounts);
            await Fails(StatusCode.AlreadyExists, () => Prepare(key), Escape(key));
            await Fails(StatusCode.AlreadyExists, () => View(key), Escape(key));
        }
        await AssertStoreHolds(keys);
        foreach (var key in keys.Where(k => k.Contains('/')).ToList()) await Commit(key + "-committed", key);
        foreach (var key in keys.Where(k => k.Contains('/'))) await Prepare(key, key + "-committed");
        await Fails(StatusCode.FailedPrecondition, () => Remove("/-committed"));
        foreach (var info in await List()) if (info.Kind != Kind.Committed) await Remove(info.Name);
        foreach (var info in await List()) await Remove(info.Name);
        await AssertStoreHolds();
        Assert.False(File.Exists(Path.Combine(StoreRoot, "snapshots", "..", "..", "etc", "passwd")));
    }

    [Fact]
    public async Task KeysThatAreNoKeysAreInvalidArgumentOnEveryCall()
    {
        await Committed("base", "base-active");
        string tooLong = new('k', 10 * 1024), justOver = new('k', 4097);
        string[] bad = ["", "a\0b", "\0", tooLong, justOver, string.Concat(Enumerable.Repeat("😀", 1024)) + "k"];
        foreach (var key in bad)
        {
            string what = Escape(key);
            if (key.Length > 0) // "" as a parent is "no parent"
            {
                await Fails(StatusCode.InvalidArgument, () => Prepare("child", key), "parent " + what);
                await Fails(StatusCode.InvalidArgument, () => View("child", key), "view parent " + what);
            }
            await Fails(StatusCode.InvalidArgument, () => Prepare(key), what);
            await Fails(StatusCode.InvalidArgument, () => Prepare(key, "base"), what);
            await Fails(StatusCode.InvalidArgument, () => View(key, "base"), what);
            await Fails(StatusCode.InvalidArgument, () => Stat(key), what);
            await Fails(StatusCode.InvalidArgument, () => Mounts(key), what);
            await Fails(StatusCode.InvalidArgument, () => Usage(key), what);
            await Fails(StatusCode.InvalidArgument, () => Remove(key), what);
            await Fails(StatusCode.InvalidArgument, () => Commit(key, "base-active-2"), "commit name " + what);
            await Fails(StatusCode.InvalidArgument, () => Commit("x", key), "commit key " + what);
            await Fails(StatusCode.InvalidArgument, () => Update(new Info { Name = key }), "update " + what);
        }
        string detail = await Fails(StatusCode.InvalidArgument, () => Prepare(tooLong));
        Assert.Contains("10240 bytes", detail);
        Assert.DoesNotContain(tooLong, detail);
        await AssertStoreHolds("base");
    }

    [Fact]
    public async Task AKeyAtTheLimitIsAccepted()
    {
        string ascii = new('k', 4096), wide = string.Concat(Enumerable.Repeat("😀", 1024)), mixed = new string('a', 4094) + "é";
        foreach (var key in new[] { ascii, wide, mixed })
        {
            Assert.Equal(4096, Encoding.UTF8.GetByteCount(key));
            await Prepare(key);
            Assert.Equal(key, (await Stat(key)).Name);
        }
        await Commit(ascii[..4095] + "c", ascii);
        await Prepare("child-of-long", ascii[..4095] + "c");
        await AssertStoreHolds(ascii[..4095] + "c", wide, mixed, "child-of-long");
    }

    [Fact]
    public async Task AnErrorQuotesWholeCharactersOfAKeyInOneLine()
    {
        // messages quote at most 64 characters of a key: the cut must not split a surrogate pair, and a key's line breaks
        // must not break the message
        string pair = new string('a', 63) + "😀" + "tail", breaks = "line1\nline2\r\nline3" + new string('x', 80);
        foreach (var key in new[] { pair, breaks })
        {
            await Prepare(key);
            string detail = await Fails(StatusCode.AlreadyExists, () => Prepare(key));
            Assert.DoesNotContain('\uFFFD', detail);
            await Fails(StatusCode.NotFound, () => Prepare("child", key + "-missing"));
            await Fails(StatusCode.InvalidArgument, () => Prepare("child", key));
        }
        string labelDetail = await Fails(StatusCode.InvalidArgument, () => Prepare("x", labels: Labels((pair + new string('v', 5000), "v"))));
        Assert.DoesNotContain('\uFFFD', labelDetail);
        await AssertStoreHolds(pair, breaks);
    }

    /// <summary>Invalid UTF-8 cannot be put in a protobuf string by a client library, so it goes as raw bytes: keys, a
    /// label and a parent that are no UTF-8, and messages that are no protobuf (a field cut short, a wrong wire type).
    /// Each is InvalidArgument, "malformed request", as the service's own refusals (not the Unknown of an exception from
    /// the generated parser), and makes nothing; a well-formed message sent the same way is served.</summary>
    [Fact]
    public async Task ARequestThatDoesNotParseIsInvalidArgumentAndMakesNothing()
    {
        var invoker = _channels[0].CreateCallInvoker();
        var raw = Marshallers.Create<byte[]>(b => b, b => b);
        Method<byte[], byte[]> Rpc(string name) => new(MethodType.Unary, "containerd.services.snapshots.v1.Snapshots", name, raw, raw);
        async Task<Status> Send(string name, byte[] request) =>
            await StatusOf(() => invoker.AsyncUnaryCall(Rpc(name), null, new CallOptions(), request).ResponseAsync);

        byte[] bad = [0xFF, 0xFE];
        byte[][] prepares =
        [
            .. new byte[][] { [0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [(byte)'a', 0xE2, 0x82], [0xF4, 0x90, 0x80, 0x80] }.Select(key => StringField(2, key)),
            [.. StringField(2, "k"u8), .. StringField(4, [.. StringField(1, bad), .. StringField(2, "v"u8)])],
            [.. StringField(2, "k"u8), .. StringField(4, [.. StringField(1, "l"u8), .. StringField(2, bad)])],
            [.. StringField(2, "k"u8), .. StringField(3, bad)],
            [0x12, 0x0A, (byte)'k'], // the key's length says 10 bytes, one follows
            [0x12], // a tag and nothing after it
            [0x0F], // wire type 7
        ];
        foreach (var request in prepares)
        {
            var status = await Send("Prepare", request);
            Assert.True(status.StatusCode == StatusCode.InvalidArgument && status.Detail.StartsWith("malformed request: ", StringComparison.Ordinal),
                $"{Convert.ToHexString(request)}: {status.StatusCode} {status.Detail}");
        }
        foreach (var name in new[] { "View", "Mounts", "Commit", "Remove", "Stat", "Usage" })
            Assert.Equal(StatusCode.InvalidArgument, (await Send(name, [.. StringField(2, bad)])).StatusCode);
        Assert.Equal(StatusCode.InvalidArgument, (await Send("Update", [.. StringField(2, StringField(1, bad))])).StatusCode);
        using (var list = invoker.AsyncServerStreamingCall(new Method<byte[], byte[]>(MethodType.ServerStreaming, "containerd.services.snapshots.v1.Snapshots", "List", raw, raw),
            null, new CallOptions(), [.. StringField(2, bad)]))
            Assert.Equal(StatusCode.InvalidArgument, (await StatusOf(async () => await list.ResponseStream.MoveNext())).StatusCode);
        await AssertStoreHolds();
        Assert.Equal(StatusCode.OK, (await Send("Prepare", [.. StringField(1, "strata"u8), .. StringField(2, "k"u8)])).StatusCode);
        await AssertStoreHolds("k");
    }

    static byte[] StringField(int number, ReadOnlySpan<byte> value)
    {
        var ms = new MemoryStream();
        var o = new CodedOutputStream(ms);
        o.WriteTag(number, WireFormat.WireType.LengthDelimited);
        o.WriteBytes(ByteString.CopyFrom(value));
        o.Flush();
        return ms.ToArray();
    }

    // ---- labels ----

    [Fact]
    public async Task LabelsPastTheLimitAreInvalidArgumentAndChangeNothing()
    {
        await Prepare("active", labels: Labels(("keep", "1")));
        var over = Labels(("l", new string('v', 4096)));
        var emptyKey = Labels(("", "v"));
        var hugeKeyWithBreaks = Labels(("line\nbreak" + new string('k', 5000), "v"));
        foreach (var labels in new[] { over, emptyKey, hugeKeyWithBreaks })
        {
            await Fails(StatusCode.InvalidArgument, () => Prepare("new", labels: labels));
            await Fails(StatusCode.InvalidArgument, () => View("new", labels: labels));
            await Fails(StatusCode.InvalidArgument, () => Commit("committed", "active", labels));
            var info = new Info { Name = "active" };
            info.Labels.Add(labels);
            await Fails(StatusCode.InvalidArgument, () => Update(info));
            await Fails(StatusCode.InvalidArgument, () => Update(info, "labels"));
        }
        var bigOne = new Info { Name = "active" };
        bigOne.Labels.Add(over);
        await Fails(StatusCode.InvalidArgument, () => Update(bigOne, "labels.l"));
        Assert.Equal(Labels(("keep", "1")), Plain((await Stat("active")).Labels));
        Assert.Equal(Kind.Active, (await Stat("active")).Kind);

        // exactly at the limit: key and value 4096 bytes together
        var atLimit = Labels(("l", new string('v', 4095)), ("😀", new string('v', 4092)));
        await Prepare("at-limit", labels: atLimit);
        Assert.Equal(atLimit, Plain((await Stat("at-limit")).Labels));
        await AssertStoreHolds("active", "at-limit");
    }

    [Fact]
    public async Task ManyLabelsRoundTripAndAMessagePastGrpcsLimitIsResourceExhausted()
    {
        var many = Enumerable.Range(0, 2000).ToDictionary(i => $"containerd.io/gc.ref.content.l.{i}", i => $"sha256:{i:x64}");
        await Prepare("many", labels: many);
        Assert.Equal(many, Plain((await Stat("many")).Labels));
        await Commit("many-c", "many", many);
        Assert.Equal(many, Plain((await List()).Single().Labels));

        // a request of 5 MB (1300 labels of 4000 bytes) is over the server's 4 MiB: gRPC's own answer, before the service
        var huge = Enumerable.Range(0, 1300).ToDictionary(i => $"l{i}", i => new string('v', 4000 - $"l{i}".Length));
        await Fails(StatusCode.ResourceExhausted, () => Prepare("huge", labels: huge));
        await AssertStoreHolds("many-c");
    }

    /// <summary>Snapshots whose labels are each just under the request limit: List still answers a client that takes
    /// containerd's 16 MiB messages (one message may hold one such snapshot, not a hundred).</summary>
    [Fact]
    public async Task ListOfSnapshotsWithLargeLabelsFitsInContainerdsMessages()
    {
        var big = Enumerable.Range(0, 900).ToDictionary(i => $"l{i}", i => new string('v', 4000 - $"l{i}".Length)); // 3.6 MB
        string[] keys = [.. Enumerable.Range(0, 6).Select(i => $"big-{i}")];
        foreach (var key in keys) await Prepare(key, labels: big);
        var infos = await List();
        Assert.Equal(keys, infos.Select(i => i.Name));
        Assert.All(infos, i => Assert.Equal(900, i.Labels.Count));
        // and many small ones go in batches too, each snapshot once
        string[] small = [.. Enumerable.Range(0, 150).Select(i => $"small-{i:D3}")];
        foreach (var key in small) await Prepare(key);
        Assert.Equal([.. keys, .. small], (await List()).Select(i => i.Name));
        await AssertStoreHolds([.. keys, .. small]);
    }

    // ---- parents ----

    [Fact]
    public async Task AParentMustExistAndBeCommitted()
    {
        await Committed("committed", "c-active");
        await Prepare("active", "committed");
        await View("view", "committed");
        // containerd's bolt.go: a missing parent is NotFound, one that is not committed InvalidArgument
        await Fails(StatusCode.NotFound, () => Prepare("x", "missing"));
        await Fails(StatusCode.NotFound, () => View("x", "missing"));
        await Fails(StatusCode.InvalidArgument, () => Prepare("x", "active"));
        await Fails(StatusCode.InvalidArgument, () => View("x", "active"));
        await Fails(StatusCode.InvalidArgument, () => Prepare("x", "view"));
        await Fails(StatusCode.InvalidArgument, () => View("x", "view"));
        await Fails(StatusCode.NotFound, () => Prepare("x", "c-active")); // gone with its Commit
        // the refused children pinned nothing: the parent can go once its real children have
        await Fails(StatusCode.FailedPrecondition, () => Remove("committed"));
        await AssertStoreHolds("committed", "active", "view");
        await Remove("active");
        await Remove("view");
        await Remove("committed");
        await AssertStoreHolds();
    }

    // ---- commit and mounts of the wrong kind ----

    [Fact]
    public async Task CommitAndMountsRefuseTheWrongKind()
    {
        await Committed("committed", "c-active");
        await Prepare("active", "committed");
        await Prepare("active-2");
        await View("view", "committed");
        // bolt.go's CommitActive: not active is FailedPrecondition, a taken name AlreadyExists, a missing key NotFound
        await Fails(StatusCode.FailedPrecondition, () => Commit("view-c", "view"));
        await Fails(StatusCode.FailedPrecondition, () => Commit("committed-c", "committed"));
        await Fails(StatusCode.AlreadyExists, () => Commit("committed", "active"));
        await Fails(StatusCode.AlreadyExists, () => Commit("view", "active"));
        await Fails(StatusCode.AlreadyExists, () => Commit("active-2", "active"));
        await Fails(StatusCode.AlreadyExists, () => Commit("active", "active"));
        await Fails(StatusCode.NotFound, () => Commit("x", "missing"));
        await Fails(StatusCode.NotFound, () => Commit("x", "c-active"));
        // Mounts: containerd's GetSnapshot, "not active or view" is FailedPrecondition
        await Fails(StatusCode.FailedPrecondition, () => Mounts("committed"));
        await Fails(StatusCode.NotFound, () => Mounts("missing"));
        Assert.NotEmpty((await Mounts("view")).Mounts);
        // nothing changed: the active snapshot still commits, under a free name
        Assert.Equal(Kind.Active, (await Stat("active")).Kind);
        await Commit("active-c", "active");
        await AssertStoreHolds("committed", "active-2", "view", "active-c");
    }

    /// <summary>containerd's storage.CommitActive (and its metadata store's Commit) creates the name's bucket
    /// (AlreadyExists) before it checks the key's kind (FailedPrecondition): a view or a committed key onto a taken name
    /// is AlreadyExists there.</summary>
    [Fact]
    public async Task CommitOntoATakenNameIsAlreadyExistsWhateverTheKeysKind()
    {
        await Committed("committed", "c-active");
        await View("view", "committed");
        await Fails(StatusCode.AlreadyExists, () => Commit("committed", "view"));
        await Fails(StatusCode.AlreadyExists, () => Commit("view", "committed"));
        await Fails(StatusCode.AlreadyExists, () => Commit("committed", "committed"));
        await AssertStoreHolds("committed", "view");
    }

    // ---- remove ----

    [Fact]
    public async Task RemoveRefusesParentsAndMissingKeys()
    {
        await Committed("base", "b");
        await Committed("mid", "m", "base");
        await View("view", "mid");
        await Prepare("active", "mid");
        await Fails(StatusCode.FailedPrecondition, () => Remove("base"));
        await Fails(StatusCode.FailedPrecondition, () => Remove("mid"));
        await Fails(StatusCode.NotFound, () => Remove("missing"));
        await Fails(StatusCode.NotFound, () => Remove("b"));
        await Remove("view");
        await Fails(StatusCode.NotFound, () => Remove("view"));
        await Fails(StatusCode.FailedPrecondition, () => Remove("mid"));
        await AssertStoreHolds("base", "mid", "active");
        await Remove("active");
        await Remove("mid");
        await Remove("base");
        await AssertStoreHolds();
    }

    // ---- update ----

    [Fact]
    public async Task UpdateRefusesUnknownFieldsMissingKeysAndMissingInfo()
    {
        await Prepare("k", labels: Labels(("a", "1")));
        var info = new Info { Name = "k", Parent = "elsewhere", Kind = Kind.Committed, Labels = { ["a"] = "2" } };
        foreach (var path in new[] { "parent", "name", "kind", "created_at", "labels.", "labelsx", "", "Labels", "labels..", ".labels" })
            if (path != "labels..") // "labels.." is label "." (containerd's TrimPrefix): allowed
                await Fails(StatusCode.InvalidArgument, () => Update(info, path), $"path '{path}'");
        await Fails(StatusCode.InvalidArgument, () => Update(info, "labels.a", "parent"));
        Assert.Equal(Labels(("a", "1")), Plain((await Stat("k")).Labels)); // a refused mask changed nothing, not even its valid paths
        await Fails(StatusCode.NotFound, () => Update(new Info { Name = "missing", Labels = { ["a"] = "1" } }));
        await Fails(StatusCode.NotFound, () => Update(new Info { Name = "missing" }, "labels.a"));
        await Fails(StatusCode.InvalidArgument, () => Update(null));
        await Fails(StatusCode.InvalidArgument, () => Update(null, "labels"));
        await Fails(StatusCode.InvalidArgument, () => Update(new Info()));
        // the kind and parent given are not the snapshot's, and are ignored as containerd ignores them
        var updated = (await Update(info, "labels.a")).Info;
        Assert.Equal((Kind.Active, "", "2"), (updated.Kind, updated.Parent, updated.Labels["a"]));
        await AssertStoreHolds("k");
    }

    // ---- list ----

    [Fact]
    public async Task MalformedFiltersAreInvalidArgument()
    {
        await Prepare("a", labels: Labels(("containerd.io/gc.root", "x")));
        await Committed("c", "c-active");
        // what containerd's filters parser refuses, and (ours) fields a snapshot's info does not have
        string[] filters =
        [
            "=", "==", "name=", "name=a", "name===a", "name!a", "name~a", "name=!a", ",", "name==a,", ",name==a", "name==a,,kind==active",
            ".", "labels.", "name==", "name==,kind==active", "\"", "labels.\"unterminated", "name==\"unterminated", "name==\"a\nb\"",
            "name==\"\\q\"", "name==\"\\x4\"", "name==\"\\u12\"", "name==/a/", "labels./a/==x", "name==a b", "name==a ", "kind==active\n",
            "name\0==a", "name==a\0", "名前==a", "labels.a-b==1", "labels.\"gc\"x==1", "\u0085", "name~=(", "name~=[a-", "name~=a{2,1}",
            "name~=\\", "name~=(a)\\1", "name~=(?=a)", "name~=(?<=a)b", "nosuchfield==x", "name.x==a", "labels.a.b==c",
            new string('(', 10000), "name~=" + new string('(', 10000), "labels." + new string('k', 100_000) + "x=",
            "name==a,\n" + new string('x', 100_000) + "=", "name==\"" + new string('\\', 9999) + "q\"",
        ];
        foreach (var filter in filters)
        {
            await Fails(StatusCode.InvalidArgument, () => List(filter), Escape(filter));
            await Fails(StatusCode.InvalidArgument, () => List("name==a", filter), "second " + Escape(filter));
        }
        // well-formed ones still work, containerd's way: space before a token, quoted fields and values, Go's escapes,
        // /.../ around a regular expression
        var wellFormed = new (string Filter, string[] Names)[]
        {
            ("labels.\"containerd.io/gc.root\"", ["a"]), ("kind==committed", ["c"]), ("name~=^[ac]$", ["a", "c"]), ("name ==a", ["a"]),
            (" name == a", ["a"]), ("name==\"a\"", ["a"]), ("name==\"\\x61\"", ["a"]), ("name==\"\\u0061\"", ["a"]), ("name==\"\\141\"", ["a"]),
            ("name~=/^c$/", ["c"]), ("name~=|^c$|", ["c"]), ("name==a,kind==active", ["a"]), ("name==a, kind==active", ["a"]),
            ("parent==\"\"", ["a", "c"]), ("labels.\"containerd.io/gc.root\"!=x", ["c"]), ("name==a=b", []), ("name==a\"", []),
        };
        foreach (var (filter, names) in wellFormed) Assert.True(names.SequenceEqual((await List(filter)).Select(i => i.Name)), filter);
        await AssertStoreHolds("a", "c");
    }

    /// <summary>A regular expression that backtracks exponentially over a name, or whose repetitions multiply: List
    /// answers (matching in linear time as Go's RE2 does, or refusing the pattern), never with an exception the service
    /// did not expect.</summary>
    [Fact]
    public async Task ARegularExpressionThatBacktracksForEverGetsAnAnswer()
    {
        string name = new string('a', 40) + "!";
        await Prepare(name);
        foreach (var pattern in new[] { "^(a+)+$", "^(a|aa)+$", "^(a|a?)+$", "(.*a){20}$", "(a{1000}){1000}", "((a{100}){100}){100}" })
        {
            var status = await StatusOf(() => List("name~=" + pattern));
            Assert.True(status.StatusCode is StatusCode.OK or StatusCode.InvalidArgument, $"{pattern}: {status.StatusCode} {status.Detail}");
            if (status.StatusCode == StatusCode.OK) Assert.Empty(await List("name~=" + pattern));
        }
        Assert.Equal([name], (await List("name~=^(a+)+!$")).Select(i => i.Name));
        await AssertStoreHolds(name);
    }

    // ---- the remote-snapshot label ----

    [Fact]
    public async Task ARemoteSnapshotRefNamingGarbageIsACleanErrorOrAPlainPrepare()
    {
        const string Ref = "containerd.io/snapshot.ref";
        string[] plain =
        [
            "garbage", "sha256:", "sha256:zz", "sha256:" + new string('a', 63), "sha256:" + new string('A', 64),
            "sha256:" + new string('a', 65), "sha256:" + new string('a', 64), "sha512:" + new string('a', 128), "../", "../../etc/passwd",
            "/", "default/1/", "default/1/sha256:" + new string('b', 64), "sha256:../../" + new string('a', 58), " ", "a\nb",
            "active-target", "sha256:" + new string('a', 64) + "\n", "sha256:" + new string('a', 4050),
        ];
        await Prepare("active-target");
        int n = 0;
        var made = new List<string> { "active-target" };
        foreach (var target in plain)
        {
            string key = $"extract-{n++}";
            await Prepare(key, labels: Labels((Ref, target)));
            Assert.Equal(Kind.Active, (await Stat(key)).Kind);
            made.Add(key);
        }
        // refused as a label (the pair is over the limit) or as a key (NUL)
        await Fails(StatusCode.InvalidArgument, () => Prepare("x", labels: Labels((Ref, new string('a', 10 * 1024)))));
        await Fails(StatusCode.InvalidArgument, () => Prepare("x", labels: Labels((Ref, "a\0b"))));
        // naming a committed snapshot is the protocol's AlreadyExists; naming the new key itself is a plain Prepare
        await Prepare("c-active");
        await Commit("committed", "c-active", Labels((Ref, "committed"))); // as containerd commits what it unpacked
        await Fails(StatusCode.AlreadyExists, () => Prepare("x", labels: Labels((Ref, "committed"))));
        await Prepare("self", labels: Labels((Ref, "self")));
        made.AddRange(["committed", "self"]);
        // a view ignores the label
        await View("v", labels: Labels((Ref, "committed")));
        made.Add("v");
        await AssertStoreHolds([.. made]);
    }
}
