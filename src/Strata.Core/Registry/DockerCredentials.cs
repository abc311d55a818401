using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Strata.Native;

namespace Strata.Core.Registry;

/// <summary>A registry login: user and password, or an identity (refresh) token.</summary>
public sealed record RegistryCredential(string? Username, string? Password, string? IdentityToken = null);

/// <summary>
/// Registry logins in Docker's client config (<c>$DOCKER_CONFIG/config.json</c>, default <c>~/.docker/config.json</c>):
/// <c>auths</c> entries (base64 user:password, identitytoken), and credential helpers (<c>credsStore</c>, per-registry
/// <c>credHelpers</c>) called as <c>docker-credential-NAME get|store|erase</c>, so that `docker login` and
/// `strata login` share logins. Docker Hub's entry is keyed <c>https://index.docker.io/v1/</c>.
/// </summary>
/// <remarks>
/// As docker/cli (cli/config/configfile, cli/config/credentials) does it:
/// <list type="bullet">
/// <item>A registry's key is <c>https://index.docker.io/v1/</c> for Docker Hub, else host[:port]. An <c>auths</c> entry is
/// found by its exact key, else by the first key that names the same host[:port] as a URL ("https://host:5000",
/// "http://host/v2/": ConvertToHostname).</item>
/// <item><c>credHelpers[key]</c> wins over <c>credsStore</c>, which wins over <c>auths</c>: with a helper, <c>auths</c>
/// holds no secrets, and storing through a helper leaves an empty <c>auths</c> entry (removing any old plain-text one).</item>
/// <item>Helpers speak docker-credential-helpers' protocol: <c>get</c> and <c>erase</c> read the server URL on stdin,
/// <c>store</c> reads {"ServerURL","Username","Secret"}; <c>get</c> answers that JSON, Username "&lt;token&gt;" meaning
/// Secret is an identity token; "credentials not found in native keychain" (exit 1) means no login. A helper is looked
/// up in PATH's absolute directories only (never the current directory, as Go's exec.LookPath since 1.19).</item>
/// <item>The file is rewritten atomically with mode 0600 (its owner kept), every other key kept as it was; a symlinked
/// config.json is written through to its target, as docker does.</item>
/// </list>
/// Not read: DOCKER_AUTH_CONFIG (docker 28's environment logins) and the pre-1.7 ~/.dockercfg.
/// </remarks>
public sealed class DockerCredentials
{
    /// <summary>Docker Hub's key in the config file and for helpers.</summary>
    internal const string HubKey = "https://index.docker.io/v1/";
    const string TokenUsername = "<token>";
    const string NotFoundMessage = "credentials not found in native keychain";
    const int MaxConfigBytes = 4 << 20;
    const int MaxHelperOutput = 1 << 20;

    readonly string _directory;
    readonly string _helperPath;

    /// <summary><paramref name="directory"/>: the config directory (null: env DOCKER_CONFIG, else $HOME/.docker).</summary>
    public DockerCredentials(string? directory = null) : this(directory, null)
    {
    }

    /// <summary><paramref name="helperPath"/>: where docker-credential-* programs are looked up, as PATH is (null: PATH).</summary>
    internal DockerCredentials(string? directory, string? helperPath)
    {
        _directory = DirectoryFor(directory, Environment.GetEnvironmentVariable("DOCKER_CONFIG"), Environment.GetEnvironmentVariable("HOME"));
        _helperPath = helperPath ?? Environment.GetEnvironmentVariable("PATH") ?? "";
    }

    /// <summary>The config file's path.</summary>
    public string ConfigFile => Path.Combine(_directory, "config.json");

    /// <summary>The login for <paramref name="registry"/> (a reference's registry: docker.io, host[:port]); null: none.</summary>
    public RegistryCredential? Get(string registry)
    {
        string key = KeyFor(registry);
        var config = Read();
        if (HelperFor(config, key) is { } helper) return HelperGet(helper, key);
        var auths = Auths(config, create: false);
        if (auths is null) return null;
        if (!auths.ContainsKey(key))
        {
            key = auths.Select(p => p.Key).FirstOrDefault(k => ConvertToHostname(k) == key) ?? "";
            if (key.Length == 0) return null;
        }
        return FromEntry(auths[key], key);
    }

