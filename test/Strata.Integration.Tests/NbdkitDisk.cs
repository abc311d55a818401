// A real disk that fails and is slow on request, for the tests of resilient pools: nbdkit serving a file, made a file again by nbdfuse.
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Strata.Native;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>Which requests a disk's errors fail.</summary>
[Flags]
public enum FailingIo
{
    Reads = 1,

    /// <summary>Writes, and the write-zeroes and discards (NBD trim, fallocate punch-hole) that change data too. A flush
    /// (fdatasync) never fails: nbdkit 1.32's error filter has no knob for it.</summary>
    Writes = 2,

    ReadsAndWrites = Reads | Writes,
}

/// <summary>How an <see cref="NbdkitDisk"/> misbehaves. The defaults make a healthy, fast disk whose
/// <see cref="NbdkitDisk.StartFailing"/> fails every read and write.</summary>
public sealed record NbdkitFaults
{
    /// <summary>The requests that fail while the disk is failing (and in ranges given to
    /// <see cref="NbdkitDisk.FailRange"/> without their own choice).</summary>
    public FailingIo Fails { get; init; } = FailingIo.ReadsAndWrites;

    /// <summary>The share of those requests that fail while the disk is failing, drawn at random per NBD request by
    /// nbdkit (0 &lt; rate ≤ 1; 1: all of them).</summary>
    public double ErrorRate { get; init; } = 1;

    /// <summary>Failing from the start, as if <see cref="NbdkitDisk.StartFailing"/> had been called.</summary>
    public bool Failing { get; init; }

    /// <summary>Latency added to every read, and to every write, discard and write-zeroes (nbdkit's delay filter;
    /// whole milliseconds). Injected errors come at once: the error filter sits in front of it.</summary>
    public TimeSpan Delay { get; init; }

    /// <summary>Bandwidth of the whole disk, in bytes per second, reads and writes counted apart (nbdkit's rate
    /// filter); 0: unlimited.</summary>
    public long BytesPerSecond { get; init; }

    /// <summary>Serve the file through a shell-script plugin that can fail byte ranges (<see cref="NbdkitDisk.FailRange"/>),
    /// instead of nbdkit's file plugin: a fork of sh and of dd per request, so each request costs milliseconds.</summary>
    public bool Ranges { get; init; }
}

