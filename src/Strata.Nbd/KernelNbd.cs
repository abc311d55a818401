using System.Net.Sockets;
using Strata.Native;
using Strata.Block;

namespace Strata.Nbd;

/// <summary>
/// A block device given to the kernel's nbd client (/dev/nbdN, the nbd module) by this process: the device is
/// configured with the ioctl interface (block size, size, flags, one end of a socketpair), a thread of ours sits in
/// NBD_DO_IT for as long as it is connected, and the other end of the pair is served by the same transmission code
/// as NBD clients over sockets (the kernel speaks only the transmission phase, with simple replies). Detaching sends
/// NBD_DISCONNECT; NBD_DO_IT then returns and the device is free again. If this process dies, the kernel drops the
/// connection and IO on the device fails (what was written and flushed stays in the pool).
/// </summary>
public sealed partial class KernelNbd : IDisposable
{
    const ulong NBD_SET_SOCK = 0xAB00, NBD_SET_BLKSIZE = 0xAB01, NBD_DO_IT = 0xAB03, NBD_CLEAR_SOCK = 0xAB04, NBD_CLEAR_QUE = 0xAB05,
        NBD_SET_SIZE_BLOCKS = 0xAB07, NBD_DISCONNECT = 0xAB08, NBD_SET_TIMEOUT = 0xAB09, NBD_SET_FLAGS = 0xAB0A;
    const ulong FlagHasFlags = 1, FlagReadOnly = 2, FlagSendFlush = 4, FlagSendFua = 8, FlagSendTrim = 32, FlagSendWriteZeroes = 64;
    const int BlockSize = 4096;

    readonly FileDescriptor _fd;
    readonly Thread _doIt;
    readonly Thread _serve;
    readonly Socket _ours;
    readonly int _number;
    volatile int _doItError;
    int _disposed;

    /// <summary>Whether the kernel still serves the device (NBD_DO_IT has not returned: no disconnect, the socket alive).</summary>
    public bool Alive => _doIt.IsAlive;

    /// <summary>The device node, e.g. /dev/nbd3.</summary>
    public string Path { get; }

    /// <summary>Whether this kernel has the nbd module loaded (its devices exist).</summary>
    public static bool Available => File.Exists("/sys/block/nbd0/size");