    /// <summary>Saves a login (in the helper configured for the registry, else in the file, which keeps its other keys).</summary>
    public void Store(string registry, RegistryCredential credential)
    {
        string key = KeyFor(registry);
        string? user = NullIfEmpty(credential.Username), password = NullIfEmpty(credential.Password), token = NullIfEmpty(credential.IdentityToken);
        if (user is not null && user.Contains(':')) throw StrataException.Invalid($"a user name cannot contain ':' (\"{user}\")");
        if (token is null && (user is null || password is null)) throw StrataException.Invalid("a login needs a user name and a password, or an identity token");
        var config = Read() ?? new JsonObject();
        var auths = Auths(config, create: true)!;
        if (HelperFor(config, key) is { } helper)
        {
            var input = new MemoryStream();
            using (var json = new Utf8JsonWriter(input, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                json.WriteStartObject();
                json.WriteString("ServerURL", key);
                json.WriteString("Username", token is null ? user : TokenUsername);
                json.WriteString("Secret", token ?? password);
                json.WriteEndObject();
            }
            input.WriteByte((byte)'\n');
            var (code, output) = RunHelper(helper, "store", input.ToArray());
            if (code != 0) throw HelperFailed(helper, "store", code, output);
            if (auths[key] is JsonObject { Count: 0 }) return;
            auths[key] = new JsonObject();
        }
        else
        {
            var entry = new JsonObject();
            if (user is not null) entry["auth"] = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}"));
            if (token is not null) entry["identitytoken"] = token;
            auths[key] = entry;
        }
        Write(config);
    }

    /// <summary>Forgets a login; false when there was none.</summary>
    public bool Erase(string registry)
    {
        string key = KeyFor(registry);
        var config = Read();
        var auths = Auths(config, create: false);
        bool had;
        if (HelperFor(config, key) is { } helper)
        {
            had = HelperGet(helper, key) is not null;
            if (had)
            {
                var (code, output) = RunHelper(helper, "erase", Encoding.UTF8.GetBytes(key));
                if (code != 0 && output.Trim() != NotFoundMessage) throw HelperFailed(helper, "erase", code, output);
            }
            if (auths is not null && auths.Remove(key)) Write(config!);
            return had;
        }
        if (auths is null) return false;
        var keys = auths.Select(p => p.Key).Where(k => k == key || (key != HubKey && ConvertToHostname(k) == key)).ToList();
        had = keys.Any(k => HoldsLogin(auths[k], k));
        foreach (var k in keys) auths.Remove(k);
        if (keys.Count > 0) Write(config!);
        return had;
    }

    /// <summary>Where a login for <paramref name="registry"/> is kept, for messages: the file's path or "docker-credential-NAME".</summary>
    public string Where(string registry) => HelperFor(Read(), KeyFor(registry)) is { } helper ? "docker-credential-" + helper : ConfigFile;

    /// <summary>The key docker uses for <paramref name="registry"/>: Docker Hub's URL, else host[:port] (a URL given is
    /// turned into its host[:port]).</summary>
    internal static string KeyFor(string registry)
    {
        if (registry is ImageReference.DefaultRegistry or "index.docker.io" or ImageReference.DefaultRegistryHost or HubKey) return HubKey;
        string host = ConvertToHostname(registry);
        if (host.Length == 0) throw StrataException.Invalid($"\"{registry}\" names no registry");
        return host;
    }

