using Strata.Archive;
using Strata.Archive.Tar;
using Strata.Native;

namespace Strata.Core.Images;

/// <summary>
/// A layer tar written again, byte for byte, from its tar-split and a tree that holds the layer's files (a Docker
/// device's rootfs/ in a migration, a layer kept as its tar-split when an export needs its tar): each file is opened
/// inside the tree, so a symlink in it cannot lead a read out of it, and only regular files are read.
/// </summary>
public sealed class TreeTar : ReadOnlyStream
{
    readonly FileDescriptor _root;
    readonly Stream _tar;

    /// <summary>The tar the tar-split file <paramref name="packed"/> (tar-split.json.gz) describes, with the files of
    /// <paramref name="tree"/>.</summary>
    public TreeTar(string packed, string tree) : this(Posix.Open(packed, Posix.O_RDONLY).ToReadStream(), tree)
    {
    }

    /// <summary>The tar <paramref name="packed"/> (tar-split.json.gz's bytes) describes, with the files of
    /// <paramref name="tree"/>; disposing it disposes <paramref name="packed"/> (so does a failure here).</summary>
    public TreeTar(Stream packed, string tree)
    {
        try
        {
            _root = Posix.Open(tree, Posix.O_PATH | Posix.O_DIRECTORY);
        }
        catch
        {
            packed.Dispose();
            throw;
        }
        _tar = TarSplit.Open(packed, name =>
            ConfinedFile.TryOpen(_root, name.TrimStart('/'), Posix.RESOLVE_IN_ROOT, out var file, out _) == 0 ? file : null);
    }

    public override int Read(Span<byte> buffer) => _tar.Read(buffer);

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _tar.Dispose();
            _root.Dispose();
        }
        base.Dispose(disposing);
    }
}
