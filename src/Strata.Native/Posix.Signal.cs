using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>kill(2), and whether a process still runs.</summary>
public static partial class Posix
{
    public const int SIGKILL = 9, SIGTERM = 15;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int kill_raw(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "setsid", SetLastError = true)]
    private static partial int setsid_raw();

    /// <summary>Makes this process the leader of a new session, away from the caller's terminal and its signals; 0, or the errno.</summary>
    public static int TrySetSid() => setsid_raw() < 0 ? Errno.Last : 0;

    [LibraryImport("libc", EntryPoint = "prctl", SetLastError = true)]
    private static partial int prctl_raw(int option, ulong a2, ulong a3, ulong a4, ulong a5);

    public const int PR_SET_IO_FLUSHER = 57;

    /// <summary>Marks this process as one that writes back other processes' dirty pages (a user-space block device
    /// server): the kernel keeps it out of dirty-page throttling and reclaim that would wait on itself. 0, or the errno.</summary>
    public static int TrySetIoFlusher() => prctl_raw(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0 ? Errno.Last : 0;

    /// <summary>Sends a signal; 0, or the errno (ESRCH: no such process).</summary>
    public static int TryKill(int pid, int signal) => kill_raw(pid, signal) < 0 ? Errno.Last : 0;

    /// <summary>Whether <paramref name="pid"/> is a process that has not exited (a zombie has).</summary>
    public static bool IsRunning(int pid)
    {
        string stat;
        try
        {
            stat = System.Text.Encoding.ASCII.GetString(ReadFile($"/proc/{pid}/stat"));
        }
        catch (ErrnoException)
        {
            return false;
        }
        int close = stat.LastIndexOf(')');
        return close > 0 && close + 2 < stat.Length && stat[close + 2] is not ('Z' or 'X');
    }
}