    /// <summary>docker/cli's ConvertToHostname: a key written as a URL ("https://host:5000/v2/") is its host[:port]
    /// (Go's url.Parse: host kept as written, IPv6 brackets only with a port); anything else is cut at the first '/'.</summary>
    internal static string ConvertToHostname(string key)
    {
        int scheme = key.IndexOf("://", StringComparison.Ordinal);
        if (scheme > 0 && char.IsAsciiLetter(key[0]) && key.AsSpan(0, scheme).IndexOfAnyExcept(SchemeChars) < 0)
        {
            string authority = key[(scheme + 3)..];
            int end = authority.AsSpan().IndexOfAny('/', '?', '#');
            if (end >= 0) authority = authority[..end];
            int at = authority.LastIndexOf('@');
            if (at >= 0) authority = authority[(at + 1)..];
            bool parses = authority.StartsWith('[')
                ? authority.LastIndexOf(']') is var close and > 0 && ValidOptionalPort(authority[(close + 1)..])
                : authority.LastIndexOf(':') is var last && (last < 0 || ValidOptionalPort(authority[last..]));
            if (parses)
            {
                string host = authority, port = "";
                int colon = authority.LastIndexOf(':');
                if (colon >= 0 && ValidOptionalPort(authority[colon..])) (host, port) = (authority[..colon], authority[(colon + 1)..]);
                if (host.StartsWith('[') && host.EndsWith(']')) host = host[1..^1];
                if (host.Length > 0) return port.Length == 0 ? host : host.Contains(':') ? $"[{host}]:{port}" : $"{host}:{port}";
            }
        }
        int slash = key.IndexOf('/');
        return slash < 0 ? key : key[..slash];
    }

    /// <summary>Go's validOptionalPort: empty, or ':' and digits.</summary>
    static bool ValidOptionalPort(string s) => s.Length == 0 || (s[0] == ':' && s.AsSpan(1).IndexOfAnyExceptInRange('0', '9') < 0);

    static readonly System.Buffers.SearchValues<char> SchemeChars =
        System.Buffers.SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");

    /// <summary>The helper for <paramref name="key"/>: credHelpers[key], else credsStore; null: none (an empty name is none).</summary>
    string? HelperFor(JsonObject? config, string key)
    {
        if (config is null) return null;
        string? helper = null;
        if (config["credHelpers"] is { } helpers)
        {
            if (helpers is not JsonObject map) throw Invalid("credHelpers is not an object");
            if (map[key] is { } named) helper = StringOf(named, $"credHelpers[\"{key}\"]");
        }
        if (string.IsNullOrEmpty(helper) && config["credsStore"] is { } store) helper = StringOf(store, "credsStore");
        if (string.IsNullOrEmpty(helper)) return null;
        if (helper.Contains('/') || helper.Contains('\0')) throw Invalid($"credential helper name \"{helper}\" has a '/' in it");
        return helper;
    }

    RegistryCredential? HelperGet(string helper, string key)
    {
        var (code, output) = RunHelper(helper, "get", Encoding.UTF8.GetBytes(key));
        if (code != 0)
        {
            if (output.Trim() == NotFoundMessage) return null;
            throw HelperFailed(helper, "get", code, output);
        }
        string? user, secret;
        try
        {
            using var doc = JsonDocument.Parse(output);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new JsonException("not an object");
            user = Field(doc.RootElement, "Username");
            secret = Field(doc.RootElement, "Secret");
        }
        catch (JsonException ex)
        {
            throw new StrataException(ErrorKind.Io, $"docker-credential-{helper} get answered no credentials JSON: {ex.Message}");
        }
        if (user is null && secret is null) return null;
        return user == TokenUsername ? new RegistryCredential(null, null, secret) : new RegistryCredential(user, secret);

        static string? Field(JsonElement o, string name) =>
            !o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
            : v.ValueKind == JsonValueKind.String ? NullIfEmpty(v.GetString())
            : throw new JsonException($"{name} is not a string");
    }

