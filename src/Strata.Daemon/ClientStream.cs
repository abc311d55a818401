namespace Strata.Daemon;

/// <summary>
/// A response body that notices its client has gone. Kestrel discards writes to an aborted connection
/// without failing them, so a diff streamed to a client that hung up would otherwise run to its end for
/// nobody, holding the store's shared lock and its layers' pins all the while. Every write checks the
/// request's abort token first and throws <see cref="OperationCanceledException"/> once it fires.
/// </summary>
public sealed class ClientStream(Stream inner, CancellationToken aborted) : WriteOnlyStream
{
    public override void Write(ReadOnlySpan<byte> data)
    {
        aborted.ThrowIfCancellationRequested();
        inner.Write(data);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) => WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        aborted.ThrowIfCancellationRequested();
        return inner.WriteAsync(data, ct);
    }

    public override void Flush()
    {
        aborted.ThrowIfCancellationRequested();
        inner.Flush();
    }

    public override Task FlushAsync(CancellationToken ct)
    {
        aborted.ThrowIfCancellationRequested();
        return inner.FlushAsync(ct);
    }
}
