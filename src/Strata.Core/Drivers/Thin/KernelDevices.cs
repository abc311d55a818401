using Strata.Native;
using Strata.Thin;
using Strata.Thin.Service;

namespace Strata.Core.Drivers.Thin;

/// <summary>
/// How the thin driver gives its pool's devices to the kernel, as block devices a filesystem mounts: through the
/// kernel's nbd module, attached by the pool's server (thin.attach=nbd, or auto where /dev/nbd* exist when the store
/// opens), or as a loop device over the device's file in the server's FUSE export, with direct IO and autoclear (the
/// loop device goes by itself once nothing holds it, so no attach state is kept anywhere).
/// </summary>
sealed class KernelDevices(string home, IPoolService pool, PoolProcess process, bool usesKernelNbd)
{
    /// <summary>Whether devices reach the kernel through its nbd module rather than the FUSE export and a loop device.</summary>
    public bool UsesKernelNbd => usesKernelNbd;

    /// <summary>A device's file in the server's FUSE export.</summary>
    public string DeviceFile(string id) => Path.Combine(process.DeviceDir, id);

    /// <summary>Attaches a device (starting the pool's server if none runs): it lives while the returned handle, or a
    /// mount made before the handle is disposed, holds it.</summary>
    public Attachment Attach(string id)
    {
        process.EnsureRunning(fuse: !usesKernelNbd);
        if (usesKernelNbd)
        {
            // the server gives the device to the kernel's nbd module (the same device again if it still holds it);
            // letting go asks it to detach, which it does once nothing holds the device (a mount made meanwhile does)
            string nbd = pool.Attach(id);
            return new Attachment(nbd, () => pool.Detach(id));
        }
        string file = DeviceFile(id);
        // a loop device still bound to the file (its filesystem alive in another mount namespace, or detached lazily
        // but still in use) is the one to mount again: a second loop device would be a second, independent instance
        // of the same filesystem on the same blocks, and the two would corrupt it
        foreach (var bound in Posix.LoopDevicesOf(file))
            if (Posix.TryOpenAt(FileDescriptor.Cwd, bound, Posix.O_RDWR, 0, out var held) == 0)
            {
                if (Posix.LoopDevicesOf(file).Contains(bound)) return new Attachment(bound, held!.Dispose);
                held!.Dispose(); // it was detached meanwhile and may serve another file now
            }
        int err = Posix.TryOpenAt(FileDescriptor.Cwd, file, Posix.O_RDWR, 0, out var backing);
        if (err == Errno.ENOENT && !process.ExportMounted)
            throw StrataException.Unsupported($"{process.DeviceDir} is not the pool server's FUSE export: a `strata pool serve` without --fuse owns pool {home}; stop it and the thin driver starts its own");
        if (err == Errno.ENOENT) throw StrataException.NotFound($"thin device {id} does not exist in pool {home}");
        if (err != 0) throw new ErrnoException(err, "open", file);
        using (backing)
        {
            var (path, fd) = Posix.AttachLoop(backing!, file, Posix.LO_FLAGS_AUTOCLEAR | Posix.LO_FLAGS_DIRECT_IO);
            return new Attachment(path, fd.Dispose);
        }
    }

    /// <summary>After an unmount: an nbd device is detached at once (a loop device went by itself); a server that is
    /// gone took its nbd devices with it.</summary>
    public void Detached(string id)
    {
        if (usesKernelNbd && PoolDirectory.Exists(home) && process.ServerAlive()) pool.Detach(id);
    }

    /// <summary>The kernel devices a device is attached as: loop devices over its file, or the server's nbd device.</summary>
    public IReadOnlyList<string> AttachedAs(string id)
    {
        if (!usesKernelNbd) return Posix.LoopDevicesOf(DeviceFile(id));
        return process.ServerAlive() && pool.Attached(id) is { } nbd ? [nbd] : [];
    }

    /// <summary>Whether a device is attached to the kernel (a loop device over its file, or an nbd device of the server)
    /// though not mounted here: its filesystem may be alive in another mount namespace.</summary>
    public bool AttachedElsewhere(string id)
    {
        if (!usesKernelNbd) return Posix.LoopDevicesOf(DeviceFile(id)).Count > 0;
        return process.ServerAlive() && pool.Attached(id) is not null;
    }
}

/// <summary>A device attached to the kernel, held until disposed: a loop device with autoclear (it goes once nothing
/// else holds it) or an nbd device (detached by the server once nothing holds it).</summary>
sealed class Attachment(string device, Action release) : IDisposable
{
    int _released;
    public string Device => device;
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) release();
    }
}
