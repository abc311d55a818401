using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>Loop devices (linux/loop.h): a file seen as a block device. LOOP_CONFIGURE (Linux 5.8+) sets the
/// backing file and flags in one call.</summary>
public static unsafe partial class Posix
{
    public const ulong LOOP_CLR_FD = 0x4C01, LOOP_GET_STATUS64 = 0x4C05, LOOP_CONFIGURE = 0x4C0A, LOOP_CTL_GET_FREE = 0x4C82;
    public const uint LO_FLAGS_READ_ONLY = 1, LO_FLAGS_AUTOCLEAR = 4, LO_FLAGS_DIRECT_IO = 16;
    public const int LoNameSize = 64;

    [StructLayout(LayoutKind.Sequential)]
    public struct LoopInfo64
    {
        public ulong Device, Inode, RDevice, Offset, SizeLimit;
        public uint Number, EncryptType, EncryptKeySize, Flags;
        public fixed byte FileName[LoNameSize];
        public fixed byte CryptName[LoNameSize];
        public fixed byte EncryptKey[32];
        public ulong Init0, Init1;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct LoopConfig
    {
        public uint Fd, BlockSize;
        public LoopInfo64 Info;
        public fixed ulong Reserved[8];
    }

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl_loop_config(FileDescriptor fd, ulong request, LoopConfig* arg);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl_plain(FileDescriptor fd, ulong request, nint arg);

    /// <summary>Attaches <paramref name="backing"/> to a free loop device and returns its path and an open
    /// descriptor of it (the device stays attached after the descriptor closes unless <see cref="LO_FLAGS_AUTOCLEAR"/>).
    /// Tries direct IO first when asked and falls back to buffered IO where the backing file cannot do it.</summary>
    public static (string Path, FileDescriptor Fd) AttachLoop(FileDescriptor backing, string backingPath, uint flags, uint blockSize = 0)
    {
        using var control = Open("/dev/loop-control", O_RDWR);
        for (int attempt = 0; ; attempt++)
        {
            int n = ioctl_plain(control, LOOP_CTL_GET_FREE, 0);
            if (n < 0) throw new ErrnoException(Errno.Last, "LOOP_CTL_GET_FREE", "/dev/loop-control");
            string path = $"/dev/loop{n}";
            var fd = Open(path, (flags & LO_FLAGS_READ_ONLY) != 0 ? O_RDONLY : O_RDWR);
            var config = new LoopConfig { Fd = (uint)backing.Value, BlockSize = blockSize };
            config.Info.Flags = flags;
            var name = System.Text.Encoding.UTF8.GetBytes(backingPath);
            int len = Math.Min(name.Length, LoNameSize - 1);
            for (int i = 0; i < len; i++) config.Info.FileName[i] = name[i];
            int err = ioctl_loop_config(fd, LOOP_CONFIGURE, &config) < 0 ? Errno.Last : 0;
            if (err == Errno.EINVAL && (flags & LO_FLAGS_DIRECT_IO) != 0)
            {
                config.Info.Flags = flags & ~LO_FLAGS_DIRECT_IO;
                err = ioctl_loop_config(fd, LOOP_CONFIGURE, &config) < 0 ? Errno.Last : 0;
            }
            if (err == 0) return (path, fd);
            fd.Dispose();
            // another process took the device between GET_FREE and CONFIGURE: ask again
            if (err == Errno.EBUSY && attempt < 100) continue;
            throw new ErrnoException(err, "LOOP_CONFIGURE", path);
        }
    }

    public const ulong FIFREEZE = 0xC0045877, FITHAW = 0xC0045878;

    /// <summary>Freezes the filesystem mounted at <paramref name="mountPoint"/> (writes wait; its journal is flushed, so a
    /// block-level copy taken now is clean) until <see cref="Thaw"/>.</summary>
    public static void Freeze(FileDescriptor mountPoint, string path) =>
        Errno.Check(ioctl_plain(mountPoint, FIFREEZE, 0), "FIFREEZE", path);

    public static void Thaw(FileDescriptor mountPoint, string path) =>
        Errno.Check(ioctl_plain(mountPoint, FITHAW, 0), "FITHAW", path);

    /// <summary>Detaches a loop device. One still open elsewhere (a mount in another namespace, a process holding
    /// the device) is marked autoclear instead, and the kernel detaches it when the last user closes it.</summary>
    public static int TryDetachLoop(string device)
    {
        int err = TryOpenAt(FileDescriptor.Cwd, device, O_RDONLY, 0, out var fd);
        if (err != 0) return err;
        using (fd) return ioctl_plain(fd!, LOOP_CLR_FD, 0) < 0 ? Errno.Last : 0;
    }

    /// <summary>The loop devices whose backing file is <paramref name="backingPath"/> (from sysfs), as /dev paths.</summary>
    public static List<string> LoopDevicesOf(string backingPath) => LoopDevicesWhere(file => file == backingPath || file == backingPath + " (deleted)");

    /// <summary>The loop devices whose backing file is in <paramref name="directory"/>, as /dev paths.</summary>
    public static List<string> LoopDevicesIn(string directory) => LoopDevicesWhere(file => file.StartsWith(directory.TrimEnd('/') + "/", StringComparison.Ordinal));

    static List<string> LoopDevicesWhere(Func<string, bool> backing)
    {
        var found = new List<string>();
        foreach (var e in ReadDir("/sys/block"))
        {
            if (!e.Name.StartsWith("loop", StringComparison.Ordinal)) continue;
            string file = $"/sys/block/{e.Name}/loop/backing_file";
            string text;
            try
            {
                text = System.Text.Encoding.UTF8.GetString(ReadFile(file)).TrimEnd('\n');
            }
            catch (ErrnoException)
            {
                continue; // not attached
            }
            if (backing(text)) found.Add("/dev/" + e.Name);
        }
        return found;
    }
}
