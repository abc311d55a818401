using System.Net.Sockets;
using Strata.Block;
using Strata.Testing;
using Strata.Thin;

namespace Strata.Nbd.Tests;

/// <summary>What the tests' servers export, by name, writable: every device of an in-memory pool (for tests of the
/// thin pool through NBD), and memory devices (for tests that need only a device).</summary>
sealed class TestExports(ThinPool pool, MemoryExports? memory = null) : IBlockExports
{
    public IReadOnlyList<string> Names() => [.. pool.DeviceNames(), .. memory?.Names() ?? []];
    public IBlockDevice? Open(string name) => memory?.Open(name) ?? (pool.DeviceNames().Contains(name) ? pool.OpenDevice(name) : null);
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
