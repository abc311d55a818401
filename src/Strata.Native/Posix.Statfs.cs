using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>Filesystem-wide calls: statfs(2) and syncfs(2).</summary>
public static unsafe partial class Posix
{
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int statfs(string path, byte* buf);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int syncfs(FileDescriptor fd);

    /// <summary>f_type of the filesystem holding <paramref name="path"/> (struct statfs starts with a long f_type on 64-bit Linux).</summary>
    public static long FileSystemType(string path)
    {
        byte* buf = stackalloc byte[256];
        Errno.Check(statfs(path, buf), "statfs", path);
        return *(long*)buf;
    }

    /// <summary>Bytes an unprivileged writer may still use on the filesystem holding <paramref name="path"/>
    /// (f_bavail x f_bsize; struct statfs on 64-bit Linux: f_type, f_bsize, f_blocks, f_bfree, f_bavail, ... as longs).</summary>
    public static long AvailableBytes(string path)
    {
        byte* buf = stackalloc byte[256];
        Errno.Check(statfs(path, buf), "statfs", path);
        long blockSize = ((long*)buf)[1], available = ((long*)buf)[4];
        return available > long.MaxValue / Math.Max(blockSize, 1) ? long.MaxValue : available * blockSize;
    }

    /// <summary>Flushes every dirty page and inode of the filesystem holding <paramref name="path"/>.</summary>
    public static void SyncFileSystem(string path)
    {
        using var fd = Open(path, O_RDONLY | O_DIRECTORY);
        Errno.Check(syncfs(fd), "syncfs", path);
    }
}

/// <summary>Names of filesystem magic numbers (linux/magic.h), as `docker info` shows a backing filesystem.</summary>
public static class FileSystems
{
    public static string Name(string path) => Posix.FileSystemType(path) switch
    {
        0xEF53 => "extfs",
        0x58465342 => "xfs",
        0x9123683E => "btrfs",
        0x01021994 => "tmpfs",
        0x794C7630 => "overlayfs",
        0x2FC12FC1 => "zfs",
        0xF2F52010 => "f2fs",
        0x65735546 => "fuse",
        0x6969 => "nfs",
        var t => $"unknown (0x{t:x})",
    };
}
