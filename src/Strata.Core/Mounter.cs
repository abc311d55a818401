using Strata.Native;

namespace Strata.Core;

/// <summary>
/// Performs the mounts drivers describe (<see cref="MountSpec"/>) and undoes them. Knows three kinds:
/// <list type="bullet">
/// <item><c>overlay</c>: kernel overlayfs. With the new mount API and <c>lowerdir+</c> (Linux 6.8+) each
/// lower layer is passed on its own, so a chain is limited only by overlayfs itself (500 layers);
/// otherwise mount(2) takes all options in one page (4095 bytes), and a chain that does not fit
/// is refused with a message saying so.</item>
/// <item><c>fuse-overlayfs</c> (any <c>fuse…</c> type): runs the mount program named by
/// <see cref="MountSpec.Source"/> with <c>-o options target</c>, as podman does.</item>
/// </list>
/// </summary>
public static class Mounter
{
    /// <summary>overlayfs's limit on lower layers (OVL_MAX_STACK).</summary>
    public const int MaxOverlayLayers = 500;

    /// <summary>The most mount(2) can carry in its data page (the kernel copies one page, NUL included).</summary>
    public const int MaxMountData = 4095;

    static readonly Lazy<bool> s_lowerdirAppend = new(ProbeLowerdirAppend);

    /// <summary>Whether this kernel takes overlay lower layers one at a time (fsconfig "lowerdir+", Linux 6.8+).</summary>
    public static bool CanAppendLowerdirs => s_lowerdirAppend.Value;

    /// <summary>Mounts <paramref name="spec"/> at its target.</summary>
    public static void Mount(MountSpec spec, bool legacyOverlay = false)
    {
        string target = spec.Target ?? throw new ArgumentException("the mount has no target", nameof(spec));
        if (spec.Type == "overlay")
        {
            if (CanAppendLowerdirs && !legacyOverlay) MountOverlay(spec, target);
            else MountOverlayLegacy(spec, target);
        }
        else if (spec.Type.StartsWith("fuse", StringComparison.Ordinal)) RunMountProgram(spec, target);
        else if (spec.Source.StartsWith("/dev/", StringComparison.Ordinal)) MountBlockDevice(spec, target);
        else throw StrataException.Unsupported($"cannot perform a '{spec.Type}' mount of {spec.Source}");
    }

    /// <summary>A filesystem on a block device (the thin driver's ext4 and xfs), with mount(2).</summary>
    static void MountBlockDevice(MountSpec spec, string target)
    {
        string data = string.Join(',', spec.Options);
        if (!Fits(data)) throw StrataException.Invalid($"mount options for {target} are longer than {MaxMountData} bytes");
        int err = Posix.TryMount(spec.Source, target, spec.Type, 0, data.Length > 0 ? data : null);
        if (err != 0) throw new ErrnoException(err, $"mount {spec.Type} {spec.Source}", target);
    }

    /// <summary>Unmounts <paramref name="target"/>. Without <paramref name="detach"/> a mount that processes use is
    /// refused (InUse, naming them) and stays as it is; with it the mount is detached lazily.</summary>
    public static void Unmount(string target, bool detach = false)
    {
        int err = Posix.TryUnmount(target, detach ? Posix.MNT_DETACH : 0);
        // a busy mount is often only briefly so: a process forked elsewhere in this program holds copies of
        // our descriptors until it execs; give such races a moment before blaming anyone
        for (int wait = 5; err == Errno.EBUSY && wait <= 640; wait *= 2)
        {
            Thread.Sleep(wait);
            err = Posix.TryUnmount(target, 0);
        }
        if (err == 0 || err == Errno.EINVAL && !MountTable.IsMountPoint(target)) return; // EINVAL: not mounted
        if (err == Errno.EBUSY)
        {
            string users = Holders.Describe(target);
            if (users.Length > 0) throw StrataException.InUse($"{target} is busy: in use by {users}; stop those processes first");
            // nothing this host can see uses it: let the kernel finish the unmount when the last reference goes
            err = Posix.TryUnmount(target, Posix.MNT_DETACH);
            if (err == 0) return;
        }
        throw new ErrnoException(err, "umount", target);
    }

    static void MountOverlay(MountSpec spec, string target)
    {
        int err = Posix.TryFsOpen("overlay", out var fs);
        if (err != 0) throw new ErrnoException(err, "fsopen overlay", target);
        var held = new List<FileDescriptor>();
        try
        {
            Set(fs!, "source", spec.Source, target);
            foreach (var option in spec.Options)
            {
                int eq = option.IndexOf('=');
                string key = eq < 0 ? option : option[..eq], value = eq < 0 ? "" : option[(eq + 1)..];
                if (key == "lowerdir")
                    foreach (var lower in value.Split(':')) Set(fs!, "lowerdir+", Short(lower, held), target);
                else if (eq < 0) SetFlag(fs!, key, target);
                else if (key is "upperdir" or "workdir") Set(fs!, key, Short(value, held), target);
                else Set(fs!, key, value, target);
            }
            err = Posix.TryFsCreate(fs!);
            if (err != 0) throw Failed(fs!, err, target);
            err = Posix.TryFsMountAt(fs!, target);
            if (err != 0) throw new ErrnoException(err, "move_mount overlay", target);
        }
        finally
        {
            fs!.Dispose();
            foreach (var fd in held) fd.Dispose();
        }
    }

