// Docker-style image references (`debian:12`, `registry.example:5000/team/app:1`, `name@sha256:...`) parsed and
// normalized as Docker resolves them: the registry a pull or push talks to, the repository, the tag or digest.
using System.Text.RegularExpressions;
using Strata.Core.Images;

namespace Strata.Core.Registry;

/// <summary>
/// A reference to an image in a registry, normalized as Docker's (distribution's reference package) resolves it:
/// <list type="bullet">
/// <item>the first component is the registry only when it looks like a host: it has a dot or a port, is
/// <c>localhost</c>, or has an upper-case letter (which repositories never have); otherwise the registry is
/// <c>docker.io</c>, and a one-component repository there gets <c>library/</c> (<c>debian</c> is
/// <c>docker.io/library/debian</c>); <c>index.docker.io</c> is <c>docker.io</c>;</item>
/// <item>a reference with neither tag nor digest means <c>latest</c>; with both, the digest decides what is pulled and
/// the tag is kept as the name.</item>
/// </list>
/// Grammar (distribution's): repository components <c>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*</c> separated by '/', a tag
/// <c>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}</c>, a digest <c>sha256:</c> and 64 lower-case hex digits, the name (registry
/// and repository) at most 255 characters; a registry port from 1 to 65535 (Docker takes any digits, which cannot
/// connect); IPv6 registries in brackets (<c>[::1]:5000</c>, as newer Docker). Anything else is refused with one line
/// saying what is wrong. Checked against containerd 1.6's copy of Docker's parser (reference/docker).
/// </summary>
public sealed partial record ImageReference
{
    /// <summary>The registry Docker pulls from when a reference names none.</summary>
    public const string DefaultRegistry = "docker.io";

    /// <summary>Where <see cref="DefaultRegistry"/>'s distribution API answers.</summary>
    public const string DefaultRegistryHost = "registry-1.docker.io";

    const int MaxNameLength = 255;

    /// <summary>The registry: a host with an optional port (<c>docker.io</c>, <c>registry.example:5000</c>, <c>[::1]:5000</c>).</summary>
    public required string Registry { get; init; }

    /// <summary>The repository in the registry (<c>library/debian</c>, <c>team/app</c>).</summary>
    public required string Repository { get; init; }

    /// <summary>The tag, if any (<c>latest</c> when the reference had neither tag nor digest).</summary>
    public string? Tag { get; init; }

    /// <summary>The manifest's digest, if the reference pins one.</summary>
    public Digest? Digest { get; init; }

    /// <summary>The host the distribution API is reached at (Docker Hub's API is not at docker.io).</summary>
    public string ApiHost => Registry == DefaultRegistry ? DefaultRegistryHost : Registry;

    /// <summary>What the registry API's manifest endpoint takes: the digest when pinned, else the tag.</summary>
    public string ManifestReference => Digest is { } d ? d.ToString() : Tag!;

    /// <summary>Registry and repository: <c>docker.io/library/debian</c>.</summary>
    public string Name => $"{Registry}/{Repository}";

    /// <summary>The whole reference in full: <c>docker.io/library/debian:12</c>, <c>host/app@sha256:...</c>.</summary>
    public override string ToString() => Name + (Tag is null ? "" : ":" + Tag) + (Digest is { } d ? "@" + d : "");

    /// <summary>As Docker shows it: without <c>docker.io/</c> and <c>library/</c> (<c>debian:12</c>).</summary>
    public string Familiar
    {
        get
        {
            string name = Registry != DefaultRegistry ? Name
                : Repository.StartsWith("library/", StringComparison.Ordinal) && Repository.IndexOf('/', 8) < 0 ? Repository[8..]
                : Repository;
            return name + (Tag is null ? "" : ":" + Tag) + (Digest is { } d ? "@" + d : "");
        }
    }

    [GeneratedRegex(@"\A(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\z")]
    private static partial Regex RegistryPattern();

    [GeneratedRegex(@"\A[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\z")]
    private static partial Regex ComponentPattern();

    [GeneratedRegex(@"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\z")]
    private static partial Regex TagPattern();

    /// <summary>Parses and normalizes <paramref name="text"/>; InvalidArgument, in one line, when it is not a reference.</summary>
    public static ImageReference Parse(string text)
    {
        string shown = text.Length > 80 ? text[..80] + "..." : text;
        StrataException Bad(string why) => StrataException.Invalid($"invalid reference '{shown}': {why}");
        if (text.Length == 0) throw Bad("it is empty");

        string rest = text;
        Digest? digest = null;
        int at = rest.IndexOf('@');
        if (at >= 0)
        {
            string d = rest[(at + 1)..];
            if (!Images.Digest.TryParse(d, out var parsed)) throw Bad($"'{(d.Length > 80 ? d[..80] + "..." : d)}' is not a digest (sha256: and 64 lower-case hex digits)");
            digest = parsed;
            rest = rest[..at];
        }
        string? tag = null;
        int colon = rest.LastIndexOf(':');
        if (colon > rest.LastIndexOf('/'))
        {
            tag = rest[(colon + 1)..];
            if (!TagPattern().IsMatch(tag)) throw Bad($"'{(tag.Length > 80 ? tag[..80] + "..." : tag)}' is not a tag ([A-Za-z0-9_][A-Za-z0-9_.-], at most 128 characters)");
            rest = rest[..colon];
        }
        if (rest.Length == 0) throw Bad("it names no repository");
        if (rest.Length > MaxNameLength) throw Bad($"the name is longer than {MaxNameLength} characters");

        string registry = DefaultRegistry, repository = rest;
        int slash = rest.IndexOf('/');
        if (slash >= 0)
        {
            string first = rest[..slash];
            if (first.Contains('.') || first.Contains(':') || first == "localhost" || first.Any(char.IsUpper))
            {
                // Docker takes a first component that is a valid repository component as its host too (a_b.example)
                if (!RegistryPattern().IsMatch(first) && !ComponentPattern().IsMatch(first)) throw Bad($"'{first}' is not a registry host");
                if (first.LastIndexOf(':') is var c and > 0 && !first.EndsWith(']') && int.Parse(first[(c + 1)..], System.Globalization.CultureInfo.InvariantCulture) is 0 or > 65535)
                    throw Bad($"'{first}' has no valid port (1 to 65535)");
                registry = first == "index.docker.io" ? DefaultRegistry : first;
                repository = rest[(slash + 1)..];
            }
        }
        foreach (var component in repository.Split('/'))
        {
            if (ComponentPattern().IsMatch(component)) continue;
            if (component.Length == 0) throw Bad("the repository has an empty path component");
            if (component.Any(char.IsUpper)) throw Bad("repository names must be lower-case");
            throw Bad($"'{component}' is not a repository path component (lower-case letters and digits, separated by '.', '_', '__' or '-')");
        }
        if (registry == DefaultRegistry && !repository.Contains('/')) repository = "library/" + repository;
        if (tag is null && digest is null) tag = "latest";
        return new ImageReference { Registry = registry, Repository = repository, Tag = tag, Digest = digest };
    }
}
