using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>btrfs subvolumes, snapshots and qgroup limits through the kernel's ioctls (linux/btrfs.h).</summary>
public static unsafe partial class Posix
{
    public const ulong BTRFS_IOC_SUBVOL_CREATE = 0x5000940E, BTRFS_IOC_SNAP_DESTROY = 0x5000940F, BTRFS_IOC_SNAP_CREATE_V2 = 0x50009417,
        BTRFS_IOC_SUBVOL_GETFLAGS = 0x80089419, BTRFS_IOC_SUBVOL_SETFLAGS = 0x4008941A, BTRFS_IOC_FS_INFO = 0x8400941F,
        BTRFS_IOC_QGROUP_LIMIT = 0x8030942B;
    public const ulong BTRFS_SUBVOL_RDONLY = 1UL << 1, BTRFS_QGROUP_LIMIT_MAX_EXCL = 1UL << 1;
    public const long BTRFS_SUPER_MAGIC = 0x9123683E;
    /// <summary>The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).</summary>
    public const ulong BtrfsSubvolumeRootInode = 256;
    public const int BtrfsVolNameMax = 4087, BtrfsSubvolNameMax = 4039;

    [StructLayout(LayoutKind.Sequential)]
    public struct BtrfsVolArgs
    {
        public long Fd;
        public fixed byte Name[4088];
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct BtrfsVolArgsV2
    {
        public long Fd;
        public ulong TransId;
        public ulong Flags;
        public fixed ulong Unused[4];
        public fixed byte Name[4040];
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct BtrfsQgroupLimitArgs
    {
        public ulong QgroupId;
        public ulong Flags, MaxReferenced, MaxExclusive, ReservedReferenced, ReservedExclusive;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct BtrfsFsInfoArgs
    {
        public ulong MaxId, NumDevices;
        public fixed byte Fsid[16];
        public fixed byte Rest[1024 - 32];
    }

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl_ptr(FileDescriptor fd, ulong request, void* arg);

    static void BtrfsName(string name, byte* into, int max)
    {
        var bytes = PathEncoding.Encode(name); // names read from a directory keep their exact bytes
        if (bytes.Length > max || bytes.Contains((byte)0) || bytes.Contains((byte)'/')) throw StrataException.Invalid($"'{name}' is not a subvolume name");
        for (int i = 0; i < bytes.Length; i++) into[i] = bytes[i];
        into[bytes.Length] = 0;
    }

    /// <summary>A new empty subvolume <paramref name="name"/> in the directory <paramref name="dir"/>.</summary>
    public static void BtrfsSubvolumeCreate(FileDescriptor dir, string name, string pathForErrors)
    {
        var args = new BtrfsVolArgs();
        BtrfsName(name, args.Name, BtrfsVolNameMax);
        if (ioctl_ptr(dir, BTRFS_IOC_SUBVOL_CREATE, &args) < 0) throw Errno.Error("BTRFS_IOC_SUBVOL_CREATE", pathForErrors);
    }

    /// <summary>A snapshot of the subvolume open as <paramref name="source"/>, named <paramref name="name"/> in <paramref name="dir"/>.</summary>
    public static void BtrfsSnapshot(FileDescriptor source, FileDescriptor dir, string name, bool readOnly, string pathForErrors)
    {
        var args = new BtrfsVolArgsV2 { Fd = source.Value, Flags = readOnly ? BTRFS_SUBVOL_RDONLY : 0 };
        BtrfsName(name, args.Name, BtrfsSubvolNameMax);
        if (ioctl_ptr(dir, BTRFS_IOC_SNAP_CREATE_V2, &args) < 0) throw Errno.Error("BTRFS_IOC_SNAP_CREATE_V2", pathForErrors);
    }

    /// <summary>Deletes the subvolume <paramref name="name"/> in <paramref name="dir"/>; 0 or the errno (ENOTEMPTY: it holds subvolumes).</summary>
    public static int TryBtrfsSubvolumeDelete(FileDescriptor dir, string name)
    {
        var args = new BtrfsVolArgs();
        BtrfsName(name, args.Name, BtrfsVolNameMax);
        return ioctl_ptr(dir, BTRFS_IOC_SNAP_DESTROY, &args) < 0 ? Errno.Last : 0;
    }

    public static ulong BtrfsGetSubvolumeFlags(FileDescriptor subvolume, string pathForErrors)
    {
        ulong flags = 0;
        if (ioctl_ptr(subvolume, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) < 0) throw Errno.Error("BTRFS_IOC_SUBVOL_GETFLAGS", pathForErrors);
        return flags;
    }

    public static void BtrfsSetSubvolumeFlags(FileDescriptor subvolume, ulong flags, string pathForErrors)
    {
        if (ioctl_ptr(subvolume, BTRFS_IOC_SUBVOL_SETFLAGS, &flags) < 0) throw Errno.Error("BTRFS_IOC_SUBVOL_SETFLAGS", pathForErrors);
    }

    /// <summary>Limits the exclusive space of the subvolume open as <paramref name="subvolume"/> (its own qgroup, 0/id).</summary>
    /// <summary>0, or the errno (ENOTCONN: quotas are off on this filesystem).</summary>
    public static int TryBtrfsLimitExclusive(FileDescriptor subvolume, ulong bytes)
    {
        var args = new BtrfsQgroupLimitArgs { QgroupId = 0, Flags = BTRFS_QGROUP_LIMIT_MAX_EXCL, MaxExclusive = bytes };
        return ioctl_ptr(subvolume, BTRFS_IOC_QGROUP_LIMIT, &args) < 0 ? Errno.Last : 0;
    }

    /// <summary>The filesystem's UUID (its fsid), as btrfs prints it.</summary>
    public static string BtrfsFsid(FileDescriptor anyFile, string pathForErrors)
    {
        var args = new BtrfsFsInfoArgs();
        if (ioctl_ptr(anyFile, BTRFS_IOC_FS_INFO, &args) < 0) throw Errno.Error("BTRFS_IOC_FS_INFO", pathForErrors);
        var g = new byte[16];
        for (int i = 0; i < 16; i++) g[i] = args.Fsid[i];
        string hex = System.Convert.ToHexString(g).ToLowerInvariant();
        return $"{hex[..8]}-{hex[8..12]}-{hex[12..16]}-{hex[16..20]}-{hex[20..]}";
    }
}
