using System.Text.Json;
using Strata.Cli;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>The command lines of `strata pull`, `push`, `login` and `logout` and the Docker names `images`, `ps` and
/// `rmi`, as a user runs them: refusals before any registry is asked, each one line with its exit code. Pulls and pushes
/// against a registry are tested with the registry client.</summary>
public sealed class RegistryCliTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;

    public RegistryCliTests() => _cli = new Cli(_temp.Combine("store"));

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void DockerNamesRunTheImageAndContainerCommands()
    {
        string src = _temp.Dir("src");
        File.WriteAllText(Path.Combine(src, "f"), "x");
        Shell.Run("tar", "-C", src, "-cf", _temp.Combine("rootfs.tar"), ".").Check("tar");
        string id = _cli.Ok("--driver", "vfs", "image", "import", _temp.Combine("rootfs.tar"), "--name", "img:1", "-q").Split(' ')[0];
        _cli.Ok("container", "create", "img:1", "--name", "c1");

        Assert.Contains("img:1", _cli.Ok("images"));
        Assert.Equal(_cli.Ok("image", "ls"), _cli.Ok("images"));
        Assert.Equal(_cli.Ok("image", "ls", "--format", "json"), _cli.Ok("images", "--format", "json"));
        Assert.DoesNotContain("c1", _cli.Ok("ps")); // as docker ps: running containers, all with -a
        Assert.Contains("c1", _cli.Ok("ps", "-a"));
        Assert.Equal(_cli.Ok("container", "ls", "-a", "--format", "{{.Id}} {{.Name}} {{.State.Status}}"), _cli.Ok("ps", "-a", "--format", "{{.Id}} {{.Name}} {{.State.Status}}"));

        // an image id names no place to push to
        var push = _cli.Run("push", id[7..19]);
        Assert.Equal((ExitCodes.Usage, $"strata: '{id[7..19]}' is an image id: name where to push it (strata push IMAGE REF)\n"), (push.ExitCode, push.Stderr));

        var rm = _cli.Run("image", "rm", "img:1");
        var rmi = _cli.Run("rmi", "img:1");
        Assert.Equal(ExitCodes.InUse, rmi.ExitCode);
        Assert.Equal((rm.ExitCode, rm.Stderr), (rmi.ExitCode, rmi.Stderr));
        _cli.Ok("container", "rm", "c1");
        Assert.StartsWith($"Untagged: img:1\nDeleted: {id}\nDeleted: sha256:", _cli.Ok("rmi", "img:1")); // docker's lines
        Assert.Empty(JsonDocument.Parse(_cli.Ok("images", "--format", "json")).RootElement.EnumerateArray());
        Assert.Empty(JsonDocument.Parse(_cli.Ok("ps", "-a", "--format", "json")).RootElement.EnumerateArray());
    }

    [Theory]
    [InlineData("strata: invalid reference 'Debian:12': repository names must be lower-case", "pull", "Debian:12")]
    [InlineData("strata: invalid reference 'debian:': '' is not a tag ([A-Za-z0-9_][A-Za-z0-9_.-], at most 128 characters)", "pull", "debian:")]
    [InlineData("strata: a tag or digest can't be used with --all-tags/-a", "pull", "-a", "debian:12")]
    [InlineData("strata: --max-concurrent-downloads 0 is out of range (1 to 100)", "pull", "--max-concurrent-downloads", "0", "debian")]
    [InlineData("strata: invalid platform 'linux' (use os/arch[/variant], e.g. linux/amd64)", "pull", "--platform", "linux", "debian")]
    [InlineData("strata: unknown --compression 'lz4' (use gzip or zstd)", "push", "--compression", "lz4", "img:1")]
    [InlineData("strata: --chunk-size '5Q' is not a size (examples: 4096, 64K, 50M, 10G)", "push", "--chunk-size", "5Q", "img:1")]
    [InlineData("strata: invalid reference 'team/App': repository names must be lower-case", "push", "img:1", "team/App")]
    [InlineData("strata: 'bad host!' is not a registry (host[:port])", "login", "bad host!")]
    [InlineData("strata: 'registry.example:0' is not a registry (host[:port])", "logout", "registry.example:0")]
    public void ABadArgumentIsOneLine(string message, params string[] args)
    {
        var r = _cli.Run(args);
        Assert.Equal((ExitCodes.Usage, message + "\n", ""), (r.ExitCode, r.Stderr, r.Stdout));
    }

    [Fact]
    public void PushingToADigestIsRefused()
    {
        string digest = "sha256:" + new string('a', 64);
        var r = _cli.Run("push", "img:1", "registry.example/app@" + digest);
        Assert.Equal((ExitCodes.Usage, $"strata: cannot push to a digest reference 'registry.example/app@{digest}': give a tag\n"), (r.ExitCode, r.Stderr));
    }

    [Theory]
    [InlineData("", "strata: --password-stdin read an empty password", "login", "-u", "me", "--password-stdin", "registry.example")]
    [InlineData("\n", "strata: --password-stdin read an empty password", "login", "-u", "me", "--password-stdin", "registry.example")]
    [InlineData("secret\n", "strata: --password-stdin needs --username (-u)", "login", "--password-stdin", "registry.example")]
    [InlineData("secret\n", "strata: --password and --password-stdin are mutually exclusive", "login", "-u", "me", "-p", "x", "--password-stdin", "registry.example")]
    [InlineData("", "strata: cannot ask for a username and password: stdin is not a terminal (use -u and --password-stdin)", "login", "-u", "me", "registry.example")]
    public void LoginWithoutAPasswordIsRefused(string stdin, string message, params string[] args)
    {
        var r = _cli.Run(System.Text.Encoding.UTF8.GetBytes(stdin), args);
        Assert.Equal((ExitCodes.Usage, message + "\n", ""), (r.ExitCode, r.Stderr, r.Stdout));
    }

    [Fact]
    public void LogoutOfAServerNeverLoggedInToSaysSo()
    {
        // a config directory of its own: the test never reads or changes the machine's ~/.docker
        string config = _temp.Dir("docker-config");
        var r = Shell.Run("env", $"DOCKER_CONFIG={config}", Cli.Binary, "--root", _temp.Combine("store"), "logout", "https://registry.example:5000/v2/");
        Assert.Equal((0, "Not logged in to registry.example:5000\n", ""), (r.ExitCode, r.Stdout, r.Stderr));
        Assert.Empty(Directory.GetFileSystemEntries(config));
    }

    [Fact]
    public void LoginAndLogoutRunInTheCliProcessAndPullAndPushInTheDaemon()
    {
        string root = _temp.Combine("store");
        bool Forwardable(params string[] args) => Commands.Route(Commands.Build().Parse(["--root", root, .. args])).Forwardable;
        Assert.False(Forwardable("login", "-u", "me", "--password-stdin", "registry.example"));
        Assert.False(Forwardable("logout", "registry.example"));
        Assert.True(Forwardable("pull", "debian"));
        Assert.True(Forwardable("push", "img:1", "registry.example/img:1"));
        Assert.True(Forwardable("images"));
        Assert.True(Forwardable("ps"));
        Assert.True(Forwardable("rmi", "img:1"));
    }
}
