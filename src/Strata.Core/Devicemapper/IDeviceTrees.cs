namespace Strata.Core.Devicemapper;

/// <summary>The filesystems of a dm-thin pool's devices, mounted read-only on demand (by whoever can: the daemon
/// project exports devices through FUSE and loop devices); a migration reads layers' files through it.</summary>
public interface IDeviceTrees
{
    /// <summary>Mounts the filesystem of thin device <paramref name="device"/> read-only; the tree stays until disposed.</summary>
    MountedTree Mount(uint device);
}

/// <summary>A device's filesystem, mounted read-only at <see cref="Path"/> until disposed.</summary>
public sealed class MountedTree(string path, Action unmount) : IDisposable
{
    int _disposed;

    public string Path { get; } = path;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) unmount();
    }
}
