using Strata.Native;

namespace Strata.Testing;

/// <summary>Filling files to find where a size limit or a full pool stops the writer.</summary>
public static class FillFile
{
    /// <summary>Writes <paramref name="bytes"/> of random data (1 MiB at a time) to a new file and fsyncs it; returns the
    /// errno that stopped it (0 if none: EDQUOT or ENOSPC when a limit did).</summary>
    public static int Write(string path, long bytes)
    {
        using var fd = Posix.Open(path, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL, 0x1A4);
        var chunk = new byte[1 << 20];
        new Random(1).NextBytes(chunk);
        try
        {
            for (long done = 0; done < bytes; done += chunk.Length) Posix.WriteAll(fd, chunk, path);
            Posix.Fsync(fd, path);
            return 0;
        }
        catch (ErrnoException ex)
        {
            return ex.Errno;
        }
    }
}
