using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>Project quotas (xfs): the project id of an inode (FS_IOC_FSGETXATTR/FSSETXATTR) and per-project
/// block limits through quotactl_fd(2) (Linux 5.14+), which needs no block device path.</summary>
public static unsafe partial class Posix
{
    /// <summary>_IOR('X', 31, struct fsxattr) and _IOW('X', 32, struct fsxattr).</summary>
    public const ulong FS_IOC_FSGETXATTR = 0x801C581F, FS_IOC_FSSETXATTR = 0x401C5820;
    public const uint FS_XFLAG_PROJINHERIT = 0x200;
    public const long SYS_quotactl_fd = 443;
    /// <summary>QCMD(Q_XSETQLIM, PRJQUOTA) and QCMD(Q_XGETQUOTA, PRJQUOTA).</summary>
    public const uint Q_XSETQLIM_PRJ = 0x580402, Q_XGETQUOTA_PRJ = 0x580302;
    const ushort FS_DQ_BSOFT = 1 << 2, FS_DQ_BHARD = 1 << 3;

    /// <summary>struct fsxattr (linux/fs.h), 28 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct FsXattr
    {
        public uint XFlags;
        public uint ExtSize;
        public uint NExtents;
        public uint ProjectId;
        public uint CowExtSize;
        public uint Pad0;
        public uint Pad1;
    }

    /// <summary>struct fs_disk_quota (linux/dqblk_xfs.h), 112 bytes; limits and counts in 512-byte blocks.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct DiskQuota
    {
        public sbyte Version;
        public sbyte Flags;
        public ushort FieldMask;
        public uint Id;
        public ulong BlockHardLimit;
        public ulong BlockSoftLimit;
        public ulong InodeHardLimit;
        public ulong InodeSoftLimit;
        public ulong BlockCount;
        public ulong InodeCount;
        public int InodeTimer;
        public int BlockTimer;
        public ushort InodeWarns;
        public ushort BlockWarns;
        public int TimerHi;
        public ulong RtBlockHardLimit;
        public ulong RtBlockSoftLimit;
        public ulong RtBlockCount;
        public int RtBlockTimer;
        public ushort RtBlockWarns;
        public short Padding3;
        public ulong Padding4;
    }

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl_fsxattr(FileDescriptor fd, ulong request, FsXattr* arg);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall_quotactl_fd(long number, FileDescriptor fd, uint cmd, uint id, DiskQuota* addr);

    public static FsXattr GetFsXattr(FileDescriptor fd, string path)
    {
        FsXattr x;
        Errno.Check(ioctl_fsxattr(fd, FS_IOC_FSGETXATTR, &x), "FS_IOC_FSGETXATTR", path);
        return x;
    }

    /// <summary>Puts a directory (and, with PROJINHERIT, everything later created in it) in project <paramref name="projectId"/>.</summary>
    public static void SetProjectId(FileDescriptor dir, uint projectId, string path)
    {
        var x = GetFsXattr(dir, path);
        x.ProjectId = projectId;
        x.XFlags |= FS_XFLAG_PROJINHERIT;
        Errno.Check(ioctl_fsxattr(dir, FS_IOC_FSSETXATTR, &x), "FS_IOC_FSSETXATTR", path);
    }

    /// <summary>Sets the hard and soft block limit of a project on the filesystem holding <paramref name="anyFile"/>
    /// (0 = no limit); returns errno (ESRCH or ENOSYS when project quotas are not enabled there).</summary>
    public static int TrySetProjectLimit(FileDescriptor anyFile, uint projectId, ulong bytes)
    {
        var q = new DiskQuota
        {
            Version = 1, // FS_DQUOT_VERSION
            Flags = 2, // FS_PROJ_QUOTA
            FieldMask = FS_DQ_BSOFT | FS_DQ_BHARD,
            Id = projectId,
            BlockHardLimit = (bytes + 511) / 512,
            BlockSoftLimit = (bytes + 511) / 512,
        };
        return syscall_quotactl_fd(SYS_quotactl_fd, anyFile, Q_XSETQLIM_PRJ, projectId, &q) < 0 ? Errno.Last : 0;
    }

    /// <summary>A project's quota record (limits and usage); returns errno.</summary>
    public static int TryGetProjectQuota(FileDescriptor anyFile, uint projectId, out DiskQuota quota)
    {
        DiskQuota q;
        int err = syscall_quotactl_fd(SYS_quotactl_fd, anyFile, Q_XGETQUOTA_PRJ, projectId, &q) < 0 ? Errno.Last : 0;
        quota = q;
        return err;
    }
}
