// The FUSE export through the real kernel: FuseExport mounted over memory devices, and file IO (pread, pwrite,
// fsync, fallocate) and a loop device through the mount. Each test unmounts and detaches what it made, even when
// it fails; without /dev/fuse or root they are reported as skipped, with the reason.
using Microsoft.Win32.SafeHandles;
using Strata.Block;
using Strata.Native;
using Strata.Testing;

namespace Strata.Fuse.Tests;

public sealed class FuseMountTests : IDisposable
{
    const int BlockSize = 64 * 1024;
    const long Size = 16L << 20;
    readonly TempRoot _temp = new();
    readonly MemoryExports _exports = new();
    readonly MemoryBlockDevice _vol, _ro;
    FuseExport? _fuse;

    public FuseMountTests()
    {
        _vol = _exports.Add("vol", Size, BlockSize);
        _ro = _exports.Add("ro", Size, BlockSize, readOnly: true);
    }

    public void Dispose()
    {
        _fuse?.Dispose();
        _temp.Dispose(); // unmounts anything left under it
    }

    static string? WhyNot()
    {
        if (!File.Exists("/dev/fuse")) return "/dev/fuse does not exist (the fuse module is not loaded)";
        if (!Environment.IsPrivilegedProcess) return "mounting FUSE takes root";
        return null;
    }

    string Mount(IBlockExports? exports = null)
    {
        string? why = WhyNot();
        Skip.If(why is not null, why);
        string dir = _temp.Dir("mnt");
        _fuse = FuseExport.Mount(dir, exports ?? _exports, BlockSize, threads: 4);
        return dir;
    }

    /// <summary>The memory devices with statistics: the bytes each has allocated.</summary>
    sealed class CountingExports(MemoryExports inner) : IBlockExports, IBlockExportStats
    {
        public IReadOnlyList<string> Names() => inner.Names();
        public IBlockDevice? Open(string name) => inner.Open(name);
        public bool ReadOnly(string name) => inner.ReadOnly(name);

        public string? StatsText(string name)
        {
            using var device = inner.Open(name);
            return device is null ? null : $"allocated_bytes {device.Allocated(0, device.Size).Sum(r => r.Length)}\n";
        }
    }

    static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    [SkippableFact]
    public void TheMountListsEachDeviceAsAFileOfItsSize()
    {
        string dir = Mount();
        Assert.Equal(["ro", "vol"], Directory.GetFiles(dir).Select(Path.GetFileName).Order());
        Assert.False(Directory.Exists(Path.Combine(dir, ".stats"))); // these exports count nothing
        Assert.Equal(Size, new FileInfo(Path.Combine(dir, "vol")).Length);
        _exports.Add("new", 3 * BlockSize);
        Assert.Equal(3L * BlockSize, new FileInfo(Path.Combine(dir, "new")).Length); // shows at once
        _exports.Remove("new");
        Assert.False(File.Exists(Path.Combine(dir, "new")));
    }

    [SkippableFact]
    public void ExportsThatCountShowAReadOnlyStatsFilePerDeviceTakenAtOpen()
    {
        string dir = Mount(new CountingExports(_exports));
        string stats = Path.Combine(dir, ".stats");
        Assert.Equal(["ro", "vol"], Directory.GetFiles(dir).Select(Path.GetFileName).Order()); // the directory is no device
        Assert.Equal(["ro", "vol"], Directory.GetFiles(stats).Select(Path.GetFileName).Order());
        Assert.Equal("allocated_bytes 0\n", File.ReadAllText(Path.Combine(stats, "vol")));
        using (var file = File.OpenHandle(Path.Combine(dir, "vol"), FileMode.Open, FileAccess.ReadWrite))
            RandomAccess.Write(file, Pattern(4096, 3), 2 * BlockSize);
        Assert.Equal($"allocated_bytes {BlockSize}\n", File.ReadAllText(Path.Combine(stats, "vol")));
        Assert.Equal("allocated_bytes 0\n", File.ReadAllText(Path.Combine(stats, "ro")));
        Assert.Throws<UnauthorizedAccessException>(() => File.OpenWrite(Path.Combine(stats, "vol")));
        Assert.Throws<FileNotFoundException>(() => File.ReadAllText(Path.Combine(stats, "nosuch")));
        _exports.Add("new", 3 * BlockSize);
        Assert.Equal("allocated_bytes 0\n", File.ReadAllText(Path.Combine(stats, "new"))); // shows at once
        WaitFor(() => _fuse!.OpenFiles == 0, "every file to be released after close");
    }

    [SkippableFact]
    public void PreadAndPwriteThroughTheMountReachTheDevice()
    {
        string dir = Mount();
        using (var file = File.OpenHandle(Path.Combine(dir, "vol"), FileMode.Open, FileAccess.ReadWrite))
        {
            var data = Pattern(3 * BlockSize + 1001, 1);
            RandomAccess.Write(file, data, BlockSize - 333); // unaligned, across blocks
            var onDevice = new byte[data.Length];
            _vol.Read(BlockSize - 333, onDevice);
            Assert.Equal(data, onDevice);
            var back = new byte[data.Length];
            Assert.Equal(back.Length, RandomAccess.Read(file, back, BlockSize - 333));
            Assert.Equal(data, back);
            // a read at the end returns nothing; one over it, what is there
            Assert.Equal(0, RandomAccess.Read(file, new byte[10], Size));
            Assert.Equal(4, RandomAccess.Read(file, new byte[10], Size - 4));
            Assert.Equal(1, _fuse!.OpenFiles);
        }
        WaitFor(() => _fuse!.OpenFiles == 0, "the file to be released after close");
    }

