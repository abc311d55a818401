using System.Net.Sockets;

namespace Strata.Native;

/// <summary>HTTP (and gRPC) clients of Strata's unix-socket servers: the control sockets, the pool's socket, the Docker
/// plugin and the snapshotter. The URI's host is ignored; every connection goes to the one socket.</summary>
public static class UnixSocketHttp
{
    /// <summary>A handler whose every connection is to <paramref name="socket"/>.</summary>
    public static SocketsHttpHandler Handler(string socket) => new()
    {
        ConnectCallback = async (_, ct) =>
        {
            var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct);
                return new NetworkStream(s, ownsSocket: true);
            }
            catch
            {
                s.Dispose();
                throw;
            }
        },
    };
}
