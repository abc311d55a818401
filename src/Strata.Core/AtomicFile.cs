using Strata.Native;

namespace Strata.Core;

/// <summary>Replaces a small file so that a crash leaves either the old or the new content:
/// write a temp file beside it, fsync, rename over, fsync the directory.</summary>
public static class AtomicFile
{
    public static void Write(string path, ReadOnlySpan<byte> content)
    {
        string dir = Path.GetDirectoryName(path)!;
        string tmp = $"{path}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        using (var fd = Posix.Open(tmp, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL, 0x180 /* 0600 */))
        {
            Posix.WriteAll(fd, content, tmp);
            Posix.Fsync(fd, tmp);
        }
        try
        {
            Posix.Rename(tmp, path);
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
        Posix.FsyncDirectory(dir);
    }
}
