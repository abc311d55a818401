// A loopback HTTP server that misbehaves as a real registry will not, for the registry client's error-path tests.
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace Strata.Integration.Tests;

/// <summary>A registry front on 127.0.0.1 that misbehaves on request. Each request is recorded, then matched by its path
/// (without the query, compared exactly): a failure still due (<see cref="FailFirst"/>) answers first; then a route, the
/// last one set for that path: a redirect (<see cref="Redirect"/>, <see cref="RedirectLoop"/>) or a canned response
/// (<see cref="Serve"/>, <see cref="ServeManifest"/>). Anything else is passed to the upstream registry, if there is one,
/// with its method, every header line (Range, Authorization, each Accept) and body, and the upstream's answer is passed
/// back, except that a blob named by <see cref="CutBlob"/> is cut short. Without an upstream, /v2/ answers 200 and
/// anything else 404.</summary>
sealed class RegistryFaultServer : IDisposable
{
    readonly PrivateRegistry? _upstream;
    readonly HttpClient? _client;
    readonly RegistryLoopbackServer _server;
    readonly List<SeenRequest> _seen = [];
    readonly Dictionary<string, int> _failuresDue = new(StringComparer.Ordinal);
    readonly Dictionary<string, HttpStatusCode> _failureStatus = new(StringComparer.Ordinal);
    readonly Dictionary<string, Route> _routes = new(StringComparer.Ordinal);
    readonly Dictionary<string, Cut> _cuts = new(StringComparer.Ordinal);

    /// <summary>A request as the server saw it: method, target (path and query), its Range and Authorization
    /// headers.</summary>
    public sealed record SeenRequest(string Method, string Target, string? Range, string? Authorization);

    abstract record Route;

    sealed record RedirectTo(string Location, HttpStatusCode Status) : Route;

    sealed record Canned(byte[] Body, string ContentType, string? Digest) : Route;

    sealed record Cut(long AfterBytes, int Remaining);

    /// <summary>A fault server in front of <paramref name="upstream"/> (whose CA it trusts), or on its own.</summary>
    public RegistryFaultServer(PrivateRegistry? upstream = null)
    {
        _upstream = upstream;
        _client = upstream?.NewHttpClient();
        _server = new RegistryLoopbackServer(HandleAsync);
    }

    /// <summary>"127.0.0.1:PORT", the host part of image references through this server.</summary>
    public string Host => _server.Host;

    /// <summary>"http://127.0.0.1:PORT".</summary>
    public string Url => $"http://{Host}";

    /// <summary>The requests seen so far, oldest first.</summary>
    public IReadOnlyList<SeenRequest> Requests
    {
        get
        {
            lock (_seen) return [.. _seen];
        }
    }

    /// <summary>The next <paramref name="count"/> requests to <paramref name="path"/> (any method) answer
    /// <paramref name="status"/> with a registry error body; later ones go on to its route or the upstream.</summary>
    public void FailFirst(string path, int count, HttpStatusCode status = HttpStatusCode.ServiceUnavailable)
    {
        lock (_routes)
        {
            _failuresDue[path] = count;
            _failureStatus[path] = status;
        }
    }

    /// <summary>Every request to <paramref name="from"/> answers <paramref name="status"/> with Location
    /// http://HOST<paramref name="to"/> (or <paramref name="to"/> itself when it is an absolute URL).</summary>
    public void Redirect(string from, string to, HttpStatusCode status = HttpStatusCode.TemporaryRedirect) =>
        SetRoute(from, new RedirectTo(to.StartsWith('/') ? Url + to : to, status));

    /// <summary>A redirect loop: <paramref name="path"/> redirects to itself, or, with <paramref name="via"/>, to
    /// <paramref name="via"/>, which redirects back.</summary>
    public void RedirectLoop(string path, string? via = null)
    {
        Redirect(path, via ?? path);
        if (via is not null) Redirect(via, path);
    }

    /// <summary>GET and HEAD of <paramref name="path"/> answer <paramref name="body"/> with
    /// <paramref name="contentType"/>.</summary>
    public void Serve(string path, byte[] body, string contentType) => SetRoute(path, new Canned(body, contentType, null));

