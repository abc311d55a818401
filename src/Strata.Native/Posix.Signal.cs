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
