namespace Strata.Cli;

/// <summary>Binary output to stdout or to a file that appears only when complete (temp + rename).</summary>
static class OutputFile
{
    public static T Write<T>(string? path, Func<Stream, T> produce) => Write(path, produce, _ => true);

    /// <summary>As <see cref="Write{T}(string?, Func{Stream, T})"/>; the file is kept only if <paramref name="complete"/>
    /// says the result is. Through a daemon, the client writes the file (the daemon streams the bytes).</summary>
    public static T Write<T>(string? path, Func<Stream, T> produce, Func<T, bool> complete)
    {
        if (path is null || Io.Current.FilesAtClient)
        {
            using var stdout = Io.Current.BinaryOut()
                ?? throw new StrataException(ErrorKind.InvalidArgument, "refusing to write a tar to a terminal; use -o FILE or redirect stdout");
            return produce(stdout);
        }
        string full = Io.Current.FullPath(path);
        string tmp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            T result;
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1))
                result = produce(fs);
            if (complete(result)) File.Move(tmp, full, overwrite: true);
            else File.Delete(tmp);
            return result;
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
    }
}
