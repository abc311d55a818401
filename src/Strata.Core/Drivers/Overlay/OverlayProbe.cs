using Strata.Archive;
using Strata.Native;

namespace Strata.Core.Drivers.Overlay;

/// <summary>What overlay can do on this kernel and this backing filesystem.</summary>
public sealed record OverlayCapabilities
{
    public bool Supported { get; init; }
    /// <summary>Why overlay cannot be used here (empty when it can).</summary>
    public string WhyNot { get; init; } = "";
    public string BackingFilesystem { get; init; } = "";
    public bool SupportsDType { get; init; }
    /// <summary>The FUSE program that mounts overlays (fuse-overlayfs), or null for the kernel's overlayfs.</summary>
    public string? MountProgram { get; init; }
    /// <summary>Options every mount gets to keep the upper dir diffable (redirect_dir, index, metacopy off).</summary>
    public IReadOnlyList<string> FeatureOptions { get; init; } = [];
    /// <summary>Whether diffs may be read from the upper dir alone.</summary>
    public bool NativeDiff { get; init; }
    /// <summary>Why the generic diff is used instead (empty when native).</summary>
    public string NativeDiffNote { get; init; } = "";
}

/// <summary>
/// The start-up probe (moby's overlay2 does the same checks): in a scratch directory on the store's
/// filesystem, check d_type, mount a small overlay the way layers will be mounted, make a deletion,
/// an opaque directory, a directory rename and a metadata-only change through it, and look at what
/// the kernel wrote to the upper dir. Native diff is on only when the upper dir records exactly
/// whiteouts and opaque dirs, nothing redirected or metadata-only.
/// </summary>
public static class OverlayProbe
{
    /// <summary>The options that keep upper dirs self-contained; passed on every kernel mount.</summary>
    public static readonly string[] DiffableOptions = ["redirect_dir=off", "index=off", "metacopy=off"];

    public static OverlayCapabilities Run(string scratchParent, string? mountProgram) => Run(scratchParent, mountProgram, KernelMount, FindOnPath);

    /// <summary>The probe with its two outside facts injectable (tests make the kernel refuse, or hide programs).</summary>
    internal static OverlayCapabilities Run(string scratchParent, string? mountProgram, Func<string[], string, int> kernelMount, Func<string, string?> findProgram)
    {
        string fs = FileSystems.Name(scratchParent);
        var caps = new OverlayCapabilities { BackingFilesystem = fs };
        if (fs is "overlayfs")
            return caps with { WhyNot = "the store is itself on overlayfs, which cannot be an upper layer; put the store on ext4, xfs or btrfs" };
        string dir = Path.Combine(scratchParent, $"overlay-probe.{Guid.NewGuid():N}");
        Posix.MkdirAt(FileDescriptor.Cwd, dir, Modes.OwnerOnly);
        try
        {
            string lower = Path.Combine(dir, "lower"), upper = Path.Combine(dir, "upper"),
                work = Path.Combine(dir, "work"), merged = Path.Combine(dir, "merged");
            foreach (var d in new[] { lower, upper, work, merged }) Posix.MkdirAt(FileDescriptor.Cwd, d, 0x1ED);
            File.WriteAllText(Path.Combine(lower, "deleted"), "x");
            File.WriteAllText(Path.Combine(lower, "chmodded"), "x");
            Directory.CreateDirectory(Path.Combine(lower, "renamed"));
            Directory.CreateDirectory(Path.Combine(lower, "opaque"));
            File.WriteAllText(Path.Combine(lower, "renamed", "f"), "x");
            File.WriteAllText(Path.Combine(lower, "opaque", "f"), "x");
            caps = caps with { SupportsDType = Posix.ReadDir(lower).All(e => e.Type != 0) };
            if (!caps.SupportsDType)
                return caps with { WhyNot = $"the backing filesystem ({fs}) does not report file types in directory entries (d_type); for xfs, format it with ftype=1" };

            var (mounted, why) = TryMount(lower, upper, work, merged, mountProgram, kernelMount, findProgram, out var options);
            if (mounted is null) return caps with { WhyNot = why };
            caps = caps with { Supported = true, MountProgram = mounted, FeatureOptions = options };
            string note;
            try
            {
                note = Exercise(merged, upper, indexOff: options.Contains("index=off"), kernel: mounted.Length == 0);
            }
            finally
            {
                Mounter.Unmount(merged, detach: true);
            }
            return caps with { NativeDiff = note.Length == 0, NativeDiffNote = note };
        }
        finally
        {
            FileTree.Remove(dir);
        }
    }

