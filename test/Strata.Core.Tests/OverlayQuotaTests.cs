using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Core.Tests;

/// <summary>Two xfs loop filesystems for <see cref="OverlayQuotaTests"/>: one mounted with prjquota, one without.</summary>
public sealed class XfsQuotaFixture : IDisposable
{
    readonly TempRoot _withTemp = new(), _withoutTemp = new();

    public LoopFileSystem? WithQuota { get; }
    public LoopFileSystem? WithoutQuota { get; }
    public string? WhyNotWith { get; }
    public string? WhyNotWithout { get; }

    public XfsQuotaFixture()
    {
        WithQuota = LoopFileSystem.TryCreate(_withTemp, "xfs", ["-q"], out var why, sizeMiB: 512, mountOptions: "prjquota");
        WhyNotWith = Requirements.XfsQuota ?? why;
        WithoutQuota = LoopFileSystem.TryCreate(_withoutTemp, "xfs", ["-q"], out var why2, sizeMiB: 512);
        WhyNotWithout = why2;
    }

    public void Dispose()
    {
        WithQuota?.Dispose();
        WithoutQuota?.Dispose();
        _withTemp.Dispose();
        _withoutTemp.Dispose();
    }
}

/// <summary>Per-container size limits (size= on a read-write layer) with xfs project quotas.</summary>
public sealed class OverlayQuotaTests(XfsQuotaFixture fixture) : IClassFixture<XfsQuotaFixture>
{
    static readonly Dictionary<string, string> Size50M = new() { ["size"] = "50M" };

    LayerStore Open(string parent) =>
        LayerStore.Open(new StoreOptions { Root = Path.Combine(parent, "store-" + Guid.NewGuid().ToString("N")[..8]), Driver = "overlay" });

    /// <summary>Reports the test as skipped, with the reason, when the fixture could not make its xfs.</summary>
    void SkipWithoutXfs(bool needQuota = true)
    {
        var (fs, why) = needQuota ? (fixture.WithQuota, fixture.WhyNotWith) : (fixture.WithoutQuota, fixture.WhyNotWithout);
        Skip.If(fs is null, why);
    }

    [XfsQuotaFact]
    public void AContainerCannotWriteMoreThanItsSize()
    {
        SkipWithoutXfs();
        using var store = Open(fixture.WithQuota!.MountPoint);
        Assert.Contains(store.Status(), p => p.Key == "Size Limits" && p.Value == "xfs project quotas");
        store.Create("base", null);
        store.Create("c", "base", LayerKind.ReadWrite, storageOptions: Size50M);
        store.Create("free", "base", LayerKind.ReadWrite);
        Assert.Equal((50L << 20).ToString(), store.Metadata("c")["Size"]);
        Assert.False(store.Metadata("free").ContainsKey("Size"));
        string dir = store.Mount("c"), other = store.Mount("free");
        try
        {
            Assert.Equal(0, FillFile.Write(Path.Combine(dir, "first"), 25 << 20));
            int err = FillFile.Write(Path.Combine(dir, "second"), 50 << 20);
            Assert.True(err is Errno.EDQUOT or Errno.ENOSPC, $"writing 75 MiB into a 50 MiB container ended with errno {err}");
            // the limit is the container's own: a sibling without one writes on
            Assert.Equal(0, FillFile.Write(Path.Combine(other, "big"), 80 << 20));
        }
        finally
        {
            store.Unmount("c");
            store.Unmount("free");
        }
        store.Remove("c");
        store.Remove("free");
        // a new container gets a fresh project with its own limit
        store.Create("c2", "base", LayerKind.ReadWrite, storageOptions: Size50M);
        string d2 = store.Mount("c2");
        try
        {
            Assert.Equal(0, FillFile.Write(Path.Combine(d2, "first"), 40 << 20));
        }
        finally
        {
            store.Unmount("c2");
        }
    }

    [XfsQuotaFact]
    public void CopyUpCountsAgainstTheContainer()
    {
        SkipWithoutXfs();
        using var store = Open(fixture.WithQuota!.MountPoint);
        store.Create("base", null);
        string baseDir = store.Mount("base");
        Assert.Equal(0, FillFile.Write(Path.Combine(baseDir, "big"), 60 << 20));
        store.Unmount("base");
        store.Create("c", "base", LayerKind.ReadWrite, storageOptions: Size50M);
        string dir = store.Mount("c");
        try
        {
            // appending to a 60 MiB lower file copies it up whole: more than the container may hold
            using var fd = Posix.Open(Path.Combine(dir, "big"), Posix.O_WRONLY);
            var ex = Assert.ThrowsAny<ErrnoException>(() =>
            {
                Posix.PwriteAll(fd, new byte[4096], 60 << 20, "big");
                Posix.Fsync(fd, "big");
            });
            Assert.True(ex.Errno is Errno.EDQUOT or Errno.ENOSPC, ex.Message);
        }
        catch (ErrnoException ex) when (ex.Errno is Errno.EDQUOT or Errno.ENOSPC)
        {
            // the copy-up itself was refused at open(2): the same limit, met earlier
        }
        finally
        {
            store.Unmount("c");
        }
    }

    [SkippableFact]
    public void WithoutProjectQuotasSizeIsAClearError()
    {
        SkipWithoutXfs(needQuota: false);
        const string why = "project quotas are not enabled on this xfs (mount it with -o prjquota; the kernel needs CONFIG_XFS_QUOTA)";
        using var store = Open(fixture.WithoutQuota!.MountPoint);
        Assert.Contains(store.Status(), p => p.Key == "Size Limits" && p.Value == $"no ({why})");
        store.Create("base", null);
        var ex = Assert.Throws<StrataException>(() => store.Create("c", "base", LayerKind.ReadWrite, storageOptions: Size50M));
        Assert.Equal(ErrorKind.Unsupported, ex.Kind);
        Assert.Equal($"size= is not supported here: {why}", ex.Message);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(store.Root, "tmp")));
        Assert.False(store.Exists("c"));
        Assert.Equal(["base"], store.Driver.List());
    }
}
