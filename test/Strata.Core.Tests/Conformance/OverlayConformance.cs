namespace Strata.Core.Tests.Conformance;

/// <summary>overlay on the test machine's own filesystem, mounted by the kernel.</summary>
public sealed class OverlayConformance : DriverConformance
{
    protected override string DriverName => "overlay";

    protected override bool CopyUpKeepsHardlinks => false;
}

/// <summary>overlay mounted through fuse-overlayfs (the rootless fallback podman uses), forced with the
/// overlay.mount_program option since the kernel does not refuse root. test.sh installs it. Its upper
/// dirs carry marker files of its own, so the probe turns native diff off and diffs compare trees.</summary>
public sealed class OverlayFuseConformance : DriverConformance
{
    public const string Program = "/usr/bin/fuse-overlayfs";

    protected override string DriverName => "overlay";

    /// <summary>fuse-overlayfs copies a hardlinked file up with all its names.</summary>
    protected override bool CopyUpKeepsHardlinks => true;

    protected override IReadOnlyDictionary<string, string> DriverOptions => File.Exists(Program)
        ? new Dictionary<string, string> { ["overlay.mount_program"] = Program }
        : throw new InvalidOperationException($"{Program} is missing: install the Debian package fuse-overlayfs (test.sh does)");

    [Fact]
    public void DiffsAreGenericUnderFuseOverlayfs()
    {
        var status = Store.Status().ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal($"{Program} (FUSE)", status["Mount"]);
        Assert.StartsWith("false (the mount keeps marker files of its own", status["Native Overlay Diff"]);
        Store.Create("base", null);
        Store.Create("c", "base", LayerKind.ReadWrite);
        Assert.StartsWith(Program, Store.Driver.Mount("c").Source);
        string merged = Store.Mount("c");
        try
        {
            Assert.Contains(Strata.Native.MountTable.Read(), m => m.MountPoint == merged && m.Type.StartsWith("fuse", StringComparison.Ordinal));
        }
        finally
        {
            Store.Unmount("c");
        }
        Assert.False(Strata.Native.MountTable.IsMountPoint(merged));
    }
}

/// <summary>overlay with its upper dirs on xfs (reflink=1, where copy-up clones instead of copying).</summary>
public sealed class OverlayOnXfsConformance(XfsReflinkFixture fixture, Xunit.Abstractions.ITestOutputHelper output) : DriverConformance, IClassFixture<XfsReflinkFixture>
{
    protected override string DriverName => "overlay";

    protected override bool CopyUpKeepsHardlinks => false;

    /// <summary>On the xfs or not at all: a class named for xfs never runs on the machine's own filesystem instead.</summary>
    protected override string StoreParent(Strata.Testing.TempRoot temp)
    {
        Skip.If(fixture.Fs is null, $"no xfs with reflink=1 here: {fixture.WhyNot}");
        output.WriteLine($"on xfs at {fixture.Fs!.MountPoint}");
        return fixture.Fs.MountPoint;
    }

    [SkippableFact]
    public void RunsOnXfs()
    {
        Assert.Contains(Store.Status(), p => p.Key == "Backing Filesystem" && p.Value == "xfs");
    }
}
