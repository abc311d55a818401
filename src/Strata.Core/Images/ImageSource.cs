using Strata.Archive;
using Strata.Archive.Tar;
using Strata.Native;

namespace Strata.Core.Images;

/// <summary>The named files of an image archive or layout: a directory (an OCI layout, an extracted docker-archive)
/// read in place, or a tar (oci-archive, docker-archive) staged file by file into the store's tmp/ (such archives
/// keep their index at the end, so they cannot be read in one pass). Every file is a regular file inside the
/// image, and a JSON document is read with a bound on the bytes read.</summary>
abstract class ImageSource : IDisposable
{
    /// <summary>The most a JSON document of an image (oci-layout, index, manifest, config) may hold.</summary>
    public const long MaxDocument = 64 << 20;

    /// <summary>The file, or null when the image has none of that name; a file that is not a regular file inside the
    /// image is an error.</summary>
    public abstract Stream? TryOpen(string path);

    protected abstract StrataException Missing(string path);

    /// <summary>The tar-split (tar-split.json.gz's bytes) of layer tar <paramref name="path"/> when the source writes the
    /// tar again from files rather than holding it (a migration of Docker's layers): the importer then keeps the
    /// tar-split in place of a copy of the tar. Null for a tar the source holds.</summary>
    public virtual byte[]? TarSplitOf(string path) => null;

    public Stream Open(string path) => TryOpen(path) ?? throw Missing(path);

    public bool Has(string path)
    {
        using var s = TryOpen(path);
        return s is not null;
    }

    public virtual void Dispose() { }

    public byte[] ReadAll(string path, long max = MaxDocument)
    {
        using var s = Open(path);
        return ConfinedFile.ReadAtMost(s, max) ?? throw StrataException.Corrupt($"{path} is more than {max} bytes, more than a JSON document of an image may be");
    }

    /// <summary>A path from the image's own JSON, made relative and checked to stay inside the image.</summary>
    public static string Clean(string path, string what)
    {
        var parts = new List<string>();
        foreach (var part in path.Split('/'))
        {
            if (part is "" or ".") continue;
            if (part == ".." || part.Contains('\0')) throw StrataException.Corrupt($"{what} '{path}' points outside the image");
            parts.Add(part);
        }
        if (path.StartsWith('/') || parts.Count == 0) throw StrataException.Corrupt($"{what} '{path}' points outside the image");
        return string.Join('/', parts);
    }
}

/// <summary>A directory read in place. Its files are opened by the kernel's path resolution below the directory
/// (openat2 RESOLVE_BENEATH): a symlink may lead elsewhere inside it (`docker save` links a repeated layer), never
/// out of it; and only regular files are read (a FIFO would block the import, a device never end it).</summary>
sealed class DirectorySource : ImageSource
{
    readonly string _root;
    readonly FileDescriptor _dir;

    public DirectorySource(string root)
    {
        if (!Posix.HasOpenAt2) throw StrataException.Unsupported("this kernel lacks openat2(2) (Linux 5.6+), which reading an image directory safely needs");
        _root = root;
        _dir = Posix.Open(root, Posix.O_PATH | Posix.O_DIRECTORY);
    }

    public override Stream? TryOpen(string path)
    {
        string rel = Clean(path, "path");
        int err = ConfinedFile.TryOpen(_dir, rel, Posix.RESOLVE_BENEATH, out var file, out var kind);
        return err switch
        {
            0 when file is not null => file,
            0 => throw StrataException.Corrupt($"{rel} in {_root} is a {ConfinedFile.Describe(kind)}, not a regular file"),
            Errno.ENOENT or Errno.ENOTDIR => null,
            Errno.EXDEV => throw StrataException.Corrupt($"{rel} in {_root} is a symlink that leads out of the image, or passes through one"),
            Errno.ELOOP => throw StrataException.Corrupt($"{rel} in {_root}: its symlinks loop or nest too deeply"),
            _ => throw new ErrnoException(err, "open", Path.Combine(_root, rel)),
        };
    }

    protected override StrataException Missing(string path) => StrataException.Corrupt($"{path} is missing from the image {_root}");

    public override void Dispose() => _dir.Dispose();
}

