using System.CommandLine;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Strata.Core;
using Strata.Core.Containers;

namespace Strata.Cli;

/// <summary>
/// `strata run`: a container from an image, mounted and handed to runc (Strata is not a runtime). It runs in
/// this process, never inside the daemon (its terminal and signals are the caller's), and it does not hold
/// the store while the command runs: each store step (create, mount, inspect, unmount, rm) is a strata
/// command of its own, sent to the daemon that owns the store or run here, so other commands go on
/// meanwhile. The OCI runtime bundle is made by <see cref="RuntimeBundle"/>; this file holds the command line
/// and starts runc.
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
        var env = new Option<string[]>("--env", "-e") { Description = "Set KEY=VALUE, or pass KEY from this environment (repeatable)", AllowMultipleArgumentsPerToken = false };
        var envFile = new Option<string[]>("--env-file") { Description = "Read variables from FILE: KEY=VALUE lines, # comments, a bare KEY from this environment (repeatable)", AllowMultipleArgumentsPerToken = false };
        var workdir = new Option<string?>("--workdir", "-w") { Description = "Working directory in the container (absolute)" };
        var user = new Option<string?>("--user", "-u") { Description = "USER[:GROUP], names or ids, looked up in the container's /etc/passwd and /etc/group" };
        var entrypoint = new Option<string?>("--entrypoint") { Description = "Run CMD instead of the image's entrypoint, without the image's cmd ('' clears it)" };
        var volume = new Option<string[]>("--volume", "-v") { Description = "Bind mount SRC:DST[:ro|rw]: an existing absolute host path at an absolute path in the container (repeatable)", AllowMultipleArgumentsPerToken = false };
        var readOnly = new Option<bool>("--read-only") { Description = "Mount the container's root filesystem read-only" };
        var cmd = new Command("run", "Create a container from IMAGE and run a command in it with runc; exits with the command's code")
        {
            image, command, rm, name, tty, env, envFile, workdir, user, entrypoint, volume, readOnly,
        };
        cmd.SetAction(r =>
        {
            // everything the caller gives is read and checked before a container exists
            Func<string, string?> callerEnv = Environment.GetEnvironmentVariable;
            var variables = new List<string>();
            foreach (var file in r.GetValue(envFile) ?? []) variables.AddRange(ContainerEnv.ReadFile(Path.GetFullPath(file), callerEnv));
            foreach (var e in r.GetValue(env) ?? []) if (ContainerEnv.FromOption(e, callerEnv) is { } v) variables.Add(v);
            var options = new RunOptions
            {
                Env = variables,
                WorkingDir = r.GetValue(workdir) is { } w ? RunOptions.ParseWorkingDir(w) : null,
                User = r.GetValue(user),
                Entrypoint = r.GetResult(entrypoint) is null ? null : r.GetValue(entrypoint) is { Length: > 0 } ep ? [ep] : [],
                Mounts = (r.GetValue(volume) ?? []).Select(v => BindMount.Parse(v, Path.Exists)).ToList(),
                ReadOnlyRoot = r.GetValue(readOnly),
            };
            bool terminal = r.GetValue(tty);
            if (terminal && Console.IsInputRedirected) throw StrataException.Invalid("--tty needs a terminal on stdin");

            string[] store = StoreArgs(r);
            var create = new List<string>(store) { "container", "create", r.GetValue(image)! };
            if (r.GetValue(name) is { } n) create.AddRange(["--name", n]);
            string id = Step([.. create]);
            bool started = false;
            int code;
            try
            {
                string rootfs = Step([.. store, "container", "mount", id]);
                try
                {
                    var inspect = JsonNode.Parse(Step([.. store, "container", "inspect", id]))![0]!; // inspect prints an array
                    code = RunInBundle(store, id, inspect["Container"]!["Name"]!.GetValue<string>(), rootfs, inspect["Config"], r.GetValue(command) ?? [], terminal, options, r.GetValue(rm), out started);
                }
                finally
                {
                    Step([.. store, "container", "unmount", id]);
                }
            }
            finally
            {
                // a container whose command never started is not left behind (an image without a command, a command
                // that is not there, a user not in the image, runc refusing the bundle)
                if (r.GetValue(rm) || !started) Step([.. store, "container", "rm", id]);
            }
            return code;
        });
        return cmd;
    }

    /// <summary>`container state`, hidden: how `strata run` records a container's state as a store step (so through
    /// the daemon that owns the store): `--started PID --command JSON` when its command starts, `--exited CODE` when it
    /// ends.</summary>
    static Command ContainerStateCommand()
    {
        var id = new Argument<string>("CONTAINER") { Description = "Container name, id or id prefix" };
        var started = new Option<int?>("--started") { Description = "The pid of the run's runc" };
        var command = new Option<string?>("--command") { Description = "The arguments run, as a JSON array of strings" };
        var exited = new Option<int?>("--exited") { Description = "The command's exit code" };
        var state = new Command("state", "Record a container's run (used by strata run)") { id, started, command, exited };
        state.Hidden = true;
        state.SetAction(r =>
        {
            using var lease = OpenStore(r);
            var catalog = Catalog(lease);
            switch (r.GetValue(started), r.GetValue(exited))
            {
                case ({ } pid, null):
                    string[]? args = null;
                    try
                    {
                        args = r.GetValue(command) is { } json ? JsonSerializer.Deserialize(json, CliJson.Default.StringArray) : null;
                    }
                    catch (JsonException)
                    {
                    }
                    if (args is null || args.Any(a => a is null)) throw StrataException.Invalid("--started needs --command with a JSON array of strings");
                    catalog.Started(r.GetValue(id)!, args, pid);
                    break;
                case (null, { } exitCode):
                    catalog.Exited(r.GetValue(id)!, exitCode);
                    break;
                default:
                    throw StrataException.Invalid("give either --started PID --command JSON or --exited CODE");
            }
            return 0;
        });
        return state;
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

    /// <summary>A store step or the start of the command failed: its message is already `strata: ...`; the run ends
    /// with its code.</summary>
    internal sealed class StepFailed(int code, string message) : Exception(message)
    {
        public int Code => code;
    }

    /// <summary>Runs the container's process with runc in a bundle made for it (see <see cref="RuntimeBundle"/>), and
    /// deletes both whatever happens. <paramref name="started"/>: the command ran (else nothing of the run is worth
    /// keeping). A command that cannot start ends the run as docker's does: 127 not found, 126 not executable, 125
    /// anything else runc refuses.</summary>
    static int RunInBundle(string[] store, string id, string name, string rootfs, JsonNode? config, string[] command, bool tty, RunOptions options, bool removeAfter, out bool started)
    {
        started = false;
        var process = RuntimeBundle.Process(config, name, command, tty, options);
        switch (ExecutableLookup.Check(rootfs, process, options.Mounts))
        {
            case (ExecutableProblem.NotFound, var message): throw new StepFailed(127, "strata: " + message);
            case (ExecutableProblem.NotExecutable, var message): throw new StepFailed(126, "strata: " + message);
        }
        string bundle = RuntimeBundle.Create(Bundles, id, name, rootfs, process, options);
        try
        {
            // runc's own errors go to its log as well (JSON): how a failed start is told from the command's exit code
            string log = Path.Combine(bundle, "runc.log");
            // runc in the foreground, on this process's stdio (and terminal): it forwards signals and returns the command's exit code
            using var runc = ExternalTool.Start("runc", ["--root", RuncRoot, "--log", log, "--log-format", "json", "run", "--bundle", bundle, id], ExternalTool.Redirect.None, RuntimeBundle.RuncMissing);
            RecordState([.. store, "container", "state", id, "--started", runc.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), "--command", JsonSerializer.Serialize(process.Args.ToArray(), CliJson.Default.StringArray)]);
            runc.WaitForExit();
            if (RuncError(log) is { } error)
                throw new StepFailed(error.Contains("executable file not found") || error.Contains("no such file or directory") ? 127
                    : error.Contains("permission denied") || error.Contains("not executable") ? 126 : 125, "strata: the container did not start: " + error);
            started = true;
            if (!removeAfter) RecordState([.. store, "container", "state", id, "--exited", runc.ExitCode.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            return runc.ExitCode;
        }
        finally
        {
            try
            {
                ExternalTool.Run("runc", ["--root", RuncRoot, "delete", "--force", id], RuntimeBundle.RuncMissing, out _); // whatever a killed run left
            }
            finally
            {
                RuntimeBundle.Remove(bundle);
            }
        }
    }

    /// <summary>A state step: a record that cannot be written (the container removed meanwhile) does not stop the run;
    /// its line is shown.</summary>
    static void RecordState(string[] args)
    {
        try
        {
            Step(args);
        }
        catch (StepFailed ex)
        {
            if (ex.Message.Length > 0) Io.Current.Err.WriteLine(ex.Message);
        }
    }

    /// <summary>Why runc failed to run the container (its fatal log line, without the "runc run failed: " prefix), or null.</summary>
    static string? RuncError(string log)
    {
        if (!File.Exists(log)) return null;
        foreach (var line in File.ReadLines(log))
        {
            try
            {
                // only runc's fatal line: errors it logs after the command ran (a cgroup it could not remove, a signal it could
                // not forward) do not undo a run whose command exited
                if (JsonNode.Parse(line) is JsonObject entry && entry["level"]?.GetValue<string>() == "error" && entry["msg"]?.GetValue<string>() is { } msg
                    && msg.StartsWith("runc run failed: ", StringComparison.Ordinal))
                    return StrataException.OneLine(msg["runc run failed: ".Length..]);
            }
            catch (Exception ex) when (ex is JsonException or InvalidOperationException)
            {
                // not runc's JSON: not a line of ours to read
            }
        }
        return null;
    }

    /// <summary>`strata run IMAGE CMD ARGS...`: everything after the image is the command's, options included
    /// (`sh -c ...`); a `--` after the image tells the parser so.</summary>
    public static string[] PrepareArgs(string[] args)
    {
        int i = 0;
        bool Takes(string a) => a is "--root" or "--driver" or "--storage-opt" or "--name" or "-e" or "--env" or "--env-file" or "-w" or "--workdir"
            or "-u" or "--user" or "--entrypoint" or "-v" or "--volume";
        while (i < args.Length && args[i].StartsWith('-')) i += Takes(args[i]) && !args[i].Contains('=') ? 2 : 1;
        if (i >= args.Length || args[i] != "run") return args;
        for (i++; i < args.Length; i++)
        {
            if (args[i] == "--") return args;
            if (args[i].StartsWith('-'))
            {
                int eq = args[i].IndexOf('=');
                // `--entrypoint=` (docker's way to clear it): the parser would take the next word as its value
                if (eq > 0 && eq == args[i].Length - 1 && Takes(args[i][..eq]))
                    args = [.. args[..i], args[i][..eq], "", .. args[(i + 1)..]];
                if (Takes(args[i]) && !args[i].Contains('=')) i++;
                continue;
            }
            return i + 1 < args.Length && args[i + 1] != "--" ? [.. args[..(i + 1)], "--", .. args[(i + 1)..]] : args;
        }
        return args;
    }
}
