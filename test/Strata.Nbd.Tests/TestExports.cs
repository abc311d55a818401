using System.Net.Sockets;
using Strata.Thin;
using Strata.Block;

namespace Strata.Nbd.Tests;

/// <summary>Every device of an in-memory pool, by name, writable: what the tests' servers export.</summary>
sealed class TestExports(ThinPool pool) : IBlockExports
{
    public IReadOnlyList<string> Names() => pool.DeviceNames();
    public IBlockDevice? Open(string name) => Names().Contains(name) ? pool.OpenDevice(name) : null;
    public bool ReadOnly(string name) => false;

    /// <summary>Receives exactly <paramref name="buffer"/>'s length; EndOfStreamException when the server hangs up first.</summary>
    public static void ReadExactly(Socket s, Span<byte> buffer)
    {
        for (int done = 0; done < buffer.Length;)
        {
            int n = s.Receive(buffer[done..]);
            if (n == 0) throw new EndOfStreamException();
            done += n;
        }
    }
}
