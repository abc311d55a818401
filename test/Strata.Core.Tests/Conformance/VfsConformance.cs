using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Core.Tests.Conformance;

/// <summary>vfs on the test machine's own filesystem (full copies unless it can reflink).</summary>
public sealed class VfsConformance : DriverConformance
{
    protected override string DriverName => "vfs";
}

/// <summary>One xfs (reflink=1) loop filesystem shared by the tests of <see cref="VfsOnXfsReflinkConformance"/>.</summary>
public sealed class XfsReflinkFixture : IDisposable
{
    readonly TempRoot _temp = new();

    public LoopFileSystem? Fs { get; }
    public string? WhyNot { get; }

    public XfsReflinkFixture()
    {
        Fs = LoopFileSystem.TryCreate(_temp, "xfs", ["-q", "-m", "reflink=1"], out var why, sizeMiB: 1024);
        WhyNot = why;
    }

    public void Dispose()
    {
        Fs?.Dispose();
        _temp.Dispose();
    }
}

/// <summary>vfs on xfs with reflink=1: the same suite, exercising the FICLONE copy path.</summary>
public sealed class VfsOnXfsReflinkConformance(XfsReflinkFixture fixture) : DriverConformance, IClassFixture<XfsReflinkFixture>
{
    protected override string DriverName => "vfs";

    protected override string StoreParent(TempRoot temp)
    {
        Skip.If(fixture.Fs is null, $"no xfs with reflink=1 here: {fixture.WhyNot}");
        return fixture.Fs!.MountPoint;
    }

    [SkippableFact]
    public void CopiesAreReflinks()
    {
        Assert.Contains(Store.Status(), p => p.Key == "Reflink Copies" && p.Value == "yes");
        Store.Create("base", null);
        Edit("base", dir => File.WriteAllBytes(Path.Combine(dir, "big"), new byte[64 << 20].Select((_, i) => (byte)i).ToArray()));
        long before = FreeBytes(fixture.Fs!.MountPoint);
        Store.Create("child", "base");
        long used = before - FreeBytes(fixture.Fs!.MountPoint);
        Assert.True(used < (8L << 20), $"a reflinked 64 MiB child took {used} bytes of disk");
    }

    static long FreeBytes(string path) => new DriveInfo(path).AvailableFreeSpace;
}
