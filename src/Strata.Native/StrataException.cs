namespace Strata;

/// <summary>What went wrong, independent of where: each frontend maps a kind to its own
/// vocabulary exactly once (CLI exit code, plugin Err, NBD errno, gRPC status).</summary>
public enum ErrorKind
{
    NotFound,
    AlreadyExists,
    InUse,
    InvalidArgument,
    NoSpace,
    ReadOnly,
    Corrupt,
    Unsupported,
    PermissionDenied,
    Io,
}

/// <summary>The one exception type Strata throws on purpose. Its message is a single line that
/// can be shown to a user as it is.</summary>
public class StrataException : Exception
{
    public StrataException(ErrorKind kind, string message, Exception? inner = null) : base(OneLine(message), inner) => Kind = kind;

    /// <summary>The message as one line whatever it quotes: names and paths come from users and archives, so control
    /// characters in them (a newline in <c>--name</c>) are shown escaped, as <c>\n</c>, <c>\t</c>, <c>\x1b</c>, <c>\u2028</c>.</summary>
    public static string OneLine(string message)
    {
        int i = 0;
        while (i < message.Length && !NeedsEscape(message[i])) i++;
        if (i == message.Length) return message;
        var sb = new System.Text.StringBuilder(message.Length + 8).Append(message, 0, i);
        for (; i < message.Length; i++)
        {
            char c = message[i];
            if (!NeedsEscape(c)) sb.Append(c);
            else sb.Append(c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                < (char)0x100 => $"\\x{(int)c:x2}",
                _ => $"\\u{(int)c:x4}",
            });
        }
        return sb.ToString();
    }

    static bool NeedsEscape(char c) => c < 0x20 || c is (>= (char)0x7f and <= (char)0x9f) or '\u2028' or '\u2029';

    public ErrorKind Kind { get; }

    public static StrataException NotFound(string message) => new(ErrorKind.NotFound, message);
    public static StrataException Exists(string message) => new(ErrorKind.AlreadyExists, message);
    public static StrataException InUse(string message) => new(ErrorKind.InUse, message);
    public static StrataException Invalid(string message) => new(ErrorKind.InvalidArgument, message);
    public static StrataException Corrupt(string message) => new(ErrorKind.Corrupt, message);
    public static StrataException Unsupported(string message) => new(ErrorKind.Unsupported, message);
}

/// <summary>A failed system call: carries errno, the operation and the path it was applied to.</summary>
public sealed class ErrnoException : StrataException
{
    public ErrnoException(int errno, string operation, string? path, string? detail = null)
        : base(KindOf(errno), (path is null ? $"{operation}: {Describe(errno)}" : $"{operation} {path}: {Describe(errno)}")
            + (string.IsNullOrEmpty(detail) ? "" : $" ({detail})"))
    {
        Errno = errno;
        Operation = operation;
        Path = path;
    }

    public int Errno { get; }
    public string Operation { get; }
    public string? Path { get; }

    public static string Describe(int errno) => System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(errno);

    public static ErrorKind KindOf(int errno) => errno switch
    {
        Native.Errno.ENOENT or Native.Errno.ENOTDIR => ErrorKind.NotFound,
        Native.Errno.EEXIST or Native.Errno.ENOTEMPTY => ErrorKind.AlreadyExists,
        Native.Errno.EBUSY or Native.Errno.ETXTBSY or Native.Errno.EAGAIN => ErrorKind.InUse,
        Native.Errno.ENOSPC or Native.Errno.EDQUOT => ErrorKind.NoSpace,
        Native.Errno.EROFS => ErrorKind.ReadOnly,
        Native.Errno.EACCES or Native.Errno.EPERM => ErrorKind.PermissionDenied,
        Native.Errno.EINVAL or Native.Errno.ELOOP or Native.Errno.EXDEV or Native.Errno.ENAMETOOLONG or Native.Errno.EISDIR => ErrorKind.InvalidArgument,
        Native.Errno.EOPNOTSUPP or Native.Errno.ENOSYS or Native.Errno.ENOTTY => ErrorKind.Unsupported,
        _ => ErrorKind.Io,
    };
}