/// <summary>A disk for a pool that is a real regular file (<see cref="Path"/>) whose reads and writes go through
/// nbdkit, which can fail them and slow them down. Layout, in a temp dir of its own: nbdkit (Debian's, 1.32) serves
/// the backing file on <c>nbd.sock</c> (a unix socket, never TCP) with its <c>error</c> filter (errors only while the
/// file <c>failing</c> exists: <c>error-pread-file</c>/<c>error-pwrite-file</c>, so reads and writes fail apart), and
/// the <c>delay</c> and <c>rate</c> filters when asked; nbdfuse (libnbd-bin) mounts the export as <c>mnt/NAME</c>.
///
/// Byte ranges: nbdkit 1.32's error filter fails requests at a rate, never by offset, and its ddrescue filter (bad
/// ranges from a ddrescue map) makes the export read-only. So with <see cref="NbdkitFaults.Ranges"/> the plugin is
/// nbdkit's <c>sh</c> plugin running a script written here that does what the file plugin does (pread and pwrite with
/// dd, flush with <c>sync -d</c>, trim and zero with <c>fallocate -p</c>) and answers EIO for requests that touch a
/// range listed in the file <c>bad-ranges</c> ("offset length r|w|rw" lines, replaced by rename, read at each request),
/// so ranges change at run time. The error, delay and rate filters stack in front of it as before.
///
/// What the file does, through FUSE (checked by NbdkitDiskTests): reads and writes are the export's; a failed request
/// is EIO; fdatasync is an NBD flush (fdatasync of the backing file); fallocate punch-hole is an NBD trim (a hole in the
/// backing file) and zero-range an NBD write-zeroes, while plain fallocate is EOPNOTSUPP; lseek SEEK_DATA sees data
/// everywhere (nbdfuse has no lseek). Writes go through at once (nbdfuse asks for no writeback cache), but the kernel
/// keeps the pages read and written in the page cache (nbdfuse 1.14 cannot ask for direct IO, and libfuse3 refuses
/// <c>-o direct_io</c>), and a later read of them is served from there and cannot fail, nor see the backing file
/// changed behind it: FUSE drops a file's cache at every open, and <see cref="DropCache"/> (called by
/// <see cref="StartFailing"/> and <see cref="FailRange"/>) drops it for files already open. Reads that fail are retried
/// by the kernel one 4 KiB page at a time, so ranges are best 4 KiB-aligned. After <see cref="Vanish"/> every request
/// is ENOTCONN.
///
/// Dispose unmounts (lazily when the file is still open), stops nbdfuse and nbdkit by pid (SIGTERM, then SIGKILL,
/// each wait bounded), and deletes the temp dir; it does not throw, so it is safe in a finally after a failed test.</summary>
public sealed partial class NbdkitDisk : IDisposable
{
    static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30), ExitTimeout = TimeSpan.FromSeconds(5);
    const int MaxLog = 1 << 20;

    readonly string _dir, _mountDir, _socket, _failFile, _rangesFile;
    readonly NbdkitFaults _faults;
    readonly StringBuilder _log = new();
    readonly List<string> _ranges = [];
    Process? _server, _fuse;
    bool _disposed;

    NbdkitDisk(string name, string dir, string backingFile, NbdkitFaults faults)
    {
        Name = name;
        _dir = dir;
        BackingFile = backingFile;
        _faults = faults;
        _mountDir = System.IO.Path.Combine(dir, "mnt");
        _socket = System.IO.Path.Combine(dir, "nbd.sock");
        _failFile = System.IO.Path.Combine(dir, "failing");
        _rangesFile = System.IO.Path.Combine(dir, "bad-ranges");
        Path = System.IO.Path.Combine(_mountDir, name);
        Size = new FileInfo(backingFile).Length;
    }

    public string Name { get; }

    /// <summary>The disk: a regular file of <see cref="Size"/> bytes on the nbdfuse mount.</summary>
    public string Path { get; }

    /// <summary>The file nbdkit serves; writing it directly (say, corrupting it with dd) bypasses every fault, and is
    /// seen through <see cref="Path"/> after <see cref="DropCache"/>.</summary>
    public string BackingFile { get; }

    public long Size { get; }

    public int ServerPid => _server?.Id ?? 0;

    public int FusePid => _fuse?.Id ?? 0;

    /// <summary>What nbdkit and nbdfuse wrote on stderr (each injected error is a line), for failure messages.</summary>
    public string Log
    {
        get
        {
            lock (_log) return _log.ToString();
        }
    }

    public bool Failing => File.Exists(_failFile);

    /// <summary>Null when nbdkit, nbdfuse and FUSE work here (found by serving a small disk once), or why not.</summary>
    public static string? Unavailable => s_unavailable.Value;

    public static bool Available => Unavailable is null;

    /// <summary>Skips the calling [SkippableFact] on machines where <see cref="Unavailable"/> has a reason.</summary>
    public static void SkipUnlessAvailable() => Skip.If(Unavailable is not null, Unavailable);

    static readonly Lazy<string?> s_unavailable = new(Probe);

    static string? Probe()
    {
        foreach (var tool in new[] { "nbdkit", "nbdfuse", "fusermount3" })
            if (!Shell.Has(tool)) return $"{tool} is not installed (test.sh installs nbdkit, libnbd-bin and fuse3)";
        if (!File.Exists("/dev/fuse")) return "there is no /dev/fuse here, so nbdfuse cannot mount";
        try
        {
            using var probe = Start("probe", 1 << 20);
        }
        catch (Exception e)
        {
            return "nbdkit and nbdfuse cannot make a disk here: " + e.Message;
        }
        return null;
    }

    /// <summary>A disk of <paramref name="size"/> bytes on a new sparse backing file in its temp dir (deleted with it).</summary>
    public static NbdkitDisk Start(string name, long size, NbdkitFaults? faults = null)
    {
        CheckName(name);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        string dir = Directory.CreateTempSubdirectory("strata-nbdkit-").FullName;
        string backing = System.IO.Path.Combine(dir, name + ".img");
        try
        {
            using (var file = new FileStream(backing, FileMode.CreateNew)) file.SetLength(size);
        }
        catch
        {
            Directory.Delete(dir, recursive: true);
            throw;
        }
        return Launch(new NbdkitDisk(name, dir, backing, faults ?? new()));
    }

    /// <summary>A disk that serves the existing file <paramref name="backingFile"/> (kept on dispose), at its size.</summary>
    public static NbdkitDisk Serve(string name, string backingFile, NbdkitFaults? faults = null)
    {
        CheckName(name);
        backingFile = System.IO.Path.GetFullPath(backingFile);
        if (!File.Exists(backingFile) || new FileInfo(backingFile).Length == 0)
            throw new ArgumentException($"{backingFile} is not a non-empty regular file", nameof(backingFile));
        return Launch(new NbdkitDisk(name, Directory.CreateTempSubdirectory("strata-nbdkit-").FullName, backingFile, faults ?? new()));
    }

    static void CheckName(string name)
    {
        if (name.Length == 0 || name.Length > 64 || name[0] == '.' || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            throw new ArgumentException($"'{name}' is not a disk name (letters, digits, '.', '_', '-')", nameof(name));
    }

    static NbdkitDisk Launch(NbdkitDisk disk)
    {
        try
        {
            if (disk._faults.ErrorRate is not (> 0 and <= 1))
                throw new ArgumentOutOfRangeException(nameof(NbdkitFaults.ErrorRate), disk._faults.ErrorRate, "an error rate is in (0, 1]");
            if (disk._faults.Failing) File.WriteAllBytes(disk._failFile, []);
            disk.StartServer();
            disk.StartFuse();
            return disk;
        }
        catch
        {
            disk.Dispose();
            throw;
        }
    }

    void StartServer()
    {
        var args = new List<string> { "-f", "--unix", _socket, "--pidfile", System.IO.Path.Combine(_dir, "nbdkit.pid"), "--filter=error" };
        if (_faults.Delay > TimeSpan.Zero) args.Add("--filter=delay");
        if (_faults.BytesPerSecond > 0) args.Add("--filter=rate");
        if (_faults.Ranges)
        {
            File.WriteAllText(_rangesFile, "");
            string script = System.IO.Path.Combine(_dir, "ranges.sh");
            using (var fd = Posix.Open(script, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL, 0x1c0)) // rwx------: nbdkit runs it
                Posix.WriteAll(fd, Encoding.UTF8.GetBytes(RangeScript(BackingFile, _rangesFile)), script);
            args.AddRange(["sh", script]);
        }
        else
        {
            args.AddRange(["file", "file=" + BackingFile]);
        }
        string rate = _faults.ErrorRate.ToString(CultureInfo.InvariantCulture);
        if (_faults.Fails.HasFlag(FailingIo.Reads)) args.AddRange([$"error-pread-rate={rate}", $"error-pread-file={_failFile}"]);
        if (_faults.Fails.HasFlag(FailingIo.Writes))
            foreach (var op in new[] { "pwrite", "zero", "trim" })
                args.AddRange([$"error-{op}-rate={rate}", $"error-{op}-file={_failFile}"]);
        if (_faults.Delay > TimeSpan.Zero)
        {
            long ms = Math.Max(1, (long)Math.Ceiling(_faults.Delay.TotalMilliseconds));
            args.AddRange([$"rdelay={ms}ms", $"wdelay={ms}ms"]);
        }
        if (_faults.BytesPerSecond > 0) args.Add($"rate={_faults.BytesPerSecond * 8}");
        _server = StartChild("nbdkit", args);
        WaitForPidFile(_server, System.IO.Path.Combine(_dir, "nbdkit.pid"), "nbdkit");
    }

    void StartFuse()
    {
        Directory.CreateDirectory(_mountDir);
        string pidFile = System.IO.Path.Combine(_dir, "nbdfuse.pid");
        _fuse = StartChild("nbdfuse", ["-P", pidFile, Path, "--unix", _socket]);
        WaitForPidFile(_fuse, pidFile, "nbdfuse");
        if (!File.Exists(Path) || new FileInfo(Path).Length != Size)
            throw new InvalidOperationException($"nbdfuse did not show {Path} as a file of {Size} bytes: {OneLine(Log)}");
    }

    /// <summary>The sh plugin behind <see cref="NbdkitFaults.Ranges"/> (nbdkit-sh-plugin(3): the method is $1; pread and
    /// pwrite get count $3 and offset $4; the errno name leads stderr; exit 2 is "not implemented", 3 is "false").
    /// Parallel: dd at distinct offsets does not mix.</summary>
    static string RangeScript(string file, string ranges) => $$"""
        #!/bin/sh
        file={{Quote(file)}}
        ranges={{Quote(ranges)}}
        # whether count $1 at offset $2 meets a listed range whose ops include $3 (r or w)
        bad() {
            while read -r o l ops; do
                case "$ops" in *$3*) [ $(( $2 < o + l && o < $2 + $1 )) = 1 ] && return 0 ;; esac
            done < "$ranges"
            return 1
        }
        case "$1" in
            thread_model) echo parallel ;;
            open|can_write|can_flush|can_trim|can_zero) ;;
            can_multi_conn) exit 3 ;; # false: nbdfuse makes one connection, not four, each costing a dozen forks to open
            get_size) exec stat -Lc %s "$file" ;;
            pread)
                if bad "$3" "$4" r; then echo "EIO $3 bytes at $4 are in a failed range" >&2; exit 1; fi
                exec dd if="$file" skip="$4" count="$3" iflag=skip_bytes,count_bytes bs=1M status=none ;;
            pwrite)
                if bad "$3" "$4" w; then cat > /dev/null; echo "EIO $3 bytes at $4 are in a failed range" >&2; exit 1; fi
                exec dd of="$file" seek="$4" oflag=seek_bytes conv=notrunc bs=1M status=none ;;
            trim|zero)
                if bad "$3" "$4" w; then echo "EIO $3 bytes at $4 are in a failed range" >&2; exit 1; fi
                exec fallocate -p -o "$4" -l "$3" "$file" ;;
            flush) exec sync -d "$file" ;;
            *) exit 2 ;;
        esac

        """;

    static string Quote(string s) => "'" + s.Replace("'", "'\\''") + "'";

    Process StartChild(string file, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        p.StandardInput.Close();
        DataReceivedEventHandler keep = (_, e) =>
        {
            if (e.Data is null) return;
            lock (_log)
                if (_log.Length < MaxLog) _log.Append(file).Append(": ").AppendLine(e.Data); // drained either way: a full pipe would stall it
        };
        p.OutputDataReceived += keep;
        p.ErrorDataReceived += keep;
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    void WaitForPidFile(Process p, string pidFile, string what)
    {
        var deadline = DateTime.UtcNow + StartTimeout;
        while (!(File.Exists(pidFile) && new FileInfo(pidFile).Length > 0))
        {
            if (p.WaitForExit(TimeSpan.FromMilliseconds(10)))
                throw new InvalidOperationException($"{what} exited ({p.ExitCode}) before it was ready: {OneLine(Log)}");
            if (DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"{what} was not ready after {StartTimeout.TotalSeconds} s: {OneLine(Log)}");
        }
    }

    static string OneLine(string s) => string.Join(" | ", s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    /// <summary>From now on the requests of <see cref="NbdkitFaults.Fails"/> fail (EIO) at the disk's error rate, pages
    /// already read included.</summary>
    public void StartFailing()
    {
        File.WriteAllBytes(_failFile, []);
        DropCache();
    }

    public void StopFailing() => File.Delete(_failFile);

    /// <summary>Requests that touch <paramref name="length"/> bytes at <paramref name="offset"/> fail with EIO, for
    /// <paramref name="fails"/> (default: the disk's <see cref="NbdkitFaults.Fails"/>), until <see cref="ClearRanges"/>.
    /// Needs a disk started with <see cref="NbdkitFaults.Ranges"/>.</summary>
    public void FailRange(long offset, long length, FailingIo? fails = null)
    {
        if (!_faults.Ranges) throw new InvalidOperationException($"disk {Name} was started without NbdkitFaults.Ranges: it cannot fail a range");
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        var which = fails ?? _faults.Fails;
        string ops = (which.HasFlag(FailingIo.Reads) ? "r" : "") + (which.HasFlag(FailingIo.Writes) ? "w" : "");
        if (ops.Length == 0) throw new ArgumentException("a failed range fails reads, writes or both", nameof(fails));
        lock (_ranges)
        {
            _ranges.Add($"{offset} {length} {ops}");
            WriteRanges();
        }
        DropCache();
    }

    public void ClearRanges()
    {
        if (!_faults.Ranges) return;
        lock (_ranges)
        {
            _ranges.Clear();
            WriteRanges();
        }
    }

    void WriteRanges()
    {
        string next = _rangesFile + ".new";
        File.WriteAllText(next, string.Concat(_ranges.Select(r => r + "\n")));
        File.Move(next, _rangesFile, overwrite: true); // a script reading the old file meanwhile sees it whole
    }

    /// <summary>Makes the next reads of <see cref="Path"/> go to the disk, also through files already open: FUSE drops
    /// the file's page cache when it is opened, and POSIX_FADV_DONTNEED drops it for good measure.</summary>
    public void DropCache()
    {
        using var fd = Posix.Open(Path, Posix.O_RDONLY);
        int err = posix_fadvise(fd.Value, 0, 0, POSIX_FADV_DONTNEED);
        if (err != 0) throw new ErrnoException(err, "posix_fadvise", Path);
    }

    const int POSIX_FADV_DONTNEED = 4;

    [LibraryImport("libc")]
    private static partial int posix_fadvise(int fd, long offset, long length, int advice);

    /// <summary>The disk goes away as a pulled one does: nbdkit is killed (SIGKILL), and every later request on
    /// <see cref="Path"/> that the page cache does not serve, through files already open too, fails with ENOTCONN
    /// (nbdfuse aborts on the lost connection).</summary>
    public void Vanish()
    {
        if (_server is null || _server.HasExited) return;
        _server.Kill();
        _server.WaitForExit(ExitTimeout);
    }

    public override string ToString() => $"nbdkit disk {Name} ({Path}, {Size} bytes)";

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            bool clean = Unmount();
            if (_fuse is not null && !(clean && _fuse.WaitForExit(TimeSpan.FromSeconds(10))))
                Stop(_fuse); // still serving a lazily unmounted file someone holds open, or stuck
            Stop(_server);
            if (Mounts.Under(_mountDir).Count > 0) Run("umount", "-l", _mountDir); // left by a killed nbdfuse
            if (Mounts.Under(_dir).Count == 0) Directory.Delete(_dir, recursive: true);
            else Console.Error.WriteLine($"{this}: {_mountDir} is still mounted; {_dir} is left");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            Console.Error.WriteLine($"{this}: cleanup of {_dir} failed: {e.Message}");
        }
        finally
        {
            _fuse?.Dispose();
            _server?.Dispose();
        }
    }

    /// <summary>Whether the mount went cleanly (nbdfuse then exits by itself); a busy or dead mount is detached lazily.</summary>
    bool Unmount()
    {
        if (Mounts.Under(_mountDir).Count == 0) return true;
        if (Run("fusermount3", "-u", _mountDir) == 0) return true;
        if (Run("fusermount3", "-u", "-z", _mountDir) != 0) Run("umount", "-l", _mountDir);
        return false;
    }

    /// <summary>SIGTERM, then SIGKILL; each wait bounded, so a process stuck in the kernel is left rather than waited for.</summary>
    static void Stop(Process? p)
    {
        if (p is null || p.HasExited) return;
        Posix.TryKill(p.Id, Posix.SIGTERM);
        if (p.WaitForExit(ExitTimeout)) return;
        p.Kill();
        p.WaitForExit(ExitTimeout);
    }

    /// <summary>A tool's exit code, or -1 when it did not end within the exit timeout (it is killed then).</summary>
    static int Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (p.WaitForExit(ExitTimeout)) return p.ExitCode;
        p.Kill();
        p.WaitForExit(ExitTimeout);
        return -1;
    }
}