    KernelNbd(string path, int number, FileDescriptor fd, Socket ours, IBlockDevice device, bool readOnly, Action<string>? log)
    {
        Path = path;
        _number = number;
        _fd = fd;
        _ours = ours;
        _serve = new Thread(() =>
        {
            try
            {
                new Transmission(ours, device, readOnly, structured: false, baseAllocation: false, log).Run();
            }
            catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
            {
                // the kernel hung up
            }
            finally
            {
                // the kernel's NBD_DO_IT returns once the connection is closed after its disconnect request
                try
                {
                    ours.Shutdown(SocketShutdown.Both);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                }
                device.Dispose();
            }
        }) { IsBackground = true, Name = $"nbd-serve {path}" };
        _doIt = new Thread(() =>
        {
            _doItError = ioctl_plain(fd, NBD_DO_IT, 0); // returns at disconnect (or when the socket dies)
            ioctl_plain(fd, NBD_CLEAR_QUE, 0);
            ioctl_plain(fd, NBD_CLEAR_SOCK, 0);
        }) { IsBackground = true, Name = $"nbd-do-it {path}" };
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl_raw(int fd, ulong request, nint arg);

    static int ioctl_plain(FileDescriptor fd, ulong request, nint arg) => ioctl_raw(fd.Value, request, arg) < 0 ? Errno.Last : 0;

    /// <summary>nbd device numbers this process has claimed and not yet released (the sysfs pid file appears only once
    /// NBD_DO_IT runs, and the kernel lets the task that claimed a device claim it again).</summary>
    static readonly HashSet<int> s_claimed = [];

    /// <summary>Connects <paramref name="device"/> (which the attachment owns from here) to the first free /dev/nbdN, and
    /// returns once the kernel serves it (NBD_DO_IT running).</summary>
    public static KernelNbd Attach(IBlockDevice device, bool readOnly, Action<string>? log = null)
    {
        bool deviceOwned = false; // once an attachment owns the device, it disposes it
        try
        {
            for (int n = 0; File.Exists($"/sys/block/nbd{n}/size"); n++)
            {
                if (File.Exists($"/sys/block/nbd{n}/pid")) continue; // connected
                lock (s_claimed)
                    if (!s_claimed.Add(n)) continue;
                string path = $"/dev/nbd{n}";
                bool handedOver = false;
                try
                {
                    if (Posix.TryOpenAt(FileDescriptor.Cwd, path, Posix.O_RDWR, 0, out var fd) != 0) continue;
                    var (kernelEnd, ourEnd) = Posix.SocketPair();
                    SafeSocketHandle? handle = null;
                    try
                    {
                        // the socket first: it claims the device for this task (EBUSY: another task is setting it up;
                        // EINVAL: it was set up through netlink), so nothing below touches someone else's device
                        int err = ioctl_plain(fd!, NBD_SET_SOCK, kernelEnd);
                        if (err is Errno.EBUSY or Errno.EINVAL)
                        {
                            fd!.Dispose();
                            Posix.CloseRaw(ourEnd);
                            continue;
                        }
                        Check(err, "NBD_SET_SOCK", path);
                        Check(ioctl_plain(fd!, NBD_SET_BLKSIZE, BlockSize), "NBD_SET_BLKSIZE", path);
                        Check(ioctl_plain(fd!, NBD_SET_SIZE_BLOCKS, (nint)(device.Size / BlockSize)), "NBD_SET_SIZE_BLOCKS", path);
                        Check(ioctl_plain(fd!, NBD_SET_TIMEOUT, 0), "NBD_SET_TIMEOUT", path);
                        ulong flags = FlagHasFlags | FlagSendFlush | FlagSendFua | FlagSendTrim | FlagSendWriteZeroes | (readOnly ? FlagReadOnly : 0);
                        Check(ioctl_plain(fd!, NBD_SET_FLAGS, (nint)flags), "NBD_SET_FLAGS", path);
                        handle = new SafeSocketHandle(ourEnd, ownsHandle: true);
                        var ours = new Socket(handle);
                        var attached = new KernelNbd(path, n, fd!, ours, device, readOnly, log);
                        handedOver = deviceOwned = true; // from here the attachment owns the descriptors, the device and the claim
                        attached._serve.Start();
                        attached._doIt.Start();
                        attached.WaitServing();
                        return attached;
                    }
                    catch when (!handedOver)
                    {
                        ioctl_plain(fd!, NBD_CLEAR_SOCK, 0);
                        fd!.Dispose();
                        if (handle is null) Posix.CloseRaw(ourEnd);
                        else handle.Dispose();
                        throw;
                    }
                    finally
                    {
                        Posix.CloseRaw(kernelEnd); // the kernel holds its own reference once NBD_SET_SOCK took it
                    }
                }
                finally
                {
                    if (!handedOver)
                        lock (s_claimed) s_claimed.Remove(n);
                }
            }
            throw StrataException.InUse("every /dev/nbd device is connected (load the nbd module with more: modprobe nbd nbds_max=N)");
        }
        catch (Exception) when (!deviceOwned)
        {
            device.Dispose();
            throw;
        }
    }

    /// <summary>Waits until the kernel serves the device (NBD_DO_IT shows its pid in sysfs); if NBD_DO_IT failed, disposes
    /// the attachment and throws.</summary>
    void WaitServing()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        string pid = $"/sys/block/{System.IO.Path.GetFileName(Path)}/pid";
        while (!File.Exists(pid))
        {
            if (!_doIt.IsAlive || DateTime.UtcNow > deadline)
            {
                string why = _doItError is { } e && e != 0 ? new ErrnoException(e, "NBD_DO_IT", Path).Message : $"{Path} did not start serving";
                Dispose();
                throw new StrataException(ErrorKind.Io, why);
            }
            Thread.Sleep(1);
        }
    }

    static void Check(int err, string what, string path)
    {
        if (err != 0) throw new ErrnoException(err, what, path);
    }

    /// <summary>Whether something has the device open exclusively (a mounted filesystem claims it).</summary>
    public bool InUse()
    {
        int err = Posix.TryOpenAt(FileDescriptor.Cwd, Path, Posix.O_RDONLY | O_EXCL, 0, out var fd);
        fd?.Dispose();
        return err == Errno.EBUSY;
    }

    const int O_EXCL = 0x80;

    /// <summary>Disconnects the device and waits for its threads.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (_doIt.IsAlive) ioctl_plain(_fd, NBD_DISCONNECT, 0);
        if (_doIt.ThreadState != ThreadState.Unstarted && !_doIt.Join(TimeSpan.FromSeconds(10)))
            try
            {
                _ours.Shutdown(SocketShutdown.Both);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }
        bool doItEnded = _doIt.ThreadState == ThreadState.Unstarted || _doIt.Join(TimeSpan.FromSeconds(10));
        _ours.Dispose();
        if (_serve.ThreadState != ThreadState.Unstarted) _serve.Join(TimeSpan.FromSeconds(10));
        if (!doItEnded) return; // the thread still uses the descriptor's number: never close it under it (nor release the claim)
        _fd.Dispose();
        lock (s_claimed) s_claimed.Remove(_number);
    }
}
