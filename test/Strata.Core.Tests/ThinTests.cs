using Strata.Native;
using Strata.Testing;

namespace Strata.Core.Tests;

/// <summary>The thin driver beyond the shared contract: per-container size= (the 50M quota case: a thin device
/// and its filesystem grown past the base size), its refusals, and the status `strata info` shows.</summary>
public sealed class ThinTests : IDisposable
{
    static readonly Dictionary<string, string> Size50M = new() { ["size"] = "50M" };
    readonly TempRoot _temp = new();

    LayerStore Open(string fs = "ext4", string baseSize = "32M") =>
        LayerStore.Open(new StoreOptions
        {
            Root = _temp.Combine("store"),
            Driver = "thin",
            DriverOptions = new Dictionary<string, string> { ["thin.basesize"] = baseSize, ["thin.fs"] = fs },
        });

    public void Dispose() => _temp.Dispose();

    [Theory]
    [InlineData("ext4", "32M")]
    [InlineData("xfs", "320M")]
    public void SizeGrowsAContainersFilesystemAndLimitsIt(string fs, string baseSize)
    {
        using var store = Open(fs, baseSize);
        long baseBytes = ByteSize.Parse(baseSize, "size"), limit = baseBytes + (50L << 20);
        var size = new Dictionary<string, string> { ["size"] = limit.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        store.Create("base", null);
        store.Create("c", "base", LayerKind.ReadWrite, storageOptions: fs == "ext4" ? Size50M : size);
        store.Create("free", "base", LayerKind.ReadWrite);
        long expected = fs == "ext4" ? 50L << 20 : limit;
        Assert.Equal(expected.ToString(System.Globalization.CultureInfo.InvariantCulture), store.Metadata("c")["DeviceSize"]);
        string dir = store.Mount("c"), other = store.Mount("free");
        try
        {
            long total = new DriveInfo(dir).TotalSize, freeTotal = new DriveInfo(other).TotalSize;
            Assert.True(total > freeTotal + (10L << 20), $"the grown filesystem has {total} bytes, the base-sized one {freeTotal}");
            Assert.True(total <= expected, $"the filesystem ({total} bytes) is larger than its device ({expected})");
            Assert.Equal(0, FillFile.Write(Path.Combine(dir, "first"), (expected - baseBytes) / 2 + (8L << 20)));
            int err = FillFile.Write(Path.Combine(dir, "second"), expected);
            Assert.Equal(Errno.ENOSPC, err);
            // the limit is the container's own: its sibling is as big as the base, no more
            Assert.Equal(Errno.ENOSPC, FillFile.Write(Path.Combine(other, "big"), baseBytes + (1L << 20)));
        }
        finally
        {
            store.Unmount("c");
            store.Unmount("free");
        }
    }

    /// <summary>A copy of a layer's mount in another mount namespace (unshare, a container runtime) keeps its
    /// filesystem alive after the store unmounts it; a child made next must still see everything the layer holds.</summary>
    [Theory]
    [InlineData("ext4", "64M")]
    [InlineData("xfs", "320M")]
    public void AChildSeesItsParentEvenWhenAnotherNamespaceHoldsTheParentsMount(string fs, string baseSize)
    {
        using var store = Open(fs, baseSize);
        store.Create("parent", null);
        string dir = store.Mount("parent");
        for (int i = 0; i < 50; i++)
        {
            Directory.CreateDirectory(Path.Combine(dir, $"d{i}"));
            File.WriteAllText(Path.Combine(dir, $"d{i}", "f"), $"file {i}");
        }
        using var holder = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("unshare", ["-m", "--propagation", "private", "sleep", "600"]) { UseShellExecute = false })!;
        try
        {
            for (int i = 0; i < 500 && Shell.Run("nsenter", "-t", holder.Id.ToString(), "-m", "grep", "-q", dir, "/proc/self/mountinfo").ExitCode != 0; i++) Thread.Sleep(10);
            store.Unmount("parent");
            store.Create("child", "parent");
            string child = store.Mount("child");
            try
            {
                for (int i = 0; i < 50; i++) Assert.Equal($"file {i}", File.ReadAllText(Path.Combine(child, $"d{i}", "f")));
            }
            finally
            {
                store.Unmount("child");
            }
        }
        finally
        {
            holder.Kill();
            holder.WaitForExit();
        }
    }

