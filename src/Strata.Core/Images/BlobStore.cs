using System.Security.Cryptography;
using Strata.Native;

namespace Strata.Core.Images;

/// <summary>
/// Content-addressed blobs (manifests, configs, layer tars as they were imported or committed) in
/// <c>images/blobs/sha256/&lt;hex&gt;</c>, the layout of an OCI image layout's blob directory. A blob is
/// written to the store's tmp/, checked against the digest it must have while it is written, made
/// durable, and renamed into place: a blob in the store always has the content its name says.
/// Blobs are kept so that an export gives back the very bytes that were imported. A layer tar whose files and
/// tar-split a migration had (Docker's devicemapper layers) may be kept as its tar-split instead, in
/// <c>images/tar-split/&lt;hex&gt;.json.gz</c>: the tar's bytes but its files' contents, which are the layer's; the
/// blob is written again from the two the first time an export or a push needs it (<see cref="ImageStore.AssembleBlobs"/>).
/// </summary>
public sealed class BlobStore
{
    readonly string _tmp;

    /// <summary>The blobs of the store at <paramref name="root"/>; their directory is made unless <paramref name="create"/>
    /// is false (a store opened read-only, which has no blob while it has no directory).</summary>
    public BlobStore(string root, bool create = true)
    {
        Directory = Path.Combine(root, "images", "blobs", "sha256");
        TarSplits = TarSplitsOf(root);
        _tmp = Path.Combine(root, "tmp");
        if (create) LayerStore.MakeDir(Directory, Modes.OwnerOnly);
    }

    public string Directory { get; }

    /// <summary>Where layer tars kept as their tar-split are.</summary>
    public string TarSplits { get; }

    /// <summary>Whether the store at <paramref name="root"/> keeps some layer tar as its tar-split (without opening it).</summary>
    public static bool KeepsTarSplits(string root)
    {
        string dir = TarSplitsOf(root);
        return System.IO.Directory.Exists(dir) && System.IO.Directory.EnumerateFiles(dir).Any();
    }

    static string TarSplitsOf(string root) => Path.Combine(root, "images", "tar-split");

    public string TarSplitPath(Digest digest) => Path.Combine(TarSplits, digest.Hex + ".json.gz");

    /// <summary>Whether the blob is here as the tar-split of a layer tar (and not as itself).</summary>
    public bool HasTarSplit(Digest digest) => !Exists(digest) && File.Exists(TarSplitPath(digest));

    /// <summary>Keeps layer tar <paramref name="digest"/> as its tar-split <paramref name="packed"/> (gzipped JSON lines),
    /// durably; the caller has checked that the tar it makes from the layer's files has that digest. Nothing is kept
    /// when the blob is here already, as itself or as a tar-split.</summary>
    public void PutTarSplit(Digest digest, byte[] packed, ImageStore.ImportScope? scope = null)
    {
        scope?.UseBlob(digest);
        string path = TarSplitPath(digest);
        if (Exists(digest) || File.Exists(path)) return;
        LayerStore.MakeDir(TarSplits, Modes.OwnerOnly);
        // staged in the store's tmp/ (emptied at its next open), where no collection of this directory can take it
        string tmp = Path.Combine(_tmp, "tar-split-" + Guid.NewGuid().ToString("N"));
        try
        {
            using (var fd = Posix.Open(tmp, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL, 0x180 /* 0600 */))
            {
                Posix.WriteAll(fd, packed, tmp);
                Posix.Fsync(fd, tmp);
            }
            Posix.Rename(tmp, path);
            Posix.FsyncDirectory(TarSplits);
            scope?.Added(digest);
        }
        finally
        {
            File.Delete(tmp);
        }
    }

    /// <summary>Deletes blob <paramref name="digest"/>, whether it is here as itself or as a tar-split.</summary>
    public void Delete(Digest digest)
    {
        File.Delete(PathOf(digest));
        if (System.IO.Directory.Exists(TarSplits)) File.Delete(TarSplitPath(digest));
    }

    public string PathOf(Digest digest) => Path.Combine(Directory, digest.Hex);

    public bool Exists(Digest digest) => File.Exists(PathOf(digest));

    public long Size(Digest digest) => new FileInfo(PathOf(digest)).Length;

