using System.Runtime.InteropServices;
using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Native.Tests;

/// <summary>Checks every struct layout, flag and ioctl number we hard-code against the C headers of
/// this machine, by compiling and running a tiny C program (STYLE.md practice 5).</summary>
public sealed class AbiTests
{
    const string Program = """
        #define _GNU_SOURCE
        #include <stdio.h>
        #include <stddef.h>
        #include <fcntl.h>
        #include <errno.h>
        #include <sys/stat.h>
        #include <sys/file.h>
        #include <sys/sysmacros.h>
        #include <linux/fs.h>
        #include <linux/openat2.h>
        #include <sys/mount.h>
        #include <sys/syscall.h>
        #include <sys/quota.h>
        #include <linux/dqblk_xfs.h>
        #include <linux/loop.h>
        #include <linux/fuse.h>
        #include <linux/nbd.h>
        #include <linux/btrfs.h>
        #include <linux/magic.h>
        #include <signal.h>
        #include <stdio.h>
        #define P(name, value) printf("%s=%lld\n", name, (long long)(value))
        int main(void) {
          P("sizeof_statx", sizeof(struct statx));
          P("statx_nlink", offsetof(struct statx, stx_nlink));
          P("statx_uid", offsetof(struct statx, stx_uid));
          P("statx_gid", offsetof(struct statx, stx_gid));
          P("statx_mode", offsetof(struct statx, stx_mode));
          P("statx_ino", offsetof(struct statx, stx_ino));
          P("statx_size", offsetof(struct statx, stx_size));
          P("statx_blocks", offsetof(struct statx, stx_blocks));
          P("statx_atime", offsetof(struct statx, stx_atime));
          P("statx_mtime", offsetof(struct statx, stx_mtime));
          P("statx_rdev_major", offsetof(struct statx, stx_rdev_major));
          P("statx_rdev_minor", offsetof(struct statx, stx_rdev_minor));
          P("statx_dev_major", offsetof(struct statx, stx_dev_major));
          P("statx_dev_minor", offsetof(struct statx, stx_dev_minor));
          P("statx_mnt_id", offsetof(struct statx, stx_mnt_id));
          P("STATX_MNT_ID", STATX_MNT_ID);
          P("sizeof_open_how", sizeof(struct open_how));
          P("FICLONE", FICLONE);
          P("O_DIRECTORY", O_DIRECTORY);
          P("O_NOFOLLOW", O_NOFOLLOW);
          P("O_PATH", O_PATH);
          P("O_CLOEXEC", O_CLOEXEC);
          P("O_CREAT", O_CREAT);
          P("O_EXCL", O_EXCL);
          P("AT_SYMLINK_NOFOLLOW", AT_SYMLINK_NOFOLLOW);
          P("AT_REMOVEDIR", AT_REMOVEDIR);
          P("AT_EMPTY_PATH", AT_EMPTY_PATH);
          P("RESOLVE_IN_ROOT", RESOLVE_IN_ROOT);
          P("RESOLVE_NO_MAGICLINKS", RESOLVE_NO_MAGICLINKS);
          P("RESOLVE_BENEATH", RESOLVE_BENEATH);
          P("SEEK_DATA", SEEK_DATA);
          P("SEEK_HOLE", SEEK_HOLE);
          P("RENAME_NOREPLACE", RENAME_NOREPLACE);
          P("ENODATA", ENODATA);
          P("EOPNOTSUPP", EOPNOTSUPP);
          P("EDQUOT", EDQUOT);
          P("ELOOP", ELOOP);
          P("makedev_259_70000", makedev(259, 70000));
          P("MS_RDONLY", MS_RDONLY); P("MS_BIND", MS_BIND); P("MS_REC", MS_REC); P("MS_PRIVATE", MS_PRIVATE);
          P("MNT_DETACH", MNT_DETACH); P("UMOUNT_NOFOLLOW", UMOUNT_NOFOLLOW);
          P("SYS_fsopen", SYS_fsopen); P("SYS_fsconfig", SYS_fsconfig); P("SYS_fsmount", SYS_fsmount);
          P("SYS_move_mount", SYS_move_mount); P("SYS_quotactl_fd", SYS_quotactl_fd);
          P("FSOPEN_CLOEXEC", FSOPEN_CLOEXEC); P("FSMOUNT_CLOEXEC", FSMOUNT_CLOEXEC);
          P("MOVE_MOUNT_F_EMPTY_PATH", MOVE_MOUNT_F_EMPTY_PATH);
          P("FSCONFIG_SET_STRING", FSCONFIG_SET_STRING); P("FSCONFIG_SET_FLAG", FSCONFIG_SET_FLAG); P("FSCONFIG_CMD_CREATE", FSCONFIG_CMD_CREATE);
          P("FS_IOC_FSGETXATTR", FS_IOC_FSGETXATTR); P("FS_IOC_FSSETXATTR", FS_IOC_FSSETXATTR);
          P("FS_XFLAG_PROJINHERIT", FS_XFLAG_PROJINHERIT); P("sizeof_fsxattr", sizeof(struct fsxattr));
          P("fsxattr_projid", offsetof(struct fsxattr, fsx_projid));
          P("Q_XSETQLIM_PRJ", QCMD(Q_XSETQLIM, PRJQUOTA)); P("Q_XGETQUOTA_PRJ", QCMD(Q_XGETQUOTA, PRJQUOTA));
          P("sizeof_fs_disk_quota", sizeof(struct fs_disk_quota));
          P("dq_blk_hardlimit", offsetof(struct fs_disk_quota, d_blk_hardlimit));
          P("dq_bcount", offsetof(struct fs_disk_quota, d_bcount));
          P("dq_rtb_hardlimit", offsetof(struct fs_disk_quota, d_rtb_hardlimit));
          P("dq_rtbtimer", offsetof(struct fs_disk_quota, d_rtbtimer));
          P("LOOP_CONFIGURE", LOOP_CONFIGURE); P("LOOP_CLR_FD", LOOP_CLR_FD); P("LOOP_CTL_GET_FREE", LOOP_CTL_GET_FREE);
          P("LO_FLAGS_AUTOCLEAR", LO_FLAGS_AUTOCLEAR); P("LO_FLAGS_DIRECT_IO", LO_FLAGS_DIRECT_IO); P("LO_FLAGS_READ_ONLY", LO_FLAGS_READ_ONLY);
          P("sizeof_loop_config", sizeof(struct loop_config)); P("sizeof_loop_info64", sizeof(struct loop_info64));
          P("loop_info_flags", offsetof(struct loop_info64, lo_flags)); P("loop_info_file_name", offsetof(struct loop_info64, lo_file_name));
          P("loop_config_info", offsetof(struct loop_config, info));
          P("FIFREEZE", FIFREEZE); P("FITHAW", FITHAW); P("SIGTERM", SIGTERM); P("SIGKILL", SIGKILL);
          P("sizeof_fuse_in_header", sizeof(struct fuse_in_header)); P("sizeof_fuse_out_header", sizeof(struct fuse_out_header));
          P("sizeof_fuse_entry_out", sizeof(struct fuse_entry_out)); P("sizeof_fuse_attr_out", sizeof(struct fuse_attr_out));
          P("sizeof_fuse_attr", sizeof(struct fuse_attr)); P("sizeof_fuse_init_out", sizeof(struct fuse_init_out));
          P("sizeof_fuse_open_out", sizeof(struct fuse_open_out)); P("sizeof_fuse_write_in", sizeof(struct fuse_write_in));
          P("sizeof_fuse_kstatfs", sizeof(struct fuse_kstatfs)); P("fuse_attr_mode", offsetof(struct fuse_attr, mode));
          P("fuse_attr_blksize", offsetof(struct fuse_attr, blksize)); P("fuse_attr_nlink", offsetof(struct fuse_attr, nlink));
          P("fuse_init_out_max_write", offsetof(struct fuse_init_out, max_write)); P("fuse_init_out_max_pages", offsetof(struct fuse_init_out, max_pages));
          P("fuse_kstatfs_bsize", offsetof(struct fuse_kstatfs, bsize)); P("fuse_kstatfs_frsize", offsetof(struct fuse_kstatfs, frsize));
          P("fuse_kstatfs_files", offsetof(struct fuse_kstatfs, files));
          P("FUSE_ASYNC_DIO", FUSE_ASYNC_DIO); P("FUSE_MAX_PAGES", FUSE_MAX_PAGES); P("FOPEN_PARALLEL_DIRECT_WRITES", FOPEN_PARALLEL_DIRECT_WRITES);
          P("NBD_SET_SOCK", NBD_SET_SOCK); P("NBD_SET_BLKSIZE", NBD_SET_BLKSIZE); P("NBD_DO_IT", NBD_DO_IT);
          P("NBD_CLEAR_SOCK", NBD_CLEAR_SOCK); P("NBD_CLEAR_QUE", NBD_CLEAR_QUE); P("NBD_SET_SIZE_BLOCKS", NBD_SET_SIZE_BLOCKS);
          P("NBD_DISCONNECT", NBD_DISCONNECT); P("NBD_SET_TIMEOUT", NBD_SET_TIMEOUT); P("NBD_SET_FLAGS", NBD_SET_FLAGS);
          P("NBD_FLAG_SEND_TRIM", NBD_FLAG_SEND_TRIM);
          P("BTRFS_IOC_SUBVOL_CREATE", BTRFS_IOC_SUBVOL_CREATE); P("BTRFS_IOC_SNAP_DESTROY", BTRFS_IOC_SNAP_DESTROY);
          P("BTRFS_IOC_SNAP_CREATE_V2", BTRFS_IOC_SNAP_CREATE_V2); P("BTRFS_IOC_SUBVOL_GETFLAGS", BTRFS_IOC_SUBVOL_GETFLAGS);
          P("BTRFS_IOC_SUBVOL_SETFLAGS", BTRFS_IOC_SUBVOL_SETFLAGS); P("BTRFS_IOC_FS_INFO", BTRFS_IOC_FS_INFO);
          P("BTRFS_IOC_QGROUP_LIMIT", BTRFS_IOC_QGROUP_LIMIT); P("BTRFS_SUBVOL_RDONLY", BTRFS_SUBVOL_RDONLY);
          P("BTRFS_QGROUP_LIMIT_MAX_EXCL", BTRFS_QGROUP_LIMIT_MAX_EXCL); P("BTRFS_SUPER_MAGIC", BTRFS_SUPER_MAGIC);
          P("BTRFS_FIRST_FREE_OBJECTID", 256);
          P("sizeof_btrfs_vol_args", sizeof(struct btrfs_ioctl_vol_args)); P("sizeof_btrfs_vol_args_v2", sizeof(struct btrfs_ioctl_vol_args_v2));
          P("btrfs_v2_flags", offsetof(struct btrfs_ioctl_vol_args_v2, flags)); P("btrfs_v2_name", offsetof(struct btrfs_ioctl_vol_args_v2, name));
          P("sizeof_btrfs_qgroup_limit_args", sizeof(struct btrfs_ioctl_qgroup_limit_args));
          P("btrfs_qgroup_max_excl", offsetof(struct btrfs_ioctl_qgroup_limit_args, lim.max_excl));
          P("sizeof_btrfs_fs_info_args", sizeof(struct btrfs_ioctl_fs_info_args)); P("btrfs_fs_info_fsid", offsetof(struct btrfs_ioctl_fs_info_args, fsid));
          return 0;
        }
        """;