    [Fact]
    public void SizeBelowTheBaseIsRefusedAndOnlyContainersTakeIt()
    {
        using var store = Open();
        store.Create("base", null);
        var ex = Assert.Throws<StrataException>(() => store.Create("small", "base", LayerKind.ReadWrite, storageOptions: new Dictionary<string, string> { ["size"] = "16M" }));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.Contains("grow, never shrink", ex.Message);
        Assert.False(store.Exists("small"));
        Assert.DoesNotContain("small", store.Driver.List());
        ex = Assert.Throws<StrataException>(() => store.Create("ro", "base", LayerKind.ReadOnly, storageOptions: Size50M));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        ex = Assert.Throws<StrataException>(() => store.Create("strata-base", null));
        Assert.Contains("base device", ex.Message);
    }

    LayerStore OpenWith(params (string Key, string Value)[] options) =>
        LayerStore.Open(new StoreOptions
        {
            Root = _temp.Combine("store"),
            Driver = "thin",
            DriverOptions = options.ToDictionary(o => o.Key, o => o.Value),
        });

    [Fact]
    public void NewLayersAreRefusedBelowTheMinimumFreeSpace()
    {
        using var store = OpenWith(("thin.basesize", "64M"), ("thin.datasize", "80M"), ("thin.min_free_space", "50%"));
        store.Create("base", null);
        store.Create("c", "base", LayerKind.ReadWrite);
        string dir = store.Mount("c");
        try
        {
            Assert.Equal(0, FillFile.Write(Path.Combine(dir, "big"), 48L << 20));
        }
        finally
        {
            store.Unmount("c");
        }
        var ex = Assert.Throws<StrataException>(() => store.Create("more", "base", LayerKind.ReadWrite));
        Assert.Equal(ErrorKind.NoSpace, ex.Kind);
        Assert.Contains("thin.min_free_space=50%", ex.Message);
        Assert.False(store.Exists("more"));
        store.Remove("c");
        store.Create("more", "base", LayerKind.ReadWrite); // the space is back
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BlkdiscardDecidesWhetherRemovalShrinksTheDataFile(bool discard)
    {
        using var store = OpenWith(("thin.basesize", "64M"), ("thin.blkdiscard", discard ? "true" : "false"));
        store.Create("base", null);
        string data = Path.Combine(store.Root, "thin", "data");
        long before = Posix.Lstat(data).Blocks * 512;
        store.Create("c", "base", LayerKind.ReadWrite);
        string dir = store.Mount("c");
        try
        {
            Assert.Equal(0, FillFile.Write(Path.Combine(dir, "big"), 32L << 20));
        }
        finally
        {
            store.Unmount("c");
        }
        long full = Posix.Lstat(data).Blocks * 512;
        Assert.True(full >= before + (32L << 20), $"the data file grew from {before} to {full} only");
        store.Remove("c");
        long after = Posix.Lstat(data).Blocks * 512;
        if (discard) Assert.True(after <= before + (1L << 20), $"removal left the data file at {after} bytes (was {before}, {full} with the container)");
        else Assert.True(after >= full - (1L << 20), $"with thin.blkdiscard=false the data file shrank from {full} to {after}");
    }

    [Fact]
    public void OptionsAreCheckedWithOneLineErrors()
    {
        foreach (var (key, value, says) in new[]
        {
            ("thin.fs", "btrfs", "ext4 or xfs"),
            ("thin.blocksize", "48K", "power of two"),
            ("thin.basesize", "1M", "too small"),
            ("thin.min_free_space", "150%", "percent"),
            ("thin.blkdiscard", "maybe", "true or false"),
            ("thin.datadev", "/dev/sdz", "go together"),
            ("thin.nosuch", "1", "unknown thin option"),
        })
        {
            var ex = Assert.Throws<StrataException>(() => LayerStore.Open(new StoreOptions
            {
                Root = _temp.Combine("bad-" + Guid.NewGuid().ToString("N")[..6]),
                Driver = "thin",
                DriverOptions = new Dictionary<string, string> { [key] = value },
            }));
            Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
            Assert.Contains(says, ex.Message);
            Assert.DoesNotContain('\n', ex.Message);
        }
    }

    [Fact]
    public void StatusShowsWhatDockerInfoShowedForDevicemapper()
    {
        using var store = Open();
        store.Create("base", null);
        var status = store.Status().ToDictionary(p => p.Key, p => p.Value);
        foreach (var key in new[]
        {
            "Pool Name", "Pool Blocksize", "Base Device Size", "Backing Filesystem", "Data file", "Metadata file",
            "Data Space Used", "Data Space Total", "Data Space Available", "Metadata Space Used", "Metadata Space Total",
            "Metadata Space Available", "Thin Pool Minimum Free Space", "Deferred Removal Enabled", "Deferred Deleted Device Count",
        })
            Assert.True(status.ContainsKey(key), $"status lacks '{key}': {string.Join(", ", status.Keys)}");
        Assert.Equal("64 KiB", status["Pool Blocksize"]);
        Assert.Equal("32 MiB", status["Base Device Size"]);
        Assert.Equal("ext4", status["Backing Filesystem"]);
        Assert.Equal("0", status["Deferred Deleted Device Count"]);
        Assert.Equal(Path.Combine(store.Root, "thin", "data"), status["Data file"]);
    }

    /// <summary>Each layer's device is held by its layer in the pool, so a `pool device rm` on it is refused; deleted all
    /// the same (--force), the layer is broken: listed as such, every use of it fails with one clear error, its child
    /// (a device of its own) goes on working, and removing it works.</summary>
    [Fact]
    public void ALayersDeviceIsHeldByItsLayerAndForcingItsDeletionLeavesTheLayerBroken()
    {
        using (var store = Open())
        {
            store.Create("image", null);
            store.Create("c1", "image", LayerKind.ReadWrite);
            Assert.Empty(store.Broken()!);
        }
        using (var dir = Strata.Thin.PoolDirectory.Open(_temp.Combine("store", "thin"), TimeSpan.Zero))
        {
            Assert.Equal("layer image", dir.Pool.DeviceInfo("image").Owner);
            Assert.Equal("layer c1", dir.Pool.DeviceInfo("c1").Owner);
            Assert.NotNull(dir.Pool.DeviceInfo(Strata.Core.Drivers.Thin.ThinDriver.BaseDevice).Owner);
            var refused = Assert.Throws<StrataException>(() => dir.Pool.DeleteDevice("image"));
            Assert.Equal(ErrorKind.InUse, refused.Kind);
            Assert.Contains("layer image", refused.Message);
            dir.Pool.DeleteDevice("image", force: true);
        }
        using (var store = Open())
        {
            Assert.Equal(["image"], store.Broken());
            Assert.Contains(store.Status(), p => p.Key == "Broken Layers" && p.Value == "1" && p.Data is long);
            foreach (var use in new Action[] { () => store.Create("c2", "image"), () => store.Metadata("image"), () => store.Mount("image") })
            {
                var ex = Assert.Throws<StrataException>(use);
                Assert.Equal(ErrorKind.Corrupt, ex.Kind);
                Assert.StartsWith("layer image is broken: ", ex.Message);
            }
            Assert.Equal(0, store.Inspect("image").Mounts);
            Assert.False(store.Exists("c2"));
            string c1 = store.Mount("c1");
            Assert.True(Directory.Exists(c1));
            store.Unmount("c1");
            store.Remove("c1");
            store.Remove("image");
            Assert.Empty(store.Broken()!);
            Assert.Contains(store.Status(), p => p.Key == "Broken Layers" && p.Value == "0" && p.Data is long);
        }
    }
}
