using Strata.Block;
using Strata.Core.Devicemapper;
using Strata.Fuse;
using Strata.Native;
using Strata.Thin.DmThin;

namespace Strata.Daemon;

/// <summary>
/// The filesystems of a dm-thin pool's devices, mounted read-only on demand without the kernel's dm: every device is a
/// read-only file of one private FUSE mount (served by this process), a device to mount gets a read-only loop device
/// over its file and its filesystem (ext4 or xfs, told by its superblock) is mounted without replaying its journal
/// (noload, norecovery) in a private directory (0700, under the temp directory). Disposing a tree unmounts it and lets
/// its loop device go (autoclear); disposing this unmounts what is left and the FUSE export, and removes the directory.
/// </summary>
public sealed class DmDeviceTrees : IDeviceTrees, IDisposable
{
    readonly DmPool _pool;
    readonly string _home, _devices;
    readonly FuseExport _fuse;
    readonly List<MountedTree> _open = [];
    int _next;

    public DmDeviceTrees(DmPool pool, Action<string>? log = null)
    {
        _pool = pool;
        _home = Directory.CreateTempSubdirectory("strata-dm-").FullName;
        _devices = Path.Combine(_home, "devices");
        Directory.CreateDirectory(_devices);
        try
        {
            _fuse = FuseExport.Mount(_devices, pool, (uint)pool.ExportBlockSize, log);
        }
        catch
        {
            Directory.Delete(_home, recursive: true);
            throw;
        }
    }

    public MountedTree Mount(uint device)
    {
        string type;
        using (var reader = _pool.OpenDevice(device)) // refuses a device the pool does not have
        {
            var head = new byte[FilesystemProbe.ProbeLength];
            if (reader.Size < head.Length) throw StrataException.Invalid($"thin device {device} holds no filesystem ({reader.Size} bytes)");
            reader.Read(0, head);
            type = FilesystemProbe.Type(head) ?? throw StrataException.Unsupported($"thin device {device} holds neither ext4 nor xfs");
        }
        string dir = Path.Combine(_home, $"fs{Interlocked.Increment(ref _next)}");
        Directory.CreateDirectory(dir);
        string file = Path.Combine(_devices, device.ToString(System.Globalization.CultureInfo.InvariantCulture));
        FileDescriptor loop;
        string loopPath;
        using (var backing = Posix.Open(file, Posix.O_RDONLY))
            (loopPath, loop) = Posix.AttachLoop(backing, file, Posix.LO_FLAGS_READ_ONLY | Posix.LO_FLAGS_AUTOCLEAR);
        try
        {
            string options = FilesystemProbe.ReadOnlyOptions(type);
            Errno.Check(Posix.TryMount(loopPath, dir, type, Posix.MS_RDONLY | Posix.MS_NODEV | Posix.MS_NOSUID, options), $"mount ({type}, ro,{options})", loopPath);
        }
        catch
        {
            loop.Dispose();
            Directory.Delete(dir);
            throw;
        }
        MountedTree? tree = null;
        tree = new MountedTree(dir, () =>
        {
            if (Posix.TryUnmount(dir, 0) != 0) Posix.TryUnmount(dir, Posix.MNT_DETACH);
            loop.Dispose(); // autoclear: the loop device goes with the filesystem's last hold on it
            try
            {
                Directory.Delete(dir);
            }
            catch (IOException)
            {
                // still busy after a lazy unmount: the directory goes with the rest
            }
            lock (_open) _open.Remove(tree!);
        });
        lock (_open) _open.Add(tree);
        return tree;
    }

    public void Dispose()
    {
        MountedTree[] left;
        lock (_open) left = [.. _open];
        foreach (var t in left) t.Dispose();
        _fuse.Dispose();
        try
        {
            Directory.Delete(_home, recursive: true);
        }
        catch (IOException)
        {
            // a lazily unmounted tree still held it: leave the empty directories
        }
    }
}
