// A private image registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1.
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Strata.Native;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>Debian's docker-registry on 127.0.0.1 at a free port, with its own storage directory, config file and log
/// under <c>dir</c>; plain HTTP without auth unless <see cref="RegistryOptions"/> asks for TLS, htpasswd or token auth.
/// Stopped by pid on dispose, with its token issuer. <see cref="Push"/> copies an OCI layout's image into it with skopeo;
/// <see cref="PutBlob"/> and <see cref="PutManifest"/> push raw bytes skopeo would refuse to make; <see cref="Kill"/> and
/// <see cref="Restart"/> stop it hard and bring it back on the same port with the same storage.</summary>
/// <remarks>What distribution 2.8 takes as a manifest (checked with curl): the Content-Type must be a manifest media type
/// it knows (OCI or Docker schema 2 manifest or index, schema 1) and match the body's mediaType field when there is one,
/// else 400 MANIFEST_INVALID; every blob a manifest names (config, layers; an index's manifests) must be in the
/// repository, else 400 MANIFEST_BLOB_UNKNOWN. It does not check descriptor sizes or layer media types, so a manifest
/// whose sizes lie or whose layers have an unknown media type is stored as pushed. A manifest naming a missing blob is
/// made by pushing it with the blob, then <see cref="DeleteBlob"/>; a blob whose content does not match its digest by
/// writing to <see cref="BlobDataPath"/> (the registry serves the file as it is).</remarks>
sealed class PrivateRegistry : IDisposable
{
    readonly string _dir;
    readonly RegistryCertificates? _authority;
    readonly HttpClient _http;
    Process? _process;
    StreamWriter? _log;

    public PrivateRegistry(string dir) : this(dir, new RegistryOptions())
    {
    }

