using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Strata.Core.Images;

namespace Strata.Core.Registry;

/// <summary>
/// One registry's distribution API (OCI distribution spec v1.1, Docker registry API v2) for the calls a pull and a push
/// make: manifests, blobs (with <c>Range</c> resume), uploads (monolithic or chunked, cross-repository mounts), tags.
/// It picks the endpoint (HTTPS; plain HTTP only for an insecure or loopback registry; Docker Hub's mirrors first for
/// pulls), trusts the system's CAs plus the registry's certs.d, follows redirects (a loop is an error), answers auth
/// challenges through <see cref="RegistryAuth"/>, and retries with backoff on 5xx, 429 and broken connections.
/// Registry errors become one-line <see cref="StrataException"/>s.
/// </summary>
public sealed class RegistryClient : IDisposable
{
    /// <summary>The largest manifest or index accepted (the distribution spec lets registries refuse bigger ones, and
    /// containerd and Docker stop reading there).</summary>
    public const int MaxManifest = 4 << 20;

    const int MaxRedirects = 10;

    /// <summary>How long a blob's body may send nothing before the connection counts as broken (and is resumed).</summary>
    internal static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(60);

    static readonly string[] ManifestTypes =
        [MediaTypes.OciIndex, MediaTypes.OciManifest, MediaTypes.DockerManifestList, MediaTypes.DockerManifest];

    readonly string _registry;
    readonly RegistrySettings _settings;
    readonly HttpClient _http;
    readonly RegistryAuth _auth;
    readonly List<Uri> _candidates;
    readonly bool _insecure, _plainHttp;
    volatile bool _certificateRefused;
    readonly object _lock = new();
    Uri? _base;
    int _candidate;

