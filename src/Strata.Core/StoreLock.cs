// Ownership of a store: the flock on strata.lock that one writer at a time holds exclusively, or readers share
// (DESIGN decision 8).
using System.Globalization;
using System.Text;
using Strata.Native;

namespace Strata.Core;

/// <summary>
/// <c>&lt;root&gt;/strata.lock</c>: held (flock, exclusive) by the one process that owns the store, for as long as
/// it has it open, and holding that process's pid as text (for the message another process gets); or held shared
/// by any number of readers (listings), which write nothing, so that a read-only store can be listed too. The kernel
/// drops the lock when its holder dies, so a crash never leaves a store locked. The file is removed only by a first
/// open that failed (the half-made store goes whole); a lock taken on a file no longer at its path is taken again.
/// </summary>
static class StoreLock
{
    public const string FileName = "strata.lock";

    /// <summary>Takes the store's lock, exclusive (<paramref name="shared"/> false: the file is made if missing) or
    /// shared (opened read-only), waiting up to <paramref name="wait"/> for its holder to let go; the caller owns the
    /// descriptor returned (closing it releases the store). Null when the file is not there (a shared lock only:
    /// there is no store), or was removed while this waited (the store it guarded is gone: the caller starts over).
    /// When the lock is held, <paramref name="waiting"/> hears at once who holds it ("waiting for strata layer apply
    /// (pid 42) to release the store ...").</summary>
    public static FileDescriptor? Acquire(string root, TimeSpan wait, Action<string>? waiting = null, bool shared = false)
    {
        string path = Path.Combine(root, FileName);
        FileDescriptor fd;
        if (shared)
        {
            int err = Posix.TryOpenAt(FileDescriptor.Cwd, path, Posix.O_RDONLY, 0, out var opened);
            if (err == Errno.ENOENT) return null;
            if (err != 0) throw new ErrnoException(err, "open", path);
            fd = opened!;
        }
        else fd = Posix.Open(path, Posix.O_RDWR | Posix.O_CREAT, 0x180);
        try
        {
            var deadline = DateTime.UtcNow + wait;
            bool told = false;
            while (!(shared ? Posix.TryLockShared(fd, path) : Posix.TryLockExclusive(fd, path)))
            {
                if (!told)
                {
                    waiting?.Invoke($"waiting for {Holder(fd, path)} to release the store {root}");
                    told = true;
                }
                if (DateTime.UtcNow >= deadline)
                    throw StrataException.InUse($"store {root} is in use by {Holder(fd, path)}");
                Thread.Sleep(20);
            }
            if (!StillAt(fd, path))
            {
                fd.Dispose();
                return null;
            }
            if (!shared)
            {
                Posix.Ftruncate(fd, 0, path);
                Posix.PwriteAll(fd, Encoding.ASCII.GetBytes(Environment.ProcessId + "\n"), 0, path);
            }
            return fd;
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>Whether <paramref name="path"/> still names the file <paramref name="fd"/> has open (a failed first open
    /// removes the lock file with its half-made store while another process may wait on it).</summary>
    static bool StillAt(FileDescriptor fd, string path)
    {
        var open = Posix.Fstat(fd);
        return Posix.TryLstat(path, out var now) && now.Inode == open.Inode && now.Device == open.Device;
    }

    /// <summary>Who holds the lock, for messages: "strata layer apply x (pid 42)", "strata layer ls (pid 42) and 2 other
    /// readers", "pid 42", or "another process". The holders are read from /proc/locks (shared holders write no pid);
    /// where that says nothing, the pid the last owner wrote.</summary>
    static string Holder(FileDescriptor fd, string path)
    {
        var pids = LockHolders(fd);
        if (pids.Count == 0)
        {
            string written = ReadOwner(fd, path);
            if (written.Length == 0 || !written.All(char.IsAsciiDigit)) return "another process";
            pids = [written];
        }
        string first = Describe(pids[0]);
        return pids.Count switch
        {
            1 => first,
            2 => $"{first} and another reader",
            _ => $"{first} and {pids.Count - 1} other readers",
        };
    }

    /// <summary>The pids /proc/locks shows holding a flock on <paramref name="fd"/>'s file (not those waiting for one).
    /// A line reads "1: FLOCK  ADVISORY  READ  42 08:02:1234 0 EOF"; waiters' lines have "->" after the number.</summary>
    static List<string> LockHolders(FileDescriptor fd)
    {
        var pids = new List<string>();
        try
        {
            var st = Posix.Fstat(fd);
            ulong dev = st.Device;
            uint major = (uint)(((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfffUL));
            uint minor = (uint)((dev & 0xff) | ((dev >> 12) & ~0xffUL));
            string file = $"{major:x2}:{minor:x2}:{st.Inode.ToString(CultureInfo.InvariantCulture)}";
            foreach (var line in File.ReadLines("/proc/locks"))
            {
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length >= 6 && f[1] == "FLOCK" && f[5] == file && f[4] != Environment.ProcessId.ToString(CultureInfo.InvariantCulture))
                    pids.Add(f[4]);
            }
        }
        catch (IOException)
        {
            // no /proc/locks: the written pid has to do
        }
        catch (UnauthorizedAccessException)
        {
        }
        return pids;
    }

    /// <summary>A process for messages: its command line as ps shows it, without the options before the command
    /// (--root ...), and its pid.</summary>
    static string Describe(string pid)
    {
        try
        {
            var args = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries);
            if (args.Length == 0) return $"another process (pid {pid})";
            var words = new List<string> { Path.GetFileName(args[0]) };
            for (int i = 1; i < args.Length; i++)
            {
                if (args[i] is "--root" or "--driver" or "--storage-opt") i++;
                else if (!args[i].StartsWith("--root=", StringComparison.Ordinal)) words.Add(args[i]);
            }
            string command = string.Join(' ', words);
            return $"{StrataException.OneLine(command.Length > 60 ? command[..60] + "..." : command)} (pid {pid})";
        }
        catch (IOException)
        {
            return $"another process (pid {pid})"; // gone meanwhile, or not ours to read
        }
        catch (UnauthorizedAccessException)
        {
            return $"another process (pid {pid})";
        }
    }

    /// <summary>The pid the owner wrote (read raw: .NET's FileStream would take a conflicting flock of its own).</summary>
    static string ReadOwner(FileDescriptor fd, string path)
    {
        Span<byte> buf = stackalloc byte[32];
        int n = Posix.Pread(fd, buf, 0, path);
        return Encoding.ASCII.GetString(buf[..n]).Trim();
    }
}