    /// <summary>Mounts the scratch overlay: the kernel with the diffable options, the kernel without them
    /// (kernels that predate them), or — when the kernel refuses (EPERM) or a program is configured —
    /// the FUSE program. Returns the program used ("" for the kernel), or null and why not.</summary>
    static (string? Program, string WhyNot) TryMount(string lower, string upper, string work, string merged, string? program,
        Func<string[], string, int> kernelMount, Func<string, string?> findProgram, out string[] options)
    {
        string[] dirs = [$"lowerdir={lower}", $"upperdir={upper}", $"workdir={work}"];
        options = [];
        if (program is null)
        {
            options = DiffableOptions;
            int err = kernelMount([.. dirs, .. options], merged);
            if (err == Errno.EINVAL)
            {
                options = [];
                err = kernelMount(dirs, merged);
            }
            if (err == 0) return ("", "");
            program = err is Errno.EPERM or Errno.EACCES ? findProgram("fuse-overlayfs") : null;
            if (program is null)
                return (null, err == Errno.ENODEV
                    ? "this kernel has no overlay filesystem (modprobe overlay)"
                    : $"the kernel refused an overlay mount ({ErrnoException.Describe(err)}) and fuse-overlayfs is not installed");
        }
        options = []; // the kernel's options mean nothing to the FUSE program
        try
        {
            Mounter.Mount(new MountSpec("fuse-overlayfs", program, dirs) { Target = merged });
            return (program, "");
        }
        catch (StrataException ex)
        {
            return (null, $"mounting through {program} failed: {ex.Message}");
        }
    }

    static int KernelMount(string[] options, string target)
    {
        try
        {
            Mounter.Mount(new MountSpec("overlay", "overlay", options) { Target = target });
            return 0;
        }
        catch (ErrnoException ex)
        {
            return ex.Errno;
        }
    }

    /// <summary>Makes the changes whose upper-dir encoding native diff relies on; returns what is wrong ("" if nothing).</summary>
    static string Exercise(string merged, string upper, bool indexOff, bool kernel)
    {
        File.Delete(Path.Combine(merged, "deleted"));
        if (!Posix.TryLstat(Path.Combine(upper, "deleted"), out var wh) || wh.Kind != FileKind.CharDevice || wh.RdevMajor != 0 || wh.RdevMinor != 0)
            return "deletions are not recorded as 0/0 character devices in the upper dir";
        Directory.Delete(Path.Combine(merged, "opaque"), recursive: true);
        Directory.CreateDirectory(Path.Combine(merged, "opaque"));
        if (!Posix.LgetXattrs(Path.Combine(upper, "opaque")).Any(x => x.Key == Whiteouts.OverlayOpaqueXattr))
            return "re-created directories are not marked with trusted.overlay.opaque";
        if (Posix.ReadDir(Path.Combine(upper, "opaque")).Count > 0)
            return "the mount keeps marker files of its own in upper directories (fuse-overlayfs writes .wh..wh..opq)";
        int err = Posix.TryRenameAt(FileDescriptor.Cwd, Path.Combine(merged, "renamed"), FileDescriptor.Cwd, Path.Combine(merged, "renamed2"));
        if (err == 0 && Posix.LgetXattrs(Path.Combine(upper, "renamed2")).Any(x => x.Key == "trusted.overlay.redirect"))
            return "the kernel records directory renames as redirects (redirect_dir is forced on)";
        Posix.ChmodAt(FileDescriptor.Cwd, Path.Combine(merged, "chmodded"), Modes.OwnerOnly);
        if (Posix.LgetXattrs(Path.Combine(upper, "chmodded")).Any(x => x.Key == "trusted.overlay.metacopy"))
            return "the kernel copies up metadata only (metacopy is forced on)";
        // an index keeps copied-up hardlinks joined, so the upper dir alone no longer says which names changed
        const string indexParameter = "/sys/module/overlay/parameters/index";
        if (kernel && !indexOff && File.Exists(indexParameter) && File.ReadAllText(indexParameter).Trim() == "Y")
            return "the kernel indexes copied-up hardlinks (index is on and cannot be turned off)";
        return "";
    }

    static string? FindOnPath(string program)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, program);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}