/// <summary>A tar archive's regular files, staged under a directory of the store's tmp/ (swept at open);
/// symlinks and hardlinks between its files (`docker save` links repeated layers) are followed inside it.</summary>
sealed class StagedSource : ImageSource
{
    readonly string _dir;
    readonly Dictionary<string, string> _files = new(StringComparer.Ordinal);

    StagedSource(string dir) => _dir = dir;

    public static StagedSource Stage(string tarPath, string tmp, Action<long>? progress)
    {
        var staged = new StagedSource(Path.Combine(tmp, "import-" + Guid.NewGuid().ToString("N")));
        try
        {
            LayerStore.MakeDir(staged._dir, Modes.OwnerOnly);
            using var file = OpenFile(tarPath);
            using var input = LayerInput.Open(file);
            using var tar = new TarReader(input);
            var links = new List<(string Name, string Target)>();
            var buffer = new byte[1 << 20];
            int n = 0;
            while (tar.Next() is { } e)
            {
                if (e.Type == TarEntryType.Directory) continue; // nothing is made of them (and `./` names the root)
                string name = Clean(e.Name, "archive entry");
                switch (e.Type)
                {
                    case TarEntryType.Regular:
                        string to = Path.Combine(staged._dir, (n++).ToString(System.Globalization.CultureInfo.InvariantCulture));
                        using (var fd = Posix.Open(to, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL, 0x180))
                        {
                            int r;
                            while ((r = tar.ReadData(buffer)) > 0)
                            {
                                Posix.WriteAll(fd, buffer.AsSpan(0, r), to);
                                progress?.Invoke(r);
                            }
                        }
                        staged._files[name] = to;
                        break;
                    case TarEntryType.Symlink:
                        // `docker save` links a repeated layer as <id>/layer.tar -> ../<other>/layer.tar: relative to the link's directory
                        string dir = name.Contains('/') ? name[..name.LastIndexOf('/')] + "/" : "";
                        links.Add((name, Resolve(e.LinkName.StartsWith('/') ? e.LinkName : dir + e.LinkName, $"link '{name}'")));
                        break;
                    case TarEntryType.HardLink:
                        links.Add((name, Resolve(e.LinkName, $"link '{name}'")));
                        break;
                    default:
                        throw StrataException.Corrupt($"archive entry '{name}' is a {e.Type}: an image archive holds only files, directories and links");
                }
            }
            for (int round = 0; round < 8 && links.Count > 0; round++)
                links.RemoveAll(l =>
                {
                    if (!staged._files.TryGetValue(l.Target, out var f)) return false;
                    staged._files[l.Name] = f;
                    return true;
                });
            // links to nothing stay unresolved: an image that needs one fails when it asks for it
            return staged;
        }
        catch
        {
            staged.Dispose();
            throw;
        }
    }

    /// <summary>The names of a tar's top-level members (to tell an image archive from a rootfs tar). The whole tar is
    /// read: `docker save` writes manifest.json last.</summary>
    public static HashSet<string> Names(string tarPath)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        using var file = OpenFile(tarPath);
        using var input = LayerInput.Open(file);
        using var tar = new TarReader(input);
        while (tar.Next() is { } e)
        {
            string name = e.Name.TrimStart('.', '/');
            if (name.Length > 0 && !name.TrimEnd('/').Contains('/')) names.Add(name.TrimEnd('/'));
        }
        return names;
    }

    /// <summary>A path inside the archive with `.` and `..` worked out; climbing above the archive's root is an error.</summary>
    static string Resolve(string path, string what)
    {
        var parts = new List<string>();
        foreach (var part in path.Split('/'))
        {
            if (part is "" or ".") continue;
            if (part == "..")
            {
                if (parts.Count == 0) throw StrataException.Corrupt($"{what} points outside the archive ('{path}')");
                parts.RemoveAt(parts.Count - 1);
            }
            else parts.Add(part);
        }
        return string.Join('/', parts);
    }

    static FileStream OpenFile(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        }
        catch (FileNotFoundException)
        {
            throw StrataException.NotFound($"{path} does not exist");
        }
    }

    // the staged files are the store's own regular files
    public override Stream? TryOpen(string path) =>
        _files.TryGetValue(Clean(path, "path"), out var f) ? new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan) : null;

    protected override StrataException Missing(string path) => StrataException.Corrupt($"{path} is missing from the archive");

    public override void Dispose() => FileTree.Remove(_dir);
}
