// NbdkitDisk against the real nbdkit and nbdfuse: what a pool sees through the file, and that nothing is left behind.
using Strata.Native;
using Strata.Testing;
using Strata.Thin;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>A disk from <see cref="NbdkitDisk"/> as Strata's pool uses it (FileBlockStore: pread, pwrite, fdatasync,
/// punch-hole, on one descriptor kept open): data reaches the backing file and back, errors come as EIO where and
/// while asked, slow disks still complete, and dispose leaves no mount, process or directory, even with the file open.</summary>
public sealed class NbdkitDiskTests(ITestOutputHelper output)
{
    const int KiB = 1024, MiB = 1024 * KiB;

    static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    static byte[] ReadAt(string file, long offset, int length)
    {
        using var fd = Posix.Open(file, Posix.O_RDONLY);
        var buffer = new byte[length];
        int done = 0;
        while (done < length)
        {
            int n = Posix.Pread(fd, buffer.AsSpan(done), offset + done, file);
            Assert.True(n > 0, $"{file} ends before {offset + length}");
            done += n;
        }
        return buffer;
    }

    static void WriteAt(string file, long offset, byte[] data)
    {
        using var fd = Posix.Open(file, Posix.O_RDWR);
        Posix.PwriteAll(fd, data, offset, file);
        Posix.Fdatasync(fd, file);
    }

    static byte[] Read(FileBlockStore store, long offset, int length)
    {
        var buffer = new byte[length];
        store.Read(offset, buffer);
        return buffer;
    }

    static int ErrnoOf(Action io) => Assert.Throws<ErrnoException>(io).Errno;

