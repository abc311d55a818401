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

    public ErrorKind Kind { get; }

    /// <summary>The message with line breaks and other control characters escaped (\n, \u001b): names and values from
    /// outside (an archive member, a digest in a manifest) go into messages, and must not break the one line.</summary>
    public static string OneLine(string message)
    {
        if (!message.AsSpan().ContainsAny(Breaks)) return message;
        var text = new System.Text.StringBuilder(message.Length + 16);
        foreach (char c in message)
        {
            switch (c)
            {
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case var _ when Breaks.Contains(c): text.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture)); break;
                default: text.Append(c); break;
            }
        }
        return text.ToString();
    }

    /// <summary>C0 and C1 controls, DEL, and the Unicode line and paragraph separators.</summary>
    static readonly System.Buffers.SearchValues<char> Breaks = System.Buffers.SearchValues.Create(
        string.Concat(Enumerable.Range(0, 0x20).Concat(Enumerable.Range(0x7f, 0x21)).Select(c => (char)c)) + "\u2028\u2029");

    public static StrataException NotFound(string message) => new(ErrorKind.NotFound, message);
    public static StrataException Exists(string message) => new(ErrorKind.AlreadyExists, message);
    public static StrataException InUse(string message) => new(ErrorKind.InUse, message);
    public static StrataException Invalid(string message) => new(ErrorKind.InvalidArgument, message);
    public static StrataException Corrupt(string message) => new(ErrorKind.Corrupt, message);
    public static StrataException Unsupported(string message) => new(ErrorKind.Unsupported, message);
    public static StrataException PermissionDenied(string message) => new(ErrorKind.PermissionDenied, message);
    public static StrataException Io(string message) => new(ErrorKind.Io, message);
    public static StrataException ReadOnly(string message) => new(ErrorKind.ReadOnly, message);
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
