// Overlay's snapshots in the chain (ILayerChains): a layer's upper directory frozen into a new layer below it, a layer
// put back over one of those with no changes, one folded into the layers over it; each made of renames, restartable.
using System.Text;
using Strata.Archive;
using Strata.Native;

namespace Strata.Core.Drivers.Overlay;

public sealed partial class OverlayDriver
{
    /// <summary>Kernel overlayfs, mounting with redirect_dir, index and metacopy off, only: fuse-overlayfs keeps state of
    /// its own beside the upper directories (the probe's marker files), and its trees were not found the same once a
    /// snapshot's were copied into another layer; with those features on, an upper directory alone would not say what
    /// the layer changed, which the fold reads it for (the probe's native diff is the same test).</summary>
    public string? WhyNoChains
    {
        get
        {
            if (_mountProgram is { Length: > 0 } configured)
                return $"container snapshots on overlay need kernel overlayfs, not {configured} (overlay.mount_program)";
            var caps = Capabilities;
            if (!caps.Supported) return $"overlay cannot mount here: {caps.WhyNot}";
            if (caps.MountProgram is { Length: > 0 } fallback)
                return $"container snapshots on overlay need kernel overlayfs; this store mounts with {fallback}";
            return caps.NativeDiff ? null : $"container snapshots on overlay need upper directories that say all a layer changed, which they do not here ({caps.NativeDiffNote})";
        }
    }

    public void CheckChainLength(int layers)
    {
        if (layers > Mounter.MaxOverlayLayers)
            throw StrataException.Unsupported($"a layer over {layers} layers is more than overlayfs mounts ({Mounter.MaxOverlayLayers}); remove a snapshot first");
    }

    /// <summary>The upper directory itself changes hands, by rename (O(1)): the new layer's directory is made beside it
    /// (its work dir, its lower file: the layer's chain), the layer's diff/ moved into it, a new empty diff/ made for
    /// the layer (the old root's attributes) and its lower file pointed at the new layer. Which steps are done is read
    /// from what exists, so a second call finishes a first one cut short (in between, the layer has no diff/ or an
    /// empty one over its old chain: the store keeps it busy until finished).</summary>
    public void Freeze(string id, string target)
    {
        string to = LayerDir(target);
        if (!Posix.TryLstat(to, out _))
        {
            var chain = LowerChain(id);
            string staging = Path.Combine(_tmp, $"overlay-{target}.{Guid.NewGuid():N}");
            Posix.MkdirAt(FileDescriptor.Cwd, staging, 0x1C9 /* 0711 */);
            try
            {
                if (chain.Count > 0) MakeMountDirs(staging, chain);
                Posix.FsyncDirectory(staging);
                Posix.Rename(staging, to, Posix.RENAME_NOREPLACE);
            }
            catch
            {
                RemoveTree(staging);
                throw;
            }
        }
        if (!Posix.TryLstat(DiffDir(target), out _)) Posix.Rename(DiffDir(id), DiffDir(target));
        MakeLink(Path.Combine(_links, ShortName(target)), target);
        if (!Posix.TryLstat(DiffDir(id), out _)) MakeEmptyDiff(id, DiffDir(target));
        PutOver(id, target);
        Posix.SyncFileSystem(_home); // the renames, durable before the store records the new chain
    }

    /// <summary>The layer's diff/ goes to tmp/ (deleted there, or by the next open's sweep), an empty one takes its place
    /// with the new parent's root attributes, and its lower file names the new parent's chain.</summary>
    public void Reset(string id, string parent)
    {
        string trash = Path.Combine(_tmp, $"overlay-{id}.rm.{Guid.NewGuid():N}");
        bool dropped = Posix.TryLstat(DiffDir(id), out _);
        if (dropped) Posix.Rename(DiffDir(id), trash);
        MakeEmptyDiff(id, DiffDir(parent));
        PutOver(id, parent);
        Posix.SyncFileSystem(_home);
        if (!dropped) return;
        try
        {
            FileTree.Remove(trash); // as long as `rm -rf` of the dropped changes
        }
        catch (StrataException)
        {
            // the rollback is done; what is left in tmp/ goes at the next open
        }
    }

    /// <summary><see cref="UpperFold"/> of the layer's diff/ into the child's (copies staged in the child's fold/), then
    /// the filesystem synced: the renames are durable before the store records the child over the layer's parent.</summary>
    public void Fold(string id, string child, bool move)
    {
        UpperFold.Run(DiffDir(id), DiffDir(child), move, Path.Combine(LayerDir(child), "fold"));
        Posix.SyncFileSystem(_home);
    }

    public void Rebase(string id, string parent) => PutOver(id, parent);

    /// <summary>Writes the layer's lower file as <paramref name="parent"/>'s chain under it (atomically and durably), with
    /// the work and merged dirs a layer over others mounts with.</summary>
    void PutOver(string id, string parent)
    {
        var chain = LowerChain(parent).Prepend("l/" + ShortName(parent)).ToList();
        if (chain.Count > Mounter.MaxOverlayLayers)
            throw StrataException.Unsupported($"layer {id} would sit on {chain.Count} layers; overlayfs mounts at most {Mounter.MaxOverlayLayers}");
        MakeMountDirs(LayerDir(id), chain);
    }

    /// <summary>work/, merged/ (when missing) and the lower file naming <paramref name="chain"/> in a layer's directory.</summary>
    static void MakeMountDirs(string dir, List<string> chain)
    {
        foreach (var sub in new[] { "work", "merged" })
        {
            int err = Posix.TryMkdirAt(FileDescriptor.Cwd, Path.Combine(dir, sub), Modes.OwnerOnly);
            if (err != 0 && err != Errno.EEXIST) throw new ErrnoException(err, "mkdir", Path.Combine(dir, sub));
        }
        string lower = Path.Combine(dir, "lower");
        byte[] text = Encoding.ASCII.GetBytes(string.Join(':', chain));
        if (Posix.TryLstat(lower, out _) && Posix.ReadFile(lower).AsSpan().SequenceEqual(text)) return;
        AtomicFile.Write(lower, text);
    }

    /// <summary>An empty diff/ for a layer whose tree starts as <paramref name="like"/>'s top: that upper root's owner,
    /// mode, times and xattrs (overlay's own excepted), made under another name and renamed in whole.</summary>
    void MakeEmptyDiff(string id, string like)
    {
        string fresh = Path.Combine(LayerDir(id), "diff.new");
        if (Posix.TryLstat(fresh, out _)) FileTree.Remove(fresh);
        Posix.MkdirAt(FileDescriptor.Cwd, fresh, Modes.OwnerOnly);
        using (var src = Posix.Open(like, Posix.O_RDONLY | Posix.O_DIRECTORY))
        using (var dst = Posix.Open(fresh, Posix.O_RDONLY | Posix.O_DIRECTORY))
        {
            var st = Posix.Fstat(src);
            Posix.SetOwnerAndMode(dst, st.Uid, st.Gid, st.Permissions, fresh);
            foreach (var (k, v) in Posix.FgetXattrs(src, like))
                if (!k.StartsWith("trusted.overlay.", StringComparison.Ordinal)) Posix.FsetXattr(dst, k, v, fresh);
            Posix.Futimes(dst, st.Atime, st.Mtime, fresh);
            Posix.Fsync(dst, fresh);
        }
        Posix.Rename(fresh, DiffDir(id));
        Posix.FsyncDirectory(LayerDir(id));
    }
}