    /// <summary>nbdkit's stderr reaches the log through a pipe read on another thread: a line may come a moment after
    /// the request it is about failed.</summary>
    static void AssertLogged(NbdkitDisk disk, string line)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!disk.Log.Contains(line, StringComparison.Ordinal) && DateTime.UtcNow < deadline) Thread.Sleep(20);
        Assert.Contains(line, disk.Log);
    }

    [SkippableFact]
    public void DataGoesThroughToTheBackingFileAndBack()
    {
        NbdkitDisk.SkipUnlessAvailable();
        using var disk = NbdkitDisk.Start("disk0", 16 * MiB);
        using var store = FileBlockStore.Open(disk.Path); // refuses anything but a regular file or a block device
        Assert.False(store.IsDevice);
        Assert.Equal(16 * MiB, store.Length);

        var written = Pattern(256 * KiB, 1);
        store.Write(MiB, written);
        store.Flush(); // fdatasync through FUSE: an NBD flush
        Assert.Equal(written, ReadAt(disk.BackingFile, MiB, written.Length));

        // the other way, as a test corrupting a disk does: into the backing file, seen through the open file once its
        // pages are dropped
        Assert.Equal(new byte[64 * KiB], Read(store, 8 * MiB, 64 * KiB)); // now in the page cache
        var direct = Pattern(64 * KiB, 2);
        WriteAt(disk.BackingFile, 8 * MiB, direct);
        disk.DropCache();
        Assert.Equal(direct, Read(store, 8 * MiB, direct.Length));
        Assert.Equal(written, Read(store, MiB, written.Length));
    }

    /// <summary>Discards (punch-hole) reach the backing file as holes; zero-range works; plain fallocate and
    /// SEEK_DATA do not (nbdfuse implements neither), so the pool's IsHole sees data everywhere.</summary>
    [SkippableFact]
    public void APunchedHoleIsAHoleInTheBackingFile()
    {
        NbdkitDisk.SkipUnlessAvailable();
        using var disk = NbdkitDisk.Start("disk0", 4 * MiB);
        using var store = FileBlockStore.Open(disk.Path);
        var data = Pattern(MiB, 3);
        store.Write(0, data);
        store.Flush();

        Assert.True(store.Discard(256 * KiB, 256 * KiB), "fallocate(PUNCH_HOLE) on the nbdfuse file failed");
        Assert.Equal(new byte[256 * KiB], Read(store, 256 * KiB, 256 * KiB));
        Assert.Equal(data.AsSpan(0, 256 * KiB).ToArray(), Read(store, 0, 256 * KiB));
        Assert.Equal(data.AsSpan(512 * KiB).ToArray(), Read(store, 512 * KiB, 512 * KiB));
        using (var backing = Posix.Open(disk.BackingFile, Posix.O_RDONLY))
            Assert.True(Posix.Seek(backing, 256 * KiB, Posix.SEEK_DATA) >= 512 * KiB, "the discarded range is not a hole in the backing file");
        Assert.False(store.IsHole(256 * KiB, 256 * KiB)); // no lseek in nbdfuse: the kernel's default says data

        using var fd = Posix.Open(disk.Path, Posix.O_RDWR);
        Assert.Equal(0, Posix.TryFallocate(fd, Posix.FALLOC_FL_ZERO_RANGE | Posix.FALLOC_FL_KEEP_SIZE, 0, 64 * KiB));
        Assert.Equal(new byte[64 * KiB], Read(store, 0, 64 * KiB));
        Assert.Equal(Errno.EOPNOTSUPP, Posix.TryFallocate(fd, 0, 0, 64 * KiB));
    }

    [SkippableFact]
    public void StartFailingFailsReadsAndWritesWithEioUntilStopFailing()
    {
        NbdkitDisk.SkipUnlessAvailable();
        using var disk = NbdkitDisk.Start("disk0", 4 * MiB);
        using var store = FileBlockStore.Open(disk.Path); // open throughout, as a pool keeps its disks
        var data = Pattern(64 * KiB, 4);
        store.Write(0, data);
        store.Flush();
        Assert.Equal(data, Read(store, 0, data.Length)); // cached: StartFailing must drop it

        disk.StartFailing();
        Assert.True(disk.Failing);
        Assert.Equal(Errno.EIO, ErrnoOf(() => Read(store, 0, data.Length)));
        Assert.Equal(Errno.EIO, ErrnoOf(() => Read(store, 2 * MiB, 4 * KiB)));
        Assert.Equal(Errno.EIO, ErrnoOf(() => store.Write(MiB, data)));
        Assert.False(store.Discard(0, 64 * KiB), "a discard on a failing disk succeeded");
        store.Flush(); // nbdkit 1.32's error filter cannot fail a flush
        AssertLogged(disk, "injecting EIO error into pread");
        AssertLogged(disk, "injecting EIO error into pwrite");

        disk.StopFailing();
        Assert.False(disk.Failing);
        Assert.Equal(data, Read(store, 0, data.Length));
        store.Write(MiB, data);
        store.Flush();
        Assert.Equal(data, ReadAt(disk.BackingFile, MiB, data.Length));
    }

    [SkippableTheory]
    [InlineData(FailingIo.Reads)]
    [InlineData(FailingIo.Writes)]
    public void OnlyTheChosenRequestsFail(FailingIo fails)
    {
        NbdkitDisk.SkipUnlessAvailable();
        using var disk = NbdkitDisk.Start("disk0", 4 * MiB, new NbdkitFaults { Fails = fails, Failing = true });
        using var store = FileBlockStore.Open(disk.Path);
        var before = Pattern(64 * KiB, 5);
        WriteAt(disk.BackingFile, 0, before);
        var next = Pattern(64 * KiB, 6);
        if (fails == FailingIo.Reads)
        {
            store.Write(0, next);
            store.Flush();
            Assert.Equal(next, Read(store, 0, next.Length)); // written pages stay in the page cache
            disk.DropCache();
            Assert.Equal(Errno.EIO, ErrnoOf(() => Read(store, 0, next.Length)));
            Assert.Equal(next, ReadAt(disk.BackingFile, 0, next.Length));
        }
        else
        {
            Assert.Equal(before, Read(store, 0, before.Length));
            Assert.Equal(Errno.EIO, ErrnoOf(() => store.Write(0, next)));
            Assert.Equal(before, ReadAt(disk.BackingFile, 0, before.Length));
        }
    }

    /// <summary>With a rate, nbdkit fails requests at random (no seed to give: nbdkit draws them): some reads fail, others
    /// do not.</summary>
    [SkippableFact]
    public void AnErrorRateFailsSomeReads()
    {
        NbdkitDisk.SkipUnlessAvailable();
        using var disk = NbdkitDisk.Start("disk0", 4 * MiB, new NbdkitFaults { Fails = FailingIo.Reads, ErrorRate = 0.5, Failing = true });
        using var store = FileBlockStore.Open(disk.Path);
        int failed = 0, read = 0;
        for (int i = 0; i < 64; i++)
        {
            disk.DropCache(); // else a page read ahead by an earlier request comes from the cache
            try
            {
                Read(store, i * 64L * KiB, 4 * KiB);
                read++;
            }
            catch (ErrnoException e)
            {
                Assert.Equal(Errno.EIO, e.Errno);
                failed++;
            }
        }
        output.WriteLine($"at a rate of 0.5: {failed} of 64 reads failed");
        Assert.True(failed > 0 && read > 0, $"{failed} of 64 reads failed at an error rate of 0.5");
    }

    [SkippableFact]
    public void AFailedRangeFailsOnlyItsOwnPages()
    {
        NbdkitDisk.SkipUnlessAvailable();
        using var disk = NbdkitDisk.Start("disk0", 4 * MiB, new NbdkitFaults { Ranges = true });
        using var store = FileBlockStore.Open(disk.Path);
        var data = Pattern(MiB, 7);
        store.Write(0, data);
        store.Flush();
        Assert.Equal(data, Read(store, 0, data.Length));
        byte[] Expected(long offset, int length) => data.AsSpan((int)offset, length).ToArray();

        disk.FailRange(256 * KiB, 64 * KiB, FailingIo.Reads);
        Assert.Equal(Expected(252 * KiB, 4 * KiB), Read(store, 252 * KiB, 4 * KiB));
        Assert.Equal(Errno.EIO, ErrnoOf(() => Read(store, 256 * KiB, 4 * KiB)));
        Assert.Equal(Errno.EIO, ErrnoOf(() => Read(store, 316 * KiB, 4 * KiB)));
        Assert.Equal(Errno.EIO, ErrnoOf(() => Read(store, 248 * KiB, 16 * KiB))); // a read across its start
        Assert.Equal(Expected(320 * KiB, 4 * KiB), Read(store, 320 * KiB, 4 * KiB));
        Assert.Equal(Expected(0, 256 * KiB), Read(store, 0, 256 * KiB));
        var rewrite = Pattern(4 * KiB, 8);
        store.Write(260 * KiB, rewrite); // reads fail there, writes do not
        Assert.Equal(rewrite, ReadAt(disk.BackingFile, 260 * KiB, rewrite.Length));

        disk.FailRange(512 * KiB, 64 * KiB, FailingIo.Writes);
        Assert.Equal(Errno.EIO, ErrnoOf(() => store.Write(512 * KiB, rewrite)));
        Assert.Equal(Errno.EIO, ErrnoOf(() => store.Write(508 * KiB, Pattern(8 * KiB, 9))));
        Assert.False(store.Discard(512 * KiB, 64 * KiB), "a discard in a range failing writes succeeded");
        Assert.Equal(Expected(512 * KiB, 64 * KiB), Read(store, 512 * KiB, 64 * KiB));
        store.Write(576 * KiB, rewrite);
        Assert.Equal(rewrite, ReadAt(disk.BackingFile, 576 * KiB, rewrite.Length));
        AssertLogged(disk, "in a failed range");

        disk.ClearRanges();
        Assert.Equal(rewrite, Read(store, 260 * KiB, rewrite.Length));
        Assert.Equal(Expected(256 * KiB, 4 * KiB), Read(store, 256 * KiB, 4 * KiB));
        store.Write(512 * KiB, rewrite);
        store.Flush();
        Assert.Equal(rewrite, ReadAt(disk.BackingFile, 512 * KiB, rewrite.Length));
        Assert.True(store.Discard(2 * MiB, 64 * KiB));

        // the error filter stacks in front of the range script
        disk.StartFailing();
        Assert.Equal(Errno.EIO, ErrnoOf(() => Read(store, 0, 4 * KiB)));
        disk.StopFailing();
        Assert.Equal(Expected(0, 4 * KiB), Read(store, 0, 4 * KiB));
    }

    /// <summary>Delay and rate filters are in the server's command line and IO through them completes (how slow it is
    /// is not checked: no timing in tests).</summary>
    [SkippableFact]
    public void ASlowDiskStillCompletesItsIo()
    {
        NbdkitDisk.SkipUnlessAvailable();
        using var disk = NbdkitDisk.Start("slow", 4 * MiB, new NbdkitFaults { Delay = TimeSpan.FromMilliseconds(2), BytesPerSecond = 4 * MiB });
        string commandLine = File.ReadAllText($"/proc/{disk.ServerPid}/cmdline").Replace('\0', ' ');
        Assert.Contains("--filter=delay", commandLine);
        Assert.Contains("--filter=rate", commandLine);
        using var store = FileBlockStore.Open(disk.Path);
        var data = Pattern(MiB, 10);
        store.Write(MiB, data);
        store.Flush();
        disk.DropCache();
        Assert.Equal(data, Read(store, MiB, data.Length));
        Assert.Equal(data, ReadAt(disk.BackingFile, MiB, data.Length));
    }

    /// <summary>A pulled disk: every request, on a file already open too, fails (ENOTCONN), and dispose still cleans up.</summary>
    [SkippableFact]
    public void AVanishedDiskFailsEveryRequest()
    {
        NbdkitDisk.SkipUnlessAvailable();
        var disk = NbdkitDisk.Start("disk0", 4 * MiB);
        string dir = Path.GetDirectoryName(Path.GetDirectoryName(disk.Path))!;
        int server = disk.ServerPid, fuse = disk.FusePid;
        try
        {
            using var store = FileBlockStore.Open(disk.Path);
            store.Write(0, Pattern(64 * KiB, 11));
            disk.Vanish();
            Assert.False(Posix.IsRunning(server));
            Assert.Equal(Errno.ENOTCONN, ErrnoOf(() => Read(store, MiB, 4 * KiB))); // not the written pages: they are cached
            Assert.Equal(Errno.ENOTCONN, ErrnoOf(() => store.Write(MiB, Pattern(4 * KiB, 12))));
        }
        finally
        {
            disk.Dispose();
        }
        AssertGone(dir, server, fuse);
    }

    /// <summary>Dispose as a failed test leaves things: the disk failing, the file still open (then the mount is
    /// detached lazily and nbdfuse stopped), writes in flight on a slow disk (they fail).</summary>
    [SkippableFact]
    public void DisposeLeavesNoMountProcessOrDirectoryEvenWithTheFileOpen()
    {
        NbdkitDisk.SkipUnlessAvailable();
        var disk = NbdkitDisk.Start("disk0", 4 * MiB, new NbdkitFaults { Delay = TimeSpan.FromMilliseconds(200), Fails = FailingIo.Reads });
        string dir = Path.GetDirectoryName(Path.GetDirectoryName(disk.Path))!;
        int server = disk.ServerPid, fuse = disk.FusePid;
        Assert.Contains(Path.GetDirectoryName(disk.Path)!, Mounts.Under(dir));
        var store = FileBlockStore.Open(disk.Path);
        Task? writer = null;
        try
        {
            store.Write(0, Pattern(64 * KiB, 13));
            disk.StartFailing();
            writer = Task.Run(() =>
            {
                for (int i = 0; i < 50; i++)
                    try
                    {
                        store.Write(i * 4L * KiB, Pattern(4 * KiB, i));
                    }
                    catch (ErrnoException)
                    {
                    }
            });
            Thread.Sleep(50); // let a write be in flight; the test holds either way
            var watch = System.Diagnostics.Stopwatch.StartNew();
            disk.Dispose();
            output.WriteLine($"dispose with the file open and a write in flight took {watch.ElapsedMilliseconds} ms");
        }
        finally
        {
            writer?.Wait(TimeSpan.FromSeconds(30));
            store.Dispose();
        }
        Assert.True(writer.IsCompleted, "a write on the disposed disk still hangs");
        AssertGone(dir, server, fuse);
        disk.Dispose(); // a second time: nothing to do
    }

    [SkippableFact]
    public void AServedFileIsKeptAfterDispose()
    {
        NbdkitDisk.SkipUnlessAvailable();
        using var temp = new TempRoot();
        string file = temp.Combine("disk.img");
        var before = Pattern(2 * MiB, 14);
        File.WriteAllBytes(file, before);
        var disk = NbdkitDisk.Serve("served", file);
        string dir = Path.GetDirectoryName(Path.GetDirectoryName(disk.Path))!;
        int server = disk.ServerPid, fuse = disk.FusePid;
        var after = Pattern(64 * KiB, 15);
        using (disk)
        {
            Assert.Equal(file, disk.BackingFile);
            Assert.Equal(2 * MiB, disk.Size);
            using var store = FileBlockStore.Open(disk.Path);
            Assert.Equal(before, Read(store, 0, before.Length));
            store.Write(MiB, after);
            store.Flush();
        }
        AssertGone(dir, server, fuse);
        Assert.Equal(after, ReadAt(file, MiB, after.Length));
        Assert.Equal(before.AsSpan(0, MiB).ToArray(), ReadAt(file, 0, MiB));
    }

    static void AssertGone(string dir, int server, int fuse)
    {
        Assert.Empty(Mounts.Under(dir));
        Assert.False(Posix.IsRunning(server), $"nbdkit ({server}) still runs");
        Assert.False(Posix.IsRunning(fuse), $"nbdfuse ({fuse}) still runs");
        Assert.False(Directory.Exists(dir), $"{dir} is left");
    }
}
