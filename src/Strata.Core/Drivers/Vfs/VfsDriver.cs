using Strata.Archive;
using Strata.Native;

namespace Strata.Core.Drivers.Vfs;

/// <summary>
/// The portable driver (Docker's vfs): every layer is a full copy of its parent.
/// On-disk layout under the store root:
/// <code>
/// vfs/&lt;id&gt;/        the layer's tree, whole
/// tmp/vfs-&lt;id&gt;.*    copies being made, and trees being deleted (swept at open)
/// </code>
/// Copies are reflinks where the filesystem supports them (btrfs, xfs with reflink=1), which
/// makes a layer cost metadata only; Docker's vfs always copies data.
/// </summary>
public sealed class VfsDriver : IDriver, ILayerSnapshots
{
    readonly string _home;
    readonly string _tmp;
    readonly Lazy<bool> _reflink;

    public VfsDriver(string root, IReadOnlyDictionary<string, string> options)
    {
        DriverOptions.RefuseAll("vfs", options);
        _home = Path.Combine(root, "vfs");
        _tmp = Path.Combine(root, "tmp");
        LayerStore.MakeDir(_home, Modes.OwnerOnly);
        LayerStore.MakeDir(_tmp, Modes.OwnerOnly);
        _reflink = new Lazy<bool>(ProbeReflink);
    }

    public string Name => "vfs";

    public bool SupportsReflink => _reflink.Value;

    string Dir(string id) => Path.Combine(_home, id);

    public void Create(string id, string? parent, CreateOptions options)
    {
        if (options.StorageOptions.Count > 0)
            throw StrataException.Unsupported($"vfs does not support storage options ({string.Join(", ", options.StorageOptions.Keys)})");
        string staging = Path.Combine(_tmp, $"vfs-{id}.{Guid.NewGuid():N}");
        Posix.MkdirAt(FileDescriptor.Cwd, staging, 0x1ED /* 0755 */);
        try
        {
            if (parent is not null)
            {
                new TreeCopy().Copy(Dir(parent), staging);
                Posix.SyncFileSystem(staging); // the copy must be on disk before the store records the layer
            }
            else Posix.ChmodAt(FileDescriptor.Cwd, staging, 0x1ED);
            Posix.Rename(staging, Dir(id), Posix.RENAME_NOREPLACE);
            Posix.FsyncDirectory(_home); // the rename must not depend on another directory's fsync
        }
        catch
        {
            FileTree.Remove(staging);
            throw;
        }
    }

    /// <summary>A copy of the source's directory (reflinked where the filesystem can), as a child's.</summary>
    public void CopyLayer(string source, string target) => Create(target, source, new CreateOptions(LayerKind.ReadOnly, new Dictionary<string, string>()));

    /// <summary>A copy of the source made in tmp/ and swapped with the target in one rename (RENAME_EXCHANGE), then the
    /// old tree removed: a crash leaves the target as it was or restored, and leftovers in tmp/ that the store sweeps.</summary>
    public void RestoreLayer(string target, string source)
    {
        string staging = Path.Combine(_tmp, $"vfs-{target}.{Guid.NewGuid():N}");
        Posix.MkdirAt(FileDescriptor.Cwd, staging, 0x1ED);
        try
        {
            new TreeCopy().Copy(Dir(source), staging);
            Posix.SyncFileSystem(staging);
            Posix.Rename(staging, Dir(target), Posix.RENAME_EXCHANGE);
            Posix.FsyncDirectory(_home);
        }
        finally
        {
            FileTree.Remove(staging); // the copy when it failed, the old tree when it did not
        }
    }

    public void Remove(string id)
    {
        string dir = Dir(id);
        if (!Posix.TryLstat(dir, out _)) return;
        string doomed = Path.Combine(_tmp, $"vfs-{id}.rm.{Guid.NewGuid():N}");
        Posix.Rename(dir, doomed);
        FileTree.Remove(doomed);
    }

    public bool Exists(string id) => Posix.TryLstat(Dir(id), out var st) && st.IsDirectory;

    public MountSpec Mount(string id) => new("bind", Dir(id), []);

    public bool OwnsMountPoint(string path, out string? layerId)
    {
        layerId = null;
        return false;
    }

    public IReadOnlyCollection<string> List() =>
        Posix.ReadDir(_home).Select(e => e.Name).ToList();

    public IReadOnlyList<StatusField> Status() =>
    [
        new("Backing Filesystem", FileSystems.Name(_home)),
        new("Reflink Copies", SupportsReflink ? "yes" : "no (full copies)"),
    ];

    public IReadOnlyDictionary<string, string> Metadata(string id) => new Dictionary<string, string> { ["Dir"] = Dir(id) };

    public void Cleanup() { }

    public IDiffer Differ(IDiffer generic) => generic;

    public void Dispose() { }

    bool ProbeReflink()
    {
        string a = Path.Combine(_tmp, $"reflink-probe.{Guid.NewGuid():N}"), b = a + ".clone";
        try
        {
            File.WriteAllBytes(a, new byte[4096]);
            using var s = Posix.Open(a, Posix.O_RDONLY);
            using var d = Posix.Open(b, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL, 0x180);
            return Posix.TryClone(d, s) == 0;
        }
        finally
        {
            File.Delete(a);
            File.Delete(b);
        }
    }
}