    public Stream Open(Digest digest)
    {
        try
        {
            return new FileStream(PathOf(digest), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        }
        catch (FileNotFoundException)
        {
            throw StrataException.Corrupt($"blob {digest} is missing from the store");
        }
    }

    public byte[] Read(Digest digest) => File.ReadAllBytes(PathOf(digest));

    /// <summary>Stores <paramref name="content"/>; when <paramref name="expected"/> is given, the content must have that
    /// digest (and <paramref name="expectedSize"/> bytes, when given) or nothing is stored. <paramref name="what"/>
    /// names the blob in errors. Returns the digest and size. An import's <paramref name="scope"/> learns the blob
    /// it uses, and whether this call added it.</summary>
    public (Digest Digest, long Size) Put(Stream content, Digest? expected, long? expectedSize, string what, Action<long>? progress = null,
        ImageStore.ImportScope? scope = null)
    {
        if (expected is { } e) scope?.UseBlob(e);
        if (expected is { } known && Exists(known))
        {
            // already here (a shared base layer): the stored copy was verified when it came, but the descriptor that
            // names it now may lie about its size, and would be kept as it is (an export would hand the lie out)
            long stored = Size(known);
            if (expectedSize is { } claimed && claimed != stored)
                throw StrataException.Corrupt($"{what} has {stored} bytes, not {claimed} as its descriptor says");
            return (known, stored);
        }
        string tmp = Path.Combine(_tmp, "blob-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long size = 0;
            using (var fd = Posix.Open(tmp, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL, 0x1A4 /* 0644 */))
            {
                var buffer = new byte[1 << 20];
                int n;
                while ((n = content.Read(buffer, 0, buffer.Length)) > 0)
                {
                    hash.AppendData(buffer, 0, n);
                    Posix.WriteAll(fd, buffer.AsSpan(0, n), tmp);
                    size += n;
                    if (expectedSize is { } max && size > max) throw StrataException.Corrupt($"{what} is larger than the {max} bytes its descriptor says");
                    progress?.Invoke(n);
                }
                Posix.Fsync(fd, tmp);
            }
            var digest = Digest.From(hash);
            if (expected is { } want && want != digest)
                throw StrataException.Corrupt($"{what} has digest {digest}, not {want} as its descriptor says");
            if (expectedSize is { } exact && exact != size)
                throw StrataException.Corrupt($"{what} has {size} bytes, not {exact} as its descriptor says");
            scope?.UseBlob(digest);
            // a blob already here stays as it is: it may be another image's, and no failed import may take it
            if (Exists(digest)) return (digest, size);
            Posix.Rename(tmp, PathOf(digest));
            Posix.FsyncDirectory(Directory);
            scope?.Added(digest);
            return (digest, size);
        }
        finally
        {
            File.Delete(tmp);
        }
    }

    public (Digest Digest, long Size) Put(ReadOnlySpan<byte> content, string what, ImageStore.ImportScope? scope = null)
    {
        using var ms = new MemoryStream(content.ToArray(), writable: false);
        return Put(ms, null, null, what, scope: scope);
    }

    /// <summary>Moves a file whose digest the caller computed into the store.</summary>
    public void Adopt(string file, Digest digest)
    {
        if (Exists(digest))
        {
            File.Delete(file);
            return;
        }
        using (var fd = Posix.Open(file, Posix.O_RDONLY)) Posix.Fsync(fd, file);
        Posix.Rename(file, PathOf(digest));
        Posix.FsyncDirectory(Directory);
    }

    /// <summary>Deletes the blobs (and tar-splits) not in <paramref name="keep"/> (hex digests); returns how many.</summary>
    public int Collect(IReadOnlySet<string> keep)
    {
        int n = 0;
        foreach (var e in Posix.ReadDir(Directory))
        {
            if (keep.Contains(e.Name)) continue;
            if (Posix.TryUnlinkAt(FileDescriptor.Cwd, Path.Combine(Directory, e.Name), directory: false) == 0) n++;
        }
        if (!System.IO.Directory.Exists(TarSplits)) return n;
        foreach (var e in Posix.ReadDir(TarSplits))
        {
            // a blob kept as itself makes its tar-split redundant (an export wrote it again)
            string hex = e.Name.EndsWith(".json.gz", StringComparison.Ordinal) ? e.Name[..^".json.gz".Length] : e.Name;
            if (keep.Contains(hex) && !File.Exists(Path.Combine(Directory, hex))) continue;
            if (Posix.TryUnlinkAt(FileDescriptor.Cwd, Path.Combine(TarSplits, e.Name), directory: false) == 0) n++;
        }
        return n;
    }
}