    /// <summary>Runs docker-credential-<paramref name="helper"/> <paramref name="verb"/> with <paramref name="input"/> on
    /// its stdin; returns its exit code and what it printed (stdout, where helpers put their messages too; stderr when
    /// stdout is empty and it failed).</summary>
    (int Code, string Output) RunHelper(string helper, string verb, byte[] input)
    {
        string program = "docker-credential-" + helper;
        string path = FindHelper(program)
            ?? throw StrataException.Unsupported($"credential helper {program} (configured in {ConfigFile}) is not installed: not found in PATH");
        using var p = ExternalTool.Start(path, [verb], ExternalTool.Redirect.Input | ExternalTool.Redirect.Output | ExternalTool.Redirect.Error,
            why => StrataException.Unsupported($"cannot run credential helper {path}: {why}"));
        var stdout = ReadBoundedAsync(p.StandardOutput.BaseStream);
        var stderr = ReadBoundedAsync(p.StandardError.BaseStream);
        try
        {
            p.StandardInput.BaseStream.Write(input);
            p.StandardInput.Close();
        }
        catch (IOException)
        {
            // The helper exited without reading its input; its exit code and output tell why.
        }
        p.WaitForExit();
        string output = stdout.GetAwaiter().GetResult(), error = stderr.GetAwaiter().GetResult();
        return (p.ExitCode, p.ExitCode != 0 && output.Trim().Length == 0 ? error : output);
    }

