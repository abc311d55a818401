using Strata.Native;

namespace Strata.Core;

/// <summary>Replaces a small file so that a crash leaves either the old or the new content:
/// write a temp file beside it, fsync, rename over, fsync the directory. Without
/// <c>durable</c> the fsyncs are left out: readers never see a half-written file, but after a
/// machine crash the file may be stale or empty (for state that a crash makes moot anyway).</summary>
public static class AtomicFile
{
    /// <summary>A fresh name beside <paramref name="path"/> for staging it.</summary>
    public static string TempBeside(string path) => $"{path}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";

    public static void Write(string path, ReadOnlySpan<byte> content, bool durable = true)
    {
        string dir = Path.GetDirectoryName(path)!;
        string tmp = TempBeside(path);
        using (var fd = Posix.Open(tmp, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL, 0x180 /* 0600 */))
        {
            Posix.WriteAll(fd, content, tmp);
            if (durable) Posix.Fsync(fd, tmp);
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
        if (durable) Posix.FsyncDirectory(dir);
    }
}
