namespace Strata.Thin.Service;

/// <summary>
/// The one dispatcher of a pool's control socket: reads a call from a request body (<see cref="PoolWire"/>), makes it
/// on an <see cref="IPoolService"/> and writes the reply. A failed call is answered with its
/// <see cref="StrataException"/>; anything else a call throws propagates to the host (the connection fails). Calls
/// run on a thread-pool thread with synchronous IO on both bodies (the pool's calls are synchronous).
/// </summary>
public static class PoolDispatcher
{
    /// <summary>How much input of a failed write is read and dropped, so that the client gets to read the reply (an
    /// HTTP/1.1 client sends its whole body first); past this the connection fails instead.</summary>
    const long MaxDrain = 64 << 20;

    public static Task<(string? Call, bool Failed)> ServeAsync(IPoolService pool, Stream request, Stream response, CancellationToken ct) =>
        Task.Run(() => Serve(pool, request, response), ct);

    /// <summary>Serves one request; returns the call's wire name (null: no call could be read) and whether it was
    /// answered with an error.</summary>
    public static (string? Call, bool Failed) Serve(IPoolService pool, Stream request, Stream response)
    {
        PoolCall call;
        try
        {
            call = PoolWire.ReadCall(request);
        }
        catch (StrataException ex)
        {
            PoolWire.WriteError(response, ex);
            return (null, true);
        }
        try
        {
            Dispatch(pool, call, request, response);
            return (PoolWire.NameOf(call), false);
        }
        catch (StrataException ex)
        {
            if (call is WriteCall) Drain(request);
            PoolWire.WriteError(response, ex);
            return (PoolWire.NameOf(call), true);
        }
    }

    static void Dispatch(IPoolService pool, PoolCall call, Stream input, Stream output)
    {
        switch (call)
        {
            case CreateCall c: PoolWire.WriteValue(output, c, pool.Create(c.Name, c.Size, c.Owner)); break;
            case SnapshotCall c: PoolWire.WriteValue(output, c, pool.Snapshot(c.Source, c.Name, c.Owner)); break;
            case DeleteCall c: PoolWire.WriteValue(output, c, pool.Delete(c.Name, c.Defer, c.Owner, c.Force)); break;
            case ResizeCall c: PoolWire.WriteValue(output, c, pool.Resize(c.Name, c.Size)); break;
            case RollbackCall c: PoolWire.WriteValue(output, c, pool.Rollback(c.Name, c.Snapshot, c.Owner, c.Force)); break;
            case DeviceCall c: PoolWire.WriteValue(output, c, pool.Device(c.Name)); break;
            case DeviceNamesCall c: PoolWire.WriteValue(output, c, pool.DeviceNames().ToList()); break;
            case DevicesCall c: PoolWire.WriteValue(output, c, pool.Devices().ToList()); break;
            case StatusCall c: PoolWire.WriteValue(output, c, pool.Status()); break;
            case SuperblockProblemsCall c: PoolWire.WriteValue(output, c, pool.SuperblockProblems().ToList()); break;
            case AttachCall c: PoolWire.WriteValue(output, c, pool.Attach(c.Name)); break;
            case DetachCall c:
                pool.Detach(c.Name);
                PoolWire.WriteValue(output, c, Done.Value);
                break;
            case AttachedCall c: PoolWire.WriteValue(output, c, pool.Attached(c.Name)); break;
            case ReadCall c:
                using (var data = PoolWire.DataWriter(output)) pool.Read(c.Name, c.Offset, c.Length, data);
                PoolWire.WriteValue(output, c, Done.Value);
                break;
            case WriteCall c: PoolWire.WriteValue(output, c, pool.Write(c.Name, c.Offset, input)); break;
            case CheckCall c: PoolWire.WriteValue(output, c, pool.Check()); break;
            case DumpCall c:
                using (var data = PoolWire.DataWriter(output)) pool.Dump(data);
                PoolWire.WriteValue(output, c, Done.Value);
                break;
            case DisksCall c: PoolWire.WriteValue(output, c, pool.ChangeDisks(c.Change)); break;
            case ScrubCall c: PoolWire.WriteValue(output, c, pool.Scrub(c.Repair)); break;
            case StatsCall c: PoolWire.WriteValue(output, c, pool.Stats(c.Names)); break;
            default:
                throw new InvalidOperationException($"no dispatch for {call.GetType().Name}"); // a call added to the codec alone
        }
    }

    static void Drain(Stream input)
    {
        var buffer = new byte[1 << 16];
        long dropped = 0;
        int n;
        while (dropped < MaxDrain && (n = input.Read(buffer)) > 0) dropped += n;
    }
}
