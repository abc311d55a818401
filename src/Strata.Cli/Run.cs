using System.CommandLine;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Strata.Native;

namespace Strata.Cli;

/// <summary>
/// `strata run`: a container from an image, mounted and handed to runc (Strata is not a runtime). It runs in
/// this process, never inside the daemon (its terminal and signals are the caller's), and it does not hold
/// the store while the command runs: each store step (create, mount, inspect, unmount, rm) is a strata
/// command of its own, sent to the daemon that owns the store or run here, so other commands go on
/// meanwhile. The OCI runtime bundle is runc's default spec (namespaces, capabilities, masked paths, a
/// network namespace of its own: loopback only) with the image's process config filled in.
/// </summary>
public static partial class Commands
{
    const string RuncRoot = "/run/strata/runc", Bundles = "/run/strata/bundles";

    static Command RunCommand()
    {
        var image = new Argument<string>("IMAGE") { Description = "Image name, id or id prefix" };
        var command = new Argument<string[]>("COMMAND") { Description = "Command and arguments (default: the image's entrypoint and cmd)", Arity = ArgumentArity.ZeroOrMore };
        var rm = new Option<bool>("--rm") { Description = "Remove the container when the command exits" };
        var name = new Option<string?>("--name") { Description = "Container name" };
        var tty = new Option<bool>("--tty", "-t") { Description = "Give the command a terminal" };
        var cmd = new Command("run", "Create a container from IMAGE and run a command in it with runc; exits with the command's code") { image, command, rm, name, tty };
        cmd.SetAction(r =>
        {
            string[] store = StoreArgs(r);
            var create = new List<string>(store) { "container", "create", r.GetValue(image)! };
            if (r.GetValue(name) is { } n) create.AddRange(["--name", n]);
            string id = Step([.. create]);
            int code;
            try
            {
                string rootfs = Step([.. store, "container", "mount", id]);
                try
                {
                    var inspect = JsonNode.Parse(Step([.. store, "container", "inspect", id]))!;
                    code = RunInBundle(id, inspect["Container"]!["Name"]!.GetValue<string>(), rootfs, inspect["Config"], r.GetValue(command) ?? [], r.GetValue(tty));
                }
                finally
                {
                    Step([.. store, "container", "unmount", id]);
                }
            }
            finally
            {
                if (r.GetValue(rm)) Step([.. store, "container", "rm", id]);
            }
            return code;
        });
        return cmd;
    }

    /// <summary>The global options of this command line, for the store steps.</summary>
    static string[] StoreArgs(ParseResult r)
    {
        var args = new List<string> { "--root", Path.GetFullPath(r.GetValue(RootOption)!) };
        if (r.GetValue(DriverOption) is { } d) args.AddRange(["--driver", d]);
        foreach (var o in r.GetValue(StorageOption) ?? []) args.AddRange(["--storage-opt", o]);
        return [.. args];
    }

    /// <summary>One store step: through the daemon that owns the store, or here; its stdout (trimmed), or its error.</summary>
    static string Step(string[] args)
    {
        var parsed = Build().Parse(args);
        using var stdout = new MemoryStream();
        using var stderr = new MemoryStream();
        int? code = Control.TryForward(Route(parsed), args, stdout, stderr);
        string output, error;
        if (code is null)
        {
            var saved = Io.Current;
            var outw = new StringWriter();
            var errw = new StringWriter();
            Io.Current = new Io { Out = outw, Err = errw, BinaryOut = () => null, In = () => Stream.Null, Cwd = saved.Cwd, OutIsTerminal = false };
            try
            {
                code = Runner.Run(parsed);
            }
            finally
            {
                Io.Current = saved;
            }
            (output, error) = (outw.ToString(), errw.ToString());
        }
        else (output, error) = (Encoding.UTF8.GetString(stdout.ToArray()), Encoding.UTF8.GetString(stderr.ToArray()));
        if (code != 0) throw new StepFailed(code.Value, error.TrimEnd('\n'));
        return output.TrimEnd('\n');
    }

    /// <summary>A store step failed: its message is already `strata: ...`; the run ends with its code.</summary>
    internal sealed class StepFailed(int code, string message) : Exception(message)
    {
        public int Code => code;
    }

