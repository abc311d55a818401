using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>socketpair(2): two connected unix stream sockets (the kernel's nbd client on one end, the server on the other).</summary>
public static unsafe partial class Posix
{
    const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;

    [LibraryImport("libc", EntryPoint = "socketpair", SetLastError = true)]
    private static partial int socketpair_raw(int domain, int type, int protocol, int* fds);

    public static (int A, int B) SocketPair()
    {
        int* fds = stackalloc int[2];
        if (socketpair_raw(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) throw new ErrnoException(Errno.Last, "socketpair", null);
        return (fds[0], fds[1]);
    }

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int close_raw(int fd);

    /// <summary>Closes a raw descriptor not wrapped in a handle.</summary>
    public static void CloseRaw(int fd) => close_raw(fd);
}
