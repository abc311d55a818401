using Strata.Core.Registry;

namespace Strata.Core.Tests.Registry;

/// <summary>References resolve as Docker resolves them (distribution's reference.ParseNormalizedNamed): the default
/// registry and library/ for bare names, a first component that is a host only when it looks like one, latest when
/// neither tag nor digest; bad references are one line naming what is wrong.</summary>
public sealed class ImageReferenceTests
{
    const string Hex = "4b1f83d3c2d28c6c3bd0a5d2ab5b2e5f17e7b8a9a3e4f0e2a1b9c8d7e6f5a4b3";

    [Theory]
    [InlineData("debian", "docker.io", "library/debian", "latest", null, "debian:latest")]
    [InlineData("debian:12", "docker.io", "library/debian", "12", null, "debian:12")]
    [InlineData("docker.io/debian:12", "docker.io", "library/debian", "12", null, "debian:12")]
    [InlineData("index.docker.io/library/debian", "docker.io", "library/debian", "latest", null, "debian:latest")]
    [InlineData("bitnami/redis:7.2", "docker.io", "bitnami/redis", "7.2", null, "bitnami/redis:7.2")]
    [InlineData("docker.io/library/debian/extra", "docker.io", "library/debian/extra", "latest", null, "library/debian/extra:latest")]
    [InlineData("registry.example:5000/team/app:1", "registry.example:5000", "team/app", "1", null, "registry.example:5000/team/app:1")]
    [InlineData("localhost/app", "localhost", "app", "latest", null, "localhost/app:latest")]
    [InlineData("localhost:5000/a/b/c:v1.2-rc_3", "localhost:5000", "a/b/c", "v1.2-rc_3", null, "localhost:5000/a/b/c:v1.2-rc_3")]
    [InlineData("127.0.0.1:5000/app", "127.0.0.1:5000", "app", "latest", null, "127.0.0.1:5000/app:latest")]
    [InlineData("[::1]:5000/app:2", "[::1]:5000", "app", "2", null, "[::1]:5000/app:2")]
    [InlineData("Registry/app", "Registry", "app", "latest", null, "Registry/app:latest")] // upper case: a host
    [InlineData("a.b-c.example/x", "a.b-c.example", "x", "latest", null, "a.b-c.example/x:latest")]
    [InlineData("a.b_c/x", "a.b_c", "x", "latest", null, "a.b_c/x:latest")] // not DNS, but Docker takes it as a host
    [InlineData("team/a.b_c__d-e--f", "docker.io", "team/a.b_c__d-e--f", "latest", null, "team/a.b_c__d-e--f:latest")]
    [InlineData("debian@sha256:" + Hex, "docker.io", "library/debian", null, Hex, "debian@sha256:" + Hex)]
    [InlineData("host.example/app:1@sha256:" + Hex, "host.example", "app", "1", Hex, "host.example/app:1@sha256:" + Hex)]
    public void ReferencesResolveAsDockersDo(string text, string registry, string repository, string? tag, string? digest, string familiar)
    {
        var r = ImageReference.Parse(text);
        Assert.Equal((registry, repository, tag, digest), (r.Registry, r.Repository, r.Tag, r.Digest?.Hex));
        Assert.Equal(familiar, r.Familiar);
        Assert.Equal(r, ImageReference.Parse(r.ToString())); // the full form parses back to itself
        Assert.Equal(r, ImageReference.Parse(r.Familiar));
    }

    [Fact]
    public void TheApiHostAndManifestReferenceAreWhatTheRegistryIsAskedFor()
    {
        var hub = ImageReference.Parse("debian:12");
        Assert.Equal(("registry-1.docker.io", "12", "docker.io/library/debian:12"), (hub.ApiHost, hub.ManifestReference, hub.ToString()));
        var pinned = ImageReference.Parse("registry.example:5000/app:1@sha256:" + Hex);
        Assert.Equal(("registry.example:5000", "sha256:" + Hex), (pinned.ApiHost, pinned.ManifestReference));
    }

    [Theory]
    [InlineData("", "it is empty")]
    [InlineData(":12", "it names no repository")]
    [InlineData("Debian", "repository names must be lower-case")]
    [InlineData("team/App", "repository names must be lower-case")]
    [InlineData("team//app", "empty path component")]
    [InlineData("team/app/", "empty path component")]
    [InlineData("-app", "is not a repository path component")]
    [InlineData("app_", "is not a repository path component")]
    [InlineData("a___b", "is not a repository path component")]
    [InlineData("app:-1", "is not a tag")]
    [InlineData("app:", "is not a tag")]
    [InlineData("app:a b", "is not a tag")]
    [InlineData("app@sha256:abc", "is not a digest")]
    [InlineData("app@md5:" + Hex, "is not a digest")]
    [InlineData("app@", "is not a digest")]
    [InlineData("bad-.example/app", "is not a registry host")]
    [InlineData("host.example:port/app", "is not a registry host")]
    [InlineData("host.example:99999999/app", "is not a registry host")]
    [InlineData("host.example:65536/app", "no valid port")]
    [InlineData("host.example:0/app", "no valid port")]
    [InlineData("app\nb", "is not a repository path component")]
    public void BadReferencesAreOneClearLine(string text, string why)
    {
        var e = Assert.Throws<StrataException>(() => ImageReference.Parse(text));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(why, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void NamesAreAtMost255Characters()
    {
        string longest = "h.example/" + new string('a', 245);
        Assert.Equal(255, longest.Length);
        Assert.Equal(new string('a', 245), ImageReference.Parse(longest + ":t").Repository);
        var e = Assert.Throws<StrataException>(() => ImageReference.Parse(longest + "a:t"));
        Assert.Contains("longer than 255", e.Message);
        Assert.Equal(128, ImageReference.Parse("app:" + new string('t', 128)).Tag!.Length);
        Assert.Throws<StrataException>(() => ImageReference.Parse("app:" + new string('t', 129)));
    }
}
