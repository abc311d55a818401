using Strata.Native;

namespace Strata.Core;

/// <summary>
/// Files that input from outside names (an image layout's blobs, a container's /etc/passwd): resolved by the
/// kernel inside a directory (openat2 with RESOLVE_BENEATH or RESOLVE_IN_ROOT, never through /proc's magic
/// links), opened without blocking (a FIFO would wait for a writer) and kept only when regular (a device such as
/// /dev/zero has no end, and a stat size of 0); read with a bound on the bytes actually read, not on what stat says.
/// </summary>
public static class ConfinedFile
{
    /// <summary>Opens <paramref name="path"/> below <paramref name="root"/> with the <paramref name="resolve"/> mask
    /// (RESOLVE_NO_MAGICLINKS is added). Returns 0 and the file when it is a regular file, 0 and no file (with its
    /// <paramref name="kind"/>) when it is something else, or the errno of the open (ENOENT, and EXDEV for a path
    /// that leads out of <paramref name="root"/> under RESOLVE_BENEATH).</summary>
    public static int TryOpen(FileDescriptor root, string path, ulong resolve, out FileStream? file, out FileKind kind)
    {
        file = null;
        kind = default;
        int err = Posix.TryOpenAt2(root, path, Posix.O_RDONLY | Posix.O_NONBLOCK | Posix.O_NOCTTY, resolve | Posix.RESOLVE_NO_MAGICLINKS, out var fd);
        if (err != 0) return err;
        using (fd)
        {
            kind = Posix.Fstat(fd!).Kind;
            if (kind != FileKind.Regular) return 0;
            // O_NONBLOCK means nothing to a regular file: the stream reads it as any other
            file = fd!.ToReadStream();
            return 0;
        }
    }

    /// <summary>All of <paramref name="stream"/> when it holds at most <paramref name="max"/> bytes; null when it holds
    /// more (at most <paramref name="max"/> + 1 bytes are read to tell).</summary>
    public static byte[]? ReadAtMost(Stream stream, long max)
    {
        using var content = new MemoryStream();
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 16);
        try
        {
            long left = max + 1;
            int n;
            while (left > 0 && (n = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, left))) > 0)
            {
                content.Write(buffer, 0, n);
                left -= n;
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
        return content.Length > max ? null : content.ToArray();
    }

    /// <summary>A file type in words, for errors.</summary>
    public static string Describe(FileKind kind) => kind switch
    {
        FileKind.Fifo => "fifo",
        FileKind.CharDevice => "character device",
        FileKind.BlockDevice => "block device",
        FileKind.Directory => "directory",
        FileKind.Socket => "socket",
        FileKind.Symlink => "symlink",
        FileKind.Regular => "regular file",
        _ => $"file of type 0x{(uint)kind:x}",
    };
}
