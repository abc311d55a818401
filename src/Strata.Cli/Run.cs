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

    /// <summary>Runs the container's process with runc in a bundle made for it (see <see cref="RuntimeBundle"/>), and
    /// deletes both whatever happens.</summary>
    static int RunInBundle(string id, string name, string rootfs, JsonNode? config, string[] command, bool tty)
    {
        var process = RuntimeBundle.Process(config, name, command, tty);
        if (tty && Console.IsInputRedirected) throw StrataException.Invalid("--tty needs a terminal on stdin");
        string bundle = RuntimeBundle.Create(Bundles, id, name, rootfs, process);
        try
        {
            // runc in the foreground, on this process's stdio (and terminal): it forwards signals and returns the command's exit code
            using var runc = ExternalTool.Start("runc", ["--root", RuncRoot, "run", "--bundle", bundle, id], ExternalTool.Redirect.None, RuntimeBundle.RuncMissing);
            runc.WaitForExit();
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