    static async Task<string> ReadBoundedAsync(Stream s)
    {
        var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int n;
        while ((n = await s.ReadAsync(chunk).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length < MaxHelperOutput) buffer.Write(chunk, 0, (int)Math.Min(n, MaxHelperOutput - buffer.Length));
        }
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    static StrataException HelperFailed(string helper, string verb, int code, string output) =>
        new(ErrorKind.Io, $"docker-credential-{helper} {verb} failed (exit {code}): {(output.Trim().Length == 0 ? "no message" : output.Trim())}");

    /// <summary>The first executable docker-credential-NAME in the absolute directories of the search path.</summary>
    string? FindHelper(string program)
    {
        foreach (var dir in _helperPath.Split(':'))
        {
            if (!Path.IsPathRooted(dir)) continue;
            string candidate = Path.Combine(dir, program);
            if (Posix.TryStat(candidate, out var st) == 0 && st.IsRegular && (st.Permissions & 0x49 /* 0111 */) != 0) return candidate;
        }
        return null;
    }

    /// <summary>The login an auths entry holds: "auth" (base64 user:password) wins over "username"/"password"; null: none.</summary>
    RegistryCredential? FromEntry(JsonNode? node, string key)
    {
        if (node is null) return null;
        if (node is not JsonObject entry) throw Invalid($"auths[\"{key}\"] is not an object");
        string? user = OptionalString(entry, "username", key), password = OptionalString(entry, "password", key);
        string? token = OptionalString(entry, "identitytoken", key);
        if (OptionalString(entry, "auth", key) is { } auth)
        {
            string decoded;
            try
            {
                decoded = new UTF8Encoding(false, true).GetString(Convert.FromBase64String(auth));
            }
            catch (Exception ex) when (ex is FormatException or DecoderFallbackException)
            {
                throw Invalid($"auths[\"{key}\"].auth is not base64 of user:password");
            }
            int colon = decoded.IndexOf(':');
            if (colon <= 0) throw Invalid($"auths[\"{key}\"].auth is not base64 of user:password");
            (user, password) = (decoded[..colon], NullIfEmpty(decoded[(colon + 1)..].Trim('\0')));
        }
        if (user is null && password is null && token is null) return null;
        return new RegistryCredential(user, password, token);
    }

    /// <summary>Whether an entry holds a login; one docker could not read counts, so that erasing it is a way out.</summary>
    bool HoldsLogin(JsonNode? node, string key)
    {
        try
        {
            return FromEntry(node, key) is not null;
        }
        catch (StrataException)
        {
            return true;
        }
    }

    string? OptionalString(JsonObject entry, string name, string key) =>
        entry[name] is not { } v ? null : NullIfEmpty(StringOf(v, $"auths[\"{key}\"].{name}"));

    string StringOf(JsonNode node, string what) =>
        node.GetValueKind() == JsonValueKind.String ? node.GetValue<string>() : throw Invalid($"{what} is not a string");

    JsonObject? Auths(JsonObject? config, bool create)
    {
        if (config is null) return null;
        switch (config["auths"])
        {
            case JsonObject auths:
                return auths;
            case null:
                if (!create) return null;
                var made = new JsonObject();
                config["auths"] = made;
                return made;
            default:
                throw Invalid("auths is not an object");
        }
    }

    /// <summary>The config file's JSON object; null when there is no file, or it is empty (docker takes both as no config).</summary>
    JsonObject? Read()
    {
        byte[] bytes;
        try
        {
            using var f = new FileStream(ConfigFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
            if (f.Length > MaxConfigBytes) throw Invalid($"larger than {MaxConfigBytes >> 20} MiB");
            bytes = new byte[f.Length];
            f.ReadExactly(bytes);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new StrataException(ex is UnauthorizedAccessException ? ErrorKind.PermissionDenied : ErrorKind.Io, $"cannot read {ConfigFile}: {ex.Message}");
        }
        if (bytes.AsSpan().Trim(" \t\r\n"u8).IsEmpty) return null;
        try
        {
            return JsonNode.Parse(bytes, null, new JsonDocumentOptions { AllowDuplicateProperties = false, MaxDepth = 64 }) as JsonObject
                ?? throw Invalid("not a JSON object");
        }
        catch (JsonException ex)
        {
            throw Invalid($"not valid JSON: {ex.Message}");
        }
    }

    /// <summary>Replaces the config file (the target of a symlinked one) atomically, mode 0600, keeping its owner; the
    /// directory is created 0700 when missing.</summary>
    void Write(JsonObject config)
    {
        MakeDirectory(Path.GetFullPath(_directory));
        string target = ConfigFile;
        if (Posix.TryLstat(target, out var entry) && entry.IsSymlink && File.ResolveLinkTarget(target, returnFinalTarget: true) is { } link) target = link.FullName;
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, IndentCharacter = '\t', IndentSize = 1, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            config.WriteTo(json);
        bool existed = Posix.TryStat(target, out var old) == 0;
        AtomicFile.Write(target, buffer.ToArray());
        if (existed && Posix.TryStat(target, out var now) == 0 && (now.Uid, now.Gid) != (old.Uid, old.Gid))
            Posix.LchownAt(FileDescriptor.Cwd, target, old.Uid, old.Gid);
    }

    /// <summary>mkdir -p with mode 0700 for every directory made, as docker's os.MkdirAll(dir, 0700).</summary>
    static void MakeDirectory(string dir)
    {
        if (Directory.Exists(dir)) return;
        if (Path.GetDirectoryName(dir) is { } parent) MakeDirectory(parent);
        int errno = Posix.TryMkdirAt(FileDescriptor.Cwd, dir, 0x1C0 /* 0700 */);
        if (errno != 0 && errno != Errno.EEXIST) throw new ErrnoException(errno, "mkdir", dir);
    }

    StrataException Invalid(string problem) => StrataException.Invalid($"{ConfigFile}: {problem}");

    static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    /// <summary>The config directory: <paramref name="directory"/>, else DOCKER_CONFIG's value, else HOME/.docker (the
    /// passwd entry's home when HOME is unset, as Go's os/user fallback in docker's homedir).</summary>
    internal static string DirectoryFor(string? directory, string? dockerConfig, string? home)
    {
        if (directory is not null) return directory;
        if (!string.IsNullOrEmpty(dockerConfig)) return dockerConfig;
        if (string.IsNullOrEmpty(home)) home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return !string.IsNullOrEmpty(home) ? Path.Combine(home, ".docker") : throw StrataException.NotFound("no home directory for Docker's config: set HOME or DOCKER_CONFIG");
    }
}
