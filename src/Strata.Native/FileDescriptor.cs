using System.Runtime.InteropServices;

namespace Strata.Native;

/// <summary>An open Linux file descriptor. <see cref="Cwd"/> stands for AT_FDCWD and is never closed.</summary>
public sealed class FileDescriptor : SafeHandle
{
    public FileDescriptor() : base(-1, ownsHandle: true) { }

    public FileDescriptor(int fd, bool ownsHandle = true) : base(-1, ownsHandle) => SetHandle(fd);

    /// <summary>AT_FDCWD: relative paths resolve against the current directory.</summary>
    public static readonly FileDescriptor Cwd = new(-100, ownsHandle: false);

    public int Value => (int)handle;

    public override bool IsInvalid => handle == -1;

    /// <summary>A stream that reads the file and owns the descriptor from now on (this handle is left invalid).</summary>
    public FileStream ToReadStream(int bufferSize = 1 << 16)
    {
        var owned = new Microsoft.Win32.SafeHandles.SafeFileHandle(DangerousGetHandle(), ownsHandle: true);
        SetHandleAsInvalid();
        return new FileStream(owned, FileAccess.Read, bufferSize);
    }

    protected override bool ReleaseHandle() => Posix.close((int)handle) == 0;
}
