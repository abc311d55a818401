namespace Strata.Cli;

/// <summary>The CLI's one translation of <see cref="ErrorKind"/>: distinct exit codes so scripts can tell
/// "not there" from "busy" without parsing messages.</summary>
public static class ExitCodes
{
    public const int Ok = 0, Failure = 1, Usage = 2, NotFound = 3, AlreadyExists = 4, InUse = 5, NoSpace = 6;

    public static int For(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidArgument => Usage,
        ErrorKind.NotFound => NotFound,
        ErrorKind.AlreadyExists => AlreadyExists,
        ErrorKind.InUse => InUse,
        ErrorKind.NoSpace => NoSpace,
        _ => Failure,
    };
}