    static int RunInBundle(string id, string name, string rootfs, JsonNode? config, string[] command, bool tty)
    {
        var entrypoint = Strings(config?["Entrypoint"]);
        var args = entrypoint.Concat(command.Length > 0 ? command : Strings(config?["Cmd"])).ToList();
        if (args.Count == 0) throw StrataException.Invalid("no command: the image has no entrypoint or cmd; give one after the image name");
        if (tty && Console.IsInputRedirected) throw StrataException.Invalid("--tty needs a terminal on stdin");
        var env = Strings(config?["Env"]);
        if (!env.Any(e => e.StartsWith("PATH=", StringComparison.Ordinal))) env.Insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        env.Add("HOSTNAME=" + name);
        if (tty && !env.Any(e => e.StartsWith("TERM=", StringComparison.Ordinal))) env.Add("TERM=xterm");
        var (uid, gid) = ResolveUser(rootfs, config?["User"]?.GetValue<string>() ?? "");

        string bundle = Path.Combine(Bundles, id);
        Directory.CreateDirectory(Bundles);
        if (Directory.Exists(bundle)) Directory.Delete(bundle, recursive: true);
        Directory.CreateDirectory(bundle);
        try
        {
            Exec("runc", "spec", "--bundle", bundle);
            var spec = JsonNode.Parse(File.ReadAllBytes(Path.Combine(bundle, "config.json")))!;
            spec["root"] = new JsonObject { ["path"] = rootfs, ["readonly"] = false };
            spec["hostname"] = name.Length <= 64 ? name : id[..12];
            var process = spec["process"]!;
            process["terminal"] = tty;
            process["args"] = new JsonArray(args.Select(a => (JsonNode)JsonValue.Create(a)).ToArray());
            process["env"] = new JsonArray(env.Select(e => (JsonNode)JsonValue.Create(e)).ToArray());
            process["cwd"] = config?["WorkingDir"]?.GetValue<string>() is { Length: > 0 } cwd ? cwd : "/";
            process["user"] = new JsonObject { ["uid"] = uid, ["gid"] = gid };
            File.WriteAllText(Path.Combine(bundle, "config.json"), spec.ToJsonString());
            // runc in the foreground, on this process's stdio (and terminal): it forwards signals and returns the command's exit code
            var psi = new ProcessStartInfo("runc") { UseShellExecute = false };
            foreach (var a in new[] { "--root", RuncRoot, "run", "--bundle", bundle, id }) psi.ArgumentList.Add(a);
            using var runc = Process.Start(psi) ?? throw StrataException.NotFound("runc is not installed (apt-get install runc)");
            runc.WaitForExit();
            return runc.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            throw StrataException.NotFound("runc is not installed (apt-get install runc)");
        }
        finally
        {
            Exec("runc", "--root", RuncRoot, "delete", "--force", id); // whatever a killed run left
            Directory.Delete(bundle, recursive: true);
        }
    }

    static List<string> Strings(JsonNode? node) => node is JsonArray a ? a.Select(x => x?.GetValue<string>() ?? "").ToList() : [];

    /// <summary>The image's User (uid, uid:gid, name or name:group) as numbers, looked up in the container's own
    /// /etc/passwd and /etc/group (read inside the rootfs: a symlink there cannot point at the host's).</summary>
    static (uint Uid, uint Gid) ResolveUser(string rootfs, string user)
    {
        if (user.Length == 0) return (0, 0);
        string u = user, g = "";
        int colon = user.IndexOf(':');
        if (colon >= 0) (u, g) = (user[..colon], user[(colon + 1)..]);
        uint? uid = uint.TryParse(u, out var n) ? n : null, gid = null;
        foreach (var line in ReadInRoot(rootfs, "etc/passwd"))
        {
            var f = line.Split(':');
            if (f.Length < 4) continue;
            if ((uid is null && f[0] == u) || (uid is { } x && f[2] == x.ToString(System.Globalization.CultureInfo.InvariantCulture)))
            {
                uid ??= uint.Parse(f[2], System.Globalization.CultureInfo.InvariantCulture);
                gid = uint.TryParse(f[3], out var pg) ? pg : null;
                break;
            }
        }
        if (uid is null) throw StrataException.NotFound($"user '{u}' is not in the image's /etc/passwd");
        if (g.Length > 0)
        {
            gid = uint.TryParse(g, out var ng) ? ng : null;
            if (gid is null)
                foreach (var line in ReadInRoot(rootfs, "etc/group"))
                {
                    var f = line.Split(':');
                    if (f.Length >= 3 && f[0] == g && uint.TryParse(f[2], out var found)) gid = found;
                }
            if (gid is null) throw StrataException.NotFound($"group '{g}' is not in the image's /etc/group");
        }
        return (uid.Value, gid ?? 0);
    }

    /// <summary>The lines of a file of the image (absent: none). The image made it: it may be a FIFO (which would keep
    /// the run waiting for a writer) or a device (/dev/zero has no end), and is read with a bound.</summary>
    static string[] ReadInRoot(string rootfs, string path)
    {
        const long Max = 16 << 20;
        using var root = Posix.Open(rootfs, Posix.O_RDONLY | Posix.O_DIRECTORY);
        if (Core.ConfinedFile.TryOpen(root, path, Posix.RESOLVE_IN_ROOT, out var file, out var kind) != 0) return [];
        if (file is null) throw StrataException.Corrupt($"the image's /{path} is a {Core.ConfinedFile.Describe(kind)}, not a regular file");
        using (file)
        {
            var bytes = Core.ConfinedFile.ReadAtMost(file, Max) ?? throw StrataException.Corrupt($"the image's /{path} is more than {Max} bytes");
            return Encoding.UTF8.GetString(bytes).Split('\n');
        }
    }

    static void Exec(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0 && args.Length > 0 && args[0] != "--root") throw new StrataException(ErrorKind.Io, $"{file} {string.Join(' ', args)} failed: {err.Trim()}");
    }

    /// <summary>`strata run IMAGE CMD ARGS...`: everything after the image is the command's, options included
    /// (`sh -c ...`); a `--` after the image tells the parser so.</summary>
    public static string[] PrepareArgs(string[] args)
    {
        int i = 0;
        bool Takes(string a) => a is "--root" or "--driver" or "--storage-opt" or "--name";
        while (i < args.Length && args[i].StartsWith('-')) i += Takes(args[i]) && !args[i].Contains('=') ? 2 : 1;
        if (i >= args.Length || args[i] != "run") return args;
        for (i++; i < args.Length; i++)
        {
            if (args[i] == "--") return args;
            if (args[i].StartsWith('-'))
            {
                if (Takes(args[i]) && !args[i].Contains('=')) i++;
                continue;
            }
            return i + 1 < args.Length && args[i + 1] != "--" ? [.. args[..(i + 1)], "--", .. args[(i + 1)..]] : args;
        }
        return args;
    }
}
