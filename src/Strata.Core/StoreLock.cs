// Ownership of a store: the flock on strata.lock that one process at a time holds (DESIGN decision 8).
using System.Text;
using Strata.Native;

namespace Strata.Core;

/// <summary>
/// <c>&lt;root&gt;/strata.lock</c>: held (flock, exclusive) by the one process that owns the store, for as long as
/// it has it open, and holding that process's pid as text (for the message another process gets). The kernel
/// drops the lock when its owner dies, so a crash never leaves a store locked.
/// </summary>
static class StoreLock
{
    /// <summary>Takes the store's lock, waiting up to <paramref name="wait"/> for its owner to let go; the caller
    /// owns the descriptor returned (closing it releases the store). When the lock is held, <paramref name="waiting"/>
    /// hears at once who holds it ("waiting for strata layer apply (pid 42) to release the store ...").</summary>
    public static FileDescriptor Acquire(string root, TimeSpan wait, Action<string>? waiting = null)
    {
        string path = Path.Combine(root, "strata.lock");
        var fd = Posix.Open(path, Posix.O_RDWR | Posix.O_CREAT, 0x180);
        try
        {
            var deadline = DateTime.UtcNow + wait;
            bool told = false;
            while (!Posix.TryLockExclusive(fd, path))
            {
                if (!told)
                {
                    waiting?.Invoke($"waiting for {Owner(fd, path)} to release the store {root}");
                    told = true;
                }
                if (DateTime.UtcNow >= deadline)
                    throw StrataException.InUse($"store {root} is in use by {Owner(fd, path)}");
                Thread.Sleep(20);
            }
            Posix.Ftruncate(fd, 0, path);
            Posix.PwriteAll(fd, Encoding.ASCII.GetBytes(Environment.ProcessId + "\n"), 0, path);
            return fd;
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>Who holds the lock, for messages: "strata layer apply x (pid 42)", "pid 42", or "another process".</summary>
    static string Owner(FileDescriptor fd, string path)
    {
        string pid = ReadOwner(fd, path);
        if (pid.Length == 0 || !pid.All(char.IsAsciiDigit)) return "another process";
        try
        {
            // the command line as ps shows it, without the options before the command (--root ...)
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