    public PrivateRegistry(string dir, RegistryOptions options)
    {
        _dir = dir;
        Options = options;
        Directory.CreateDirectory(StorageDirectory);
        try
        {
            if (options.Tls || options.Auth == RegistryAuth.Token)
            {
                _authority = new RegistryCertificates("strata-registry");
                File.WriteAllText(CaFile, _authority.AuthorityPem);
            }
            if (options.Tls)
            {
                using var server = _authority!.IssueServer();
                RegistryCertificates.WritePem(server, Path.Combine(dir, "tls.crt"), Path.Combine(dir, "tls.key"));
            }
            if (options.Auth == RegistryAuth.Htpasswd)
            {
                if (!Shell.Has("htpasswd")) throw new InvalidOperationException("htpasswd is not installed (test.sh installs apache2-utils)");
                string entry = Shell.Run("htpasswd", "-Bbn", options.User, options.Password).Check("htpasswd -B").Stdout.Trim();
                File.WriteAllText(Path.Combine(dir, "htpasswd"), entry + "\n");
            }
            if (options.Auth == RegistryAuth.Token) TokenIssuer = new RegistryTokenIssuer(_authority!, options.User, options.Password);
            _http = _authority?.NewHttpClient(TimeSpan.FromSeconds(30)) ?? new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(30) };
            // a port found free may be taken before the registry binds it: then try another
            for (int attempt = 1; ; attempt++)
            {
                Port = RegistryLoopbackServer.FreePort();
                if (TryStart()) break;
                if (attempt == 3) throw new InvalidOperationException($"docker-registry did not start: {Log()}");
            }
            if (options.Tls) WriteCertsD(Path.Combine(dir, "certs.d"));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public RegistryOptions Options { get; }

    public int Port { get; private set; }

    /// <summary>"127.0.0.1:PORT", the host part of the registry's image references.</summary>
    public string Host => $"127.0.0.1:{Port}";

    /// <summary>"https://127.0.0.1:PORT" with TLS, else "http://127.0.0.1:PORT".</summary>
    public string Url => $"{(Options.Tls ? "https" : "http")}://{Host}";

    /// <summary>The test CA's certificate (PEM) that signed the server's certificate and the token signer's; null for a
    /// plain HTTP registry without token auth.</summary>
    public string? CaPemPath => _authority is null ? null : CaFile;

    string CaFile => Path.Combine(_dir, "ca.pem");

    /// <summary>The issuer of a token-auth registry (null otherwise): its options and the requests it saw.</summary>
    public RegistryTokenIssuer? TokenIssuer { get; }

    /// <summary>"USER:PASSWORD" for a registry with auth (skopeo's --creds), else null.</summary>
    public string? Credentials => Options.Auth == RegistryAuth.None ? null : $"{Options.User}:{Options.Password}";

    /// <summary>The filesystem storage driver's root: docker/registry/v2/{blobs,repositories} below it.</summary>
    public string StorageDirectory => Path.Combine(_dir, "storage");

    /// <summary>Where the registry keeps blob <paramref name="digest"/> ("sha256:HEX"):
    /// STORAGE/docker/registry/v2/blobs/sha256/HE/HEX/data.</summary>
    public string BlobDataPath(string digest)
    {
        if (!digest.StartsWith("sha256:", StringComparison.Ordinal) || digest.Length != 71) throw new ArgumentException($"not a sha256 digest: {digest}");
        string hex = digest[7..];
        return Path.Combine(StorageDirectory, "docker", "registry", "v2", "blobs", "sha256", hex[..2], hex, "data");
    }

    /// <summary>Writes DIR/127.0.0.1:PORT/ca.crt (the containers-certs.d / docker certs.d layout) and returns that host
    /// directory, which skopeo takes as --cert-dir.</summary>
    public string WriteCertsD(string dir)
    {
        if (_authority is null) throw new InvalidOperationException("a registry without TLS has no CA");
        string host = Path.Combine(dir, Host);
        Directory.CreateDirectory(host);
        File.WriteAllText(Path.Combine(host, "ca.crt"), _authority.AuthorityPem);
        return host;
    }

    /// <summary>skopeo's flags to reach this registry as <paramref name="side"/> ("src" or "dest"; "" for inspect and
    /// friends): the CA's cert dir or --tls-verify=false, and --creds when it has auth.</summary>
    public string[] SkopeoFlags(string side)
    {
        string prefix = side.Length == 0 ? "--" : $"--{side}-";
        var flags = new List<string>();
        if (Options.Tls) flags.AddRange([prefix + "cert-dir", Path.Combine(_dir, "certs.d", Host)]);
        else flags.Add(prefix + "tls-verify=false");
        if (Credentials is { } credentials) flags.AddRange([prefix + "creds", credentials]);
        return [.. flags];
    }

    /// <summary>Copies image <paramref name="tag"/> of OCI layout <paramref name="layout"/> to NAME:TAG here; returns its
    /// reference (HOST/NAME:TAG).</summary>
    public string Push(string layout, string tag, string name)
    {
        string reference = $"{Host}/{name}:{tag}";
        // our own image from our own layout: no signature policy to apply
        Shell.Run("skopeo", ["--insecure-policy", "copy", "--quiet", .. SkopeoFlags("dest"), $"oci:{layout}:{tag}", "docker://" + reference])
            .Check($"skopeo copy to {reference}");
        return reference;
    }

    public string Log() => Processes.ReadLog(Path.Combine(_dir, "registry.log"));

    /// <summary>SIGKILLs the registry by pid and waits for it to go: uploads in flight are cut, nothing is flushed.</summary>
    public void Kill()
    {
        if (_process is null) throw new InvalidOperationException("the registry is not running");
        Posix.TryKill(_process.Id, Posix.SIGKILL);
        _process.WaitForExit();
        _process.Dispose();
        _process = null;
        CloseLog();
    }

    /// <summary>Starts the registry again on the same port with the same storage (stopping it first if it runs).</summary>
    public void Restart()
    {
        Stop();
        // the old socket may linger a moment after a kill
        for (int attempt = 1; !TryStart(); attempt++)
        {
            if (attempt == 5) throw new InvalidOperationException($"docker-registry did not restart on {Host}: {Log()}");
            Thread.Sleep(200);
        }
    }

    /// <summary>An HttpClient (no automatic redirects, no credentials) that trusts this registry's CA.</summary>
    public HttpClient NewHttpClient() => _authority?.NewHttpClient(TimeSpan.FromSeconds(30)) ?? new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>The Authorization header this registry takes for pull, push and delete on <paramref name="repository"/>:
    /// basic auth for htpasswd, a fresh bearer token from the issuer for token auth, null without auth.</summary>
    public AuthenticationHeaderValue? Authorization(string repository) => Options.Auth switch
    {
        RegistryAuth.Htpasswd => new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(Credentials!))),
        RegistryAuth.Token => new AuthenticationHeaderValue("Bearer", TokenIssuer!.Issue(Options.User, [$"repository:{repository}:pull,push,delete"])),
        _ => null,
    };

    /// <summary>Uploads <paramref name="bytes"/> as a blob of <paramref name="repository"/> (POST, then PUT ?digest=) and
    /// returns its digest. Any bytes: the registry checks only that they match the digest.</summary>
    public string PutBlob(string repository, byte[] bytes)
    {
        string digest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));
        var (status, body, location) = Send(HttpMethod.Post, repository, $"/v2/{repository}/blobs/uploads/", null, null);
        if (status != HttpStatusCode.Accepted || location is null) throw new InvalidOperationException($"blob upload to {repository} refused ({(int)status}): {body}");
        var upload = new Uri(new Uri(Url), location);
        string put = upload.PathAndQuery + (upload.Query.Length == 0 ? "?" : "&") + "digest=" + Uri.EscapeDataString(digest);
        (status, body, _) = Send(HttpMethod.Put, repository, put, bytes, "application/octet-stream");
        if (status != HttpStatusCode.Created) throw new InvalidOperationException($"blob {digest} refused by {repository} ({(int)status}): {body}");
        return digest;
    }

    /// <summary>PUTs <paramref name="bytes"/> as manifest <paramref name="reference"/> (a tag or digest) of
    /// <paramref name="repository"/> with Content-Type <paramref name="mediaType"/>; returns the digest the registry
    /// answers. Throws with the registry's answer when it refuses (see the remarks on <see cref="PrivateRegistry"/>).</summary>
    public string PutManifest(string repository, string reference, byte[] bytes, string mediaType)
    {
        var (status, body, digest) = TryPutManifest(repository, reference, bytes, mediaType);
        if (status != HttpStatusCode.Created) throw new InvalidOperationException($"manifest {repository}:{reference} refused ({(int)status}): {body}");
        return digest ?? "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));
    }

    /// <summary>As <see cref="PutManifest"/>, returning the status, the body and the Docker-Content-Digest header instead
    /// of throwing.</summary>
    public (HttpStatusCode Status, string Body, string? Digest) TryPutManifest(string repository, string reference, byte[] bytes, string mediaType)
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, $"{Url}/v2/{repository}/manifests/{reference}") { Content = new ByteArrayContent(bytes) };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(mediaType);
        request.Headers.Authorization = Authorization(repository);
        using var response = _http.Send(request);
        string? digest = response.Headers.TryGetValues("Docker-Content-Digest", out var values) ? values.First() : null;
        return (response.StatusCode, ReadBody(response), digest);
    }

    /// <summary>Deletes blob <paramref name="digest"/> from <paramref name="repository"/> (the manifests naming it stay):
    /// how a test makes a manifest whose blob is missing.</summary>
    public void DeleteBlob(string repository, string digest)
    {
        var (status, body, _) = Send(HttpMethod.Delete, repository, $"/v2/{repository}/blobs/{digest}", null, null);
        if (status != HttpStatusCode.Accepted) throw new InvalidOperationException($"delete of {repository}@{digest} refused ({(int)status}): {body}");
    }

    (HttpStatusCode Status, string Body, string? Location) Send(HttpMethod method, string repository, string pathAndQuery, byte[]? content, string? contentType)
    {
        using var request = new HttpRequestMessage(method, Url + pathAndQuery);
        if (content is not null)
        {
            request.Content = new ByteArrayContent(content);
            // not form-urlencoded: Go's ParseForm would eat the body
            request.Content.Headers.ContentType = new MediaTypeHeaderValue(contentType ?? "application/octet-stream");
        }
        request.Headers.Authorization = Authorization(repository);
        using var response = _http.Send(request);
        return (response.StatusCode, ReadBody(response), response.Headers.Location?.OriginalString);
    }

    static string ReadBody(HttpResponseMessage response)
    {
        using var reader = new StreamReader(response.Content.ReadAsStream());
        return reader.ReadToEnd();
    }

    bool TryStart()
    {
        string config = Path.Combine(_dir, "config.yml");
        File.WriteAllText(config, Config());
        var psi = new ProcessStartInfo("docker-registry") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("serve");
        psi.ArgumentList.Add(config);
        _process = Process.Start(psi)!;
        var log = _log = new StreamWriter(Path.Combine(_dir, "registry.log"), append: true);
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) { log.WriteLine(e.Data); log.Flush(); } };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) { log.WriteLine(e.Data); log.Flush(); } };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
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
                using var response = _http.Send(new HttpRequestMessage(HttpMethod.Get, $"{Url}/v2/"));
                // with auth, /v2/ answers 401 and a challenge: up all the same
                if (response.StatusCode is HttpStatusCode.OK or HttpStatusCode.Unauthorized) return true;
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

    /// <summary>The registry's config.yml for these options.</summary>
    string Config()
    {
        var yaml = new StringBuilder($"""
            version: 0.1
            log:
              level: info
            storage:
              filesystem:
                rootdirectory: {StorageDirectory}
              delete:
                enabled: true
            http:
              addr: {Host}

            """);
        if (Options.Tls)
            yaml.Append($"""
                  tls:
                    certificate: {Path.Combine(_dir, "tls.crt")}
                    key: {Path.Combine(_dir, "tls.key")}

                """);
        if (Options.Auth == RegistryAuth.Htpasswd)
            yaml.Append($"""
                auth:
                  htpasswd:
                    realm: strata-test-registry
                    path: {Path.Combine(_dir, "htpasswd")}

                """);
        if (Options.Auth == RegistryAuth.Token)
            yaml.Append($"""
                auth:
                  token:
                    realm: {TokenIssuer!.Realm}
                    service: {RegistryTokenIssuer.Service}
                    issuer: {RegistryTokenIssuer.Issuer}
                    rootcertbundle: {CaFile}

                """);
        return yaml.ToString();
    }

    void Stop()
    {
        if (_process is null) return;
        Processes.Stop(_process, TimeSpan.FromSeconds(30));
        _process = null;
        CloseLog();
    }

    // only once the process is gone and its output drained: no handler writes after this
    void CloseLog()
    {
        _log?.Dispose();
        _log = null;
    }

    public void Dispose()
    {
        Stop();
        TokenIssuer?.Dispose();
        _authority?.Dispose();
        _http?.Dispose();
    }
}
