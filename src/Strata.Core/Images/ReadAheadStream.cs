using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace Strata.Core.Images;

/// <summary>
/// Reads its source on a thread of its own, a few chunks ahead of the reader, so that producing the bytes
/// (decompressing and hashing a layer) and consuming them (extracting it) use two cores instead of taking
/// turns on one. The source's exceptions surface, as they were, from the reader's next read. The source is
/// read by that thread only until <see cref="ReadToEnd"/> or disposal, after which it is the caller's again.
/// </summary>
public sealed class ReadAheadStream : Strata.Archive.ReadOnlyStream
{
    const int ChunkSize = 1 << 20;
    readonly BlockingCollection<(byte[] Buffer, int Length)> _chunks = new(boundedCapacity: 8);
    readonly CancellationTokenSource _stop = new();
    readonly Thread _producer;
    ExceptionDispatchInfo? _failure;
    byte[]? _current;
    int _offset, _length;
    bool _done;

    public ReadAheadStream(Stream source)
    {
        _producer = new Thread(() => Produce(source)) { IsBackground = true, Name = "strata read-ahead" };
        _producer.Start();
    }

    void Produce(Stream source)
    {
        try
        {
            while (true)
            {
                var buffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
                int n = 0;
                try
                {
                    // fill the chunk: decompressors hand out little at a time
                    int r;
                    while (n < ChunkSize && (r = source.Read(buffer, n, ChunkSize - n)) > 0) n += r;
                }
                catch (Exception ex)
                {
                    // what came before the failure is delivered first, as a plain read would have
                    _failure = ExceptionDispatchInfo.Capture(ex);
                }
                if (n == 0)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    return;
                }
                try
                {
                    _chunks.Add((buffer, n), _stop.Token);
                }
                catch
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    throw;
                }
                if (n < ChunkSize || _failure is not null) return; // the source ended inside this chunk
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        finally
        {
            _chunks.CompleteAdding();
        }
    }

    public override int Read(Span<byte> destination)
    {
        if (destination.Length == 0 || _done) return 0;
        if (_current is null || _offset == _length)
        {
            if (_current is not null) ArrayPool<byte>.Shared.Return(_current);
            _current = null;
            if (!_chunks.TryTake(out var next, Timeout.Infinite))
            {
                _done = true;
                _failure?.Throw();
                return 0;
            }
            (_current, _offset, _length) = (next.Buffer, 0, next.Length);
        }
        int n = Math.Min(destination.Length, _length - _offset);
        _current.AsSpan(_offset, n).CopyTo(destination);
        _offset += n;
        return n;
    }

    /// <summary>Reads and drops what is left, until the source's end; the source is the caller's again after.</summary>
    public void ReadToEnd()
    {
        var sink = new byte[ChunkSize];
        while (Read(sink) > 0) { }
        _producer.Join();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _stop.Cancel();
            while (_chunks.TryTake(out var c)) ArrayPool<byte>.Shared.Return(c.Buffer); // let a blocked producer go
            _producer.Join();
            while (_chunks.TryTake(out var c)) ArrayPool<byte>.Shared.Return(c.Buffer);
            if (_current is not null) ArrayPool<byte>.Shared.Return(_current);
            _current = null;
            _chunks.Dispose();
            _stop.Dispose();
        }
        base.Dispose(disposing);
    }
}
