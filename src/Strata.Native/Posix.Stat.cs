using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>The type bits of st_mode.</summary>
public enum FileKind : uint
{
    Fifo = 0x1000,
    CharDevice = 0x2000,
    Directory = 0x4000,
    BlockDevice = 0x6000,
    Regular = 0x8000,
    Symlink = 0xA000,
    Socket = 0xC000,
}

/// <summary>A timestamp with nanoseconds, as the kernel keeps it.</summary>
public readonly record struct UnixTime(long Seconds, uint Nanoseconds);

/// <summary>What statx(2) says about one file (never following a final symlink unless asked).
/// <see cref="MountId"/> names the mount it lives on (on kernels before 5.8, which lack it, a value
/// derived from the device, which tells apart mounts of different filesystems only).</summary>
public readonly record struct FileStat(
    uint Mode, uint Uid, uint Gid, uint Nlink, ulong Inode, ulong Device, long Size, long Blocks,
    uint RdevMajor, uint RdevMinor, UnixTime Atime, UnixTime Mtime, ulong MountId)
{
    public FileKind Kind => (FileKind)(Mode & 0xF000);
    /// <summary>Permission bits including setuid, setgid and sticky.</summary>
    public uint Permissions => Mode & 0xFFF;
    public bool IsDirectory => Kind == FileKind.Directory;
    public bool IsRegular => Kind == FileKind.Regular;
    public bool IsSymlink => Kind == FileKind.Symlink;
}

public static unsafe partial class Posix
{
    public const int AT_SYMLINK_NOFOLLOW = 0x100, AT_REMOVEDIR = 0x200, AT_SYMLINK_FOLLOW = 0x400, AT_EMPTY_PATH = 0x1000;
    const uint STATX_BASIC_STATS = 0x7ff, STATX_MNT_ID = 0x1000;
    /// <summary>d_type of a directory in <see cref="DirEntry.Type"/> (0 means the filesystem did not say).</summary>
    public const byte DT_DIR = 4;

    /// <summary>struct statx (include/uapi/linux/stat.h), 256 bytes; offsets checked by a test against the C header.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    internal struct StatxBuf
    {
        [FieldOffset(0)] public uint Mask;
        [FieldOffset(16)] public uint Nlink;
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(24)] public uint Gid;
        [FieldOffset(28)] public ushort Mode;
        [FieldOffset(32)] public ulong Ino;
        [FieldOffset(40)] public ulong Size;
        [FieldOffset(48)] public ulong Blocks;
        [FieldOffset(64)] public long AtimeSec;
        [FieldOffset(72)] public uint AtimeNsec;
        [FieldOffset(112)] public long MtimeSec;
        [FieldOffset(120)] public uint MtimeNsec;
        [FieldOffset(128)] public uint RdevMajor;
        [FieldOffset(132)] public uint RdevMinor;
        [FieldOffset(136)] public uint DevMajor;
        [FieldOffset(140)] public uint DevMinor;
        [FieldOffset(144)] public ulong MntId;
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int statx(FileDescriptor dirfd, string path, int flags, uint mask, StatxBuf* buf);

    /// <summary>statx without following a final symlink; returns errno (0 on success).</summary>
    public static int TryLstatAt(FileDescriptor dir, string path, out FileStat stat)
    {
        StatxBuf b;
        if (statx(dir, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_MNT_ID, &b) < 0)
        {
            stat = default;
            return Errno.Last;
        }
        stat = Convert(in b);
        return 0;
    }

    public static FileStat LstatAt(FileDescriptor dir, string path)
    {
        int err = TryLstatAt(dir, path, out var st);
        if (err != 0) throw new ErrnoException(err, "stat", path);
        return st;
    }

    public static FileStat Lstat(string path) => LstatAt(FileDescriptor.Cwd, path);

    public static bool TryLstat(string path, out FileStat stat) => TryLstatAt(FileDescriptor.Cwd, path, out stat) == 0;

    /// <summary>statx following symlinks all the way; returns errno (0 on success).</summary>
    public static int TryStat(string path, out FileStat stat)
    {
        StatxBuf b;
        if (statx(FileDescriptor.Cwd, path, 0, STATX_BASIC_STATS | STATX_MNT_ID, &b) < 0)
        {
            stat = default;
            return Errno.Last;
        }
        stat = Convert(in b);
        return 0;
    }

    /// <summary>fstat through statx(AT_EMPTY_PATH).</summary>
    public static FileStat Fstat(FileDescriptor fd)
    {
        StatxBuf b;
        if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_MNT_ID, &b) < 0)
            throw Errno.Error("fstat", null);
        return Convert(in b);
    }

    static FileStat Convert(in StatxBuf b) => new(
        b.Mode, b.Uid, b.Gid, b.Nlink, b.Ino, MakeDev(b.DevMajor, b.DevMinor), (long)b.Size, (long)b.Blocks,
        b.RdevMajor, b.RdevMinor, new UnixTime(b.AtimeSec, b.AtimeNsec), new UnixTime(b.MtimeSec, b.MtimeNsec),
        // kernels before 5.8 have no mount id: the device still tells mounts of other filesystems apart
        (b.Mask & STATX_MNT_ID) != 0 ? b.MntId : (1UL << 63) | MakeDev(b.DevMajor, b.DevMinor));

    /// <summary>glibc's makedev(3) encoding of a dev_t.</summary>
    public static ulong MakeDev(uint major, uint minor) =>
        ((ulong)(major & 0xfffff000) << 32) | ((ulong)(major & 0xfff) << 8) |
        ((ulong)(minor & 0xffffff00) << 12) | (minor & 0xff);
}