    [SkippableFact]
    public void LayoutsAndConstantsMatchTheCHeaders()
    {
        Skip.IfNot(Shell.Has("cc"), "no C compiler (test.sh installs gcc)");
        using var temp = new TempRoot();
        File.WriteAllText(temp.Combine("abi.c"), Program);
        Shell.Run("cc", "-o", temp.Combine("abi"), temp.Combine("abi.c")).Check("cc");
        var c = Shell.Run(temp.Combine("abi")).Check("abi").Stdout
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split('='))
            .ToDictionary(p => p[0], p => long.Parse(p[1]));

        Same(c, "sizeof_statx", Marshal.SizeOf<Posix.StatxBuf>());
        Same(c, "statx_nlink", Offset(nameof(Posix.StatxBuf.Nlink)));
        Same(c, "statx_uid", Offset(nameof(Posix.StatxBuf.Uid)));
        Same(c, "statx_gid", Offset(nameof(Posix.StatxBuf.Gid)));
        Same(c, "statx_mode", Offset(nameof(Posix.StatxBuf.Mode)));
        Same(c, "statx_ino", Offset(nameof(Posix.StatxBuf.Ino)));
        Same(c, "statx_size", Offset(nameof(Posix.StatxBuf.Size)));
        Same(c, "statx_blocks", Offset(nameof(Posix.StatxBuf.Blocks)));
        Same(c, "statx_atime", Offset(nameof(Posix.StatxBuf.AtimeSec)));
        Same(c, "statx_mtime", Offset(nameof(Posix.StatxBuf.MtimeSec)));
        Same(c, "statx_rdev_major", Offset(nameof(Posix.StatxBuf.RdevMajor)));
        Same(c, "statx_rdev_minor", Offset(nameof(Posix.StatxBuf.RdevMinor)));
        Same(c, "statx_dev_major", Offset(nameof(Posix.StatxBuf.DevMajor)));
        Same(c, "statx_dev_minor", Offset(nameof(Posix.StatxBuf.DevMinor)));
        Same(c, "statx_mnt_id", Offset(nameof(Posix.StatxBuf.MntId)));
        Same(c, "sizeof_open_how", Posix.SizeOfOpenHow);
        Same(c, "FICLONE", (long)Posix.FICLONE);
        Same(c, "O_DIRECTORY", Posix.O_DIRECTORY);
        Same(c, "O_NOFOLLOW", Posix.O_NOFOLLOW);
        Same(c, "O_PATH", Posix.O_PATH);
        Same(c, "O_CLOEXEC", Posix.O_CLOEXEC);
        Same(c, "O_CREAT", Posix.O_CREAT);
        Same(c, "O_EXCL", Posix.O_EXCL);
        Same(c, "AT_SYMLINK_NOFOLLOW", Posix.AT_SYMLINK_NOFOLLOW);
        Same(c, "AT_REMOVEDIR", Posix.AT_REMOVEDIR);
        Same(c, "AT_EMPTY_PATH", Posix.AT_EMPTY_PATH);
        Same(c, "RESOLVE_IN_ROOT", (long)Posix.RESOLVE_IN_ROOT);
        Same(c, "RESOLVE_NO_MAGICLINKS", (long)Posix.RESOLVE_NO_MAGICLINKS);
        Same(c, "RESOLVE_BENEATH", (long)Posix.RESOLVE_BENEATH);
        Same(c, "SEEK_DATA", Posix.SEEK_DATA);
        Same(c, "SEEK_HOLE", Posix.SEEK_HOLE);
        Same(c, "RENAME_NOREPLACE", Posix.RENAME_NOREPLACE);
        Same(c, "ENODATA", Errno.ENODATA);
        Same(c, "EOPNOTSUPP", Errno.EOPNOTSUPP);
        Same(c, "EDQUOT", Errno.EDQUOT);
        Same(c, "ELOOP", Errno.ELOOP);
        Same(c, "makedev_259_70000", (long)Posix.MakeDev(259, 70000));
        Same(c, "MS_RDONLY", (long)Posix.MS_RDONLY);
        Same(c, "MS_BIND", (long)Posix.MS_BIND);
        Same(c, "MS_REC", (long)Posix.MS_REC);
        Same(c, "MS_PRIVATE", (long)Posix.MS_PRIVATE);
        Same(c, "MNT_DETACH", Posix.MNT_DETACH);
        Same(c, "UMOUNT_NOFOLLOW", Posix.UMOUNT_NOFOLLOW);
        Same(c, "SYS_fsopen", Posix.SYS_fsopen);
        Same(c, "SYS_fsconfig", Posix.SYS_fsconfig);
        Same(c, "SYS_fsmount", Posix.SYS_fsmount);
        Same(c, "SYS_move_mount", Posix.SYS_move_mount);
        Same(c, "SYS_quotactl_fd", Posix.SYS_quotactl_fd);
        Same(c, "FSOPEN_CLOEXEC", Posix.FSOPEN_CLOEXEC);
        Same(c, "FSMOUNT_CLOEXEC", Posix.FSMOUNT_CLOEXEC);
        Same(c, "MOVE_MOUNT_F_EMPTY_PATH", Posix.MOVE_MOUNT_F_EMPTY_PATH);
        Same(c, "FSCONFIG_SET_STRING", Posix.FSCONFIG_SET_STRING);
        Same(c, "FSCONFIG_SET_FLAG", Posix.FSCONFIG_SET_FLAG);
        Same(c, "FSCONFIG_CMD_CREATE", Posix.FSCONFIG_CMD_CREATE);
        Same(c, "FS_IOC_FSGETXATTR", (long)Posix.FS_IOC_FSGETXATTR);
        Same(c, "FS_IOC_FSSETXATTR", (long)Posix.FS_IOC_FSSETXATTR);
        Same(c, "FS_XFLAG_PROJINHERIT", Posix.FS_XFLAG_PROJINHERIT);
        Same(c, "sizeof_fsxattr", Marshal.SizeOf<Posix.FsXattr>());
        Same(c, "fsxattr_projid", Marshal.OffsetOf<Posix.FsXattr>(nameof(Posix.FsXattr.ProjectId)).ToInt64());
        Same(c, "Q_XSETQLIM_PRJ", Posix.Q_XSETQLIM_PRJ);
        Same(c, "Q_XGETQUOTA_PRJ", Posix.Q_XGETQUOTA_PRJ);
        Same(c, "sizeof_fs_disk_quota", Marshal.SizeOf<Posix.DiskQuota>());
        Same(c, "dq_blk_hardlimit", Marshal.OffsetOf<Posix.DiskQuota>(nameof(Posix.DiskQuota.BlockHardLimit)).ToInt64());
        Same(c, "dq_bcount", Marshal.OffsetOf<Posix.DiskQuota>(nameof(Posix.DiskQuota.BlockCount)).ToInt64());
        Same(c, "dq_rtb_hardlimit", Marshal.OffsetOf<Posix.DiskQuota>(nameof(Posix.DiskQuota.RtBlockHardLimit)).ToInt64());
        Same(c, "dq_rtbtimer", Marshal.OffsetOf<Posix.DiskQuota>(nameof(Posix.DiskQuota.RtBlockTimer)).ToInt64());
    }

    /// <summary>The loop ioctls and structs, FIFREEZE, signals, and the FUSE message layouts Strata.Fuse writes by
    /// offset (its constants are private there, so the offsets it uses are restated here from its code).</summary>
    [SkippableFact]
    public void LoopFreezeAndFuseLayoutsMatchTheCHeaders()
    {
        Skip.IfNot(Shell.Has("cc"), "no C compiler (test.sh installs gcc)");
        var c = Compile();
        Same(c, "LOOP_CONFIGURE", (long)Posix.LOOP_CONFIGURE);
        Same(c, "LOOP_CLR_FD", (long)Posix.LOOP_CLR_FD);
        Same(c, "LOOP_CTL_GET_FREE", (long)Posix.LOOP_CTL_GET_FREE);
        Same(c, "LO_FLAGS_AUTOCLEAR", Posix.LO_FLAGS_AUTOCLEAR);
        Same(c, "LO_FLAGS_DIRECT_IO", Posix.LO_FLAGS_DIRECT_IO);
        Same(c, "LO_FLAGS_READ_ONLY", Posix.LO_FLAGS_READ_ONLY);
        Same(c, "sizeof_loop_config", Marshal.SizeOf<Posix.LoopConfig>());
        Same(c, "sizeof_loop_info64", Marshal.SizeOf<Posix.LoopInfo64>());
        Same(c, "loop_info_flags", Marshal.OffsetOf<Posix.LoopInfo64>(nameof(Posix.LoopInfo64.Flags)).ToInt64());
        Same(c, "loop_info_file_name", Marshal.OffsetOf<Posix.LoopInfo64>("FileName").ToInt64());
        Same(c, "loop_config_info", Marshal.OffsetOf<Posix.LoopConfig>(nameof(Posix.LoopConfig.Info)).ToInt64());
        Same(c, "FIFREEZE", (long)Posix.FIFREEZE);
        Same(c, "FITHAW", (long)Posix.FITHAW);
        Same(c, "SIGTERM", Posix.SIGTERM);
        Same(c, "SIGKILL", Posix.SIGKILL);
        // Strata.Fuse.FuseWire: headers 40 and 16 bytes; entry_out 128 (attr at 40), attr_out 104 (attr at 16),
        // attr 88 (mode at 60, nlink 64, blksize 80), init_out 64 (max_write at 20, max_pages 28), open_out 16,
        // write_in 40 (data after it), kstatfs 80 (files at 24, bsize 40, frsize 48)
        Same(c, "sizeof_fuse_in_header", 40);
        Same(c, "sizeof_fuse_out_header", 16);
        Same(c, "sizeof_fuse_entry_out", 128);
        Same(c, "sizeof_fuse_attr_out", 104);
        Same(c, "sizeof_fuse_attr", 88);
        Same(c, "fuse_attr_mode", 60);
        Same(c, "fuse_attr_nlink", 64);
        Same(c, "fuse_attr_blksize", 80);
        Same(c, "sizeof_fuse_init_out", 64);
        Same(c, "fuse_init_out_max_write", 20);
        Same(c, "fuse_init_out_max_pages", 28);
        Same(c, "sizeof_fuse_open_out", 16);
        Same(c, "sizeof_fuse_write_in", 40);
        Same(c, "sizeof_fuse_kstatfs", 80);
        Same(c, "fuse_kstatfs_files", 24);
        Same(c, "fuse_kstatfs_bsize", 40);
        Same(c, "fuse_kstatfs_frsize", 48);
        Same(c, "FUSE_ASYNC_DIO", 1 << 15);
        Same(c, "FUSE_MAX_PAGES", 1 << 22);
        Same(c, "FOPEN_PARALLEL_DIRECT_WRITES", 1 << 6);
        Same(c, "BTRFS_IOC_SUBVOL_CREATE", (long)Posix.BTRFS_IOC_SUBVOL_CREATE);
        Same(c, "BTRFS_IOC_SNAP_DESTROY", (long)Posix.BTRFS_IOC_SNAP_DESTROY);
        Same(c, "BTRFS_IOC_SNAP_CREATE_V2", (long)Posix.BTRFS_IOC_SNAP_CREATE_V2);
        Same(c, "BTRFS_IOC_SUBVOL_GETFLAGS", (long)Posix.BTRFS_IOC_SUBVOL_GETFLAGS);
        Same(c, "BTRFS_IOC_SUBVOL_SETFLAGS", (long)Posix.BTRFS_IOC_SUBVOL_SETFLAGS);
        Same(c, "BTRFS_IOC_FS_INFO", (long)Posix.BTRFS_IOC_FS_INFO);
        Same(c, "BTRFS_IOC_QGROUP_LIMIT", (long)Posix.BTRFS_IOC_QGROUP_LIMIT);
        Same(c, "BTRFS_SUBVOL_RDONLY", (long)Posix.BTRFS_SUBVOL_RDONLY);
        Same(c, "BTRFS_QGROUP_LIMIT_MAX_EXCL", (long)Posix.BTRFS_QGROUP_LIMIT_MAX_EXCL);
        Same(c, "BTRFS_SUPER_MAGIC", Posix.BTRFS_SUPER_MAGIC);
        Same(c, "BTRFS_FIRST_FREE_OBJECTID", (long)Posix.BtrfsSubvolumeRootInode);
        Same(c, "sizeof_btrfs_vol_args", Marshal.SizeOf<Posix.BtrfsVolArgs>());
        Same(c, "sizeof_btrfs_vol_args_v2", Marshal.SizeOf<Posix.BtrfsVolArgsV2>());
        Same(c, "btrfs_v2_flags", Marshal.OffsetOf<Posix.BtrfsVolArgsV2>(nameof(Posix.BtrfsVolArgsV2.Flags)).ToInt64());
        Same(c, "btrfs_v2_name", Marshal.OffsetOf<Posix.BtrfsVolArgsV2>("Name").ToInt64());
        Same(c, "sizeof_btrfs_qgroup_limit_args", Marshal.SizeOf<Posix.BtrfsQgroupLimitArgs>());
        Same(c, "btrfs_qgroup_max_excl", Marshal.OffsetOf<Posix.BtrfsQgroupLimitArgs>(nameof(Posix.BtrfsQgroupLimitArgs.MaxExclusive)).ToInt64());
        Same(c, "sizeof_btrfs_fs_info_args", Marshal.SizeOf<Posix.BtrfsFsInfoArgs>());
        Same(c, "btrfs_fs_info_fsid", Marshal.OffsetOf<Posix.BtrfsFsInfoArgs>("Fsid").ToInt64());
        // Strata.Nbd.KernelNbd's ioctls and flags (private there, restated from its code)
        Same(c, "NBD_SET_SOCK", 0xAB00);
        Same(c, "NBD_SET_BLKSIZE", 0xAB01);
        Same(c, "NBD_DO_IT", 0xAB03);
        Same(c, "NBD_CLEAR_SOCK", 0xAB04);
        Same(c, "NBD_CLEAR_QUE", 0xAB05);
        Same(c, "NBD_SET_SIZE_BLOCKS", 0xAB07);
        Same(c, "NBD_DISCONNECT", 0xAB08);
        Same(c, "NBD_SET_TIMEOUT", 0xAB09);
        Same(c, "NBD_SET_FLAGS", 0xAB0A);
        Same(c, "NBD_FLAG_SEND_TRIM", 32);
    }

    static Dictionary<string, long> Compile()
    {
        using var temp = new TempRoot();
        File.WriteAllText(temp.Combine("abi.c"), Program);
        Shell.Run("cc", "-o", temp.Combine("abi"), temp.Combine("abi.c")).Check("cc");
        return Shell.Run(temp.Combine("abi")).Check("abi").Stdout
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split('='))
            .ToDictionary(p => p[0], p => long.Parse(p[1]));
    }

    static void Same(Dictionary<string, long> c, string name, long ours) =>
        Assert.True(c[name] == ours, $"{name}: the C headers say {c[name]}, Strata uses {ours}");

    static long Offset(string field) => Marshal.OffsetOf<Posix.StatxBuf>(field).ToInt64();
}
