// A Docker token issuer for a test registry's `auth: token` (the realm its 401 challenges send clients to).
using System.Buffers.Text;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;

namespace Strata.Integration.Tests;

/// <summary>The Docker registry token protocol on 127.0.0.1: <c>GET /token?service=S&amp;scope=repository:NAME:pull,push</c>
/// with HTTP basic auth of its one user answers {"token","access_token","expires_in","issued_at"}; a wrong user or password
/// answers 401. Tokens are JWTs signed ES256 by a certificate of the registry's authority, which the JWT header carries in
/// x5c; distribution 2.8 checks that chain against its rootcertbundle, then iss, aud (a string), and exp/nbf with 60 s of
/// leeway. Every request is recorded. Anything but GET /token answers 404.</summary>
sealed class RegistryTokenIssuer : IDisposable
{
    /// <summary>The registry's <c>auth.token.service</c>: the audience of every token.</summary>
    public const string Service = "strata-test-registry";

    /// <summary>The registry's <c>auth.token.issuer</c>: the iss claim of every token.</summary>
    public const string Issuer = "strata-test-issuer";

    readonly X509Certificate2 _signer;
    readonly string _user, _password;
    readonly RegistryLoopbackServer _server;
    readonly List<TokenRequest> _requests = [];

    /// <summary>One request the issuer answered: the user its basic auth named (null without), the scopes asked for, and
    /// whether a token was issued.</summary>
    public sealed record TokenRequest(string? User, IReadOnlyList<string> Scopes, bool Issued);

    public RegistryTokenIssuer(RegistryCertificates authority, string user, string password)
    {
        _signer = authority.IssueSigner(Issuer);
        _user = user;
        _password = password;
        _server = new RegistryLoopbackServer(HandleAsync);
    }

    /// <summary>The registry's <c>auth.token.realm</c>: http://127.0.0.1:PORT/token.</summary>
    public string Realm => $"http://{_server.Host}/token";

    /// <summary>Issue tokens that expired an hour ago (past distribution's 60 s leeway) while answering expires_in as
    /// usual: the registry refuses them.</summary>
    public bool IssueExpired { get; set; }

    /// <summary>Issue pull-only tokens to requests without credentials (as Docker Hub does for public repositories).</summary>
    public bool AnonymousPull { get; set; }

    /// <summary>The expires_in answered and the tokens' lifetime.</summary>
    public int ExpiresInSeconds { get; set; } = 300;

    /// <summary>The actions a token may grant; a scope's other actions are left out of its access claim (the registry then
    /// answers 401 insufficient_scope). Null grants whatever is asked.</summary>
    public IReadOnlySet<string>? GrantedActions { get; set; }

    /// <summary>The requests answered so far, oldest first.</summary>
    public IReadOnlyList<TokenRequest> Requests
    {
        get
        {
            lock (_requests) return [.. _requests];
        }
    }

    /// <summary>How many token requests were answered (issued or refused).</summary>
    public int RequestCount
    {
        get
        {
            lock (_requests) return _requests.Count;
        }
    }

    async Task HandleAsync(LoopbackRequest request, LoopbackResponse response)
    {
        if (request.Method != "GET" || request.Path != "/token")
        {
            await response.SendErrorAsync(HttpStatusCode.NotFound, "NOT_FOUND", $"{request.Method} {request.Path}: the issuer answers GET /token");
            return;
        }
        var query = request.Query;
        string[] scopes = query.GetValues("scope") ?? [];
        string? user = BasicUser(request.Header("Authorization"), out string? password);
        bool anonymous = user is null && AnonymousPull;
        bool allowed = anonymous || (user == _user && password == _password);
        lock (_requests) _requests.Add(new TokenRequest(user, scopes, allowed));
        if (!allowed)
        {
            response.AddHeader("WWW-Authenticate", "Basic realm=\"strata-test-issuer\"");
            await response.SendErrorAsync(HttpStatusCode.Unauthorized, "UNAUTHORIZED", "authentication required");
            return;
        }
        if (query["service"] is { } service && service != Service)
        {
            await response.SendErrorAsync(HttpStatusCode.BadRequest, "DENIED", $"unknown service {service}");
            return;
        }
        var now = DateTimeOffset.UtcNow;
        string token = Issue(user ?? "", scopes, anonymous ? new HashSet<string> { "pull" } : GrantedActions, now);
        var body = new JsonObject
        {
            ["token"] = token,
            ["access_token"] = token,
            ["expires_in"] = ExpiresInSeconds,
            ["issued_at"] = now.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
        };
        await response.SendTextAsync(body.ToJsonString(), "application/json");
    }

    static string? BasicUser(string? authorization, out string? password)
    {
        password = null;
        if (authorization is null || !authorization.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase)) return null;
        string pair;
        try
        {
            pair = Encoding.UTF8.GetString(Convert.FromBase64String(authorization[6..].Trim()));
        }
        catch (FormatException)
        {
            return null;
        }
        int colon = pair.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0) return null;
        password = pair[(colon + 1)..];
        return pair[..colon];
    }

    /// <summary>A signed token for <paramref name="subject"/> granting the scopes asked for ("TYPE:NAME:ACTION,ACTION"),
    /// limited to <paramref name="granted"/> or else <see cref="GrantedActions"/>, expired when <see cref="IssueExpired"/>
    /// says so: what the raw HTTP helpers of a token registry send.</summary>
    public string Issue(string subject, IEnumerable<string> scopes, IReadOnlySet<string>? granted = null) =>
        Issue(subject, scopes, granted ?? GrantedActions, DateTimeOffset.UtcNow);

    string Issue(string subject, IEnumerable<string> scopes, IReadOnlySet<string>? granted, DateTimeOffset now)
    {
        var access = new JsonArray();
        foreach (string scope in scopes)
        {
            int first = scope.IndexOf(':', StringComparison.Ordinal), last = scope.LastIndexOf(':');
            if (first < 0 || last == first) continue;
            var actions = new JsonArray();
            foreach (string action in scope[(last + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries))
                if (granted is null || granted.Contains(action)) actions.Add(action);
            access.Add(new JsonObject { ["type"] = scope[..first], ["name"] = scope[(first + 1)..last], ["actions"] = actions });
        }
        var issuedAt = IssueExpired ? now.AddHours(-2) : now;
        var expires = IssueExpired ? now.AddHours(-1) : now.AddSeconds(ExpiresInSeconds);
        var header = new JsonObject
        {
            ["typ"] = "JWT",
            ["alg"] = "ES256",
            ["x5c"] = new JsonArray(Convert.ToBase64String(_signer.RawData)),
        };
        var claims = new JsonObject
        {
            ["iss"] = Issuer,
            ["sub"] = subject,
            ["aud"] = Service,
            ["exp"] = expires.ToUnixTimeSeconds(),
            ["nbf"] = issuedAt.ToUnixTimeSeconds(),
            ["iat"] = issuedAt.ToUnixTimeSeconds(),
            ["jti"] = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)),
            ["access"] = access,
        };
        string signed = Base64Url.EncodeToString(Encoding.UTF8.GetBytes(header.ToJsonString())) + "." + Base64Url.EncodeToString(Encoding.UTF8.GetBytes(claims.ToJsonString()));
        using var key = _signer.GetECDsaPrivateKey()!;
        // JWS ES256 is r||s, 32 bytes each: .NET's default IEEE P1363 format
        return signed + "." + Base64Url.EncodeToString(key.SignData(Encoding.ASCII.GetBytes(signed), HashAlgorithmName.SHA256));
    }

    public void Dispose()
    {
        _server.Dispose();
        _signer.Dispose();
    }
}
