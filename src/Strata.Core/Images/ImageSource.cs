using Strata.Archive;
using Strata.Archive.Tar;
using Strata.Native;

namespace Strata.Core.Images;

/// <summary>The named files of an image archive or layout: an OCI layout directory read in place, or a tar
/// (oci-archive, docker-archive) staged file by file into the store's tmp/ (such archives keep their
/// index at the end, so they cannot be read in one pass).</summary>
abstract class ImageSource : IDisposable
{
    public abstract bool Has(string path);
    public abstract Stream Open(string path);
    public abstract long Length(string path);
    public virtual void Dispose() { }

    public byte[] ReadAll(string path, long max = 64 << 20)
    {
        if (!Has(path)) throw StrataException.Corrupt($"{path} is missing from the image");
        if (Length(path) > max) throw StrataException.Corrupt($"{path} is {Length(path)} bytes, more than a JSON document of an image may be");
        using var s = Open(path);
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
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

sealed class DirectorySource(string root) : ImageSource
{
    string Full(string path) => Path.Combine(root, Clean(path, "path"));
    public override bool Has(string path) => File.Exists(Full(path));
    public override long Length(string path) => new FileInfo(Full(path)).Length;

    public override Stream Open(string path)
    {
        try
        {
            return new FileStream(Full(path), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        }
        catch (FileNotFoundException)
        {
            throw StrataException.Corrupt($"{path} is missing from the image layout {root}");
        }
    }
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
            LayerStore.MakeDir(staged._dir, 0x1C0);
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

    string Staged(string path) => _files.TryGetValue(Clean(path, "path"), out var f) ? f : throw StrataException.Corrupt($"{path} is missing from the archive");
    public override bool Has(string path) => _files.ContainsKey(Clean(path, "path"));
    public override long Length(string path) => new FileInfo(Staged(path)).Length;
    public override Stream Open(string path) => new FileStream(Staged(path), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);

    public override void Dispose() => FileTree.Remove(_dir);
}
