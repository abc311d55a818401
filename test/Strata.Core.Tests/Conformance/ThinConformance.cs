namespace Strata.Core.Tests.Conformance;

/// <summary>thin with ext4: every layer a thin device of the store's pool, attached through the pool server's FUSE
/// export and a loop device, mounted by the kernel. A 512M base keeps mkfs quick; the pool is the default sparse file.</summary>
public sealed class ThinConformance : DriverConformance
{
    protected override string DriverName => "thin";

    protected override IReadOnlyDictionary<string, string> DriverOptions => new Dictionary<string, string> { ["thin.basesize"] = "512M" };
}

/// <summary>thin with xfs (mkfs.xfs wants 300M at least).</summary>
public sealed class ThinXfsConformance : DriverConformance
{
    protected override string DriverName => "thin";

    protected override IReadOnlyDictionary<string, string> DriverOptions => new Dictionary<string, string> { ["thin.basesize"] = "512M", ["thin.fs"] = "xfs" };

    /// <summary>With xfs on the devices or not at all.</summary>
    protected override string StoreParent(Strata.Testing.TempRoot temp)
    {
        Skip.If(!Strata.Testing.Shell.Has("mkfs.xfs"), "mkfs.xfs is not installed (test.sh installs xfsprogs)");
        return temp.Path;
    }
}
