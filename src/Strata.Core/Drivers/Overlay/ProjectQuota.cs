using Strata.Native;

namespace Strata.Core.Drivers.Overlay;

/// <summary>
/// Per-layer size limits with xfs project quotas (what moby's overlay2 does for --storage-opt size):
/// a layer's directory gets its own project id with PROJINHERIT, so its upper and work dirs and
/// everything the container writes count against that project's hard limit. Needs the store on xfs
/// mounted with prjquota (pquota); <see cref="TryOpen"/> says why not otherwise.
/// </summary>
public sealed class ProjectQuota : IDisposable
{
    readonly string _home;
    readonly FileDescriptor _homeFd;
    readonly object _lock = new();
    uint _next;

    ProjectQuota(string home, FileDescriptor homeFd)
    {
        _home = home;
        _homeFd = homeFd;
    }

    public static ProjectQuota? TryOpen(string home, out string whyNot)
    {
        string fs = FileSystems.Name(home);
        if (fs != "xfs")
        {
            whyNot = $"the store is on {fs}; size limits need xfs mounted with prjquota";
            return null;
        }
        var fd = Posix.Open(home, Posix.O_RDONLY | Posix.O_DIRECTORY);
        int err;
        try
        {
            // reading the store's own project is harmless and fails exactly when project quotas are off
            // (ENOENT only says that project has no quota record yet)
            err = Posix.TryGetProjectQuota(fd, Posix.GetFsXattr(fd, home).ProjectId, out _);
        }
        catch (StrataException ex)
        {
            fd.Dispose();
            whyNot = $"project ids cannot be read here ({ex.Message})";
            return null;
        }
        if (err is not 0 and not Errno.ENOENT)
        {
            fd.Dispose();
            // xfs answers ENOSYS or ESRCH both when quotas are off and when the kernel has none: the mount says which
            whyNot = !MountedWithProjectQuota(home)
                ? "project quotas are not enabled on this xfs (mount it with -o prjquota; the kernel needs CONFIG_XFS_QUOTA)"
                : err == Errno.ENOSYS
                    ? "this kernel cannot set quotas through quotactl_fd (Linux 5.14+)"
                    : $"project quotas cannot be read here ({ErrnoException.Describe(err)})";
            return null;
        }
        whyNot = "";
        return new ProjectQuota(home, fd);
    }

    static bool MountedWithProjectQuota(string path)
    {
        var mount = MountTable.Read().Where(m => path == m.MountPoint || path.StartsWith(m.MountPoint.TrimEnd('/') + "/", StringComparison.Ordinal))
            .MaxBy(m => m.MountPoint.Length);
        return mount is not null && mount.Options.Split(',').Any(o => o is "prjquota" or "pquota" or "pqnoenforce");
    }

    /// <summary>Gives <paramref name="layerDir"/> (still empty) a fresh project limited to <paramref name="bytes"/>.</summary>
    public uint Assign(string layerDir, long bytes)
    {
        uint id;
        lock (_lock)
        {
            if (_next == 0) _next = HighestInUse() + 1;
            id = _next++;
        }
        using var dir = Posix.Open(layerDir, Posix.O_RDONLY | Posix.O_DIRECTORY);
        Posix.SetProjectId(dir, id, layerDir);
        int err = Posix.TrySetProjectLimit(_homeFd, id, (ulong)bytes);
        if (err != 0) throw new ErrnoException(err, "set project quota", layerDir);
        return id;
    }

    /// <summary>Lifts the limit of the project <paramref name="layerDir"/> belongs to, if it has its own.</summary>
    public void Release(string layerDir)
    {
        if (!Posix.TryLstat(layerDir, out var st) || !st.IsDirectory) return;
        using var dir = Posix.Open(layerDir, Posix.O_RDONLY | Posix.O_DIRECTORY);
        uint id = Posix.GetFsXattr(dir, layerDir).ProjectId;
        if (id != 0 && id != Posix.GetFsXattr(_homeFd, _home).ProjectId) Posix.TrySetProjectLimit(_homeFd, id, 0);
    }

    /// <summary>The limit in bytes of the project <paramref name="layerDir"/> belongs to (0: none).</summary>
    public long LimitOf(string layerDir)
    {
        using var dir = Posix.Open(layerDir, Posix.O_RDONLY | Posix.O_DIRECTORY);
        uint id = Posix.GetFsXattr(dir, layerDir).ProjectId;
        return id != 0 && Posix.TryGetProjectQuota(_homeFd, id, out var q) == 0 ? (long)q.BlockHardLimit * 512 : 0;
    }

    uint HighestInUse()
    {
        uint max = Posix.GetFsXattr(_homeFd, _home).ProjectId;
        foreach (var e in Posix.ReadDir(_homeFd, _home))
        {
            if (e.Type != Posix.DT_DIR) continue;
            try
            {
                using var d = Posix.OpenAt(_homeFd, e.Name, Posix.O_RDONLY | Posix.O_DIRECTORY | Posix.O_NOFOLLOW);
                max = Math.Max(max, Posix.GetFsXattr(d, e.Name).ProjectId);
            }
            catch (StrataException)
            {
                // a layer being removed meanwhile
            }
        }
        return max;
    }

    public void Dispose() => _homeFd.Dispose();
}
