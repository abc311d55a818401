using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Strata.Core.Registry;
using Strata.Native;
using Strata.Testing;

namespace Strata.Core.Tests.Registry;

/// <summary>Logins in Docker's client config: keys and lookups as docker/cli makes them, the file rewritten with its
/// other keys kept, and credential helpers spoken to with docker-credential-helpers' protocol (a real helper script,
/// looked up in the test's own directory, not through this process's PATH).</summary>
public sealed class DockerCredentialsTests : IDisposable
{
    readonly TempRoot _root = new();
    readonly string _config;
    readonly string _helpers;

    public DockerCredentialsTests()
    {
        _config = _root.Combine("docker"); // made by the first Store, as docker makes it
        _helpers = _root.Dir("helpers");
        string script = Path.Combine(_helpers, "docker-credential-strata-test");
        File.WriteAllText(script, HelperScript);
        Posix.ChmodAt(FileDescriptor.Cwd, script, 0x1ED /* 0755 */);
        File.CreateSymbolicLink(Path.Combine(_helpers, "docker-credential-strata-other"), script);
    }

    public void Dispose() => _root.Dispose();

    /// <summary>A credential helper as docker-credential-helpers' Serve runs one: the action in argv[1], the server URL
    /// (get, erase) or the credentials JSON (store) on stdin, messages on stdout with exit 1. Secrets are kept in files
    /// beside it, one per server URL and per helper name; every call is logged to calls.log.</summary>
    const string HelperScript = """
        #!/bin/sh
        set -u
        here=$(dirname "$0")
        name=$(basename "$0")
        store="$here/store-$name"
        mkdir -p "$store"
        input=$(cat)
        printf '%s %s %s\n' "$name" "$1" "$input" >> "$here/calls.log"
        file_for() { echo "$store/$(printf '%s' "$1" | sha256sum | cut -c1-64)"; }
        case "$1" in
        store)
            url=$(printf '%s' "$input" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
            [ -n "$url" ] || { echo "no credentials server URL"; exit 1; }
            case "$url" in *broken*) echo "keychain is locked"; exit 1;; esac
            printf '%s' "$input" > "$(file_for "$url")";;
        get)
            case "$input" in *broken*) echo "keychain is locked"; exit 1;; esac
            f=$(file_for "$input")
            [ -f "$f" ] || { echo "credentials not found in native keychain"; exit 1; }
            cat "$f";;
        erase)
            f=$(file_for "$input")
            [ -f "$f" ] || { echo "credentials not found in native keychain"; exit 1; }
            rm "$f";;
        *)
            echo "Unknown credential action \`$1\`"; exit 1;;
        esac
        """;

    DockerCredentials Credentials() => new(_config, _helpers);

    string ConfigFile => Path.Combine(_config, "config.json");

    void WriteConfig(string json)
    {
        Directory.CreateDirectory(_config);
        File.WriteAllText(ConfigFile, json);
    }

