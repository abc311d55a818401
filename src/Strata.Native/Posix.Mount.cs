using System.Runtime.InteropServices;
using System.Text;

namespace Strata.Native;

/// <summary>mount(2), umount2(2) and the new mount API (fsopen, fsconfig, fsmount, move_mount; Linux 5.2+).</summary>
public static unsafe partial class Posix
{
    public const ulong MS_RDONLY = 0x1, MS_NOSUID = 0x2, MS_NODEV = 0x4, MS_NOEXEC = 0x8, MS_BIND = 0x1000, MS_REC = 0x4000, MS_PRIVATE = 0x40000;
    public const int MNT_FORCE = 0x1, MNT_DETACH = 0x2, UMOUNT_NOFOLLOW = 0x8;

    // the same numbers on x86_64 and arm64 (new syscalls share one table since 5.1)
    public const long SYS_move_mount = 429, SYS_fsopen = 430, SYS_fsconfig = 431, SYS_fsmount = 432;
    public const uint FSOPEN_CLOEXEC = 1, FSMOUNT_CLOEXEC = 1, MOVE_MOUNT_F_EMPTY_PATH = 4;
    public const uint FSCONFIG_SET_FLAG = 0, FSCONFIG_SET_STRING = 1, FSCONFIG_CMD_CREATE = 6;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int mount(string source, string target, string? fstype, ulong flags, byte* data);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int umount2(string target, int flags);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall_fsopen(long number, byte* fsname, uint flags);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall_fsconfig(long number, FileDescriptor fd, uint cmd, byte* key, byte* value, int aux);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall_fsmount(long number, FileDescriptor fd, uint flags, uint attrFlags);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall_move_mount(long number, FileDescriptor fromDir, byte* fromPath, FileDescriptor toDir, byte* toPath, uint flags);

    static byte[] CString(string s)
    {
        if (s.Contains('\0')) throw StrataException.Invalid($"'{s.Replace('\0', '?')}' contains a NUL byte");
        var bytes = new byte[PathEncoding.GetByteCount(s) + 1];
        PathEncoding.Encode(s, bytes);
        return bytes;
    }

    /// <summary>mount(2) with a comma-separated option string; returns errno (0 on success).</summary>
    public static int TryMount(string source, string target, string? type, ulong flags, string? data)
    {
        byte[]? d = data is null ? null : CString(data);
        fixed (byte* p = d)
            return mount(source, target, type, flags, p) < 0 ? Errno.Last : 0;
    }

    /// <summary>umount2(2) (never following a symlink at <paramref name="target"/>); returns errno.</summary>
    public static int TryUnmount(string target, int flags) =>
        umount2(target, flags | UMOUNT_NOFOLLOW) < 0 ? Errno.Last : 0;

    /// <summary>fsopen(2): a filesystem context to configure; null with errno when the kernel lacks it or the type.</summary>
    public static int TryFsOpen(string type, out FileDescriptor? fs)
    {
        byte[] t = CString(type);
        long fd;
        fixed (byte* p = t) fd = syscall_fsopen(SYS_fsopen, p, FSOPEN_CLOEXEC);
        fs = fd < 0 ? null : new FileDescriptor((int)fd);
        return fd < 0 ? Errno.Last : 0;
    }

    /// <summary>fsconfig(FSCONFIG_SET_STRING); returns errno.</summary>
    public static int TryFsConfigString(FileDescriptor fs, string key, string value)
    {
        byte[] k = CString(key), v = CString(value);
        fixed (byte* kp = k)
        fixed (byte* vp = v)
            return syscall_fsconfig(SYS_fsconfig, fs, FSCONFIG_SET_STRING, kp, vp, 0) < 0 ? Errno.Last : 0;
    }

    /// <summary>fsconfig(FSCONFIG_SET_FLAG): a parameter without a value ("ro", "volatile"); returns errno.</summary>
    public static int TryFsConfigFlag(FileDescriptor fs, string key)
    {
        byte[] k = CString(key);
        fixed (byte* kp = k)
            return syscall_fsconfig(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, kp, null, 0) < 0 ? Errno.Last : 0;
    }

    /// <summary>fsconfig(FSCONFIG_CMD_CREATE): makes the superblock; returns errno.</summary>
    public static int TryFsCreate(FileDescriptor fs) =>
        syscall_fsconfig(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, null, null, 0) < 0 ? Errno.Last : 0;

    /// <summary>fsmount(2) then move_mount(2) onto <paramref name="target"/>; returns errno.</summary>
    public static int TryFsMountAt(FileDescriptor fs, string target, uint attrFlags = 0)
    {
        long m = syscall_fsmount(SYS_fsmount, fs, FSMOUNT_CLOEXEC, attrFlags);
        if (m < 0) return Errno.Last;
        using var mnt = new FileDescriptor((int)m);
        byte[] empty = [0], to = CString(target);
        fixed (byte* e = empty)
        fixed (byte* t = to)
            return syscall_move_mount(SYS_move_mount, mnt, e, FileDescriptor.Cwd, t, MOVE_MOUNT_F_EMPTY_PATH) < 0 ? Errno.Last : 0;
    }

    /// <summary>The messages a filesystem context logged (each read returns one line: "e overlayfs: ..."), joined.</summary>
    public static string FsContextLog(FileDescriptor fs)
    {
        var lines = new StringBuilder();
        Span<byte> buf = stackalloc byte[1024];
        for (int i = 0; i < 16; i++)
        {
            nint n;
            fixed (byte* p = buf) n = read(fs, p, (nuint)buf.Length);
            if (n <= 0) break;
            string line = Encoding.UTF8.GetString(buf[..(int)n]).TrimEnd('\n');
            if (line.Length > 2 && line[1] == ' ') line = line[2..]; // drop the "e "/"w "/"i " level prefix
            if (lines.Length > 0) lines.Append("; ");
            lines.Append(line);
        }
        return lines.ToString();
    }
}
