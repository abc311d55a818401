using System.Text.Json;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>`strata run` as docker users expect it, through the real binary and runc: -e (also KEY from the caller's
/// environment), --env-file, -w, -u, --entrypoint, -v, --read-only, exit codes 127/126 for a command not found or not
/// executable, no container left when the start fails, and the state a run records on its container. Each test has
/// its own store.</summary>
public sealed class RunTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;

    public RunTests() => _cli = new Cli(Store, new Dictionary<string, string> { ["FROM_CALLER"] = "caller value" });

    string Store => _temp.Combine("store");

    public void Dispose()
    {
        try
        {
            // whatever a failed run left to runc (strata run deletes its own; this is for a test killed midway)
            var ls = _cli.Run("container", "ls", "-a", "--format", "json");
            if (ls.ExitCode == 0)
                foreach (var c in JsonDocument.Parse(ls.Stdout).RootElement.EnumerateArray())
                    Shell.Run("runc", "--root", "/run/strata/runc", "delete", "--force", c.GetProperty("Id").GetString()!);
        }
        finally
        {
            _temp.Dispose();
        }
    }

    /// <summary>Image `run:1` (busybox, a user app 1000:1001 and a group staff 50, /bin/echo as entrypoint with cmd
    /// `from-cmd`) in the test's store.</summary>
    void Import()
    {
        string layout = _temp.Combine("layout");
        Images.BuildBase(layout, "run", _temp.Path);
        Images.Change(layout, "run", "run", _temp.Path, rootfs => Images.Sh(rootfs, """
            for a in id env pwd touch; do ln -s busybox bin/$a; done
            echo 'root:x:0:0::/:/bin/sh' > etc/passwd
            echo 'app:x:1000:1001::/:/bin/sh' >> etc/passwd
            echo 'root:x:0:' > etc/group
            echo 'staff:x:50:' >> etc/group
            """));
        Images.Umoci("config", "--image", $"{layout}:run", "--config.entrypoint", "/bin/echo", "--config.entrypoint", "from-entrypoint", "--config.cmd", "from-cmd",
            "--config.env", "IMAGE_VAR=image", "--config.env", "REPLACED=image");
        _cli.Ok("image", "import", layout, "--name", "run:1", "-q");
    }

    int Containers() => JsonDocument.Parse(_cli.Ok("container", "ls", "-a", "--format", "json")).RootElement.GetArrayLength();

    /// <summary>A run that failed before its command: one `strata:` line with <paramref name="words"/>, exit
    /// <paramref name="code"/>, and no container left.</summary>
    void AssertRefused(Cli.Result r, int code, string words)
    {
        Assert.True(r.ExitCode == code, $"exit {r.ExitCode}, not {code}: {r.Stderr}");
        Errors.AssertOneLine(r);
        Assert.Contains(words, r.Stderr);
        Assert.Equal("", r.Stdout);
        Assert.Equal(0, Containers());
    }

    [ToolsFact("umoci", "runc")]
    public void EnvironmentWorkdirAndUserAreTheCallers()
    {
        Import();
        string envFile = _temp.Combine("env");
        File.WriteAllText(envFile, "# the file's\nFILE_VAR=file value\n  REPLACED=from file\nFROM_CALLER\nNOT_SET\nQUOTED=\"as written\"\n");
        const string show = "echo $IMAGE_VAR; echo $REPLACED; echo $FILE_VAR; echo $QUOTED; echo $FROM_CALLER; echo ${NOT_SET-unset}; echo $OPT; pwd; id -u; id -g";
        var r = _cli.Run("run", "--rm", "--env-file", envFile, "-e", "REPLACED=from -e", "-e", "OPT=a=b", "-e", "NOT_SET", "-w", "/made/by/run", "-u", "app",
            "--entrypoint", "", "run:1", "sh", "-c", show);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["image", "from -e", "file value", "\"as written\"", "caller value", "unset", "a=b", "/made/by/run", "1000", "1001"], r.Out.Split('\n'));

        // the long forms, USER:GROUP by name and by id, and the option=value form
        Assert.Equal("1000\n50", _cli.Ok("run", "--rm", "--user=app:staff", "--entrypoint=", "run:1", "sh", "-c", "id -u; id -g"));
        Assert.Equal("7\n8\n/tmp", _cli.Ok("run", "--rm", "--user", "7:8", "--workdir", "/tmp", "--entrypoint", "", "run:1", "sh", "-c", "id -u; id -g; pwd"));
        Assert.Equal(0, Containers());
    }

    [ToolsFact("umoci", "runc")]
    public void WrongOptionsAreRefusedBeforeAContainerExists()
    {
        Import();
        AssertRefused(_cli.Run("run", "-w", "tmp", "run:1"), 2, "the working directory 'tmp' is not an absolute path");
        AssertRefused(_cli.Run("run", "-e", "=x", "run:1"), 2, "no variable name");
        AssertRefused(_cli.Run("run", "--env-file", _temp.Combine("none"), "run:1"), 3, "does not exist");
        AssertRefused(_cli.Run("run", "-v", "data:/data", "run:1"), 2, "no named volumes");
        AssertRefused(_cli.Run("run", "-v", _temp.Combine("none") + ":/data", "run:1"), 3, "does not exist");
        AssertRefused(_cli.Run("run", "-v", _temp.Path + ":data", "run:1"), 2, "not an absolute path in the container");
        AssertRefused(_cli.Run("run", "-v", _temp.Path + ":/data:z", "run:1"), 2, "unknown option 'z'");
        // found only once the container is there: it is removed again
        AssertRefused(_cli.Run("run", "-u", "nobody", "run:1"), 3, "user 'nobody' is not in the image's /etc/passwd");
        AssertRefused(_cli.Run("run", "-u", "app:wheel", "run:1"), 3, "group 'wheel' is not in the image's /etc/group");
        AssertRefused(_cli.Run("run", "--entrypoint", "", "run:1"), 2, "no command");
    }

    [ToolsFact("umoci", "runc")]
    public void AGivenEntrypointReplacesTheImagesEntrypointAndCmd()
    {
        Import();
        Assert.Equal("from-entrypoint from-cmd", _cli.Ok("run", "--rm", "run:1"));
        Assert.Equal("from-entrypoint hi", _cli.Ok("run", "--rm", "run:1", "hi"));
        Assert.Equal("", _cli.Ok("run", "--rm", "--entrypoint", "/bin/echo", "run:1"));
        Assert.Equal("motd", _cli.Ok("run", "--rm", "--entrypoint", "cat", "run:1", "/etc/motd"));
        Assert.Equal("/", _cli.Ok("run", "--rm", "--entrypoint", "", "run:1", "pwd"));
    }

    [ToolsFact("umoci", "runc")]
    public void ACommandNotFoundIs127AndNotExecutable126WithNoContainerLeft()
    {
        Import();
        AssertRefused(_cli.Run("run", "--entrypoint", "", "run:1", "nosuch", "arg"), 127, "strata: \"nosuch\": executable file not found in the container's $PATH");
        AssertRefused(_cli.Run("run", "--entrypoint", "", "run:1", "/bin/nosuch"), 127, "strata: \"/bin/nosuch\": no such file in the container");
        AssertRefused(_cli.Run("run", "--entrypoint", "/etc/file", "run:1"), 126, "strata: \"/etc/file\" is not executable in the container");
        AssertRefused(_cli.Run("run", "--name", "named", "--entrypoint", "", "run:1", "/etc"), 126, "is a directory in the container");
        Assert.DoesNotContain("runc", _cli.Run("run", "--entrypoint", "", "run:1", "nosuch").Stderr);

        // the command's own codes are its own, and its container stays
        Assert.Equal(127, _cli.Run("run", "--name", "c127", "--entrypoint", "", "run:1", "sh", "-c", "exit 127").ExitCode);
        Assert.Equal(1, Containers());
    }

    [ToolsFact("umoci", "runc")]
    public void BindMountsAndAReadOnlyRoot()
    {
        Import();
        string host = _temp.Dir("host");
        File.WriteAllText(Path.Combine(host, "in"), "from the host\n");
        string file = _temp.Combine("single");
        File.WriteAllText(file, "one file\n");

        Assert.Equal("from the host\none file", _cli.Ok("run", "--rm", "-v", $"{host}:/data:ro", "-v", $"{file}:/etc/single", "--entrypoint", "", "run:1", "cat", "/data/in", "/etc/single"));
        var ro = _cli.Run("run", "--rm", "-v", $"{host}:/data:ro", "--entrypoint", "", "run:1", "sh", "-c", "echo x > /data/new");
        Assert.NotEqual(0, ro.ExitCode);
        Assert.Contains("Read-only file system", ro.Stderr);
        Assert.False(File.Exists(Path.Combine(host, "new")));

        Assert.Equal("", _cli.Ok("run", "--rm", "-v", $"{host}:/data", "--entrypoint", "", "run:1", "sh", "-c", "echo written > /data/new"));
        Assert.Equal("written\n", File.ReadAllText(Path.Combine(host, "new")));

        // --read-only: the root refuses writes, a bind mount still takes them; nothing lands in the container's layer
        var rootWrite = _cli.Run("run", "--name", "ro", "--read-only", "--entrypoint", "", "run:1", "sh", "-c", "echo x > /new");
        Assert.NotEqual(0, rootWrite.ExitCode);
        Assert.Contains("Read-only file system", rootWrite.Stderr);
        Assert.Equal("", _cli.Ok("container", "diff", "ro"));
        Assert.Equal("", _cli.Ok("run", "--rm", "--read-only", "-v", $"{host}:/data", "--entrypoint", "", "run:1", "sh", "-c", "echo again > /data/new"));
        Assert.Equal("again\n", File.ReadAllText(Path.Combine(host, "new")));

        // an executable in a bind mount is found there
        File.Copy("/bin/busybox", Path.Combine(host, "echo"));
        Assert.Equal("bound", _cli.Ok("run", "--rm", "-v", $"{host}:/opt/host:ro", "--entrypoint", "/opt/host/echo", "run:1", "bound"));
    }

    [ToolsFact("umoci", "runc")]
    public void ARunRecordsItsStateAndCommand()
    {
        Import();
        _cli.Ok("container", "create", "run:1", "--name", "fresh");
        var fresh = JsonDocument.Parse(_cli.Ok("container", "inspect", "fresh")).RootElement[0].GetProperty("Container");
        Assert.Equal("created", fresh.GetProperty("State").GetProperty("Status").GetString());
        Assert.Equal(JsonValueKind.Array, fresh.GetProperty("Command").ValueKind); // never run: what a run without a command would run

        using (var run = _cli.Start("run", "--name", "c1", "--entrypoint", "", "run:1", "sh", "-c", "echo started; read line; exit 5"))
        {
            Assert.Equal("started", run.StandardOutput.ReadLine());
            var running = JsonDocument.Parse(_cli.Ok("container", "inspect", "c1")).RootElement[0].GetProperty("Container");
            Assert.Equal("running", running.GetProperty("State").GetProperty("Status").GetString());
            Assert.True(running.GetProperty("State").GetProperty("Pid").GetInt32() > 0);
            Assert.Equal(["sh", "-c", "echo started; read line; exit 5"], running.GetProperty("Command").EnumerateArray().Select(a => a.GetString()));
            run.StandardInput.WriteLine("go");
            run.StandardInput.Close();
            Assert.True(run.WaitForExit(TimeSpan.FromSeconds(60)));
            Assert.Equal(5, run.ExitCode);
        }
        var state = JsonDocument.Parse(_cli.Ok("container", "inspect", "c1")).RootElement[0].GetProperty("Container").GetProperty("State");
        Assert.Equal("exited", state.GetProperty("Status").GetString());
        Assert.Equal(5, state.GetProperty("ExitCode").GetInt32());
        Assert.Equal(JsonValueKind.Null, state.GetProperty("Pid").ValueKind);
        Assert.True(state.GetProperty("FinishedAt").GetDateTimeOffset() >= state.GetProperty("StartedAt").GetDateTimeOffset());

        // the hidden step refuses what strata run never sends
        Assert.Equal(2, _cli.Run("container", "state", "c1").ExitCode);
        Assert.Equal(2, _cli.Run("container", "state", "c1", "--started", "1", "--command", "not json").ExitCode);
        Assert.Equal(3, _cli.Run("container", "state", "nosuch", "--exited", "0").ExitCode);
        Assert.DoesNotContain("state", _cli.Ok("container", "--help"));
    }

    [ToolsFact("umoci", "runc")]
    public void ThroughTheDaemonTheStateIsRecordedAndAFailedStartLeavesNothing()
    {
        Import();
        using var serve = new StrataServe(Store, "overlay", "strata-test-" + Guid.NewGuid().ToString("N")[..10], _temp.Combine("serve.log"));
        var r = _cli.Run("run", "--name", "c1", "-e", "X=3", "--entrypoint", "", "run:1", "sh", "-c", "exit $X");
        Assert.True(r.ExitCode == 3, r.Stderr);
        Assert.Equal("", r.Stderr);
        var state = JsonDocument.Parse(_cli.Ok("container", "inspect", "c1")).RootElement[0].GetProperty("Container").GetProperty("State");
        Assert.Equal("exited", state.GetProperty("Status").GetString());
        Assert.Equal(3, state.GetProperty("ExitCode").GetInt32());
        var missing = _cli.Run("run", "--entrypoint", "", "run:1", "nosuch");
        Assert.Equal(127, missing.ExitCode);
        Errors.AssertOneLine(missing);
        Assert.Equal(["c1"], JsonDocument.Parse(_cli.Ok("container", "ls", "-a", "--format", "json")).RootElement.EnumerateArray().Select(c => c.GetProperty("Name").GetString()));
    }
}
