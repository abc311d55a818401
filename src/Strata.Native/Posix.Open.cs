using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>open(2), openat(2), openat2(2) and close(2).</summary>
public static unsafe partial class Posix
{
    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_EXCL = 0x80, O_NOCTTY = 0x100,
        O_TRUNC = 0x200, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000, O_PATH = 0x200000;

    static readonly bool IsArm64 = RuntimeInformation.ProcessArchitecture == Architecture.Arm64;
    public static readonly int O_DIRECTORY = IsArm64 ? 0x4000 : 0x10000;
    public static readonly int O_NOFOLLOW = IsArm64 ? 0x8000 : 0x20000;

    public const ulong RESOLVE_NO_XDEV = 0x01, RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_NO_SYMLINKS = 0x04,
        RESOLVE_BENEATH = 0x08, RESOLVE_IN_ROOT = 0x10;

    const long SYS_openat2 = 437;

    [StructLayout(LayoutKind.Sequential)]
    struct OpenHow
    {
        public ulong Flags;
        public ulong Mode;
        public ulong Resolve;
    }

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int close(int fd);

    [LibraryImport("libc", EntryPoint = "openat", SetLastError = true, StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller))]
    private static partial int openat_raw(FileDescriptor dirfd, string path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall_openat2(long number, FileDescriptor dirfd, byte* path, OpenHow* how, nuint size);

    /// <summary>openat(2); O_CLOEXEC is always added.</summary>
    public static FileDescriptor OpenAt(FileDescriptor dir, string path, int flags, uint mode = 0)
    {
        int fd;
        do fd = openat_raw(dir, path, flags | O_CLOEXEC, mode);
        while (fd < 0 && Errno.Last == Errno.EINTR);
        if (fd < 0) throw Errno.Error("open", path);
        return new FileDescriptor(fd);
    }

    public static FileDescriptor Open(string path, int flags, uint mode = 0) => OpenAt(FileDescriptor.Cwd, path, flags, mode);

    /// <summary>openat(2) that reports failure as errno instead of throwing.</summary>
    public static int TryOpenAt(FileDescriptor dir, string path, int flags, uint mode, out FileDescriptor? fd)
    {
        int raw = openat_raw(dir, path, flags | O_CLOEXEC, mode);
        if (raw < 0)
        {
            fd = null;
            return Errno.Last;
        }
        fd = new FileDescriptor(raw);
        return 0;
    }

    /// <summary>openat2(2) with a RESOLVE_* mask; returns errno (0 on success) so callers can word their own error.</summary>
    public static int TryOpenAt2(FileDescriptor dir, string path, int flags, ulong resolve, out FileDescriptor? fd)
    {
        if (path.Contains('\0')) throw StrataException.Invalid($"name '{path.Replace('\0', '?')}' contains a NUL byte");
        int max = PathEncoding.GetByteCount(path) + 1;
        Span<byte> bytes = max <= 1024 ? stackalloc byte[max] : new byte[max];
        int n = PathEncoding.Encode(path, bytes);
        bytes[n] = 0;
        var how = new OpenHow { Flags = (ulong)(uint)(flags | O_CLOEXEC), Resolve = resolve };
        long raw;
        fixed (byte* p = bytes)
        {
            do raw = syscall_openat2(SYS_openat2, dir, p, &how, (nuint)sizeof(OpenHow));
            while (raw < 0 && Errno.Last is Errno.EINTR or Errno.EAGAIN);
        }
        if (raw < 0)
        {
            fd = null;
            return Errno.Last;
        }
        fd = new FileDescriptor((int)raw);
        return 0;
    }

    /// <summary>Whether this kernel has openat2(2) (Linux 5.6+).</summary>
    public static bool HasOpenAt2 => s_hasOpenAt2 ??= ProbeOpenAt2();

    static bool? s_hasOpenAt2;

    static bool ProbeOpenAt2()
    {
        int err = TryOpenAt2(FileDescriptor.Cwd, "/", O_PATH | O_DIRECTORY, 0, out var fd);
        fd?.Dispose();
        return err == 0;
    }

    public static int SizeOfOpenHow => Unsafe.SizeOf<OpenHow>();
}
