using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Strata.Core.Registry;

/// <summary>
/// Authorization for one registry, as the distribution spec's auth flow has it: anonymous until the registry answers
/// 401; then, by its <c>WWW-Authenticate</c> challenge, HTTP basic with the login, or a bearer token fetched from the
/// challenge's realm (GET with the login as basic auth, or the OAuth2 refresh-token POST when the login is an identity
/// token) for the scopes the caller needs, cached until it expires.
/// </summary>
sealed class RegistryAuth(string registry, RegistryCredential? credential, Func<HttpRequestMessage, HttpResponseMessage> send)
{
    readonly object _lock = new();
    readonly Dictionary<string, (string Token, DateTime Expires)> _tokens = new(StringComparer.Ordinal);
    Dictionary<string, string>? _bearer;
    bool _basic;

    /// <summary>Whether the registry answered with a challenge at all (it wants authorization).</summary>
    public bool Challenged
    {
        get
        {
            lock (_lock) return _basic || _bearer is not null;
        }
    }

    /// <summary>Adds the authorization known for <paramref name="scopes"/> to a request to the registry itself.</summary>
    public void Apply(HttpRequestMessage request, IReadOnlyCollection<string> scopes)
    {
        lock (_lock)
        {
            if (_basic && credential is { Username: { } user, Password: { } password })
                request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
            else if (_bearer is not null && _tokens.TryGetValue(Key(scopes), out var t) && t.Expires > DateTime.UtcNow)
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", t.Token);
        }
    }