    JsonElement ReadConfig()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(ConfigFile));
        return doc.RootElement.Clone();
    }

    string[] HelperCalls() => File.Exists(Path.Combine(_helpers, "calls.log")) ? File.ReadAllLines(Path.Combine(_helpers, "calls.log")) : [];

    static string Compact(JsonElement e)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            e.WriteTo(w);
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    static string Base64(string s) => Convert.ToBase64String(Encoding.UTF8.GetBytes(s));

    [Fact]
    public void TheDirectoryIsTheArgumentElseDockerConfigElseHomeDotDocker()
    {
        Assert.Equal("/a", DockerCredentials.DirectoryFor("/a", "/b", "/home/u"));
        Assert.Equal("/b", DockerCredentials.DirectoryFor(null, "/b", "/home/u"));
        Assert.Equal("/home/u/.docker", DockerCredentials.DirectoryFor(null, "", "/home/u"));
        Assert.Equal("/home/u/.docker", DockerCredentials.DirectoryFor(null, null, "/home/u"));
        Assert.Equal(Path.Combine(_config, "config.json"), Credentials().ConfigFile);
    }

    [Theory] // docker/cli's TestConvertToHostname cases
    [InlineData("127.0.0.1", "127.0.0.1")]
    [InlineData("::1", "::1")]
    [InlineData("[::1]", "[::1]")]
    [InlineData("example.com", "example.com")]
    [InlineData("http://example.com", "example.com")]
    [InlineData("https://example.com", "example.com")]
    [InlineData("https://example.com/", "example.com")]
    [InlineData("https://example.com/v2/", "example.com")]
    [InlineData("unix:///var/run/docker.sock", "unix:")]
    [InlineData("ftp://example.com", "example.com")]
    [InlineData("127.0.0.1:6556", "127.0.0.1:6556")]
    [InlineData("::1:6556", "::1:6556")]
    [InlineData("[::1]:6556", "[::1]:6556")]
    [InlineData("example.com:6555", "example.com:6555")]
    [InlineData("https://127.0.0.1:6555/v2/", "127.0.0.1:6555")]
    [InlineData("https://::1:6555/v2/", "[::1]:6555")]
    [InlineData("https://[::1]:6555/v2/", "[::1]:6555")]
    [InlineData("http://example.com:6555", "example.com:6555")]
    [InlineData("https://example.com:6555", "example.com:6555")]
    [InlineData("https://example.com:6555/v2/", "example.com:6555")]
    [InlineData("https://Example.COM:443", "Example.COM:443")] // kept as written: Go's url.Parse neither lower-cases nor drops the port
    [InlineData("https://user:pw@example.com:5000", "example.com:5000")]
    [InlineData("https://[::1]/v2/", "::1")]
    [InlineData("example.com/v1/", "example.com")]
    public void KeysWrittenAsUrlsNameTheirHostAsDockerCliConvertsThem(string key, string host) =>
        Assert.Equal(host, DockerCredentials.ConvertToHostname(key));

    [Theory]
    [InlineData("docker.io", "https://index.docker.io/v1/")]
    [InlineData("index.docker.io", "https://index.docker.io/v1/")]
    [InlineData("registry-1.docker.io", "https://index.docker.io/v1/")]
    [InlineData("https://index.docker.io/v1/", "https://index.docker.io/v1/")]
    [InlineData("reg.example:5000", "reg.example:5000")]
    [InlineData("https://reg.example:5000/", "reg.example:5000")]
    [InlineData("[::1]:5000", "[::1]:5000")]
    public void ARegistrysKeyIsDockerHubsUrlOrHostAndPort(string registry, string key) => Assert.Equal(key, DockerCredentials.KeyFor(registry));

    [Fact]
    public void NoFileMeansNoLogins()
    {
        var c = Credentials();
        Assert.Null(c.Get("docker.io"));
        Assert.False(c.Erase("reg.example:5000"));
        Assert.Equal(ConfigFile, c.Where("docker.io"));
        Assert.False(Directory.Exists(_config)); // reading never creates anything
        WriteConfig("  \n");
        Assert.Null(c.Get("docker.io")); // an empty file is no config, as docker takes it
    }

    [Fact]
    public void AuthsEntriesAreFoundByExactKeyThenByTheHostTheirUrlNames()
    {
        WriteConfig($$"""
            {
              "auths": {
                "https://index.docker.io/v1/": {"auth": "{{Base64("hubuser:hubpw")}}"},
                "https://url.example:5000": {"auth": "{{Base64("urluser:urlpw")}}"},
                "http://v2.example/v2/": {"auth": "{{Base64("v2user:v2pw")}}"},
                "https://both.example": {"auth": "{{Base64("old:old")}}"},
                "both.example": {"auth": "{{Base64("exact:exact")}}"},
                "https://[::1]:5000": {"auth": "{{Base64("v6user:v6pw")}}"},
                "fields.example": {"username": "fielduser", "password": "fieldpw"},
                "override.example": {"username": "ignored", "password": "ignored", "auth": "{{Base64("authuser:authpw")}}"},
                "token.example": {"auth": "{{Base64("tokuser:")}}", "identitytoken": "refresh-token"},
                "colon.example": {"auth": "{{Base64("user:pass:word\u0000")}}"},
                "empty.example": {},
                "email.example": {"email": "someone@example.com"}
              },
              "psFormat": "table"
            }
            """);
        var c = Credentials();
        Assert.Equal(new RegistryCredential("hubuser", "hubpw"), c.Get("docker.io"));
        Assert.Equal(new RegistryCredential("hubuser", "hubpw"), c.Get("index.docker.io"));
        Assert.Equal(new RegistryCredential("urluser", "urlpw"), c.Get("url.example:5000"));
        Assert.Null(c.Get("url.example")); // another port is another registry
        Assert.Equal(new RegistryCredential("v2user", "v2pw"), c.Get("v2.example"));
        Assert.Equal(new RegistryCredential("exact", "exact"), c.Get("both.example"));
        Assert.Equal(new RegistryCredential("v6user", "v6pw"), c.Get("[::1]:5000"));
        Assert.Equal(new RegistryCredential("fielduser", "fieldpw"), c.Get("fields.example"));
        Assert.Equal(new RegistryCredential("authuser", "authpw"), c.Get("override.example"));
        Assert.Equal(new RegistryCredential("tokuser", null, "refresh-token"), c.Get("token.example"));
        Assert.Equal(new RegistryCredential("user", "pass:word"), c.Get("colon.example")); // split at the first ':', NULs trimmed as docker does
        Assert.Null(c.Get("empty.example"));
        Assert.Null(c.Get("email.example"));
        Assert.Null(c.Get("other.example"));
        Assert.Empty(HelperCalls());
    }

    [Theory]
    [InlineData("{", "not valid JSON")]
    [InlineData("[]", "not a JSON object")]
    [InlineData("""{"auths": []}""", "auths is not an object")]
    [InlineData("""{"auths": {"reg.example": "secret"}}""", "auths[\"reg.example\"] is not an object")]
    [InlineData("""{"auths": {"reg.example": {"auth": 5}}}""", "auths[\"reg.example\"].auth is not a string")]
    [InlineData("""{"auths": {"reg.example": {"auth": "%%%"}}}""", "auths[\"reg.example\"].auth is not base64 of user:password")]
    [InlineData("""{"auths": {"reg.example": {"auth": "dXNlcg=="}}}""", "auths[\"reg.example\"].auth is not base64 of user:password")] // "user", no colon
    [InlineData("""{"auths": {"reg.example": {"auth": "OnB3"}}}""", "auths[\"reg.example\"].auth is not base64 of user:password")] // ":pw", no user
    [InlineData("""{"credsStore": 1}""", "credsStore is not a string")]
    [InlineData("""{"credHelpers": ["x"]}""", "credHelpers is not an object")]
    [InlineData("""{"credsStore": "../../tmp/evil"}""", "credential helper name \"../../tmp/evil\" has a '/' in it")]
    public void ABadConfigFileIsOneLineNamingIt(string json, string problem)
    {
        WriteConfig(json);
        var ex = Assert.Throws<StrataException>(() => Credentials().Get("reg.example"));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.StartsWith($"{ConfigFile}: {problem}", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void StoreWritesDockersFormatAndKeepsEveryOtherKey()
    {
        WriteConfig("""
            {
            	"auths": {
            		"other.example": {"auth": "b3RoZXI6b3RoZXI=", "email": "o@example.com"}
            	},
            	"psFormat": "table {{.ID}}\t{{.Names}}",
            	"proxies": {"default": {"httpProxy": "http://proxy.example:3128"}},
            	"plugins": {"x": {"y": "z"}},
            	"someFutureKey": [1, 2.50, true, null, {"nested": "\u00e9"}]
            }
            """);
        var c = Credentials();
        c.Store("docker.io", new RegistryCredential("hubuser", "hub:pw"));
        c.Store("https://reg.example:5000/", new RegistryCredential("reguser", "regpw", "refresh"));

        // Read as Docker reads it: auths[KEY].auth is base64 of user:password, identitytoken beside it.
        var root = ReadConfig();
        var auths = root.GetProperty("auths");
        Assert.Equal(["other.example", "https://index.docker.io/v1/", "reg.example:5000"], auths.EnumerateObject().Select(p => p.Name));
        var hub = auths.GetProperty("https://index.docker.io/v1/");
        Assert.Equal(["auth"], hub.EnumerateObject().Select(p => p.Name));
        Assert.Equal("hubuser:hub:pw", Encoding.UTF8.GetString(Convert.FromBase64String(hub.GetProperty("auth").GetString()!)));
        var reg = auths.GetProperty("reg.example:5000");
        Assert.Equal("reguser:regpw", Encoding.UTF8.GetString(Convert.FromBase64String(reg.GetProperty("auth").GetString()!)));
        Assert.Equal("refresh", reg.GetProperty("identitytoken").GetString());

        // Every other key as it was.
        Assert.Equal("o@example.com", auths.GetProperty("other.example").GetProperty("email").GetString());
        Assert.Equal("b3RoZXI6b3RoZXI=", auths.GetProperty("other.example").GetProperty("auth").GetString());
        Assert.Equal("table {{.ID}}\t{{.Names}}", root.GetProperty("psFormat").GetString());
        Assert.Equal("http://proxy.example:3128", root.GetProperty("proxies").GetProperty("default").GetProperty("httpProxy").GetString());
        Assert.Equal("""[1,2.50,true,null,{"nested":"é"}]""", Compact(root.GetProperty("someFutureKey")));
        Assert.Equal(["auths", "psFormat", "proxies", "plugins", "someFutureKey"], root.EnumerateObject().Select(p => p.Name));
        Assert.StartsWith("{\n\t\"auths\": {\n\t\t\"other.example\": {", File.ReadAllText(ConfigFile)); // indented with tabs, as docker writes it

        Assert.Equal(new RegistryCredential("hubuser", "hub:pw"), c.Get("docker.io"));
        Assert.Equal(new RegistryCredential("reguser", "regpw", "refresh"), c.Get("reg.example:5000"));
        Assert.Equal(0x180u, Posix.Lstat(ConfigFile).Permissions);
        Assert.Empty(HelperCalls());
    }

    [Fact]
    public void StoreMakesTheDirectory0700AndTheFile0600()
    {
        string nested = _root.Combine("home", "user", ".docker");
        var c = new DockerCredentials(nested, _helpers);
        c.Store("reg.example", new RegistryCredential("u", "p"));
        Assert.Equal(0x1C0u, Posix.Lstat(nested).Permissions);
        Assert.Equal(0x1C0u, Posix.Lstat(Path.GetDirectoryName(nested)!).Permissions);
        Assert.Equal(0x180u, Posix.Lstat(Path.Combine(nested, "config.json")).Permissions);
        Assert.Equal(["config.json"], Directory.GetFileSystemEntries(nested).Select(Path.GetFileName)); // no temp file left
    }

    [Fact]
    public void StoreKeepsTheFilesOwnerAndWritesThroughASymlink()
    {
        string dotfiles = _root.Dir("dotfiles");
        string target = Path.Combine(dotfiles, "docker-config.json");
        File.WriteAllText(target, """{"psFormat": "x"}""");
        Posix.LchownAt(FileDescriptor.Cwd, target, 4321, 4322);
        Directory.CreateDirectory(_config);
        File.CreateSymbolicLink(ConfigFile, "../dotfiles/docker-config.json");

        Credentials().Store("reg.example", new RegistryCredential("u", "p"));
        Assert.True(Posix.Lstat(ConfigFile).IsSymlink);
        var st = Posix.Lstat(target);
        Assert.Equal((4321u, 4322u, 0x180u), (st.Uid, st.Gid, st.Permissions));
        Assert.Contains("\"reg.example\"", File.ReadAllText(target));
        Assert.Contains("\"psFormat\": \"x\"", File.ReadAllText(target));
    }

    [Fact]
    public void EraseRemovesTheKeyAndItsUrlSpellingsAndSaysWhetherThereWasALogin()
    {
        WriteConfig($$"""
            {
              "auths": {
                "reg.example:5000": {"auth": "{{Base64("a:b")}}"},
                "https://reg.example:5000": {"auth": "{{Base64("c:d")}}"},
                "http://reg.example:5000/v2/": {"auth": "{{Base64("e:f")}}"},
                "reg.example": {"auth": "{{Base64("g:h")}}"},
                "https://index.docker.io/v1/": {"auth": "{{Base64("i:j")}}"},
                "empty.example": {},
                "broken.example": {"auth": "not base64!"}
              },
              "detachKeys": "ctrl-x"
            }
            """);
        var c = Credentials();
        Assert.True(c.Erase("reg.example:5000"));
        Assert.Null(c.Get("reg.example:5000"));
        Assert.Equal(new RegistryCredential("g", "h"), c.Get("reg.example"));
        Assert.False(c.Erase("reg.example:5000"));
        Assert.False(c.Erase("empty.example")); // an entry without a login is removed, but there was no login
        Assert.True(c.Erase("docker.io"));
        Assert.Throws<StrataException>(() => c.Get("broken.example"));
        Assert.True(c.Erase("broken.example")); // a login docker could not read can still be erased
        var root = ReadConfig();
        Assert.Equal(["reg.example"], root.GetProperty("auths").EnumerateObject().Select(p => p.Name));
        Assert.Equal("ctrl-x", root.GetProperty("detachKeys").GetString());
    }

    [Theory]
    [InlineData("us:er", "p", null, "a user name cannot contain ':'")]
    [InlineData("user", null, null, "a login needs a user name and a password, or an identity token")]
    [InlineData(null, "p", null, "a login needs a user name and a password, or an identity token")]
    [InlineData("", "", "", "a login needs a user name and a password, or an identity token")]
    public void StoreRefusesWhatDockerCouldNotReadBack(string? user, string? password, string? token, string problem)
    {
        var ex = Assert.Throws<StrataException>(() => Credentials().Store("reg.example", new RegistryCredential(user, password, token)));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.StartsWith(problem, ex.Message);
        Assert.False(File.Exists(ConfigFile));
    }

    [Fact]
    public void ACredsStoreHoldsTheSecretsAndTheFileOnlyAnEmptyEntry()
    {
        WriteConfig($$"""
            {"credsStore": "strata-test", "auths": {"reg.example:5000": {"auth": "{{Base64("stale:plaintext")}}"} }, "psFormat": "x"}
            """);
        var c = Credentials();
        Assert.Equal("docker-credential-strata-test", c.Where("reg.example:5000"));
        Assert.Null(c.Get("reg.example:5000")); // with a credsStore, auths entries hold nothing

        c.Store("reg.example:5000", new RegistryCredential("user", "s3cret"));
        c.Store("docker.io", new RegistryCredential("hubuser", null, "identity-token"));
        Assert.Equal(new RegistryCredential("user", "s3cret"), c.Get("reg.example:5000"));
        Assert.Equal(new RegistryCredential(null, null, "identity-token"), c.Get("docker.io")); // Username "<token>": Secret is an identity token

        string file = File.ReadAllText(ConfigFile);
        Assert.DoesNotContain("s3cret", file);
        Assert.DoesNotContain("identity-token", file);
        Assert.DoesNotContain(Base64("stale:plaintext"), file); // the old plain-text login is gone, as docker login leaves it
        var root = ReadConfig();
        Assert.Empty(root.GetProperty("auths").GetProperty("reg.example:5000").EnumerateObject());
        Assert.Equal("x", root.GetProperty("psFormat").GetString());

        // The protocol as docker-credential-helpers speaks it: the server URL alone on stdin, the JSON for store.
        var calls = HelperCalls();
        Assert.Contains("docker-credential-strata-test get reg.example:5000", calls);
        Assert.Contains("""docker-credential-strata-test store {"ServerURL":"reg.example:5000","Username":"user","Secret":"s3cret"}""", calls);
        Assert.Contains("""docker-credential-strata-test store {"ServerURL":"https://index.docker.io/v1/","Username":"<token>","Secret":"identity-token"}""", calls);
        Assert.Contains("docker-credential-strata-test get https://index.docker.io/v1/", calls);

        Assert.True(c.Erase("reg.example:5000"));
        Assert.Null(c.Get("reg.example:5000"));
        Assert.False(c.Erase("reg.example:5000"));
        Assert.False(ReadConfig().GetProperty("auths").TryGetProperty("reg.example:5000", out _));
        Assert.Contains("docker-credential-strata-test erase reg.example:5000", HelperCalls());
    }

    [Fact]
    public void ARegistrysCredHelperWinsOverTheCredsStore()
    {
        WriteConfig("""{"credsStore": "strata-test", "credHelpers": {"special.example": "strata-other", "blank.example": ""}}""");
        var c = Credentials();
        Assert.Equal("docker-credential-strata-other", c.Where("special.example"));
        Assert.Equal("docker-credential-strata-test", c.Where("blank.example")); // an empty name is no helper, as docker reads it
        c.Store("special.example", new RegistryCredential("u1", "p1"));
        c.Store("plain.example", new RegistryCredential("u2", "p2"));
        Assert.Equal(new RegistryCredential("u1", "p1"), c.Get("special.example"));
        Assert.Equal(new RegistryCredential("u2", "p2"), c.Get("plain.example"));
        Assert.Single(Directory.GetFiles(Path.Combine(_helpers, "store-docker-credential-strata-other")));
        Assert.Single(Directory.GetFiles(Path.Combine(_helpers, "store-docker-credential-strata-test")));
        Assert.Contains(HelperCalls(), l => l.StartsWith("docker-credential-strata-other store {\"ServerURL\":\"special.example\"", StringComparison.Ordinal));
    }

    [Fact]
    public void AHelperFailureIsOneLineNamingTheHelper()
    {
        WriteConfig("""{"credsStore": "strata-test", "credHelpers": {"missing.example": "not-installed"}}""");
        var c = Credentials();
        var get = Assert.Throws<StrataException>(() => c.Get("broken.example"));
        Assert.Equal((ErrorKind.Io, "docker-credential-strata-test get failed (exit 1): keychain is locked"), (get.Kind, get.Message));
        var store = Assert.Throws<StrataException>(() => c.Store("broken.example", new RegistryCredential("u", "p")));
        Assert.Equal((ErrorKind.Io, "docker-credential-strata-test store failed (exit 1): keychain is locked"), (store.Kind, store.Message));

        var missing = Assert.Throws<StrataException>(() => c.Get("missing.example"));
        Assert.Equal(ErrorKind.Unsupported, missing.Kind);
        Assert.Equal($"credential helper docker-credential-not-installed (configured in {ConfigFile}) is not installed: not found in PATH", missing.Message);
    }

    [Fact]
    public void HelpersAreLookedUpInAbsoluteDirectoriesOnly()
    {
        WriteConfig("""{"credsStore": "strata-test"}""");
        // The helpers directory named relatively (as an empty PATH entry or "." would name the current directory) is
        // not searched, as Go's exec.LookPath refuses such results.
        string relative = Path.GetRelativePath(Directory.GetCurrentDirectory(), _helpers);
        var ex = Assert.Throws<StrataException>(() => new DockerCredentials(_config, $":{relative}:/nonexistent").Get("reg.example"));
        Assert.Equal(ErrorKind.Unsupported, ex.Kind);
        Assert.Null(new DockerCredentials(_config, $"/nonexistent:{_helpers}").Get("reg.example"));
    }

    /// <summary>What Strata writes, docker itself reads: `docker logout` (which needs no daemon) parses the file, finds
    /// the key Strata wrote, rewrites the file, and Strata reads docker's rewrite.</summary>
    [SkippableFact]
    public void DockerReadsWhatStrataWrites()
    {
        Skip.If(!Shell.Has("docker"), "docker (the CLI) is not installed");
        WriteConfig("""{"psFormat": "table {{.ID}}"}""");
        var c = Credentials();
        c.Store("docker.io", new RegistryCredential("hubuser", "hubpw"));
        c.Store("127.0.0.1:5000", new RegistryCredential("reguser", "regpw", "refresh"));

        var (code, _, stderr) = Docker(null, "logout", "127.0.0.1:5000");
        Assert.True(code == 0, $"docker logout failed ({code}): {stderr}");
        Assert.DoesNotContain("Error parsing config file", stderr);
        var root = ReadConfig();
        Assert.Equal(["https://index.docker.io/v1/"], root.GetProperty("auths").EnumerateObject().Select(p => p.Name));
        Assert.Equal("table {{.ID}}", root.GetProperty("psFormat").GetString());
        Assert.Equal(new RegistryCredential("hubuser", "hubpw"), c.Get("docker.io"));

        // Through a helper: docker finds the helper's login under the same server URL and erases it there.
        WriteConfig("""{"credsStore": "strata-test"}""");
        c.Store("127.0.0.1:5000", new RegistryCredential("reguser", "regpw"));
        (code, _, stderr) = Docker(_helpers, "logout", "127.0.0.1:5000");
        Assert.True(code == 0, $"docker logout failed ({code}): {stderr}");
        Assert.Contains("docker-credential-strata-test erase 127.0.0.1:5000", HelperCalls());
        Assert.Null(c.Get("127.0.0.1:5000"));
    }

    (int Code, string Stdout, string Stderr) Docker(string? helpers, params string[] args)
    {
        var psi = new ProcessStartInfo("docker") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        psi.ArgumentList.Add("--config");
        psi.ArgumentList.Add(_config);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOCKER_HOST"] = "unix://" + _root.Combine("no-daemon.sock"); // never a real daemon
        psi.Environment.Remove("DOCKER_AUTH_CONFIG");
        if (helpers is not null) psi.Environment["PATH"] = helpers + ":" + Environment.GetEnvironmentVariable("PATH");
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("docker did not finish in 60 s");
        }
        return (p.ExitCode, output, err.Result);
    }
}
