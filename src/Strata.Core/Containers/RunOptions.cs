namespace Strata.Core.Containers;

/// <summary>
/// What the caller of `strata run` changes of the image's process and root, as `docker run` does: environment
/// variables (-e, --env-file; they replace the image's of the same name), working directory (-w), user (-u),
/// entrypoint (--entrypoint; any given entrypoint, even an empty one, also drops the image's Cmd), bind mounts (-v)
/// and a read-only root (--read-only). Built from the command line by the CLI, validated here.
/// </summary>
public sealed record RunOptions
{
    /// <summary>KEY=VALUE, in the order given: a later one replaces an earlier one of the same KEY.</summary>
    public IReadOnlyList<string> Env { get; init; } = [];
    /// <summary>Null: the image's WorkingDir. Else an absolute path in the container.</summary>
    public string? WorkingDir { get; init; }
    /// <summary>Null: the image's User. Else USER[:GROUP], resolved as the image's is (<see cref="UserLookup"/>).</summary>
    public string? User { get; init; }
    /// <summary>Null: the image's Entrypoint and (without a command) Cmd. Else the entrypoint (empty: none), and the
    /// image's Cmd is not used.</summary>
    public IReadOnlyList<string>? Entrypoint { get; init; }
    public IReadOnlyList<BindMount> Mounts { get; init; } = [];
    public bool ReadOnlyRoot { get; init; }

    /// <summary>The working directory of -w: absolute (runc needs it so, docker refuses a relative one), cleaned.</summary>
    public static string ParseWorkingDir(string dir) =>
        dir.StartsWith('/') ? BindMount.Clean(dir, "-w") : throw StrataException.Invalid($"the working directory '{dir}' is not an absolute path");
}

/// <summary>A host path bound into the container (`-v SRC:DST[:ro|rw]`): the source an absolute host path that exists
/// (Strata has no named volumes), the destination an absolute path in the container other than its root.</summary>
public sealed record BindMount(string Source, string Destination, bool ReadOnly)
{
    /// <summary>Parses and checks one -v argument; <paramref name="exists"/> says whether a host path exists.</summary>
    public static BindMount Parse(string spec, Func<string, bool> exists)
    {
        var parts = spec.Split(':');
        if (parts.Length is < 2 or > 3 || parts[0].Length == 0 || parts[1].Length == 0)
            throw StrataException.Invalid($"-v '{spec}' is not SRC:DST[:ro|rw]");
        bool readOnly = parts.Length == 3 ? parts[2] switch
        {
            "ro" => true,
            "rw" => false,
            var o => throw StrataException.Invalid($"-v '{spec}': unknown option '{o}' (use ro or rw)"),
        } : false;
        if (!parts[0].StartsWith('/'))
            throw StrataException.Invalid($"-v '{spec}': the source '{parts[0]}' is not an absolute host path (strata binds host paths; it has no named volumes)");
        if (!parts[1].StartsWith('/'))
            throw StrataException.Invalid($"-v '{spec}': the destination '{parts[1]}' is not an absolute path in the container");
        string source = Path.TrimEndingDirectorySeparator(parts[0]) is { Length: > 0 } s ? s : "/";
        string destination = Clean(parts[1], "-v " + spec);
        if (destination == "/") throw StrataException.Invalid($"-v '{spec}': the destination cannot be the container's root");
        if (!exists(source)) throw StrataException.NotFound($"-v '{spec}': the source {source} does not exist");
        return new BindMount(source, destination, readOnly);
    }

    /// <summary>An absolute container path without empty or `.` parts; `..` is refused (runc would resolve it in the
    /// container, where it means something else than the caller read).</summary>
    internal static string Clean(string path, string what)
    {
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToList();
        if (parts.Contains("..")) throw StrataException.Invalid($"{what}: '{path}' has a '..' in it");
        return "/" + string.Join('/', parts);
    }
}