    [SkippableFact]
    public void FsyncFlushesTheDevice()
    {
        string dir = Mount();
        using var stream = new FileStream(Path.Combine(dir, "vol"), FileMode.Open, FileAccess.ReadWrite);
        stream.Write(Pattern(4096, 2));
        int before = _vol.Flushes;
        stream.Flush(flushToDisk: true);
        Assert.True(_vol.Flushes > before, "fsync did not flush the device");
    }

    [SkippableFact]
    public void FallocatePunchesAHoleAndZeroesARange()
    {
        string dir = Mount();
        string path = Path.Combine(dir, "vol");
        var data = Pattern(4 * BlockSize, 3);
        _vol.Write(0, data);
        Assert.Equal(0, Posix.TryOpenAt(FileDescriptor.Cwd, path, Posix.O_RDWR, 0, out var fd));
        using (fd)
        {
            Assert.Equal(0, Posix.TryFallocate(fd!, Posix.FALLOC_FL_PUNCH_HOLE | Posix.FALLOC_FL_KEEP_SIZE, BlockSize, BlockSize));
            Assert.Equal(0, Posix.TryFallocate(fd!, Posix.FALLOC_FL_ZERO_RANGE | Posix.FALLOC_FL_KEEP_SIZE, 2 * BlockSize + 100, 200));
        }
        Assert.Equal([(0L, (long)BlockSize), (2L * BlockSize, 2L * BlockSize)], _vol.Allocated(0, Size));
        var expected = (byte[])data.Clone();
        expected.AsSpan(BlockSize, BlockSize).Clear();
        expected.AsSpan(2 * BlockSize + 100, 200).Clear();
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        var back = new byte[expected.Length];
        RandomAccess.Read(file, back, 0);
        Assert.Equal(expected, back);
        Assert.Equal(Size, new FileInfo(path).Length);
    }

    [SkippableFact]
    public void AReadOnlyDeviceOpensForReadingOnly()
    {
        string dir = Mount();
        _ro.Write(0, [9, 8, 7]); // through the twin, behind the export's back
        string path = Path.Combine(dir, "ro");
        var ex = Assert.ThrowsAny<IOException>(() => File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite).Dispose());
        Assert.Contains("read-only", ex.Message, StringComparison.OrdinalIgnoreCase);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        var back = new byte[3];
        RandomAccess.Read(file, back, 0);
        Assert.Equal([9, 8, 7], back);
    }

    [SkippableFact]
    public void AWritePastTheEndFails()
    {
        string dir = Mount();
        using var file = File.OpenHandle(Path.Combine(dir, "vol"), FileMode.Open, FileAccess.ReadWrite);
        // EFBIG, which .NET reports as "file length too large"
        Assert.Throws<ArgumentOutOfRangeException>(() => RandomAccess.Write(file, new byte[100], Size - 50));
        Assert.Empty(_vol.Allocated(0, Size));
    }

    /// <summary>A loop device over a device file: a kernel block device whose IO reaches the memory device.</summary>
    [SkippableFact]
    public void ALoopDeviceOverADeviceFileReadsAndWritesTheDevice()
    {
        string dir = Mount();
        Skip.If(!Shell.Has("losetup"), "losetup is not installed (util-linux)");
        var attach = Shell.Run("losetup", "--find", "--show", "--direct-io=on", Path.Combine(dir, "vol"));
        Skip.If(attach.ExitCode != 0, $"cannot attach a loop device here: {attach.Stderr.Trim()}");
        string loop = attach.Stdout.Trim();
        try
        {
            Assert.Equal(1, _fuse!.OpenFiles);
            var data = Pattern(2 * BlockSize, 4);
            using (var device = File.OpenHandle(loop, FileMode.Open, FileAccess.ReadWrite))
            {
                RandomAccess.Write(device, data, 3L * BlockSize);
                using var stream = new FileStream(device, FileAccess.ReadWrite);
                stream.Flush(flushToDisk: true);
            }
            var onDevice = new byte[data.Length];
            _vol.Read(3L * BlockSize, onDevice);
            Assert.Equal(data, onDevice);
            _vol.Write(10L * BlockSize, data.AsSpan(0, 4096));
            Shell.Run("blockdev", "--flushbufs", loop);
            using (var device = File.OpenHandle(loop, FileMode.Open, FileAccess.Read))
            {
                var back = new byte[4096];
                RandomAccess.Read(device, back, 10L * BlockSize);
                Assert.Equal(data.AsSpan(0, 4096).ToArray(), back);
            }
            var discard = Shell.Run("blkdiscard", "-o", (3L * BlockSize).ToString(), "-l", BlockSize.ToString(), loop);
            if (discard.ExitCode == 0) Assert.Equal([(4L * BlockSize, (long)BlockSize), (10L * BlockSize, (long)BlockSize)], _vol.Allocated(0, Size));
        }
        finally
        {
            Shell.Run("losetup", "-d", loop);
        }
        WaitFor(() => _fuse!.OpenFiles == 0, "the loop device to let go of the file");
    }

    [SkippableFact]
    public void DisposeUnmounts()
    {
        string dir = Mount();
        Assert.Contains(dir, Mounts.Under(_temp.Path));
        _fuse!.Dispose();
        Assert.DoesNotContain(dir, Mounts.Under(_temp.Path));
        Assert.Equal(1, _vol.OpenHandles); // every file's handle closed: only the test's own
    }

    static void WaitFor(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new Xunit.Sdk.XunitException($"timed out waiting for {what}");
            Thread.Sleep(20);
        }
    }
}
