using Strata.Core;

namespace Strata.Cli;

/// <summary>Binary output to stdout or to the file of -o (see <see cref="OutputTarget"/>: a regular file appears only when
/// complete, a device or FIFO is written into as it is).</summary>
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
        using var target = OutputTarget.Open(Io.Current.FullPath(path));
        T result = produce(target.Stream);
        if (complete(result)) target.Commit();
        return result;
    }
}
