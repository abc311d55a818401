using System.Text.Json.Nodes;

namespace Strata.Core.Containers;

/// <summary>What a container runs: the command line, environment, working directory and user, from the image's
/// config and the caller's command.</summary>
public sealed record BundleProcess
{
    public required IReadOnlyList<string> Args { get; init; }
    public required IReadOnlyList<string> Env { get; init; }
    public required string Cwd { get; init; }
    /// <summary>The image's User, unresolved (see <see cref="UserLookup"/>).</summary>
    public required string User { get; init; }
    public required bool Terminal { get; init; }
}

/// <summary>
/// The OCI runtime bundle `strata run` hands to runc: a directory <c>&lt;bundles&gt;/&lt;container id&gt;</c> holding
/// <c>config.json</c>, which is runc's default spec (<c>runc spec</c>: namespaces, capabilities, masked paths, a
/// network namespace of its own with loopback only) with the container's root, hostname, process and bind mounts
/// filled in. The root is the mounted container tree, writable unless the caller asks for it read-only; the hostname is the container's name (its id's first 12
/// characters when the name is longer than the kernel's 64).
/// </summary>
public static class RuntimeBundle
{
    const string DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    /// <summary>What runc not being there is (its one message for every runc call).</summary>
    public static StrataException RuncMissing(string why) => StrataException.NotFound("runc is not installed (apt-get install runc)");

    /// <summary>The process of a container named <paramref name="name"/> from its image's config (the OCI config's
    /// <c>config</c> object, Docker's casing: Entrypoint, Cmd, Env, WorkingDir, User; null: none) and the caller's
    /// <paramref name="options"/>: the entrypoint followed by <paramref name="command"/>, or by the image's Cmd when no
    /// command is given and the entrypoint is the image's; the image's environment with the caller's laid over it, a
    /// default PATH when it has none, HOSTNAME, and TERM for a terminal.</summary>
    public static BundleProcess Process(JsonNode? imageConfig, string name, IReadOnlyList<string> command, bool terminal, RunOptions? options = null)
    {
        options ??= new RunOptions();
        var entrypoint = options.Entrypoint ?? Strings(imageConfig?["Entrypoint"]);
        var args = entrypoint.Concat(command.Count > 0 ? command : options.Entrypoint is null ? Strings(imageConfig?["Cmd"]) : []).ToList();
        if (args.Count == 0)
            throw StrataException.Invalid(options.Entrypoint is null ? "no command: the image has no entrypoint or cmd; give one after the image name"
                : "no command: --entrypoint '' clears the image's entrypoint and cmd; give one after the image name");
        var env = ContainerEnv.Merge(Strings(imageConfig?["Env"]), options.Env);
        if (!env.Any(e => e.StartsWith("PATH=", StringComparison.Ordinal))) env.Insert(0, DefaultPath);
        if (!env.Any(e => e.StartsWith("HOSTNAME=", StringComparison.Ordinal))) env.Add("HOSTNAME=" + name);
        if (terminal && !env.Any(e => e.StartsWith("TERM=", StringComparison.Ordinal))) env.Add("TERM=xterm");
        return new BundleProcess
        {
            Args = args,
            Env = env,
            Cwd = options.WorkingDir ?? (imageConfig?["WorkingDir"]?.GetValue<string>() is { Length: > 0 } cwd ? cwd : "/"),
            User = options.User ?? imageConfig?["User"]?.GetValue<string>() ?? "",
            Terminal = terminal,
        };
    }

    /// <summary>Fills runc's default <paramref name="spec"/> for container <paramref name="id"/> named
    /// <paramref name="name"/> on the tree at <paramref name="rootfs"/>, running <paramref name="process"/> as
    /// <paramref name="user"/>, with the bind mounts and read-only root of <paramref name="options"/>; returns the spec.
    /// A bind mount replaces a default mount of runc's at the same destination (as docker's do).</summary>
    public static JsonNode Fill(JsonNode spec, string id, string name, string rootfs, BundleProcess process, (uint Uid, uint Gid) user, RunOptions? options = null)
    {
        options ??= new RunOptions();
        spec["root"] = new JsonObject { ["path"] = rootfs, ["readonly"] = options.ReadOnlyRoot };
        spec["hostname"] = name.Length <= 64 ? name : id[..12];
        var p = spec["process"] as JsonObject ?? throw StrataException.Corrupt("runc's default spec has no process object");
        p["terminal"] = process.Terminal;
        p["args"] = new JsonArray(process.Args.Select(a => (JsonNode)JsonValue.Create(a)).ToArray());
        p["env"] = new JsonArray(process.Env.Select(e => (JsonNode)JsonValue.Create(e)).ToArray());
        p["cwd"] = process.Cwd;
        p["user"] = new JsonObject { ["uid"] = user.Uid, ["gid"] = user.Gid };
        if (options.Mounts.Count > 0)
        {
            var destinations = options.Mounts.Select(m => m.Destination).ToHashSet(StringComparer.Ordinal);
            var mounts = new JsonArray();
            if (spec["mounts"] is JsonArray defaults)
                foreach (var m in defaults.Where(m => m?["destination"]?.GetValue<string>() is not { } d || !destinations.Contains(d)))
                    mounts.Add(m!.DeepClone());
            foreach (var m in options.Mounts)
                mounts.Add((JsonNode)new JsonObject
                {
                    ["destination"] = m.Destination,
                    ["type"] = "bind",
                    ["source"] = m.Source,
                    ["options"] = new JsonArray("rbind", "rprivate", m.ReadOnly ? "ro" : "rw"),
                });
            spec["mounts"] = mounts;
        }
        return spec;
    }

    /// <summary>Makes the bundle of container <paramref name="id"/> under <paramref name="bundles"/> (replacing one a
    /// killed run left) and returns its directory: resolves the process's user in the image, then writes runc's default
    /// spec, filled. On failure nothing is left.</summary>
    public static string Create(string bundles, string id, string name, string rootfs, BundleProcess process, RunOptions? options = null)
    {
        var user = UserLookup.Resolve(rootfs, process.User);
        string bundle = Path.Combine(bundles, id);
        Directory.CreateDirectory(bundles);
        if (Directory.Exists(bundle)) Directory.Delete(bundle, recursive: true);
        Directory.CreateDirectory(bundle);
        try
        {
            if (ExternalTool.Run("runc", ["spec", "--bundle", bundle], RuncMissing, out var stderr) != 0)
                throw new StrataException(ErrorKind.Io, $"runc spec --bundle {bundle} failed: {stderr.Trim()}");
            string config = Path.Combine(bundle, "config.json");
            var spec = JsonNode.Parse(File.ReadAllBytes(config)) ?? throw StrataException.Corrupt($"runc spec wrote no spec to {config}");
            File.WriteAllText(config, Fill(spec, id, name, rootfs, process, user, options).ToJsonString());
            return bundle;
        }
        catch
        {
            Remove(bundle);
            throw;
        }
    }

    /// <summary>Deletes a bundle <see cref="Create"/> made.</summary>
    public static void Remove(string bundle) => Directory.Delete(bundle, recursive: true);

    static List<string> Strings(JsonNode? node) => node is JsonArray a ? a.Select(x => x?.GetValue<string>() ?? "").ToList() : [];
}
