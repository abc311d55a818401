using Strata.Native;
using Strata.Testing;

namespace Strata.Core.Tests.Conformance;

/// <summary>One btrfs loop filesystem (mkfs.btrfs from btrfs-progs, which test.sh installs) shared by a test class;
/// with <c>quota</c>, btrfs quotas are enabled on it (`btrfs quota enable`).</summary>
public class BtrfsFixture : IDisposable
{
    readonly TempRoot _temp = new();

    public LoopFileSystem Fs { get; }

    public BtrfsFixture() : this(quota: false) { }

    protected BtrfsFixture(bool quota)
    {
        Fs = LoopFileSystem.TryCreate(_temp, "btrfs", ["-q"], out var why, sizeMiB: 1024)
            ?? throw new InvalidOperationException($"no btrfs loop filesystem: {why} (test.sh installs btrfs-progs)");
        if (quota) Shell.Run("btrfs", "quota", "enable", Fs.MountPoint).Check("btrfs quota enable");
    }

    public void Dispose()
    {
        Fs.Dispose();
        _temp.Dispose();
    }
}

public sealed class BtrfsQuotaFixture() : BtrfsFixture(quota: true);

/// <summary>btrfs: every layer a subvolume, a child a snapshot, on a btrfs loop filesystem.</summary>
public sealed class BtrfsConformance(BtrfsFixture fixture) : DriverConformance, IClassFixture<BtrfsFixture>
{
    protected override string DriverName => "btrfs";

    protected override string StoreParent(TempRoot temp) => fixture.Fs.MountPoint;

    [Fact]
    public void TheProbeChoosesBtrfsOnBtrfs()
    {
        Assert.Equal("btrfs", Drivers.DriverRegistry.Probe(fixture.Fs.MountPoint, new Dictionary<string, string>()));
        var status = Store.Status().ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("btrfs", status["Backing Filesystem"]);
        Assert.Matches("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", status["Filesystem UUID"]);
        Assert.StartsWith("disabled", status["Quotas"]);
    }

    [Fact]
    public void NestedSubvolumesAContainerMadeGoWithIt()
    {
        Store.Create("base", null);
        Store.Create("c", "base", LayerKind.ReadWrite);
        string dir = Store.Mount("c");
        try
        {
            Shell.Run("btrfs", "subvolume", "create", Path.Combine(dir, "inner")).Check("btrfs subvolume create");
            Shell.Run("btrfs", "subvolume", "create", Path.Combine(dir, "inner", "deeper")).Check("btrfs subvolume create");
            File.WriteAllText(Path.Combine(dir, "inner", "deeper", "f"), "x");
            Directory.CreateDirectory(Path.Combine(dir, "plain", "dir"));
            Shell.Run("btrfs", "subvolume", "create", Path.Combine(dir, "plain", "dir", "nested")).Check("btrfs subvolume create");
            // a name that is not UTF-8 (byte 0xFF): deleted by its exact bytes
            Shell.Run("bash", "-c", $"btrfs subvolume create '{dir}'/$'\\xff-latin1'").Check("btrfs subvolume create (non-UTF-8 name)");
        }
        finally
        {
            Store.Unmount("c");
        }
        Store.Remove("c");
        Assert.False(Directory.Exists(dir));
        Assert.Equal(["base"], Store.Driver.List());
    }

    [Fact]
    public void AReadOnlyLayerIsFrozenByBtrfsOnceItHasAChild()
    {
        Store.Create("image", null);
        Edit("image", d => File.WriteAllText(Path.Combine(d, "f"), "image"));
        string image = Store.Mount("image");
        try
        {
            File.WriteAllText(Path.Combine(image, "still"), "writable without children"); // ApplyDiff's time
        }
        finally
        {
            Store.Unmount("image");
        }
        Store.Create("c", "image", LayerKind.ReadWrite);
        image = Store.Mount("image");
        try
        {
            var ex = Assert.ThrowsAny<IOException>(() => File.WriteAllText(Path.Combine(image, "g"), "no"));
            Assert.Contains("Read-only", ex.Message, StringComparison.OrdinalIgnoreCase);
        }
        finally
        {
            Store.Unmount("image");
        }
        Edit("c", d =>
        {
            Assert.Equal("image", File.ReadAllText(Path.Combine(d, "f")));
            File.WriteAllText(Path.Combine(d, "f"), "container"); // the child is writable
        });
        Store.Remove("c");
        // without children the layer takes a diff again (the store allows it), so it must be writable again
        Store.Create("src", null);
        Edit("src", d => File.WriteAllText(Path.Combine(d, "applied"), "later"));
        var tar = new MemoryStream();
        Store.Diff("src", null, tar);
        tar.Position = 0;
        Store.ApplyDiff("image", tar);
        Assert.Equal("later", View("image", d => File.ReadAllText(Path.Combine(d, "applied"))));
        Store.Remove("src");
        Store.Remove("image"); // a read-only subvolume goes too
        Assert.Empty(Store.Driver.List());
    }

    [Fact]
    public void SizeNeedsQuotas()
    {
        Store.Create("base", null);
        var ex = Assert.Throws<StrataException>(() => Store.Create("c", "base", LayerKind.ReadWrite, storageOptions: new Dictionary<string, string> { ["size"] = "50M" }));
        Assert.Equal(ErrorKind.Unsupported, ex.Kind);
        Assert.Contains("btrfs quota enable", ex.Message);
        Assert.False(Store.Exists("c"));
        Assert.Equal(["base"], Store.Driver.List());
    }
}

/// <summary>The same suite on a btrfs with quotas on, and the size= (50M) case through qgroups.</summary>
public sealed class BtrfsQuotaConformance(BtrfsQuotaFixture fixture) : DriverConformance, IClassFixture<BtrfsQuotaFixture>
{
    protected override string DriverName => "btrfs";

    protected override string StoreParent(TempRoot temp) => fixture.Fs.MountPoint;

    [Fact]
    public void AContainerCannotWriteMoreThanItsSize()
    {
        Assert.StartsWith("enabled", Store.Status().First(p => p.Key == "Quotas").Value);
        Store.Create("base", null);
        Edit("base", d => Assert.Equal(0, FillFile.Write(Path.Combine(d, "image-data"), 60 << 20))); // shared: not the container's
        Store.Create("c", "base", LayerKind.ReadWrite, storageOptions: new Dictionary<string, string> { ["size"] = "50M" });
        Store.Create("free", "base", LayerKind.ReadWrite);
        string dir = Store.Mount("c"), other = Store.Mount("free");
        try
        {
            Assert.Equal(0, FillFile.Write(Path.Combine(dir, "first"), 25 << 20));
            int err = FillFile.Write(Path.Combine(dir, "second"), 50 << 20);
            Assert.True(err is Errno.EDQUOT or Errno.ENOSPC, $"writing 75 MiB into a 50 MiB container ended with errno {err}");
            Assert.Equal(0, FillFile.Write(Path.Combine(other, "big"), 80 << 20)); // a sibling without size writes on
        }
        finally
        {
            Store.Unmount("c");
            Store.Unmount("free");
        }
    }
}
