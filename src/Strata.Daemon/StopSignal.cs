using System.Runtime.InteropServices;

namespace Strata.Daemon;

/// <summary>What a foreground server waits for: SIGTERM or SIGINT (taken from the runtime, which would otherwise end
/// the process at once) or its caller's token; <see cref="Task"/> completes on the first, until disposed.</summary>
sealed class StopSignal : IDisposable
{
    readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly PosixSignalRegistration _term, _interrupt;
    readonly CancellationTokenRegistration _token;

    public StopSignal(CancellationToken stop)
    {
        _term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        _interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        _token = stop.Register(() => _stopped.TrySetResult());
    }

    public Task Task => _stopped.Task;

    void Stop(PosixSignalContext context)
    {
        context.Cancel = true;
        _stopped.TrySetResult();
    }

    public void Dispose()
    {
        _term.Dispose();
        _interrupt.Dispose();
        _token.Dispose();
    }
}
