using Xunit;

namespace Strata.Testing;

/// <summary>What some tests need from the machine, checked once. Each check returns null when the machine
/// has it, or the reason it does not; tests that need it are reported by xunit as skipped with that
/// reason (never as passed).</summary>
public static class Requirements
{
    static readonly Lazy<string?> s_xfsQuota = new(() =>
    {
        if (!Shell.Has("mkfs.xfs")) return "mkfs.xfs is not installed (test.sh installs xfsprogs)";
        if (File.Exists("/proc/config.gz") && Shell.Sh("zcat /proc/config.gz | grep -q '^CONFIG_XFS_QUOTA=y'").ExitCode != 0)
            return $"this kernel ({Environment.OSVersion.Version}) is built without CONFIG_XFS_QUOTA: xfs cannot be mounted with prjquota here";
        return null;
    });

    /// <summary>xfs with project quotas (mkfs.xfs, and a kernel with CONFIG_XFS_QUOTA).</summary>
    public static string? XfsQuota => s_xfsQuota.Value;
}

/// <summary>A fact that needs xfs project quotas; skipped (with the reason) on machines without them, and skippable at run
/// time (<c>Skip.If</c>) when making the filesystem fails.</summary>
public sealed class XfsQuotaFactAttribute : SkippableFactAttribute
{
    public XfsQuotaFactAttribute()
    {
        if (Requirements.XfsQuota is { } why) Skip = why;
    }
}

/// <summary>A fact that boots a Debian x86_64 kernel under qemu (test/vm): skipped on other architectures.</summary>
public sealed class X64VmFactAttribute : FactAttribute
{
    public X64VmFactAttribute()
    {
        if (System.Runtime.InteropServices.RuntimeInformation.OSArchitecture != System.Runtime.InteropServices.Architecture.X64)
            Skip = "test/vm boots Debian's x86_64 kernel; this machine is " + System.Runtime.InteropServices.RuntimeInformation.OSArchitecture;
    }
}

/// <summary>A fact that runs a private dockerd (Debian's docker.io, which test.sh installs); skipped without it.</summary>
public sealed class DockerFactAttribute : FactAttribute
{
    public DockerFactAttribute()
    {
        if (!File.Exists("/usr/sbin/dockerd") || !File.Exists("/usr/bin/docker"))
            Skip = "dockerd is not installed (test.sh installs the Debian package docker.io)";
    }
}

/// <summary>A fact that runs thin-provisioning-tools (thin_restore, thin_check, thin_dump); skipped without them.</summary>
public sealed class ThinToolsFactAttribute : FactAttribute
{
    public ThinToolsFactAttribute()
    {
        if (!Shell.Has("thin_restore") || !Shell.Has("thin_check") || !Shell.Has("thin_dump"))
            Skip = "thin-provisioning-tools is not installed (test.sh installs it)";
    }
}

/// <summary>A fact that runs NBD clients (nbdinfo, nbdcopy from libnbd-bin; qemu-img, qemu-io from qemu-utils).</summary>
public sealed class NbdClientsFactAttribute : FactAttribute
{
    public NbdClientsFactAttribute()
    {
        foreach (var tool in new[] { "nbdinfo", "nbdcopy", "qemu-img", "qemu-io" })
            if (!Shell.Has(tool))
            {
                Skip = $"{tool} is not installed (test.sh installs libnbd-bin and qemu-utils)";
                return;
            }
    }
}

/// <summary>A fact that serves a dm-thin pool thin-provisioning-tools made to NBD clients and mounts an ext4 from it
/// (thin_restore, nbdinfo, nbdcopy, qemu-io, mkfs.ext4); skipped without them.</summary>
public sealed class DmServeFactAttribute : FactAttribute
{
    public DmServeFactAttribute()
    {
        foreach (var (tool, package) in new[] { ("thin_restore", "thin-provisioning-tools"), ("thin_dump", "thin-provisioning-tools"), ("nbdinfo", "libnbd-bin"),
                     ("nbdcopy", "libnbd-bin"), ("qemu-io", "qemu-utils"), ("mkfs.ext4", "e2fsprogs") })
            if (!Shell.Has(tool))
            {
                Skip = $"{tool} is not installed (test.sh installs {package})";
                return;
            }
    }
}
