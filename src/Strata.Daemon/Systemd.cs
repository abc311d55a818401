using System.Net.Sockets;
using System.Text;

namespace Strata.Daemon;

/// <summary>
/// The service manager's readiness protocol (sd_notify(3)) without libsystemd: one datagram of
/// "KEY=VALUE" lines to the unix socket named by $NOTIFY_SOCKET (a leading '@' means the abstract
/// namespace). With Type=notify, systemd starts what comes After= this unit (dockerd) only once the
/// daemon says READY=1, that is, once its sockets answer. Without $NOTIFY_SOCKET nothing happens.
/// </summary>
public static class Systemd
{
    public static void Notify(string state)
    {
        if (Environment.GetEnvironmentVariable("NOTIFY_SOCKET") is not { Length: > 1 } path) return;
        if (path[0] == '@') path = "\0" + path[1..];
        else if (path[0] != '/') return; // not a socket address systemd would give
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.SendTo(Encoding.UTF8.GetBytes(state), new UnixDomainSocketEndPoint(path));
    }
}
