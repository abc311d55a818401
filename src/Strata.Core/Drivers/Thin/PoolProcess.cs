using System.Diagnostics;
using Strata.Native;
using Strata.Thin.Service;

namespace Strata.Core.Drivers.Thin;

/// <summary>
/// The background `strata pool serve` process that owns the thin driver's pool. The devices a store mounts live on in
/// the kernel after the command that mounted them ends, so the pool must be served by a process that outlives it:
/// one with its FUSE export (<c>thin/dev/&lt;device&gt;</c>, which loop devices attach to), started on demand, detached
/// from the caller (its own session), logging to <c>thin/server.log</c>, its pid in <c>thin/server.pid</c>. Calls
/// reach it through <see cref="PerCallPool"/>; this class only starts, watches and stops it. A server this driver
/// started is stopped when the store closes with no device attached.
/// </summary>
sealed class PoolProcess(string dir, RemotePool server)
{
    static readonly TimeSpan StartWait = TimeSpan.FromSeconds(30);

    readonly string _pidFile = Path.Combine(dir, "server.pid");

    /// <summary>Where the server's FUSE export shows the devices.</summary>
    public string DeviceDir { get; } = Path.Combine(dir, "dev");

    string NbdSocket => Path.Combine(dir, "nbd.sock");

    /// <summary>Whether some process holds the pool's lock (a server, or a `strata pool` command of its own).</summary>
    bool IsLocked()
    {
        string file = Path.Combine(dir, "pool.lock");
        if (!File.Exists(file)) return false;
        using var fd = Posix.Open(file, Posix.O_RDWR);
        if (!Posix.TryLockExclusive(fd, file)) return true;
        return false; // closing the descriptor drops the lock we just took
    }

    /// <summary>Starts a server unless one answers already, and waits until it answers.</summary>
    public void EnsureRunning(bool fuse = true)
    {
        var deadline = DateTime.UtcNow + StartWait;
        int? started = null;
        while (true)
        {
            if (server.Answers()) return;
            if (started is null && !IsLocked()) started = Start(fuse);
            if (started is { } pid && !Posix.IsRunning(pid))
                throw new StrataException(ErrorKind.Io, $"the pool server for {dir} did not start{LastLogLine()}");
            if (DateTime.UtcNow > deadline) throw new StrataException(ErrorKind.Io, $"the pool server for {dir} did not answer within {StartWait.TotalSeconds:0} s{LastLogLine()}");
            Thread.Sleep(2);
        }
    }

    string LastLogLine()
    {
        string log = Path.Combine(dir, "server.log");
        try
        {
            var last = File.ReadLines(log).LastOrDefault(l => l.Trim().Length > 0);
            return last is null ? "" : $": {last.Trim()}";
        }
        catch (IOException)
        {
            return "";
        }
    }

    int Start(bool fuse)
    {
        string log = Path.Combine(dir, "server.log");
        // in / so that it pins no filesystem the caller happened to be in
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = false, RedirectStandardError = false, WorkingDirectory = "/" };
        // through a shell only to send the server's output to its log (a pipe of ours would outlive us); it takes a
        // session of its own, so the terminal's signals to this command do not reach it
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"exec \"$0\" pool serve --new-session --pool \"$1\" --socket \"$2\" {(fuse ? "--fuse \"$3\" " : "")}>>\"$4\" 2>&1 </dev/null");
        psi.ArgumentList.Add(StrataExecutable.Path("the thin driver serves its pool with `strata pool serve`"));
        psi.ArgumentList.Add(dir);
        psi.ArgumentList.Add(NbdSocket);
        psi.ArgumentList.Add(DeviceDir);
        psi.ArgumentList.Add(log);
        psi.Environment.Remove("STRATA_ROOT");
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw StrataException.Unsupported($"cannot start the pool server: {ex.Message}");
        }
        using (p)
        {
            p.StandardInput.Close();
            AtomicFile.Write(_pidFile, System.Text.Encoding.ASCII.GetBytes(p.Id + "\n"), durable: false);
            return p.Id;
        }
    }

    /// <summary>Whether a server serves the pool: one answers on the control socket, or the one this driver started
    /// still runs (it may be starting). The pool's lock alone would also count a `strata pool` command.</summary>
    public bool ServerAlive() => StartedPid() is not null || server.Answers();

    /// <summary>Whether the server's FUSE export is mounted where the devices are looked for.</summary>
    public bool ExportMounted => Posix.FileSystemType(DeviceDir) == FuseSuperMagic;

    const long FuseSuperMagic = 0x65735546;

    /// <summary>The pid of a server this driver started, if it still runs.</summary>
    int? StartedPid()
    {
        if (!File.Exists(_pidFile)) return null;
        if (!int.TryParse(File.ReadAllText(_pidFile).Trim(), out int pid)) return null;
        try
        {
            string cmdline = File.ReadAllText($"/proc/{pid}/cmdline");
            return cmdline.Contains("pool\0serve\0", StringComparison.Ordinal) && cmdline.Contains(dir, StringComparison.Ordinal) ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Stops a server this driver started when no device file is open (nothing attached), and waits for it to
    /// go. A server someone else started is left alone.</summary>
    public void StopIfIdle()
    {
        if (StartedPid() is not { } pid) return;
        // a loop device lets go of its file a moment after its last user (autoclear runs asynchronously): one still
        // bound but mounted nowhere here (a client just unmounted it) is waited for a while; a mounted one, or one
        // something else keeps open past the wait, is in use and keeps the server
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2);
        while (Posix.LoopDevicesIn(DeviceDir) is { Count: > 0 } bound)
        {
            var mounted = MountTable.Read().Select(m => m.Source).ToHashSet(StringComparer.Ordinal);
            if (bound.Any(mounted.Contains) || DateTime.UtcNow > deadline) return;
            Thread.Sleep(10);
        }
        try
        {
            // a deferred deletion runs once the loop device has let go
            deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2);
            while (true)
            {
                var status = server.Status();
                if (status.OpenFiles == 0 && status.DeferredDeletes == 0) break;
                if (DateTime.UtcNow > deadline) return;
                Thread.Sleep(2);
            }
        }
        catch (StrataException)
        {
            // it does not answer (PoolUnreachableException), or fails: stop it all the same
        }
        Stop(pid);
    }

    void Stop(int pid)
    {
        Posix.TryKill(pid, Posix.SIGTERM);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        bool killed = false;
        while (Posix.IsRunning(pid))
        {
            if (DateTime.UtcNow > deadline)
            {
                if (killed) return; // not even SIGKILL ended it (stuck in the kernel): leave it, and its pid file
                Posix.TryKill(pid, Posix.SIGKILL);
                killed = true;
                deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            }
            Thread.Sleep(2);
        }
        File.Delete(_pidFile);
    }
}
