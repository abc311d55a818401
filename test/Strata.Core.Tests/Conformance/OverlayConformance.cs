namespace Strata.Core.Tests.Conformance;

/// <summary>overlay on the test machine's own filesystem, mounted by the kernel.</summary>
public sealed class OverlayConformance : DriverConformance
{
    protected override string DriverName => "overlay";

    protected override bool CopyUpKeepsHardlinks => false;
}
