using Strata.Core;

namespace Strata.Cli;

/// <summary>Binary output to stdout (no -o, or `-o -`) or to the file of -o (see <see cref="OutputTarget"/>: a regular
/// file appears only when complete, a device or FIFO is written into as it is). Never to a terminal.</summary>
static class OutputFile
{
    /// <summary>`-o -` names stdout, as for tar and docker; a file named "-" is `-o ./-`.</summary>
    public const string Stdout = "-";

    public static T Write<T>(string? path, Func<Stream, T> produce) => Write(path, produce, _ => true);

    /// <summary>As <see cref="Write{T}(string?, Func{Stream, T})"/>; the file is kept only if <paramref name="complete"/>
    /// says the result is. Through a daemon, the client writes the file (the daemon streams the bytes).</summary>
    public static T Write<T>(string? path, Func<Stream, T> produce, Func<T, bool> complete)
    {
        if (path is null or Stdout || Io.Current.FilesAtClient)
        {
            // through a daemon, a -o FILE's bytes go to the client on stdout's frames (it writes the file): only what is
            // meant for stdout itself is refused when stdout is a terminal
            using var stdout = (path is null or Stdout && Io.Current.OutIsTerminal ? null : Io.Current.BinaryOut())
                ?? throw new StrataException(ErrorKind.InvalidArgument, "refusing to write a tar to a terminal; use -o FILE or redirect stdout");
            return produce(stdout);
        }
        using var target = OutputTarget.Open(Io.Current.FullPath(path));
        T result = produce(target.Stream);
        if (complete(result)) target.Commit();
        return result;
    }
}