    /// <summary>A client for <paramref name="registry"/> (a reference's registry: docker.io, host[:port]) logged in with
    /// <paramref name="credential"/> (null: anonymous). <paramref name="push"/>: no mirrors (they only serve pulls).</summary>
    public RegistryClient(string registry, RegistrySettings settings, RegistryCredential? credential, bool push = false)
    {
        _registry = registry;
        _settings = settings;
        // HTTP is allowed for insecure and loopback registries; an unverified certificate only for those configured
        // insecure by name or range (a loopback registry that speaks TLS is verified: it is reached over HTTP only when
        // it does not speak TLS at all)
        _plainHttp = settings.IsInsecure(registry);
        _insecure = _plainHttp && !IsLoopback(registry) || settings.InsecureRegistries.Contains(registry, StringComparer.OrdinalIgnoreCase);
        string host = registry == ImageReference.DefaultRegistry ? ImageReference.DefaultRegistryHost : registry;
        _candidates = [];
        if (registry == ImageReference.DefaultRegistry && !push) _candidates.AddRange(settings.Mirrors);
        _candidates.Add(new Uri($"https://{host}/"));
        if (_plainHttp) _candidates.Add(new Uri($"http://{host}/"));
        var tls = settings.TlsFor(registry);
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(30),
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
            UseCookies = false,
            UseProxy = false,
            SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificates = tls.ClientCertificates,
                RemoteCertificateValidationCallback = (sender, certificate, chain, errors) => Trusted(sender, certificate, chain, errors, tls.Roots),
            },
        };
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("strata", "1"));
        _auth = new RegistryAuth(registry, credential, r => _http.Send(r, HttpCompletionOption.ResponseHeadersRead));
    }

    /// <summary>The registry as its references name it.</summary>
    public string Registry => _registry;

    /// <summary>Pauses between retries grow from this (tests shorten it).</summary>
    internal TimeSpan Backoff { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The scopes of the bearer tokens this client asks for (repository:NAME:pull, repository:NAME:pull,push).</summary>
    public HashSet<string> Scopes { get; } = new(StringComparer.Ordinal);

    /// <summary>A refresh token the token server handed out while answering (docker login stores it in place of the password).</summary>
    public string? RefreshToken { get; private set; }

    bool Trusted(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors, List<X509Certificate2> roots)
    {
        string target = sender is SslStream s ? s.TargetHostName : "";
        if (errors == SslPolicyErrors.None) return true;
        // an insecure registry's own certificate is not checked (dockerd: insecure-registries skip verification)
        if (_insecure && IsRegistryHost(target)) return true;
        bool trusted = false;
        if (certificate is not null && !errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch) && roots.Count > 0 && IsRegistryHost(target))
        {
            using var custom = new X509Chain();
            custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            custom.ChainPolicy.CustomTrustStore.AddRange(roots.ToArray());
            if (chain is not null) foreach (var e in chain.ChainElements) custom.ChainPolicy.ExtraStore.Add(e.Certificate);
            trusted = custom.Build(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
        }
        if (!trusted && IsRegistryHost(target)) _certificateRefused = true;
        return trusted;
    }

    /// <summary>Whether host[:port] names this machine: 127.0.0.0/8, ::1 or localhost.</summary>
    static bool IsLoopback(string registry)
    {
        string host = registry.StartsWith('[') ? registry[1..registry.IndexOf(']')] : registry.LastIndexOf(':') is var c and > 0 ? registry[..c] : registry;
        return host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip);
    }

    bool IsRegistryHost(string target)
    {
        string host = _registry == ImageReference.DefaultRegistry ? ImageReference.DefaultRegistryHost : _registry;
        if (host.StartsWith('[')) host = host[1..host.IndexOf(']')];
        else if (host.LastIndexOf(':') is var c and > 0) host = host[..c];
        return string.Equals(target, host, StringComparison.OrdinalIgnoreCase);
    }

    // ---- endpoint ----

    /// <summary>The endpoint in use: the first candidate that answers /v2/ (any HTTP answer: 401 means it is there).</summary>
    Uri Base()
    {
        lock (_lock)
        {
            if (_base is not null) return _base;
            Exception? last = null;
            for (; _candidate < _candidates.Count; _candidate++)
            {
                var uri = _candidates[_candidate];
                try
                {
                    using var response = _http.Send(new HttpRequestMessage(HttpMethod.Get, new Uri(uri, "v2/")), HttpCompletionOption.ResponseHeadersRead);
                    return _base = uri;
                }
                catch (HttpRequestException ex)
                {
                    last = ex;
                    // a registry that speaks TLS with a certificate not trusted here is not asked again over plain HTTP
                    if (_certificateRefused) break;
                }
                catch (OperationCanceledException ex)
                {
                    last = ex; // the connect timeout
                }
            }
            _candidate = 0; // all are asked again next time
            // the caller (Send) retries, then reports it
            if (last is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(last);
            throw StrataException.Io($"{_registry}: no endpoint answers");
        }
    }

    /// <summary>Gives up on a mirror that failed a request: the next candidate serves from now on. False when there is none.</summary>
    bool NextEndpoint()
    {
        lock (_lock)
        {
            if (_candidate + 1 >= _candidates.Count || _base is null || !_settings.Mirrors.Contains(_base)) return false;
            _candidate++;
            _base = null;
            return true;
        }
    }

    StrataException Unreachable(HttpRequestException ex)
    {
        string why = Describe(ex);
        if (ex.InnerException is AuthenticationException)
            return new StrataException(ErrorKind.PermissionDenied,
                $"{_registry}: TLS: {why} (put the registry's CA in {Path.Combine(_settings.CertsDirectory, _registry, "ca.crt")}, or list it in insecure-registries)");
        return StrataException.Io($"{_registry}: cannot connect: {why}");
    }

    /// <summary>The innermost reason of a failed request, in one line.</summary>
    internal static string Describe(Exception ex)
    {
        var e = ex;
        while (e.InnerException is not null && e is not SocketException) e = e.InnerException;
        return e is SocketException se ? se.Message : ex.InnerException is { } inner && inner != e ? $"{ex.Message} {e.Message}" : e.Message;
    }

    // ---- requests ----

    /// <summary>Sends a request made by <paramref name="make"/> (called again for each retry, redirect or authorization)
    /// to a path under the endpoint: retries on 5xx, 429 and broken connections, follows redirects (GET and HEAD),
    /// answers auth challenges. Returns the final answer, which may be an error status for the caller to map.</summary>
    HttpResponseMessage Send(Func<Uri, HttpRequestMessage> make, string path, bool retry = true, CancellationToken cancel = default)
    {
        int attempts = retry ? Math.Max(1, _settings.MaxDownloadAttempts) : 1;
        for (int attempt = 1; ; attempt++)
        {
            HttpResponseMessage response;
            try
            {
                response = SendFollowing(make, new Uri(Base(), path), cancel);
            }
            catch (OperationCanceledException) when (!cancel.IsCancellationRequested && attempt < attempts)
            {
                Pause(attempt, cancel); // the connect timeout
                continue;
            }
            catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
            {
                throw StrataException.Io($"{_registry}: cannot connect: timed out");
            }
            catch (HttpRequestException) when (attempt < attempts && !_certificateRefused)
            {
                Pause(attempt, cancel);
                continue;
            }
            catch (HttpRequestException ex)
            {
                throw Unreachable(ex);
            }
            catch (IOException) when (attempt < attempts)
            {
                Pause(attempt, cancel);
                continue;
            }
            catch (IOException ex)
            {
                throw StrataException.Io($"{_registry}: {ex.Message}");
            }
            int status = (int)response.StatusCode;
            if ((status >= 500 || status == 429) && attempt < attempts)
            {
                response.Dispose();
                Pause(attempt, cancel);
                continue;
            }
            return response;
        }
    }

    void Pause(int attempt, CancellationToken cancel = default)
    {
        cancel.WaitHandle.WaitOne(Backoff * (1 << Math.Min(attempt - 1, 6)));
        cancel.ThrowIfCancellationRequested();
    }

    HttpResponseMessage SendFollowing(Func<Uri, HttpRequestMessage> make, Uri uri, CancellationToken cancel)
    {
        bool answered = false;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int hops = 0; ; hops++)
        {
            var request = make(uri);
            // the login goes to the endpoint only: not to another host, nor over plain HTTP when the endpoint is HTTPS
            bool own = uri.GetLeftPart(UriPartial.Authority) == Base().GetLeftPart(UriPartial.Authority);
            if (own) _auth.Apply(request, Scopes);
            var response = _http.Send(request, HttpCompletionOption.ResponseHeadersRead, cancel);
            if (response.StatusCode == HttpStatusCode.Unauthorized && own && !answered)
            {
                bool again;
                string? refresh;
                try
                {
                    again = _auth.Answer(response, Scopes, alreadyAnswered: false, out refresh);
                }
                catch
                {
                    response.Dispose();
                    throw;
                }
                if (refresh is not null) RefreshToken = refresh;
                if (again)
                {
                    response.Dispose();
                    answered = true;
                    hops--;
                    continue;
                }
            }
            if ((int)response.StatusCode is 301 or 302 or 303 or 307 or 308 && response.Headers.Location is { } location
                && (request.Method == HttpMethod.Get || request.Method == HttpMethod.Head))
            {
                response.Dispose();
                var next = location.IsAbsoluteUri ? location : new Uri(uri, location);
                if (!seen.Add(next.AbsoluteUri) || hops >= MaxRedirects)
                    throw StrataException.Io($"{_registry}: redirect loop at {Shown(next)} (after {hops + 1} redirects)");
                if (next.Scheme is not ("https" or "http")) throw StrataException.Invalid($"{_registry}: redirect to {Shown(next)}, which is not HTTP");
                uri = next;
                continue;
            }
            return response;
        }
    }

    static string Shown(Uri uri) => uri.GetLeftPart(UriPartial.Path) is var s && s.Length > 120 ? s[..120] + "..." : uri.GetLeftPart(UriPartial.Path);

    /// <summary>The error an unexpected answer means, in one line, with the registry's own words when it gave some
    /// (<c>{"errors":[{"code","message"}]}</c>).</summary>
    StrataException Failure(HttpResponseMessage response, string what)
    {
        string detail = "";
        try
        {
            var body = ReadLimited(response, 64 << 10, what, refuse: false);
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("errors", out var errors) && errors.ValueKind == JsonValueKind.Array)
                detail = string.Join("; ", errors.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Object).Select(e =>
                    (e.TryGetProperty("message", out var m) ? m.ToString() : "") + (e.TryGetProperty("code", out var c) ? $" ({c})" : "")));
            if (detail.Length > 300) detail = detail[..300] + "...";
        }
        catch (Exception ex) when (ex is JsonException or IOException or HttpRequestException or StrataException or InvalidOperationException or OperationCanceledException)
        {
        }
        int status = (int)response.StatusCode;
        string message = $"{what}: {(detail.Length > 0 ? detail : $"{status} {response.ReasonPhrase}")}";
        return response.StatusCode switch
        {
            HttpStatusCode.NotFound => StrataException.NotFound(message),
            HttpStatusCode.Unauthorized => StrataException.PermissionDenied(message + (_auth.Challenged ? "" : "") + $"; log in with strata login {_registry}, or check the repository's name"),
            HttpStatusCode.Forbidden => StrataException.PermissionDenied(message),
            HttpStatusCode.BadRequest or HttpStatusCode.MethodNotAllowed => StrataException.Invalid(message),
            HttpStatusCode.RequestEntityTooLarge => StrataException.Invalid(message),
            _ => StrataException.Io(message),
        };
    }

    /// <summary>A response's body, at most <paramref name="limit"/> bytes (more: Invalid naming <paramref name="what"/>,
    /// or cut there when not <paramref name="refuse"/>).</summary>
    internal static byte[] ReadLimited(HttpResponseMessage response, int limit, string what, bool refuse = true)
    {
        if (refuse && response.Content.Headers.ContentLength is long declared && declared > limit)
            throw StrataException.Invalid($"{what} is {declared} bytes, more than the {limit} accepted");
        using var stream = response.Content.ReadAsStream();
        var buffer = new MemoryStream();
        var chunk = new byte[1 << 16];
        int n;
        while ((n = stream.Read(chunk, 0, chunk.Length)) > 0)
        {
            buffer.Write(chunk, 0, n);
            if (buffer.Length > limit)
            {
                if (!refuse) break;
                throw StrataException.Invalid($"{what} is more than the {limit} bytes accepted");
            }
        }
        return buffer.ToArray();
    }

    // ---- the API ----

    /// <summary>Checks that the registry answers /v2/ with this client's login (`docker login`).</summary>
    public void Ping()
    {
        using var response = Send(u => new HttpRequestMessage(HttpMethod.Get, u), "v2/");
        if (!response.IsSuccessStatusCode)
        {
            if (response.StatusCode == HttpStatusCode.Unauthorized)
                throw StrataException.PermissionDenied($"{_registry}: login refused (wrong user name or password?)");
            throw Failure(response, _registry);
        }
    }

    /// <summary>A manifest or index as the registry has it under <paramref name="reference"/> (a tag or a digest):
    /// its bytes (at most <see cref="MaxManifest"/>), media type and digest. A digest reference is checked against the bytes.</summary>
    public (byte[] Bytes, string MediaType, Digest Digest) GetManifest(string repository, string reference, string what)
    {
        while (true)
        {
            try
            {
                return GetManifestOnce(repository, reference, what);
            }
            catch (StrataException) when (NextEndpoint())
            {
                // a mirror that lacks the image or fails: the next endpoint (in the end Docker Hub itself) is asked
            }
        }
    }

    (byte[] Bytes, string MediaType, Digest Digest) GetManifestOnce(string repository, string reference, string what)
    {
        using var response = Send(u =>
        {
            var r = new HttpRequestMessage(HttpMethod.Get, u);
            foreach (var t in ManifestTypes) r.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(t));
            return r;
        }, $"v2/{repository}/manifests/{reference}");
        if (!response.IsSuccessStatusCode)
        {
            if (response.StatusCode == HttpStatusCode.NotFound) throw Failure(response, $"{what} not found");
            throw Failure(response, what);
        }
        var bytes = ReadLimited(response, MaxManifest, what);
        var digest = Digest.Of(bytes);
        if (Digest.TryParse(reference, out var pinned) && pinned != digest)
            throw StrataException.Corrupt($"{what}: the registry's manifest has digest {digest}, not {pinned}");
        string? type = response.Content.Headers.ContentType?.MediaType;
        // registries that do not record the type answer with a generic one: the document says what it is
        if (type is null || !(MediaTypes.IsIndex(type) || MediaTypes.IsManifest(type)))
        {
            string? declared = null;
            try
            {
                using var doc = JsonDocument.Parse(bytes);
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("mediaType", out var mt) && mt.ValueKind == JsonValueKind.String)
                    declared = mt.GetString();
                else if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("manifests", out _))
                    declared = MediaTypes.OciIndex;
                else if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("config", out _))
                    declared = MediaTypes.OciManifest;
            }
            catch (JsonException ex)
            {
                throw StrataException.Corrupt($"{what}: the manifest is not JSON ({ex.Message})");
            }
            if (type is "application/vnd.docker.distribution.manifest.v1+json" or "application/vnd.docker.distribution.manifest.v1+prettyjws")
                throw StrataException.Unsupported($"{what} is a Docker schema 1 manifest, which Docker itself no longer pulls; push the image again with a current client");
            if (declared is null || !(MediaTypes.IsIndex(declared) || MediaTypes.IsManifest(declared)))
                throw StrataException.Unsupported($"{what} has media type '{Trim(declared ?? type ?? "none")}', which is not an image manifest or index");
            type = declared;
        }
        return (bytes, type, digest);
    }

    static string Trim(string s) => s.Length > 100 ? s[..100] + "..." : s;

    /// <summary>A small blob (a config) read whole, checked against its digest and size.</summary>
    public byte[] GetSmallBlob(string repository, Digest digest, long size, string what)
    {
        if (size > ImageSource.MaxDocument)
            throw StrataException.Corrupt($"{what} is {size} bytes by its descriptor, more than a JSON document of an image may be ({ImageSource.MaxDocument})");
        using var response = Send(u => new HttpRequestMessage(HttpMethod.Get, u), $"v2/{repository}/blobs/{digest}");
        if (!response.IsSuccessStatusCode) throw Failure(response, what);
        var bytes = ReadLimited(response, (int)Math.Max(size, 0) + 1, what);
        if (bytes.Length != size) throw StrataException.Corrupt($"{what} has {bytes.Length} bytes, not {size} as its descriptor says");
        if (Digest.Of(bytes) != digest) throw StrataException.Corrupt($"{what} has digest {Digest.Of(bytes)}, not {digest} as its descriptor says");
        return bytes;
    }

    /// <summary>Opens blob <paramref name="digest"/> from byte <paramref name="offset"/> on (a <c>Range</c> request; a
    /// registry that ignores it answers from the start, and the bytes before the offset are skipped here).</summary>
    public Stream OpenBlob(string repository, Digest digest, long offset, string what, CancellationToken cancel = default)
    {
        var response = Send(u =>
        {
            var r = new HttpRequestMessage(HttpMethod.Get, u);
            if (offset > 0) r.Headers.Range = new RangeHeaderValue(offset, null);
            return r;
        }, $"v2/{repository}/blobs/{digest}", cancel: cancel);
        try
        {
            if (!response.IsSuccessStatusCode) throw Failure(response, what);
            var stream = response.Content.ReadAsStream(cancel);
            if (response.StatusCode == HttpStatusCode.PartialContent && response.Content.Headers.ContentRange?.From is long from && from != offset)
                throw new IOException($"the registry answered a range from byte {from}, not {offset}");
            if (offset > 0 && response.StatusCode != HttpStatusCode.PartialContent)
            {
                long skip = offset;
                var scratch = new byte[1 << 16];
                while (skip > 0)
                {
                    int n = stream.Read(scratch, 0, (int)Math.Min(scratch.Length, skip));
                    if (n == 0) throw StrataException.Io($"{what}: the registry's blob ended before byte {offset}");
                    skip -= n;
                }
            }
            return new ResponseStream(response, stream);
        }
        catch
        {
            response.Dispose();
            throw;
        }
    }

    /// <summary>A response body that disposes its response with it.</summary>
    sealed class ResponseStream(HttpResponseMessage response, Stream body) : Strata.Archive.ReadOnlyStream
    {
        public override int Read(Span<byte> buffer) => body.Read(buffer);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => body.ReadAsync(buffer, cancellationToken);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                body.Dispose();
                response.Dispose();
            }
            base.Dispose(disposing);
        }
    }

    /// <summary>Reads from a blob's body; <see cref="IdleTimeout"/> without a byte is an IOException (a stalled
    /// connection: the caller resumes it), <paramref name="cancel"/> stops the read.</summary>
    internal static int ReadIdle(Stream body, byte[] buffer, CancellationToken cancel)
    {
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        idle.CancelAfter(IdleTimeout);
        try
        {
            return body.ReadAsync(buffer, idle.Token).AsTask().GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            throw new IOException($"the registry sent nothing for {IdleTimeout.TotalSeconds:0} s");
        }
    }

    /// <summary>Whether the repository has blob <paramref name="digest"/>.</summary>
    public bool HasBlob(string repository, Digest digest)
    {
        using var response = Send(u => new HttpRequestMessage(HttpMethod.Head, u), $"v2/{repository}/blobs/{digest}");
        if (response.IsSuccessStatusCode) return true;
        if (response.StatusCode == HttpStatusCode.NotFound) return false;
        throw Failure(response, $"blob {digest}");
    }

    /// <summary>Asks the registry to mount blob <paramref name="digest"/> of <paramref name="from"/> into
    /// <paramref name="repository"/>: true when it did; false when it started an upload instead (which is then
    /// abandoned: the caller uploads the usual way).</summary>
    public bool MountBlob(string repository, Digest digest, string from)
    {
        using var response = Send(u => new HttpRequestMessage(HttpMethod.Post, u),
            $"v2/{repository}/blobs/uploads/?mount={Uri.EscapeDataString(digest.ToString())}&from={Uri.EscapeDataString(from)}", retry: false);
        if (response.StatusCode == HttpStatusCode.Created) return true;
        if (response.StatusCode == HttpStatusCode.Accepted)
        {
            if (response.Headers.Location is { } location) TryCancel(location);
            return false;
        }
        return false; // a registry that cannot mount: upload it
    }

    void TryCancel(Uri location)
    {
        try
        {
            using var _ = Send(u => new HttpRequestMessage(HttpMethod.Delete, u), Relative(location), retry: false);
        }
        catch (StrataException)
        {
        }
    }

    /// <summary>Uploads a blob: one PUT with the whole of it (<paramref name="chunkSize"/> 0), or PATCHes of
    /// <paramref name="chunkSize"/> bytes and a closing PUT. <paramref name="open"/> opens the content from the start
    /// (again, when the upload has to start over).</summary>
    public void UploadBlob(string repository, Digest digest, long size, Func<Stream> open, long chunkSize, Action<long>? progress, string what)
    {
        int attempts = Math.Max(1, _settings.MaxDownloadAttempts);
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                UploadOnce(repository, digest, size, open, chunkSize, progress, what);
                return;
            }
            catch (StrataException ex) when (ex.Kind == ErrorKind.Io && attempt < attempts)
            {
                Pause(attempt);
            }
        }
    }

    void UploadOnce(string repository, Digest digest, long size, Func<Stream> open, long chunkSize, Action<long>? progress, string what)
    {
        Uri location;
        using (var start = Send(u => new HttpRequestMessage(HttpMethod.Post, u), $"v2/{repository}/blobs/uploads/"))
        {
            if (start.StatusCode != HttpStatusCode.Accepted || start.Headers.Location is null) throw Failure(start, $"{what}: starting the upload");
            location = start.Headers.Location;
        }
        using var content = open();
        if (chunkSize > 0)
        {
            long sent = 0;
            var buffer = new byte[(int)Math.Min(chunkSize, 64L << 20)];
            while (sent < size)
            {
                int n = 0;
                int want = (int)Math.Min(buffer.Length, size - sent);
                while (n < want)
                {
                    int r = content.Read(buffer, n, want - n);
                    if (r == 0) throw StrataException.Corrupt($"{what}: the stored blob ended at byte {sent + n} of {size}");
                    n += r;
                }
                long from = sent;
                using var patch = Send(u =>
                {
                    var r = new HttpRequestMessage(HttpMethod.Patch, u) { Content = new ByteArrayContent(buffer, 0, n) };
                    r.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                    r.Content.Headers.TryAddWithoutValidation("Content-Range", $"{from}-{from + n - 1}");
                    return r;
                }, Relative(location), retry: false);
                if (patch.StatusCode != HttpStatusCode.Accepted || patch.Headers.Location is null) throw Failure(patch, $"{what}: uploading bytes {from}-{from + n - 1}");
                location = patch.Headers.Location;
                sent += n;
                progress?.Invoke(n);
            }
            Finish(null);
        }
        else Finish(new CountingStream(content, n => progress?.Invoke(n)));

        void Finish(Stream? body)
        {
            string path = Relative(location);
            path += (path.Contains('?') ? "&" : "?") + "digest=" + Uri.EscapeDataString(digest.ToString());
            bool used = false;
            using var put = Send(u =>
            {
                if (used && body is not null) throw StrataException.Io($"{what}: the registry asked for the upload again");
                used = true;
                var r = new HttpRequestMessage(HttpMethod.Put, u);
                r.Content = body is null ? new ByteArrayContent([]) : new StreamContent(body, 1 << 20);
                r.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                if (body is not null) r.Content.Headers.ContentLength = size;
                return r;
            }, path, retry: false);
            if (put.StatusCode != HttpStatusCode.Created) throw Failure(put, $"{what}: finishing the upload");
        }
    }

    /// <summary>An upload location as a path under the endpoint (registries answer absolute or relative ones).</summary>
    string Relative(Uri location)
    {
        var b = Base();
        var absolute = location.IsAbsoluteUri ? location : new Uri(b, location);
        if (absolute.Authority != b.Authority) throw StrataException.Invalid($"{_registry}: the upload location {Shown(absolute)} is on another host");
        return absolute.PathAndQuery.TrimStart('/');
    }

    /// <summary>Puts a manifest under <paramref name="tag"/>; returns its digest as the registry names it.</summary>
    public Digest PutManifest(string repository, string tag, byte[] bytes, string mediaType)
    {
        using var response = Send(u =>
        {
            var r = new HttpRequestMessage(HttpMethod.Put, u) { Content = new ByteArrayContent(bytes) };
            r.Content.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
            return r;
        }, $"v2/{repository}/manifests/{tag}");
        if (response.StatusCode is not (HttpStatusCode.Created or HttpStatusCode.OK)) throw Failure(response, $"manifest {repository}:{tag}");
        var digest = Digest.Of(bytes);
        if (response.Headers.TryGetValues("Docker-Content-Digest", out var values) && Digest.TryParse(values.FirstOrDefault(), out var said) && said != digest)
            throw StrataException.Corrupt($"manifest {repository}:{tag}: the registry stored digest {said}, not {digest}");
        return digest;
    }

    /// <summary>The repository's tags, all pages of them.</summary>
    public List<string> ListTags(string repository)
    {
        var tags = new List<string>();
        string? path = $"v2/{repository}/tags/list?n=1000";
        for (int pages = 0; path is not null; pages++)
        {
            if (pages > 10000) throw StrataException.Io($"{_registry}/{repository}: the tag list does not end");
            using var response = Send(u => new HttpRequestMessage(HttpMethod.Get, u), path);
            if (!response.IsSuccessStatusCode) throw Failure(response, $"{_registry}/{repository}: tags");
            var body = ReadLimited(response, 16 << 20, $"{_registry}/{repository}: the tag list");
            try
            {
                using var doc = JsonDocument.Parse(body);
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("tags", out var list) && list.ValueKind == JsonValueKind.Array)
                    foreach (var t in list.EnumerateArray()) if (t.ValueKind == JsonValueKind.String && t.GetString() is { } s) tags.Add(s);
            }
            catch (JsonException ex)
            {
                throw StrataException.Corrupt($"{_registry}/{repository}: the tag list is not JSON ({ex.Message})");
            }
            path = null;
            // RFC 5988 Link: <URL>; rel="next"
            if (response.Headers.TryGetValues("Link", out var links)
                && links.FirstOrDefault(l => l.Contains("rel=\"next\"", StringComparison.Ordinal)) is { } link
                && link.IndexOf('<') is var open and >= 0 && link.IndexOf('>', open) is var close and > 0)
            {
                if (!Uri.TryCreate(link[(open + 1)..close], UriKind.RelativeOrAbsolute, out var next))
                    throw StrataException.Corrupt($"{_registry}/{repository}: the tag list's next page is not a URL");
                path = Relative(next);
            }
        }
        return tags;
    }

    public void Dispose() => _http.Dispose();
}