    /// <summary>Takes in a 401's challenge and gets what answers it for <paramref name="scopes"/>: false when this
    /// client has nothing more to offer (the caller then reports the refusal). Also returns any refresh token the
    /// token server handed out (for `login`).</summary>
    public bool Answer(HttpResponseMessage unauthorized, IReadOnlyCollection<string> scopes, bool alreadyAnswered, out string? refreshToken)
    {
        refreshToken = null;
        var challenge = unauthorized.Headers.WwwAuthenticate.FirstOrDefault(h => h.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase))
            ?? unauthorized.Headers.WwwAuthenticate.FirstOrDefault(h => h.Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase));
        if (challenge is null) return false;
        if (challenge.Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase))
        {
            lock (_lock)
            {
                if (_basic && alreadyAnswered) return false;
                if (credential is not { Username: not null, Password: not null })
                {
                    if (credential?.IdentityToken is not null) throw StrataException.PermissionDenied($"{registry} asks for a password, and the login kept for it is a token; log in again (strata login {registry})");
                    return false;
                }
                _basic = true;
                return true;
            }
        }
        var parameters = ParseParameters(challenge.Parameter ?? "");
        if (!parameters.TryGetValue("realm", out var realm) || !Uri.TryCreate(realm, UriKind.Absolute, out var realmUri) || realmUri.Scheme is not ("https" or "http"))
            throw StrataException.Invalid($"{registry} asks for a bearer token without a usable realm ('{Shown(challenge.Parameter)}')");
        var all = new SortedSet<string>(scopes, StringComparer.Ordinal);
        if (parameters.TryGetValue("scope", out var asked))
            foreach (var s in asked.Split(' ', StringSplitOptions.RemoveEmptyEntries)) all.Add(s);
        string key = Key(scopes);
        lock (_lock)
        {
            // a token that was just refused stays refused: another one for the same scopes would be too
            if (alreadyAnswered && _tokens.ContainsKey(key)) return false;
            _bearer = parameters;
        }
        var (token, expires, refresh) = FetchToken(realmUri, parameters.GetValueOrDefault("service"), all);
        refreshToken = refresh;
        lock (_lock) _tokens[key] = (token, expires);
        return true;
    }

    (string Token, DateTime Expires, string? Refresh) FetchToken(Uri realm, string? service, IEnumerable<string> scopes)
    {
        HttpRequestMessage request;
        if (credential?.IdentityToken is { } refreshToken)
        {
            var form = new List<KeyValuePair<string, string>>
            {
                new("grant_type", "refresh_token"),
                new("refresh_token", refreshToken),
                new("client_id", "strata"),
                new("scope", string.Join(' ', scopes)),
            };
            if (service is not null) form.Add(new("service", service));
            request = new HttpRequestMessage(HttpMethod.Post, realm) { Content = new FormUrlEncodedContent(form) };
        }
        else
        {
            var query = new StringBuilder(realm.Query.Length > 1 ? realm.Query[1..] : "");
            void Add(string k, string v) => query.Append(query.Length > 0 ? "&" : "").Append(k).Append('=').Append(Uri.EscapeDataString(v));
            if (service is not null) Add("service", service);
            foreach (var s in scopes) Add("scope", s);
            if (credential is { Username: not null })
            {
                Add("client_id", "strata");
                Add("offline_token", "true");
            }
            request = new HttpRequestMessage(HttpMethod.Get, new UriBuilder(realm) { Query = query.ToString() }.Uri);
            if (credential is { Username: { } user, Password: { } password })
                request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
        }
        HttpResponseMessage response;
        try
        {
            response = send(request);
        }
        catch (HttpRequestException ex)
        {
            throw StrataException.Io($"{registry}: cannot reach its token server {realm.GetLeftPart(UriPartial.Path)}: {RegistryClient.Describe(ex)}");
        }
        catch (OperationCanceledException)
        {
            throw StrataException.Io($"{registry}: cannot reach its token server {realm.GetLeftPart(UriPartial.Path)}: timed out");
        }
        using (response)
        {
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
                throw StrataException.PermissionDenied(credential is null
                    ? $"{registry}: the token server refused anonymous access; log in first (strata login {registry})"
                    : $"{registry}: the token server refused the login (wrong user name or password?)");
            if (!response.IsSuccessStatusCode)
                throw StrataException.Io($"{registry}: the token server answered {(int)response.StatusCode} {response.ReasonPhrase}");
            byte[] body = RegistryClient.ReadLimited(response, 1 << 20, $"{registry}: the token server's answer");
            try
            {
                using var doc = JsonDocument.Parse(body);
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw StrataException.Invalid($"{registry}: the token server's answer is not a JSON object");
                string? token = root.TryGetProperty("token", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()
                    : root.TryGetProperty("access_token", out var a) && a.ValueKind == JsonValueKind.String ? a.GetString() : null;
                if (string.IsNullOrEmpty(token)) throw StrataException.Invalid($"{registry}: the token server's answer has no token");
                int seconds = root.TryGetProperty("expires_in", out var e) && e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var s) && s > 0 ? s : 60;
                string? refresh = root.TryGetProperty("refresh_token", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
                // renewed a little before the server's end of it, as the clock here and there may differ
                return (token, DateTime.UtcNow.AddSeconds(Math.Max(seconds - 10, seconds / 2)), refresh);
            }
            catch (JsonException ex)
            {
                throw StrataException.Invalid($"{registry}: the token server's answer is not JSON ({ex.Message})");
            }
        }
    }

    static string Key(IEnumerable<string> scopes) => string.Join(' ', scopes.Order(StringComparer.Ordinal));

    static string Shown(string? s) => s is null ? "" : s.Length > 120 ? s[..120] + "..." : s;

    /// <summary>The auth-params of a challenge (RFC 7235): comma-separated name=value, values as tokens or quoted strings.</summary>
    internal static Dictionary<string, string> ParseParameters(string text)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        int i = 0;
        while (i < text.Length)
        {
            while (i < text.Length && (text[i] == ',' || char.IsWhiteSpace(text[i]))) i++;
            int start = i;
            while (i < text.Length && text[i] != '=' && text[i] != ',') i++;
            string name = text[start..i].Trim();
            if (i >= text.Length || text[i] != '=')
            {
                continue;
            }
            i++;
            while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            var value = new StringBuilder();
            if (i < text.Length && text[i] == '"')
            {
                i++;
                while (i < text.Length && text[i] != '"')
                {
                    if (text[i] == '\\' && i + 1 < text.Length) i++;
                    value.Append(text[i++]);
                }
                i++;
            }
            else
            {
                while (i < text.Length && text[i] != ',') value.Append(text[i++]);
            }
            if (name.Length > 0) result[name] = value.ToString().Trim();
        }
        return result;
    }
}