    /// <summary>GET and HEAD of /v2/REPOSITORY/manifests/REFERENCE answer <paramref name="manifest"/> with its media type
    /// and Docker-Content-Digest; returns that digest.</summary>
    public string ServeManifest(string repository, string reference, byte[] manifest, string mediaType)
    {
        string digest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(manifest));
        SetRoute($"/v2/{repository}/manifests/{reference}", new Canned(manifest, mediaType, digest));
        return digest;
    }

    /// <summary>The first <paramref name="times"/> GETs of blob <paramref name="digest"/> (from any repository, with or
    /// without Range) pass on the upstream's status and headers, Content-Length included, but only the first
    /// <paramref name="afterBytes"/> bytes of its body, then close the connection. Later GETs pass whole.</summary>
    public void CutBlob(string digest, long afterBytes, int times = 1)
    {
        lock (_routes) _cuts[digest] = new Cut(afterBytes, times);
    }

    /// <summary>A valid OCI image manifest of at least <paramref name="bytes"/> bytes (its size comes from an annotation
    /// of padding), naming one config and one layer that need not exist.</summary>
    public static byte[] HugeManifest(int bytes)
    {
        string zero = "sha256:" + new string('0', 64);
        var manifest = new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = "application/vnd.oci.image.manifest.v1+json",
            ["config"] = new JsonObject { ["mediaType"] = "application/vnd.oci.image.config.v1+json", ["digest"] = zero, ["size"] = 2 },
            ["layers"] = new JsonArray(new JsonObject { ["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip", ["digest"] = zero, ["size"] = 32 }),
            ["annotations"] = new JsonObject { ["org.strata.test.padding"] = new string('x', bytes) },
        };
        return Encoding.UTF8.GetBytes(manifest.ToJsonString());
    }

    void SetRoute(string path, Route route)
    {
        lock (_routes) _routes[path] = route;
    }

    async Task HandleAsync(LoopbackRequest request, LoopbackResponse response)
    {
        string path = request.Path;
        lock (_seen) _seen.Add(new SeenRequest(request.Method, request.Target, request.Header("Range"), request.Header("Authorization")));
        Route? route;
        HttpStatusCode? failure = null;
        int due = 0;
        lock (_routes)
        {
            _routes.TryGetValue(path, out route);
            if (_failuresDue.TryGetValue(path, out due) && due > 0)
            {
                _failuresDue[path] = --due;
                failure = _failureStatus[path];
            }
        }
        if (failure is { } status)
        {
            await response.SendErrorAsync(status, "UNAVAILABLE", $"failing as asked ({due} more)");
            return;
        }
        switch (route)
        {
            case RedirectTo redirect:
                response.Status = redirect.Status;
                response.AddHeader("Location", redirect.Location);
                await response.SendAsync([], null);
                return;
            case Canned canned when request.Method is "GET" or "HEAD":
                response.AddHeader("Docker-Distribution-API-Version", "registry/2.0");
                if (canned.Digest is not null) response.AddHeader("Docker-Content-Digest", canned.Digest);
                await response.SendAsync(canned.Body, canned.ContentType);
                return;
        }
        if (_upstream is not null)
            await ProxyAsync(request, response);
        else if (path == "/v2/")
        {
            response.AddHeader("Docker-Distribution-API-Version", "registry/2.0");
            await response.SendTextAsync("{}", "application/json; charset=utf-8");
        }
        else
            await response.SendErrorAsync(HttpStatusCode.NotFound, "NAME_UNKNOWN", $"nothing at {path}");
    }

    static readonly HashSet<string> s_hopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Host", "Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade", "Proxy-Connection", "Content-Length", "Expect",
    };

    async Task ProxyAsync(LoopbackRequest request, LoopbackResponse response)
    {
        using var forward = new HttpRequestMessage(new HttpMethod(request.Method), _upstream!.Url + request.Target);
        if (request.Body.Length > 0 || request.Header("Content-Length") is not null) forward.Content = new ByteArrayContent(request.Body);
        foreach (var (name, value) in request.HeaderLines)
        {
            if (s_hopByHop.Contains(name)) continue;
            if (!forward.Headers.TryAddWithoutValidation(name, value)) forward.Content?.Headers.TryAddWithoutValidation(name, value);
        }
        // the registry builds Location URLs from these: uploads continue through this server
        forward.Headers.TryAddWithoutValidation("X-Forwarded-Host", Host);
        forward.Headers.TryAddWithoutValidation("X-Forwarded-Proto", "http");
        using var upstream = await _client!.SendAsync(forward, HttpCompletionOption.ResponseHeadersRead);
        response.Status = upstream.StatusCode;
        foreach (var (name, values) in upstream.Headers.Concat(upstream.Content.Headers))
            if (!s_hopByHop.Contains(name))
                foreach (string value in values) response.AddHeader(name, value);
        var output = await response.StartAsync(upstream.Content.Headers.ContentLength);
        await using var body = await upstream.Content.ReadAsStreamAsync();
        long limit = TakeCut(request.Method, request.Path);
        if (limit < 0)
        {
            await body.CopyToAsync(output);
            return;
        }
        byte[] buffer = new byte[64 * 1024];
        for (long sent = 0; sent < limit;)
        {
            int n = await body.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, limit - sent)));
            if (n == 0) break;
            await output.WriteAsync(buffer.AsMemory(0, n));
            sent += n;
        }
        OnCut?.Invoke(); // before the connection closes: the client sees the cut only after it
    }

    /// <summary>Runs when a blob answer has been cut (see <see cref="CutBlob"/>), before its connection is closed: a test
    /// kills (and maybe restarts) the registry there, as if it died mid-blob.</summary>
    public Action? OnCut { get; set; }

    /// <summary>The byte count a GET of <paramref name="path"/> is cut after, or -1 for the whole body.</summary>
    long TakeCut(string method, string path)
    {
        int blobs = path.LastIndexOf("/blobs/", StringComparison.Ordinal);
        if (method != "GET" || blobs < 0) return -1;
        string digest = path[(blobs + "/blobs/".Length)..];
        lock (_routes)
        {
            if (!_cuts.TryGetValue(digest, out var cut) || cut.Remaining == 0) return -1;
            _cuts[digest] = cut with { Remaining = cut.Remaining - 1 };
            return cut.AfterBytes;
        }
    }

    public void Dispose()
    {
        _server.Dispose();
        _client?.Dispose();
    }
}
