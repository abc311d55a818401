using Strata.Archive.Tar;
using Strata.Native;

namespace Strata.Archive;

/// <summary>
/// Writes a set of changes of a layer tree as an OCI layer tar: added and modified paths in full
/// (numeric owners, permission bits incl. setuid/setgid/sticky, xattrs, device numbers, hardlinks
/// within the changeset as type '1' members), deletions as <c>.wh.</c> whiteouts. Entries follow the
/// order of <paramref name="changes"/> (sorted by path), so the same tree gives the same bytes.
/// Sockets cannot be stored in tar and are skipped. The tree is read through directory
/// descriptors (<see cref="TreeWalker"/>), never following a symlink.
/// </summary>
public static class DiffWriter
{
    public static DiffResult Write(Stream output, string layerRoot, IReadOnlyList<Change> changes)
    {
        using var tar = new TarWriter(output);
        using var tree = new TreeWalker(layerRoot);
        var links = new Dictionary<(ulong, ulong), string>();
        var skipped = new List<string>();
        long size = 0;
        foreach (var c in changes)
        {
            if (c.Kind == ChangeKind.Delete)
            {
                tar.WriteHeader(new TarEntry
                {
                    Name = LayerPath.Join(LayerPath.Parent(c.Path), Whiteouts.Prefix + LayerPath.Base(c.Path)),
                    Type = TarEntryType.Regular,
                });
                continue;
            }
            var dir = tree.Dir(LayerPath.Parent(c.Path));
            string name = LayerPath.Base(c.Path);
            var st = Posix.LstatAt(dir, name);
            var e = new TarEntry
            {
                Name = c.Path,
                Mode = st.Permissions,
                Uid = st.Uid,
                Gid = st.Gid,
                Mtime = new UnixTime(st.Mtime.Seconds, 0),
                Xattrs = NullIfEmpty(LayerXattrs.ContentOnly(Posix.LgetXattrsAt(dir, name))),
            };
            switch (st.Kind)
            {
                case FileKind.Directory:
                    e.Type = TarEntryType.Directory;
                    e.Name += "/";
                    break;
                case FileKind.Symlink:
                    e.Type = TarEntryType.Symlink;
                    e.LinkName = Posix.ReadLinkAt(dir, name);
                    break;
                case FileKind.CharDevice or FileKind.BlockDevice:
                    e.Type = st.Kind == FileKind.CharDevice ? TarEntryType.CharDevice : TarEntryType.BlockDevice;
                    e.DevMajor = st.RdevMajor;
                    e.DevMinor = st.RdevMinor;
                    break;
                case FileKind.Fifo:
                    e.Type = TarEntryType.Fifo;
                    break;
                case FileKind.Socket:
                    skipped.Add(LayerPath.Display(c.Path));
                    continue;
                default:
                    if (st.Nlink > 1)
                    {
                        if (links.TryGetValue((st.Device, st.Inode), out var first))
                        {
                            e.Type = TarEntryType.HardLink;
                            e.LinkName = first;
                            break;
                        }
                        links[(st.Device, st.Inode)] = c.Path;
                    }
                    e.Type = TarEntryType.Regular;
                    e.Size = st.Size;
                    break;
            }
            tar.WriteHeader(e);
            if (e.Type == TarEntryType.Regular)
            {
                using var fd = TreeWalker.OpenFile(dir, name, st, c.Path);
                tar.WriteFileData(fd, e.Size, LayerPath.Display(c.Path));
                size += e.Size;
            }
        }
        tar.Finish();
        return new DiffResult(size, skipped);
    }

    static List<KeyValuePair<string, byte[]>>? NullIfEmpty(List<KeyValuePair<string, byte[]>> l) => l.Count == 0 ? null : l;
}

/// <summary>What a diff carried: regular-file bytes, and paths that tar cannot hold (sockets).</summary>
public sealed record DiffResult(long Size, IReadOnlyList<string> SkippedSockets);
