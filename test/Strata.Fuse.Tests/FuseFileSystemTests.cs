// The FUSE protocol without a kernel: request bytes fed to FuseFileSystem over memory devices, every opcode it
// answers, and malformed requests, which get a clear errno and never an exception.
using Strata.Native;
using Strata.Testing;
using static Strata.Fuse.Tests.FuseRequests;

namespace Strata.Fuse.Tests;

public sealed class FuseFileSystemTests
{
    const int BlockSize = 64 * 1024;
    const long Size = 4L << 20;
    readonly MemoryExports _exports = new();
    readonly MemoryBlockDevice _vol, _ro;
    readonly List<string> _log = [];
    readonly FuseFileSystem _fs;
    readonly FuseRequests _k;

    public FuseFileSystemTests()
    {
        _vol = _exports.Add("vol", Size, BlockSize);
        _ro = _exports.Add("ro", Size, BlockSize, readOnly: true);
        _fs = new FuseFileSystem(_exports, BlockSize, m => { lock (_log) _log.Add(m); });
        _k = new FuseRequests(_fs);
        Assert.Equal(0, _k.Initialize().Errno);
    }

    static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Fact]
    public void InitNegotiatesAMinorAndTheFlagsItKnowsAndAMegabyteOfWrite()
    {
        var a = _k.Call(Init, 0, InitIn(7, 40));
        Assert.Equal(0, a.Errno);
        Assert.Equal(64, a.Body.Length);
        Assert.Equal(7u, a.U32(0));
        Assert.Equal(31u, a.U32(4)); // the newest minor we speak
        Assert.Equal(128u * 1024, a.U32(8)); // max_readahead as the kernel offered
        Assert.Equal((1u << 0) | (1u << 5) | (1u << 15) | (1u << 18) | (1u << 22), a.U32(12));
        Assert.Equal(1u << 20, a.U32(20)); // max_write
        Assert.Equal(256, BitConverter.ToUInt16(a.Body, 28)); // max_pages
        Assert.Equal(29u, _k.Call(Init, 0, InitIn(7, 29, flags: 1 << 5)).U32(4));
        Assert.Equal(1u << 5, _k.Call(Init, 0, InitIn(7, 29, flags: 1 << 5)).U32(12));
    }

    [Fact]
    public void InitFromAKernelTooOldAnswersOnlyTheMajorAndSaysWhy()
    {
        var a = _k.Call(Init, 0, InitIn(7, 27));
        Assert.Equal(0, a.Errno);
        Assert.Equal(7u, a.U32(0));
        Assert.Equal(0u, a.U32(4));
        Assert.Contains(_log, m => m.Contains("7.27") && m.Contains("7.28"));
        Assert.Equal(0u, _k.Call(Init, 0, InitIn(8, 0)).U32(4));
    }

    [Fact]
    public void LookupFindsEachDeviceAsAFileOfItsSize()
    {
        var a = _k.Call(Lookup, Root, Name("vol"));
        Assert.Equal(0, a.Errno);
        Assert.Equal(128, a.Body.Length);
        ulong node = a.U64(0);
        Assert.True(node > Root);
        Assert.Equal(1ul, a.U64(8)); // generation
        Assert.Equal(0ul, a.U64(16)); // entry_valid: nothing cached
        Assert.Equal(0ul, a.U64(24)); // attr_valid
        Assert.Equal(node, a.U64(40)); // attr.ino
        Assert.Equal((ulong)Size, a.U64(48)); // attr.size
        Assert.Equal((ulong)Size / 512, a.U64(56)); // attr.blocks
        Assert.Equal(0x8180u, a.U32(40 + 60)); // S_IFREG | 0600
        Assert.Equal(1u, a.U32(40 + 64));
        Assert.Equal((uint)BlockSize, a.U32(40 + 80)); // blksize: a loop device's discard granularity
        Assert.Equal(node, _k.NodeOf("vol")); // the same node each time
        Assert.NotEqual(node, _k.NodeOf("ro"));
    }

    [Theory]
    [InlineData("nothing")]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData("")]
    public void LookupOfAnythingElseIsEnoent(string name) => Assert.Equal(Errno.ENOENT, _k.Call(Lookup, Root, Name(name)).Errno);

    [Fact]
    public void LookupOutsideTheRootIsEnoent() => Assert.Equal(Errno.ENOENT, _k.Call(Lookup, _k.NodeOf("vol"), Name("vol")).Errno);

    [Fact]
    public void GetAttrOfTheRootIsADirectoryAndOfAFileItsSize()
    {
        var root = _k.Call(GetAttr, Root, new byte[16]);
        Assert.Equal(0, root.Errno);
        Assert.Equal(104, root.Body.Length);
        Assert.Equal(Root, root.U64(16));
        Assert.Equal(0x41C0u, root.U32(16 + 60)); // S_IFDIR | 0700
        Assert.Equal(2u, root.U32(16 + 64));
        var file = _k.Call(GetAttr, _k.NodeOf("vol"), new byte[16]);
        Assert.Equal((ulong)Size, file.U64(16 + 8));
        Assert.Equal(Errno.ENOENT, _k.Call(GetAttr, 999, new byte[16]).Errno);
    }

    [Fact]
    public void ADeviceRemovedOrAddedShowsAtOnce()
    {
        ulong node = _k.NodeOf("vol");
        _exports.Remove("vol");
        Assert.Equal(Errno.ENOENT, _k.Call(GetAttr, node, new byte[16]).Errno);
        Assert.Equal(Errno.ENOENT, _k.Call(Lookup, Root, Name("vol")).Errno);
        _exports.Add("vol", 2 * Size);
        Assert.Equal(node, _k.NodeOf("vol")); // the same name keeps its node
        Assert.Equal(2ul * Size, _k.Call(GetAttr, node, new byte[16]).U64(16 + 8));
    }

    [Fact]
    public void SetAttrCannotChangeTheSizeAndLeavesTheRestAsItIs()
    {
        ulong node = _k.NodeOf("vol");
        Assert.Equal(Errno.EPERM, _k.Call(SetAttr, node, SetAttrIn(1 << 3, 100)).Errno);
        var a = _k.Call(SetAttr, node, SetAttrIn(1 << 0)); // FATTR_MODE
        Assert.Equal(0, a.Errno);
        Assert.Equal((ulong)Size, a.U64(16 + 8));
    }

    [Fact]
    public void OpenGivesADirectIoHandleThatHoldsTheDeviceUntilReleased()
    {
        var a = _k.Call(Open, _k.NodeOf("vol"), OpenIn(ORdWr));
        Assert.Equal(0, a.Errno);
        Assert.Equal(16, a.Body.Length);
        ulong fh = a.U64(0);
        Assert.Equal((1u << 0) | (1u << 6), a.U32(8)); // FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES
        Assert.Equal(1, _fs.OpenFiles);
        Assert.Equal(2, _vol.OpenHandles); // ours and the file's
        Assert.Equal(0, _k.Call(Release, 2, HandleIn(fh, 24)).Errno);
        Assert.Equal(0, _fs.OpenFiles);
        Assert.Equal(1, _vol.OpenHandles);
        Assert.Equal(0, _k.Call(Release, 2, HandleIn(fh, 24)).Errno); // again: nothing to do
        Assert.Equal(Errno.EBADF, _k.ReadAt(fh, 0, 10).Errno);
    }

    [Fact]
    public void OpenOfAnUnknownNodeIsEnoent() => Assert.Equal(Errno.ENOENT, _k.Call(Open, 999, OpenIn(ORdOnly)).Errno);

    [Fact]
    public void AReadOnlyExportRefusesOpensForWritingAndItsReadHandlesRefuseWrites()
    {
        ulong node = _k.NodeOf("ro");
        Assert.Equal(Errno.EROFS, _k.Call(Open, node, OpenIn(ORdWr)).Errno);
        Assert.Equal(Errno.EROFS, _k.Call(Open, node, OpenIn(OWrOnly)).Errno);
        ulong fh = _k.OpenFile("ro", ORdOnly);
        Assert.Equal(Errno.EBADF, _k.WriteAt(fh, 0, [1, 2, 3]).Errno);
        Assert.Equal(Errno.EBADF, _k.Call(Fallocate, 2, FallocateIn(fh, 0, 4096, PunchHole | KeepSize)).Errno);
        Assert.Empty(_ro.Allocated(0, Size));
        // a read-only handle of a writable export refuses writes too
        ulong readOnly = _k.OpenFile("vol", ORdOnly);
        Assert.Equal(Errno.EBADF, _k.WriteAt(readOnly, 0, [1]).Errno);
        Assert.Empty(_vol.Allocated(0, Size));
    }

    [Fact]
    public void WritesAndReadsGoToTheDeviceAtAnyOffset()
    {
        ulong fh = _k.OpenFile("vol");
        var data = Pattern(3 * BlockSize + 77, 1);
        var w = _k.WriteAt(fh, BlockSize - 11, data);
        Assert.Equal(0, w.Errno);
        Assert.Equal(8, w.Body.Length);
        Assert.Equal((uint)data.Length, w.U32(0));
        var onDevice = new byte[data.Length];
        _vol.Read(BlockSize - 11, onDevice);
        Assert.Equal(data, onDevice);
        var r = _k.ReadAt(fh, BlockSize - 11, (uint)data.Length);
        Assert.Equal(data, r.Body);
        Assert.Equal(data.AsSpan(5, 1000).ToArray(), _k.ReadAt(fh, BlockSize - 6, 1000).Body);
        Assert.Equal(new byte[100], _k.ReadAt(fh, 5 * BlockSize, 100).Body); // never written
    }

    [Fact]
    public void AReadIsClippedAtTheEndAndAtAMegabyte()
    {
        ulong fh = _k.OpenFile("vol");
        _vol.Write(Size - 4, [1, 2, 3, 4]);
        Assert.Equal([1, 2, 3, 4], _k.ReadAt(fh, (ulong)Size - 4, 100).Body);
        Assert.Empty(_k.ReadAt(fh, (ulong)Size, 100).Body);
        Assert.Empty(_k.ReadAt(fh, (ulong)Size + 12345, 100).Body);
        Assert.Empty(_k.ReadAt(fh, ulong.MaxValue, 100).Body);
        Assert.Equal(1 << 20, _k.ReadAt(fh, 0, 3 << 20).Body.Length);
    }

    [Fact]
    public void AWritePastTheEndIsEfbigAndWritesNothing()
    {
        ulong fh = _k.OpenFile("vol");
        Assert.Equal(Errno.EFBIG, _k.WriteAt(fh, (ulong)Size - 2, [1, 2, 3]).Errno);
        Assert.Equal(Errno.EFBIG, _k.WriteAt(fh, (ulong)Size, [1]).Errno);
        Assert.Equal(Errno.EFBIG, _k.WriteAt(fh, ulong.MaxValue - 1, [1, 2, 3, 4]).Errno); // no overflow into range
        Assert.Equal(Errno.EFBIG, _k.WriteAt(fh, (ulong)long.MaxValue, [1]).Errno);
        Assert.Empty(_vol.Allocated(0, Size));
        Assert.Equal(0, _k.WriteAt(fh, (ulong)Size - 3, [1, 2, 3]).Errno); // up to the end is fine
    }

    [Fact]
    public void FsyncFlushesTheDevice()
    {
        ulong fh = _k.OpenFile("vol");
        int before = _vol.Flushes;
        Assert.Equal(0, _k.Call(Fsync, 2, HandleIn(fh, 16)).Errno);
        Assert.Equal(before + 1, _vol.Flushes);
        Assert.Equal(Errno.EBADF, _k.Call(Fsync, 2, HandleIn(fh + 100, 16)).Errno);
        Assert.Equal(0, _k.Call(Flush, 2, HandleIn(fh, 24)).Errno); // close(2)'s FLUSH is not an fsync
        Assert.Equal(before + 1, _vol.Flushes);
    }

    [Fact]
    public void FallocatePunchesHolesZeroesRangesAndIgnoresPlainAllocation()
    {
        ulong fh = _k.OpenFile("vol");
        var data = Pattern(4 * BlockSize, 2);
        _vol.Write(0, data);
        Assert.Equal(0, _k.Call(Fallocate, 2, FallocateIn(fh, BlockSize, BlockSize, PunchHole | KeepSize)).Errno);
        Assert.Equal([(0L, (long)BlockSize), (2L * BlockSize, 2L * BlockSize)], _vol.Allocated(0, Size));
        Assert.Equal(0, _k.Call(Fallocate, 2, FallocateIn(fh, 2 * BlockSize + 10, 20, ZeroRange)).Errno);
        Assert.Equal(0, _k.Call(Fallocate, 2, FallocateIn(fh, 0, 100, 0)).Errno);
        Assert.Equal(0, _k.Call(Fallocate, 2, FallocateIn(fh, 5 * BlockSize, 100, KeepSize)).Errno);
        var expected = (byte[])data.Clone();
        expected.AsSpan(BlockSize, BlockSize).Clear();
        expected.AsSpan(2 * BlockSize + 10, 20).Clear();
        Assert.Equal(expected, _k.ReadAt(fh, 0, 4 * BlockSize).Body);
        Assert.Empty(_vol.Allocated(5 * BlockSize, BlockSize)); // plain allocation allocated nothing
    }

    [Fact]
    public void FallocateIsClippedToTheDeviceAndRefusesWhatItCannotDo()
    {
        ulong fh = _k.OpenFile("vol");
        _vol.Write(Size - BlockSize, Pattern(BlockSize, 3));
        Assert.Equal(0, _k.Call(Fallocate, 2, FallocateIn(fh, (ulong)(Size - BlockSize), 100L << 20, PunchHole | KeepSize)).Errno);
        Assert.Empty(_vol.Allocated(0, Size));
        Assert.Equal(Errno.EINVAL, _k.Call(Fallocate, 2, FallocateIn(fh, (ulong)Size + 1, 10, PunchHole | KeepSize)).Errno);
        Assert.Equal(Errno.EINVAL, _k.Call(Fallocate, 2, FallocateIn(fh, 0, 0, PunchHole | KeepSize)).Errno);
        Assert.Equal(Errno.EINVAL, _k.Call(Fallocate, 2, FallocateIn(fh, 0, ulong.MaxValue, PunchHole | KeepSize)).Errno);
        Assert.Equal(Errno.EINVAL, _k.Call(Fallocate, 2, FallocateIn(fh, ulong.MaxValue, 10, PunchHole | KeepSize)).Errno);
        Assert.Equal(Errno.EOPNOTSUPP, _k.Call(Fallocate, 2, FallocateIn(fh, 0, 10, CollapseRange)).Errno);
        Assert.Equal(Errno.EOPNOTSUPP, _k.Call(Fallocate, 2, FallocateIn(fh, 0, 10, PunchHole)).Errno); // a punch must keep the size
    }

    [Fact]
    public void OpenDirAndReadDirListTheDevicesPageByPage()
    {
        var open = _k.Call(OpenDir, Root, OpenIn(ORdOnly));
        Assert.Equal(0, open.Errno);
        Assert.Equal(16, open.Body.Length);
        Assert.Equal(Errno.ENOTDIR, _k.Call(OpenDir, _k.NodeOf("vol"), OpenIn(ORdOnly)).Errno);
        _exports.Add("a-long-device-name-" + new string('x', 40), Size);

        var all = Entries(_k.Call(ReadDir, Root, ReadIn(0, 0, 4096)).Body);
        Assert.Equal([".", "..", "vol", "ro", "a-long-device-name-" + new string('x', 40)], all.Select(e => e.Name));
        Assert.Equal([1ul, 2, 3, 4, 5], all.Select(e => e.Next));
        Assert.Equal([4u, 4, 8, 8, 8], all.Select(e => e.Type));
        Assert.Equal(_k.NodeOf("vol"), all[2].Node);

        // a small buffer: as many whole entries as fit, then on from the last one's offset
        var names = new List<string>();
        ulong offset = 0;
        for (int rounds = 0; rounds < 10; rounds++)
        {
            var page = Entries(_k.Call(ReadDir, Root, ReadIn(0, offset, 96)).Body); // room for one long entry, or a few short ones
            if (page.Count == 0) break;
            names.AddRange(page.Select(e => e.Name));
            offset = page[^1].Next;
        }
        Assert.Equal(all.Select(e => e.Name), names);
        Assert.Empty(_k.Call(ReadDir, Root, ReadIn(0, ulong.MaxValue, 4096)).Body);
        Assert.Empty(_k.Call(ReadDir, Root, ReadIn(0, 0, 10)).Body); // room for none
        Assert.Equal(0, _k.Call(ReleaseDir, Root, HandleIn(0, 24)).Errno);
        Assert.Equal(0, _k.Call(FsyncDir, Root, HandleIn(0, 16)).Errno);
    }

    /// <summary>fuse_dirent: ino 8, off 8, namelen 4, type 4, name, padded to 8.</summary>
    static List<(ulong Node, ulong Next, uint Type, string Name)> Entries(byte[] body)
    {
        var list = new List<(ulong, ulong, uint, string)>();
        for (int at = 0; at < body.Length;)
        {
            var e = body.AsSpan(at);
            int nameLength = (int)BitConverter.ToUInt32(e[16..]);
            list.Add((BitConverter.ToUInt64(e), BitConverter.ToUInt64(e[8..]), BitConverter.ToUInt32(e[20..]), System.Text.Encoding.UTF8.GetString(e.Slice(24, nameLength))));
            at += (24 + nameLength + 7) & ~7;
        }
        return list;
    }

    [Fact]
    public void StatFsCountsTheFilesAndGivesTheBlockSize()
    {
        var a = _k.Call(StatFs, Root, []);
        Assert.Equal(0, a.Errno);
        Assert.Equal(80, a.Body.Length);
        Assert.Equal(3ul, a.U64(24)); // two devices and the root
        Assert.Equal((uint)BlockSize, a.U32(40));
        Assert.Equal(255u, a.U32(44));
        Assert.Equal((uint)BlockSize, a.U32(48));
    }

    [Fact]
    public void ForgetsAndInterruptsTakeNoReplyAndUnknownOpcodesAreEnosys()
    {
        Assert.Null(_k.Send(Forget, 2, new byte[8]));
        Assert.Null(_k.Send(BatchForget, 0, new byte[8]));
        Assert.Null(_k.Send(Interrupt, 0, new byte[8]));
        Assert.Equal(0, _k.Call(Destroy, 0, []).Errno);
        Assert.Equal(Errno.ENOSYS, _k.Call(5, Root, []).Errno); // READLINK
        Assert.Equal(Errno.ENOSYS, _k.Call(9999, Root, []).Errno);
    }

    /// <summary>Every opcode with bodies cut short at every length below what it needs: EINVAL, nothing written, no
    /// exception, nothing logged as a failure.</summary>
    [Theory]
    [InlineData(Init, 16)]
    [InlineData(Lookup, 4)]
    [InlineData(SetAttr, 88)]
    [InlineData(Open, 8)]
    [InlineData(Read, 40)]
    [InlineData(Write, 40)]
    [InlineData(Fsync, 16)]
    [InlineData(Release, 24)]
    [InlineData(Fallocate, 32)]
    [InlineData(ReadDir, 40)]
    public void ARequestTooShortForItsBodyIsEinval(uint opcode, int needed)
    {
        ulong fh = _k.OpenFile("vol");
        var full = opcode switch
        {
            Lookup => Name("vol"),
            Write => WriteIn(fh, 0, [1, 2, 3]),
            Fallocate => FallocateIn(fh, 0, 4096, PunchHole | KeepSize),
            _ => HandleIn(fh, Math.Max(needed, 8)),
        };
        for (int length = 0; length < needed; length++)
        {
            var cut = full.AsSpan(0, length).ToArray(); // a name without its NUL, a struct cut short
            var a = _k.Call(opcode, opcode == Lookup ? Root : _k.NodeOf("vol"), cut);
            Assert.True(a.Errno == Errno.EINVAL, $"opcode {opcode} with {length} of {needed} bytes: errno {a.Errno}");
        }
        Assert.Equal(1, _fs.OpenFiles);
        Assert.Empty(_vol.Allocated(0, Size));
        Assert.DoesNotContain(_log, m => m.Contains("failed"));
    }

    [Fact]
    public void AWriteShorterThanItsAnnouncedSizeIsEinval()
    {
        ulong fh = _k.OpenFile("vol");
        Assert.Equal(Errno.EINVAL, _k.Call(Write, 2, WriteIn(fh, 0, [1, 2, 3], size: 4)).Errno);
        Assert.Equal(Errno.EINVAL, _k.Call(Write, 2, WriteIn(fh, 0, [1, 2, 3], size: uint.MaxValue)).Errno);
        Assert.Empty(_vol.Allocated(0, Size));
    }

    [Fact]
    public void ALookupNameThatIsNotUtf8IsEinval() => Assert.Equal(Errno.EINVAL, _k.Call(Lookup, Root, [0xFF, 0xFE, 0]).Errno);

    [Fact]
    public void AHeaderWhoseLengthDisagreesWithTheRequestIsEinvalAndOneTooShortForAHeaderIsDropped()
    {
        var a = _k.SendRaw(Message(GetAttr, 77, Root, new byte[16], length: 20));
        Assert.Equal(Errno.EINVAL, a!.Errno);
        Assert.Equal(77ul, a.Unique);
        Assert.Null(_k.SendRaw(new byte[39]));
        Assert.Null(_k.SendRaw([]));
        Assert.Contains(_log, m => m.Contains("shorter than its header"));
    }

    [Fact]
    public void OperationsOnAHandleNeverOpenedAreEbadf()
    {
        Assert.Equal(Errno.EBADF, _k.ReadAt(12345, 0, 10).Errno);
        Assert.Equal(Errno.EBADF, _k.WriteAt(12345, 0, [1]).Errno);
        Assert.Equal(Errno.EBADF, _k.Call(Fallocate, 2, FallocateIn(12345, 0, 10, PunchHole | KeepSize)).Errno);
    }

    /// <summary>Random bytes after valid headers, for every opcode: each gets a well-formed reply or none, and the
    /// filesystem still serves afterwards. Seed fixed.</summary>
    [Fact]
    public void RandomRequestsGetWellFormedRepliesAndBreakNothing()
    {
        var random = new Random(5);
        ulong fh = _k.OpenFile("vol");
        uint[] opcodes = [Lookup, Forget, GetAttr, SetAttr, Open, Read, Write, StatFs, Release, Fsync, Flush, Init, OpenDir, ReadDir, ReleaseDir, FsyncDir, Interrupt, Destroy, BatchForget, Fallocate, 7, 44, 0];
        for (int i = 0; i < 5000; i++)
        {
            var body = new byte[random.Next(0, 200)];
            random.NextBytes(body);
            if (body.Length >= 8 && random.Next(2) == 0) BitConverter.TryWriteBytes(body, fh); // a valid handle, random rest
            uint opcode = opcodes[random.Next(opcodes.Length)];
            if (opcode == Release) continue; // keep the handle
            _k.Send(opcode, (ulong)random.Next(0, 5), body);
        }
        var data = Pattern(1000, 6);
        Assert.Equal(0, _k.WriteAt(fh, 12345, data).Errno);
        Assert.Equal(data, _k.ReadAt(fh, 12345, 1000).Body);
    }
}
