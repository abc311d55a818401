using System.Net.Sockets;
using Strata.Native;

namespace Strata.Core;

/// <summary>
/// A file the user named for output (<c>-o PATH</c>), written as <c>dd of=</c>, <c>tar -f</c> and <c>docker save -o</c>
/// write theirs. An existing character or block device, FIFO or socket is written into as it is (a socket is
/// connected to), never replaced. A regular file, new or existing, appears only when complete: the bytes go to a temp
/// file beside it, renamed over it by <see cref="Commit"/>, and a target that is never committed is left as it was.
/// A symbolic link is followed only to such a special file (<c>/dev/stdout</c>) or, for this process's own descriptors
/// (<c>/dev/stdout</c> sent to a file), to the file it has open: anywhere else renaming over a link would replace the
/// link, and writing through it would replace a file elsewhere, both silently, so a link to a regular file is refused.
/// The parent directory must exist: nothing is created that the user did not name.
/// </summary>
public sealed class OutputTarget : IDisposable
{
    readonly string _path;
    readonly string? _temp;
    bool _committed;

    OutputTarget(string path, string? temp, Stream stream)
    {
        _path = path;
        _temp = temp;
        Stream = stream;
    }

    /// <summary>Where the bytes go until <see cref="Commit"/>.</summary>
    public Stream Stream { get; }

    /// <summary>Whether the target is a special file written into as it is (no temp file, no rename).</summary>
    public bool InPlace => _temp is null;

    /// <summary>Whether <paramref name="path"/> is (or links to) an existing device, FIFO or socket, which output goes into as it is.</summary>
    public static bool IsSpecial(string path) => Posix.TryStat(path, out var st) == 0 && st.Kind is not (FileKind.Regular or FileKind.Directory);

    /// <summary>Opens <paramref name="path"/> for output, or fails with one clear line before anything is written.</summary>
    public static OutputTarget Open(string path)
    {
        string full = Path.GetFullPath(path);
        // the kind is judged on the object itself (an O_PATH descriptor), which is then opened through that descriptor:
        // a FIFO swapped for something else between the look and the open cannot redirect the bytes
        int err = Posix.TryOpenAt(FileDescriptor.Cwd, full, Posix.O_PATH, 0, out var found);
        using var pinned = found;
        var st = pinned is null ? default : Posix.Fstat(pinned);
        if (err == 0 && st.Kind is not (FileKind.Regular or FileKind.Directory))
            return new OutputTarget(full, null, OpenSpecial(full, st.Kind == FileKind.Socket ? full : $"/proc/self/fd/{pinned!.Value}", st.Kind));
        if (Posix.TryLstat(full, out var link) && link.IsSymlink)
        {
            // a descriptor of this process (-o /dev/stdout with stdout sent to a file): its file is the caller's to
            // give, written as tar -f writes it, truncated and in place
            if (err == 0 && st.IsRegular && IsDescriptorLink(full))
                return new OutputTarget(full, null, new FileStream($"/proc/self/fd/{pinned!.Value}", FileMode.Create, FileAccess.Write, FileShare.ReadWrite, 1));
            throw StrataException.Invalid(err == 0
                ? $"{full} is a symbolic link to a {(st.IsDirectory ? "directory" : "regular file")}; name the file itself to replace it"
                : $"{full} is a symbolic link to nothing; name the file itself");
        }
        if (err == 0 && st.IsDirectory) throw StrataException.Invalid($"{full} is a directory");
        CheckParent(full);
        string temp = AtomicFile.TempBeside(full);
        var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1);
        return new OutputTarget(full, temp, stream);
    }

    /// <summary>Whether <paramref name="full"/> names an open descriptor of this process: /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N.</summary>
    static bool IsDescriptorLink(string full) =>
        full is "/dev/stdout" or "/dev/stderr" || full.StartsWith("/dev/fd/", StringComparison.Ordinal) || full.StartsWith("/proc/self/fd/", StringComparison.Ordinal)
        || full.StartsWith($"/proc/{Environment.ProcessId}/fd/", StringComparison.Ordinal);

    /// <summary>Fails unless the directory that would hold <paramref name="full"/> exists (outputs never create parents).</summary>
    public static void CheckParent(string full)
    {
        string dir = Path.GetDirectoryName(full) ?? "/";
        int err = Posix.TryStat(dir, out var st);
        if (err == Errno.ENOENT || err == Errno.ENOTDIR) throw StrataException.NotFound($"directory {dir} does not exist");
        if (err != 0) throw new ErrnoException(err, "stat", dir);
        if (!st.IsDirectory) throw StrataException.Invalid($"{dir} is not a directory");
    }

    /// <summary>Opens the special file <paramref name="full"/> for writing, through <paramref name="through"/> (its pinned descriptor's
    /// /proc link; a socket is connected to by its path).</summary>
    static Stream OpenSpecial(string full, string through, FileKind kind)
    {
        if (kind == FileKind.Socket)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                socket.Connect(new UnixDomainSocketEndPoint(through));
            }
            catch (SocketException ex)
            {
                socket.Dispose();
                throw new StrataException(ErrorKind.Io, $"connect {full}: {ex.Message}");
            }
            return new NetworkStream(socket, FileAccess.Write, ownsSocket: true);
        }
        // as it is: FileMode.Open has neither O_CREAT nor O_TRUNC (a FIFO waits for its reader here, as with tar -f)
        try
        {
            return new FileStream(through, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new StrataException(ex is UnauthorizedAccessException ? ErrorKind.PermissionDenied : ErrorKind.Io, $"open {full} for writing: {ex.Message}");
        }
    }

    /// <summary>Makes the output final: a regular file is renamed into place; a special file has had its bytes.</summary>
    public void Commit()
    {
        Stream.Dispose();
        if (_temp is not null) Posix.Rename(_temp, _path);
        _committed = true;
    }

    public void Dispose()
    {
        if (_committed) return;
        Stream.Dispose();
        if (_temp is not null) File.Delete(_temp);
    }
}
