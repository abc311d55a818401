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
    /// owns the descriptor returned (closing it releases the store).</summary>
    public static FileDescriptor Acquire(string root, TimeSpan wait)
    {
        string path = Path.Combine(root, "strata.lock");
        var fd = Posix.Open(path, Posix.O_RDWR | Posix.O_CREAT, 0x180);
        try
        {
            var deadline = DateTime.UtcNow + wait;
            while (!Posix.TryLockExclusive(fd, path))
            {
                if (DateTime.UtcNow >= deadline)
                {
                    string owner = ReadOwner(fd, path);
                    throw StrataException.InUse($"store {root} is in use by another process{(owner.Length > 0 ? $" (pid {owner})" : "")}");
                }
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

    /// <summary>The pid the owner wrote (read raw: .NET's FileStream would take a conflicting flock of its own).</summary>
    static string ReadOwner(FileDescriptor fd, string path)
    {
        Span<byte> buf = stackalloc byte[32];
        int n = Posix.Pread(fd, buf, 0, path);
        return Encoding.ASCII.GetString(buf[..n]).Trim();
    }
}
