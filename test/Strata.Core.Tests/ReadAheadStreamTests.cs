using Strata.Core.Images;

namespace Strata.Core.Tests;

/// <summary>
/// The read-ahead between a layer's decompression and its extraction: the reader gets exactly the source's
/// bytes in order whatever its read sizes, the source's failures reach the reader as they were, and disposing
/// it early (an extraction that failed half-way) neither hangs nor reads on.
/// </summary>
public sealed class ReadAheadStreamTests
{
    static byte[] Pattern(int length)
    {
        var bytes = new byte[length];
        new Random(length).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Hands out at most <paramref name="step"/> bytes a read, as a decompressor does.</summary>
    sealed class Trickle(byte[] data, int step, Exception? failAtEnd = null) : Stream
    {
        public int Position0;
        int _reads;
        public int Reads => Volatile.Read(ref _reads);
        public override int Read(byte[] buffer, int offset, int count)
        {
            Interlocked.Increment(ref _reads);
            if (Position0 == data.Length)
            {
                if (failAtEnd is not null) throw failAtEnd;
                return 0;
            }
            int n = Math.Min(Math.Min(step, count), data.Length - Position0);
            Array.Copy(data, Position0, buffer, offset, n);
            Position0 += n;
            return n;
        }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => data.Length;
        public override long Position { get => Position0; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 7)]
    [InlineData((1 << 20) - 1, 4096)]
    [InlineData(1 << 20, 65536)]
    [InlineData((1 << 20) + 1, 100_000)]
    [InlineData(5 * (1 << 20) + 12345, 31)]
    public void TheReaderGetsTheSourcesBytesInOrder(int length, int readSize)
    {
        var data = Pattern(length);
        using var ahead = new ReadAheadStream(new Trickle(data, step: 8191));
        var got = new MemoryStream();
        var buffer = new byte[readSize];
        int n;
        while ((n = ahead.Read(buffer, 0, buffer.Length)) > 0) got.Write(buffer, 0, n);
        Assert.Equal(data, got.ToArray());
        Assert.Equal(0, ahead.Read(buffer, 0, buffer.Length)); // and it stays at the end
    }

    [Fact]
    public void ReadToEndLeavesTheSourceAtItsEnd()
    {
        var data = Pattern(3 * (1 << 20) + 17);
        var source = new Trickle(data, step: 1 << 16);
        using var ahead = new ReadAheadStream(source);
        var head = new byte[1000];
        Assert.Equal(1000, ahead.Read(head, 0, head.Length));
        ahead.ReadToEnd();
        Assert.Equal(data.Length, source.Position0);
        Assert.Equal(data.AsSpan(0, 1000).ToArray(), head);
    }

    [Fact]
    public void TheSourcesFailureReachesTheReaderAsItWas()
    {
        var data = Pattern(2 * (1 << 20) + 5);
        var failure = new InvalidDataException("unexpected end of gzip stream");
        using var ahead = new ReadAheadStream(new Trickle(data, step: 4096, failAtEnd: failure));
        var buffer = new byte[65536];
        long total = 0;
        var thrown = Assert.Throws<InvalidDataException>(() =>
        {
            int n;
            while ((n = ahead.Read(buffer, 0, buffer.Length)) > 0) total += n;
        });
        Assert.Same(failure, thrown);
        Assert.Equal(data.Length, total); // everything before the failure was delivered first
    }

    [Fact]
    public async Task DisposingBeforeTheEndStopsReadingAhead()
    {
        // far more than the read-ahead holds: the producer blocks on a full queue until disposal releases it
        var data = Pattern(64 * (1 << 20));
        var source = new Trickle(data, step: 1 << 20);
        var ahead = new ReadAheadStream(source);
        Assert.Equal(10, ahead.Read(new byte[10], 0, 10));
        await Task.Run(ahead.Dispose).WaitAsync(TimeSpan.FromSeconds(30)); // throws TimeoutException if it hangs
        int readsAtDispose = source.Reads;
        await Task.Delay(50);
        Assert.Equal(readsAtDispose, source.Reads);
        Assert.True(source.Position0 < data.Length);
    }
}
