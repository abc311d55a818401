// Mounting the FUSE export and serving it: opens /dev/fuse, mounts it, and runs the worker threads that read the
// kernel's requests and write FuseFileSystem's replies, until the mount goes away.
using Strata.Native;
using Strata.Block;

namespace Strata.Fuse;

/// <summary>
/// Block devices as files of one FUSE mount, served by this process straight from <see cref="IBlockExports"/>
/// over /dev/fuse (the kernel's FUSE protocol 7.x, no libfuse): the mount's root lists every export, and
/// each file reads and writes its device. A loop device over such a file is a kernel block device backed by
/// a thin device, with one hop (kernel to this process) where nbdfuse takes two (kernel to nbdfuse, nbdfuse
/// to the NBD server). Files are opened with direct IO (no page cache of their own: the filesystem on the
/// loop device caches), parallel direct writes and async direct IO, so a loop device with direct IO keeps
/// many requests in flight; fsync flushes the device; fallocate punches holes (discards) and zeroes ranges.
/// Nothing is cached by the kernel (entry and attribute timeouts are zero), so a device made, grown or
/// removed shows at once. Worker threads each block in read(2) on the FUSE device and answer what they read.
/// </summary>
public sealed class FuseExport : IDisposable
{
    readonly FuseFileSystem _fileSystem;
    readonly FileDescriptor _fd;
    readonly string _mountPoint;
    readonly Action<string>? _log;
    readonly List<Thread> _threads = [];
    int _stopping;

    FuseExport(IBlockExports exports, FileDescriptor fd, string mountPoint, uint blockSize, Action<string>? log)
    {
        _fileSystem = new FuseFileSystem(exports, blockSize, log);
        _fd = fd;
        _mountPoint = mountPoint;
        _log = log;
    }

    public string MountPoint => _mountPoint;

    /// <summary>How many device files are open (a loop device over one holds it open).</summary>
    public int OpenFiles => _fileSystem.OpenFiles;

    /// <summary>Mounts the export at <paramref name="mountPoint"/> (an empty directory; root only, mode 0700) and starts
    /// <paramref name="threads"/> workers. <paramref name="blockSize"/> is reported as the files' preferred IO size,
    /// which a loop device takes as its discard granularity.</summary>
    public static FuseExport Mount(string mountPoint, IBlockExports exports, uint blockSize, Action<string>? log = null, int threads = 8)
    {
        int err = Posix.TryOpenAt(FileDescriptor.Cwd, "/dev/fuse", Posix.O_RDWR, 0, out var fd);
        if (err != 0) throw new ErrnoException(err, "open", "/dev/fuse", "FUSE is not available (load the fuse module)");
        var export = new FuseExport(exports, fd!, mountPoint, blockSize, log);
        try
        {
            string data = $"fd={fd!.Value},rootmode=40000,user_id=0,group_id=0";
            err = Posix.TryMount("strata", mountPoint, "fuse.strata", Posix.MS_NOSUID | Posix.MS_NODEV | Posix.MS_NOEXEC, data);
            if (err != 0) throw new ErrnoException(err, "mount fuse", mountPoint);
            for (int i = 0; i < threads; i++)
            {
                var t = new Thread(export.Serve) { IsBackground = true, Name = $"fuse-{i}" };
                export._threads.Add(t);
                t.Start();
            }
            return export;
        }
        catch
        {
            fd!.Dispose();
            throw;
        }
    }

    /// <summary>One worker: reads a request, writes its reply, until the connection is gone.</summary>
    void Serve()
    {
        var request = GC.AllocateUninitializedArray<byte>(FuseWire.BufferSize, pinned: true);
        var reply = GC.AllocateUninitializedArray<byte>(FuseWire.BufferSize, pinned: true);
        while (true)
        {
            int err = Posix.TryRead(_fd, request, out int n);
            if (err == Errno.ENOENT || err == Errno.EAGAIN) continue; // a request interrupted before we read it
            if (err == Errno.ENODEV) return; // unmounted: the connection is gone
            if (err != 0)
            {
                // a worker that quit would leave the kernel's requests unanswered (and their loop devices hung) while
                // the mount stays: log, and go on reading after a pause
                _log?.Invoke($"fuse: read from /dev/fuse failed: {new ErrnoException(err, "read", "/dev/fuse").Message}");
                Thread.Sleep(100);
                continue;
            }
            int length = _fileSystem.Answer(request.AsSpan(0, n), reply);
            if (length == FuseFileSystem.NoReply) continue;
            err = Posix.TryWrite(_fd, reply.AsSpan(0, length));
            if (err == Errno.ENODEV) return;
            // ENOENT: the request was interrupted meanwhile, and the kernel no longer waits for the answer
            if (err != 0 && err != Errno.ENOENT)
            {
                FuseInHeader.TryRead(request.AsSpan(0, n), out var header);
                _log?.Invoke($"fuse: reply to request {(uint)header.Opcode} failed: errno {err}");
            }
        }
    }

    /// <summary>Unmounts (lazily: a loop device still holding a file keeps the connection until it lets go) and
    /// waits up to <paramref name="wait"/> for the workers; whatever is still open is dropped when the process ends.</summary>
    public void Dispose() => Dispose(TimeSpan.FromSeconds(5));

    public void Dispose(TimeSpan wait)
    {
        if (Interlocked.Exchange(ref _stopping, 1) != 0) return;
        Posix.TryUnmount(_mountPoint, Posix.MNT_DETACH);
        var deadline = DateTime.UtcNow + wait;
        foreach (var t in _threads)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !t.Join(left)) break;
        }
        _fileSystem.CloseAll();
        if (_threads.All(t => !t.IsAlive)) _fd.Dispose();
    }
}