    /// <summary>fsconfig takes string values of at most 255 bytes; a longer directory path is passed as the
    /// /proc/self/fd link of a descriptor held until the mount is made (overlayfs resolves it at once).</summary>
    static string Short(string path, List<FileDescriptor> held)
    {
        if (System.Text.Encoding.UTF8.GetByteCount(path) < 256) return path;
        var fd = Posix.Open(path, Posix.O_PATH | Posix.O_DIRECTORY);
        held.Add(fd);
        return $"/proc/self/fd/{fd.Value}";
    }

    static void Set(FileDescriptor fs, string key, string value, string target)
    {
        int err = Posix.TryFsConfigString(fs, key, value);
        if (err != 0) throw Failed(fs, err, target, $"{key}={value}");
    }

    static void SetFlag(FileDescriptor fs, string key, string target)
    {
        int err = Posix.TryFsConfigFlag(fs, key);
        if (err != 0) throw Failed(fs, err, target, key);
    }

    /// <summary>The kernel's own explanation (read back from the filesystem context) beats a bare errno.</summary>
    static ErrnoException Failed(FileDescriptor fs, int err, string target, string? option = null) =>
        new(err, option is null ? "mount overlay" : $"mount overlay (option {option})", target, Posix.FsContextLog(fs));

    /// <summary>mount(2) with all options in one page. When absolute lower paths do not fit but the lowers share a
    /// directory (overlay/l), they are given relative to its parent instead, the way moby's overlay2 does:
    /// mount(2) resolves relative paths against the caller's working directory, so util-linux mount(8)
    /// runs in that directory (a process of its own: changing this process's directory would race its other threads).</summary>
    static void MountOverlayLegacy(MountSpec spec, string target)
    {
        string data = string.Join(',', spec.Options);
        if (Fits(data))
        {
            int err = Posix.TryMount(spec.Source, target, "overlay", 0, data);
            if (err != 0) throw new ErrnoException(err, "mount overlay", target);
            return;
        }
        var lowers = spec.Options.FirstOrDefault(o => o.StartsWith("lowerdir=", StringComparison.Ordinal))?["lowerdir=".Length..].Split(':') ?? [];
        string? shared = lowers.Length > 0 ? Path.GetDirectoryName(lowers[0]) : null;
        if (shared is not null && Path.GetDirectoryName(shared) is { } cwd && lowers.All(l => Path.GetDirectoryName(l) == shared))
        {
            string prefix = cwd.TrimEnd('/') + "/";
            string relative = string.Join(',', spec.Options.Select(o => o.StartsWith("lowerdir=", StringComparison.Ordinal)
                ? "lowerdir=" + string.Join(':', lowers.Select(l => l[prefix.Length..]))
                : o));
            if (Fits(relative))
            {
                ExternalTool.Run("mount", ["-n", "-t", "overlay", "-o", relative, spec.Source, target], cwd);
                return;
            }
        }
        throw StrataException.Unsupported(
            $"a chain of {lowers.Length} layers does not fit in one overlay mount on this kernel (mount options are limited to {MaxMountData} bytes; Linux 6.8+ mounts up to {MaxOverlayLayers} layers); commit the container to a new image with fewer layers");
    }

    static bool Fits(string data) => System.Text.Encoding.UTF8.GetByteCount(data) <= MaxMountData;

    static void RunMountProgram(MountSpec spec, string target)
    {
        var p = ExternalTool.Start(spec.Source, ["-o", string.Join(',', spec.Options), target], ExternalTool.Redirect.Input | ExternalTool.Redirect.Error,
            why => StrataException.Unsupported($"cannot run mount program {spec.Source}: {why}"));
        using (p)
        {
            var stderr = new System.Text.StringBuilder();
            p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
            p.BeginErrorReadLine();
            p.StandardInput.Close();
            // the program daemonizes once the mount is up; its daemon may keep stderr open, so wait for the process only
            if (!p.WaitForExit(TimeSpan.FromSeconds(60)))
            {
                p.Kill(entireProcessTree: true);
                Posix.TryUnmount(target, Posix.MNT_DETACH); // in case its daemon had mounted already
                throw new StrataException(ErrorKind.Io, $"{spec.Source} did not finish mounting {target} within 60 s");
            }
            if (p.ExitCode != 0)
            {
                string why;
                lock (stderr) why = stderr.ToString().Trim().Replace('\n', ' ');
                throw new StrataException(ErrorKind.Io, $"{Path.GetFileName(spec.Source)} failed to mount {target} (exit {p.ExitCode}){(why.Length > 0 ? $": {why}" : "")}");
            }
        }
    }

    /// <summary>Before Linux 6.5 overlayfs has no mount-API parser of its own: the kernel's legacy adapter takes
    /// any key and only fails at create time. So first check that an unknown key is refused, then that
    /// "lowerdir+" is not (found by booting Debian 12's 6.1 kernel in test/vm).</summary>
    static bool ProbeLowerdirAppend()
    {
        if (Posix.TryFsOpen("overlay", out var fs) != 0) return false;
        using (fs)
            if (Posix.TryFsConfigString(fs!, "strata-probe-no-such-option", "x") == 0) return false;
        if (Posix.TryFsOpen("overlay", out fs) != 0) return false;
        using (fs) return Posix.TryFsConfigString(fs!, "lowerdir+", "/") == 0;
    }
}
