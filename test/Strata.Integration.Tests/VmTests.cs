using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>What this host's kernel cannot show, checked in a VM running Debian 12's own kernel (6.1, with
/// CONFIG_XFS_QUOTA; overlayfs without the new mount API's lowerdir+): test/vm/quota.sh boots it under
/// qemu with the host's root shared read-only and runs the real strata CLI there; the kernel's dm-thin and Docker's
/// devicemapper driver make pools there that the host, which has no dm module, then reads with `strata dm`.</summary>
public sealed class VmTests(ITestOutputHelper output)
{
    static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Strata.slnx"))) return dir.FullName;
        throw new InvalidOperationException("cannot find the repository root above " + AppContext.BaseDirectory);
    }

    [X64VmFact]
    public void SizeLimitsAndTheProbeOnDebian12sKernel()
    {
        var r = Shell.Run(Path.Combine(RepoRoot(), "test", "vm", "quota.sh"));
        output.WriteLine(r.Stdout);
        output.WriteLine(r.Stderr);
        Assert.True(r.ExitCode == 0, "test/vm/quota.sh failed:\n" + string.Join("\n", r.Stdout.Split('\n').Where(l => l.StartsWith("FAIL", StringComparison.Ordinal) || l.StartsWith("quota.sh", StringComparison.Ordinal))));
        Assert.Contains("STRATA-VM-RESULT: PASS", r.Stdout);
        Assert.Contains("PASS: another 50 MiB is refused", r.Stdout);
        Assert.Contains("PASS: a new store probes overlay", r.Stdout);
        // issue 23: a pool of the kernel's own dm-thin, and Docker's devicemapper pool, read on the host without dm
        Assert.Contains("PASS: host: thin device 3 (xfs): all 1 files read as the kernel wrote them", r.Stdout);
        Assert.Contains("PASS: host: strata dm ls counts the kernel pool's blocks as thin_ls does", r.Stdout);
        Assert.Contains("PASS: host: strata dm docker mount work shows what the container wrote", r.Stdout);
        Assert.Contains("PASS: host: strata dm docker migrate imported demo:1, and strata run of it reads its files", r.Stdout);
        Assert.Contains("PASS: host: the migrated container work has the changes docker diff showed", r.Stdout);
    }
}
