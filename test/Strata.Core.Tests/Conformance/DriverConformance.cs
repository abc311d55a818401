using Strata.Archive;
using Strata.Native;
using Strata.Testing;
using static Strata.Core.Tests.Conformance.TreeWriter;

namespace Strata.Core.Tests.Conformance;

/// <summary>
/// The one driver contract suite (after moby's graphtest and containerd's snapshotter suite), run
/// against every driver: a driver's test class only says which driver and where its store lives.
/// Every test gets a fresh store; layers are edited through Mount/Unmount as a container would.
/// </summary>
public abstract partial class DriverConformance : IDisposable
{
    protected readonly TempRoot Temp;
    protected LayerStore Store { get; private set; }

    protected abstract string DriverName { get; }

    /// <summary>Whether writing to one name of a hardlinked lower-layer file changes its other names too. True for
    /// drivers that copy whole trees or blocks; false for overlayfs, whose copy-up (without its inode index,
    /// which Strata leaves off as moby and containerd do) gives the written name a file of its own.</summary>
    protected virtual bool CopyUpKeepsHardlinks => true;

    /// <summary>Where to put the store: a directory on the filesystem under test.</summary>
    protected virtual string StoreParent(TempRoot temp) => temp.Path;

    /// <summary>Driver options the store is opened with (Docker's --storage-opt).</summary>
    protected virtual IReadOnlyDictionary<string, string> DriverOptions => new Dictionary<string, string>();

    protected DriverConformance()
    {
        Temp = new TempRoot();
        try
        {
            // StoreParent may skip the test (Skip.If: the filesystem under test cannot be made here)
            Store = LayerStore.Open(new StoreOptions { Root = Path.Combine(StoreParent(Temp), "store-" + Guid.NewGuid().ToString("N")[..8]), Driver = DriverName, DriverOptions = DriverOptions });
        }
        catch
        {
            Temp.Dispose();
            throw;
        }
    }

    public virtual void Dispose()
    {
        string root = Store.Root;
        Store.Dispose();
        PoolServers.Kill(root);
        foreach (var mount in Mounts.Under(root).OrderByDescending(m => m.Length)) Shell.Run("umount", "-l", mount);
        Shell.Run("rm", "-rf", "--one-file-system", root);
        Temp.Dispose();
    }

    /// <summary>Closes the store and opens it again, as a restarted process would.</summary>
    protected void Reopen()
    {
        string root = Store.Root;
        Store.Dispose();
        Store = LayerStore.Open(new StoreOptions { Root = root, Driver = DriverName, DriverOptions = DriverOptions });
    }

    /// <summary>Runs <paramref name="edit"/> on the mounted tree of a layer, then unmounts.</summary>
    protected void Edit(string id, Action<string> edit)
    {
        string dir = Store.Mount(id);
        try
        {
            edit(dir);
        }
        finally
        {
            Store.Unmount(id);
        }
    }

    protected T View<T>(string id, Func<string, T> read)
    {
        string dir = Store.Mount(id);
        try
        {
            return read(dir);
        }
        finally
        {
            Store.Unmount(id);
        }
    }

    protected void CreateBase(string id)
    {
        Store.Create(id, null);
        Edit(id, dir =>
        {
            uint old = Posix.SetUmask(0);
            try
            {
                Dir(dir, "a subdir", 0x3C5 /* 01705 */, 1, 2);
                File(dir, "a file", "Some data", 0x892 /* 04222 */);
            }
            finally
            {
                Posix.SetUmask(old);
            }
        });
    }

    protected static void VerifyBase(string dir)
    {
        var sub = Posix.Lstat(Path.Combine(dir, "a subdir"));
        Assert.Equal(FileKind.Directory, sub.Kind);
        Assert.Equal(0x3C5u, sub.Permissions);
        Assert.Equal((1u, 2u), (sub.Uid, sub.Gid));
        var file = Posix.Lstat(Path.Combine(dir, "a file"));
        Assert.Equal(FileKind.Regular, file.Kind);
        Assert.Equal(0x892u, file.Permissions);
        Assert.Equal("Some data", Read(dir, "a file"));
        Assert.Equal(2, Posix.ReadDir(dir).Count(e => e.Name != "lost+found"));
    }

    [SkippableFact]
    public void CreateEmpty()
    {
        Store.Create("empty", null);
        Assert.True(Store.Exists("empty"));
        View("empty", dir =>
        {
            var st = Posix.Lstat(dir);
            Assert.Equal(FileKind.Directory, st.Kind);
            Assert.Equal(0x1EDu, st.Permissions);
            Assert.Equal((0u, 0u), (st.Uid, st.Gid));
            Assert.DoesNotContain(Posix.ReadDir(dir), e => e.Name != "lost+found");
            return 0;
        });
        Store.Remove("empty");
        Assert.False(Store.Exists("empty"));
    }

    [SkippableFact]
    public void CreateBaseKeepsSpecialBitsAndOwners()
    {
        CreateBase("base");
        View("base", dir => { VerifyBase(dir); return 0; });
    }

    [SkippableFact]
    public void CreateSnapSeesParent()
    {
        CreateBase("base");
        Store.Create("snap", "base", LayerKind.ReadWrite);
        View("snap", dir => { VerifyBase(dir); return 0; });
        Assert.Equal("base", Store.Inspect("snap").Parent);
        Assert.Equal(LayerKind.ReadWrite, Store.Inspect("snap").Kind);
    }

    [SkippableFact]
    public void DeepLayerRead128()
    {
        const int depth = 128;
        Store.Create("layer-0", null);
        Edit("layer-0", dir => File(dir, "testfile.txt", "base"));
        for (int i = 1; i <= depth; i++)
        {
            string id = $"layer-{i}", parent = $"layer-{i - 1}";
            Store.Create(id, parent);
            Edit(id, dir =>
            {
                File(dir, "top-id", id);
                File(dir, $"layer-{i}/layer-id", id);
                File(dir, $"layer-{i}/parent-id", parent);
            });
        }
        View($"layer-{depth}", dir =>
        {
            Assert.Equal($"layer-{depth}", Read(dir, "top-id"));
            Assert.Equal("base", Read(dir, "testfile.txt"));
            for (int i = 1; i <= depth; i++)
            {
                Assert.Equal($"layer-{i}", Read(dir, $"layer-{i}/layer-id"));
                Assert.Equal($"layer-{i - 1}", Read(dir, $"layer-{i}/parent-id"));
            }
            return 0;
        });
        for (string? id = $"layer-{depth}"; id is not null;)
        {
            string? parent = Store.Inspect(id).Parent;
            Store.Remove(id);
            id = parent;
        }
        Assert.Empty(Store.List());
    }

    [SkippableFact]
    public void DiffApplyRoundTripHasExactSize()
    {
        const int files = 1000;
        var rng = new Random(1234);
        Store.Create("base", null);
        Edit("base", dir =>
        {
            for (int i = 0; i < files; i++) File(dir, $"dir{i / 100}/file{i}", RandomText(rng, 64));
            File(dir, "file-remove.txt", "gone soon");
            Dir(dir, "var/lib");
            File(dir, "var/lib/state", "x");
        });
        Store.Create("upper", "base");
        Edit("upper", dir =>
        {
            for (int i = 0; i < files; i++) File(dir, $"dir{i / 100}/file{i}", RandomText(rng, 64));
            System.IO.File.Delete(Path.Combine(dir, "file-remove.txt"));
            Directory.Delete(Path.Combine(dir, "var/lib"), recursive: true);
        });
        long diffSize = Store.DiffSize("upper", "base");
        var tar = new MemoryStream();
        Store.Diff("upper", "base", tar);
        tar.Position = 0;
        Store.Create("applied", "base");
        long applied = Store.ApplyDiff("applied", tar);
        Assert.Equal(diffSize, applied);
        Assert.Equal(files * 64L, applied);
        string upper = Store.Mount("upper"), copy = Store.Mount("applied");
        try
        {
            TreeSnapshot.AssertSame(upper, copy, MtimePrecision.Seconds);
            Assert.False(Exists(copy, "file-remove.txt"));
            Assert.False(Exists(copy, "var/lib"));
        }
        finally
        {
            Store.Unmount("upper");
            Store.Unmount("applied");
        }
        Assert.Equal(applied, Store.Inspect("applied").Size);
    }

    [SkippableFact]
    public void ChangesListsExactlyWhatChanged()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            for (int i = 0; i < 20; i++) File(dir, $"file{i:D2}", $"content {i}");
            Dir(dir, "dir");
            File(dir, "dir/inner", "inner");
        });
        Store.Create("upper", "base", LayerKind.ReadWrite);
        var expected = new List<string>();
        Edit("upper", dir =>
        {
            for (int i = 0; i < 20; i++)
            {
                string name = $"file{i:D2}";
                switch (i % 3)
                {
                    case 0:
                        File(dir, name, $"modified {i}");
                        expected.Add($"C /{name}");
                        break;
                    case 1:
                        File(dir, $"added{i:D2}", "new");
                        expected.Add($"A /added{i:D2}");
                        break;
                    default:
                        System.IO.File.Delete(Path.Combine(dir, name));
                        expected.Add($"D /{name}");
                        break;
                }
            }
            File(dir, "dir/inner2", "more");
            expected.Add("C /dir");
            expected.Add("A /dir/inner2");
        });
        expected.Sort((a, b) => string.CompareOrdinal(a[2..], b[2..]));
        var actual = Store.Changes("upper").Select(c => c.ToString()).ToList();
        Assert.Equal(expected, actual);
    }

    [SkippableFact]
    public void XattrsSurviveSnapshotAndDiffApply()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            File(dir, "f", "x");
            Xattr(dir, "f", "user.note", "hello");
            Xattr(dir, "f", "trusted.strata", "t");
            Xattr(dir, "f", "security.strata", "s");
            Dir(dir, "d");
            Xattr(dir, "d", "trusted.dir", "yes");
            System.IO.File.CreateSymbolicLink(Path.Combine(dir, "link"), "f");
            Posix.LsetXattr(Path.Combine(dir, "link"), "trusted.link", "l"u8);
        });
        Store.Create("snap", "base");
        string b = Store.Mount("base"), s = Store.Mount("snap");
        try
        {
            TreeSnapshot.AssertSame(b, s, MtimePrecision.Nanoseconds);
        }
        finally
        {
            Store.Unmount("base");
            Store.Unmount("snap");
        }
        Edit("snap", dir => Xattr(dir, "f", "user.note", "changed"));
        Assert.Equal(["C /f"], Store.Changes("snap").Select(c => c.ToString()));
        AssertDiffReproduces("snap", "base");
    }

    [SkippableFact]
    public void XattrRemovedFromALowerDirectory()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            Dir(dir, "d");
            Xattr(dir, "d", "user.old", "1");
            Xattr(dir, "d", "trusted.kept", "2");
        });
        Store.Create("snap", "base");
        Edit("snap", dir => Posix.LremoveXattr(Path.Combine(dir, "d"), "user.old"));
        Assert.Equal(["C /d"], Store.Changes("snap").Select(c => c.ToString()));
        string copy = AssertDiffReproduces("snap", "base");
        View(copy, dir =>
        {
            Assert.Equal(["trusted.kept"], Posix.LgetXattrs(Path.Combine(dir, "d")).Select(kv => kv.Key));
            return 0;
        });
    }

    [SkippableFact]
    public void HardlinksAcrossLayers()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            File(dir, "a", "shared");
            Posix.LinkAt(FileDescriptor.Cwd, Path.Combine(dir, "a"), FileDescriptor.Cwd, Path.Combine(dir, "b"));
        });
        Store.Create("snap", "base");
        View("snap", dir =>
        {
            var a = Posix.Lstat(Path.Combine(dir, "a"));
            var b = Posix.Lstat(Path.Combine(dir, "b"));
            Assert.Equal(a.Inode, b.Inode);
            Assert.Equal(2u, a.Nlink);
            return 0;
        });
        // a hardlink to a lower-layer file, modified in the upper layer: both names change together,
        // unless the driver copies files up by name (overlayfs without index: the other name keeps the
        // lower file); either way the view, the changes and the diff agree
        Edit("snap", dir =>
        {
            using var fs = new FileStream(Path.Combine(dir, "a"), FileMode.Append);
            fs.Write("+more"u8);
        });
        Edit("snap", dir => Posix.LinkAt(FileDescriptor.Cwd, Path.Combine(dir, "a"), FileDescriptor.Cwd, Path.Combine(dir, "c")));
        Assert.Equal(CopyUpKeepsHardlinks ? ["C /a", "C /b", "A /c"] : ["C /a", "A /c"], Store.Changes("snap").Select(c => c.ToString()));
        string copy = AssertDiffReproduces("snap", "base");
        View(copy, dir =>
        {
            var a = Posix.Lstat(Path.Combine(dir, "a"));
            Assert.Equal(a.Inode, Posix.Lstat(Path.Combine(dir, "c")).Inode);
            Assert.Equal("shared+more", Read(dir, "c"));
            Assert.Equal(CopyUpKeepsHardlinks, a.Inode == Posix.Lstat(Path.Combine(dir, "b")).Inode);
            Assert.Equal(CopyUpKeepsHardlinks ? "shared+more" : "shared", Read(dir, "b"));
            return 0;
        });
    }

    [SkippableFact]
    public void SetuidSetgidAndStickyBits()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            File(dir, "suid", "x", 0x9ED /* 04755 */, 0, 0);
            File(dir, "sgid", "x", 0x5ED /* 02755 */, 5, 5);
            Dir(dir, "tmp", 0x3FF /* 01777 */);
            Dir(dir, "shared", 0x5F8 /* 02770 */, 10, 20);
        });
        Store.Create("snap", "base");
        View("snap", dir =>
        {
            Assert.Equal(0x9EDu, Posix.Lstat(Path.Combine(dir, "suid")).Permissions);
            Assert.Equal(0x5EDu, Posix.Lstat(Path.Combine(dir, "sgid")).Permissions);
            Assert.Equal(0x3FFu, Posix.Lstat(Path.Combine(dir, "tmp")).Permissions);
            var shared = Posix.Lstat(Path.Combine(dir, "shared"));
            Assert.Equal((0x5F8u, 10u, 20u), (shared.Permissions, shared.Uid, shared.Gid));
            return 0;
        });
        AssertDiffReproduces("base", null);
    }

    [SkippableFact]
    public void DeviceNodesAndFifos()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            Directory.CreateDirectory(Path.Combine(dir, "dev"));
            Posix.MknodAt(FileDescriptor.Cwd, Path.Combine(dir, "dev/null"), (uint)FileKind.CharDevice | 0x1B6, 1, 3);
            Posix.MknodAt(FileDescriptor.Cwd, Path.Combine(dir, "dev/loop9"), (uint)FileKind.BlockDevice | 0x1B0, 7, 9);
            Posix.MknodAt(FileDescriptor.Cwd, Path.Combine(dir, "fifo"), (uint)FileKind.Fifo | 0x1A4, 0, 0);
        });
        Store.Create("snap", "base");
        View("snap", dir =>
        {
            var n = Posix.Lstat(Path.Combine(dir, "dev/null"));
            Assert.Equal((FileKind.CharDevice, 1u, 3u), (n.Kind, n.RdevMajor, n.RdevMinor));
            var l = Posix.Lstat(Path.Combine(dir, "dev/loop9"));
            Assert.Equal((FileKind.BlockDevice, 7u, 9u), (l.Kind, l.RdevMajor, l.RdevMinor));
            Assert.Equal(FileKind.Fifo, Posix.Lstat(Path.Combine(dir, "fifo")).Kind);
            return 0;
        });
        AssertDiffReproduces("base", null);
    }

    [SkippableFact]
    public void SocketsSurviveSnapshotsAndAreLeftOutOfDiffsWithANote()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            // what a daemon that bound a unix socket and then died leaves behind
            Posix.MknodAt(FileDescriptor.Cwd, Path.Combine(dir, "control.sock"), (uint)FileKind.Socket | 0x1ED, 0, 0);
            File(dir, "plain", "x");
        });
        Store.Create("snap", "base");
        View("snap", dir =>
        {
            Assert.Equal(FileKind.Socket, Posix.Lstat(Path.Combine(dir, "control.sock")).Kind);
            return 0;
        });
        var result = Store.Diff("base", null, new MemoryStream());
        Assert.Equal(["/control.sock"], result.SkippedSockets);
    }

    [SkippableFact]
    public void NamesThatAreNotUtf8()
    {
        string latin1 = "caf\uDCE9";
        Store.Create("base", null);
        Edit("base", dir =>
        {
            Directory.CreateDirectory(Path.Combine(dir, "d"));
            using (Posix.Open(Path.Combine(dir, "d", latin1), Posix.O_WRONLY | Posix.O_CREAT, 0x1A4)) { }
        });
        Store.Create("snap", "base");
        Edit("snap", dir => Posix.SymlinkAt(latin1, FileDescriptor.Cwd, Path.Combine(dir, "d", "link")));
        Assert.Equal(["C /d", "A /d/link"], Store.Changes("snap").Select(c => c.ToString()));
        string copy1 = AssertDiffReproduces("base", null), copy2 = AssertDiffReproduces("snap", "base");
        foreach (var id in new[] { copy2, copy1, "snap", "base" }) Store.Remove(id);
        Assert.Empty(Store.Driver.List());
    }

    [SkippableFact]
    public void SparseFilesKeepTheirHoles()
    {
        const long size = 256L << 20;
        Store.Create("base", null);
        Edit("base", dir =>
        {
            using var fs = new FileStream(Path.Combine(dir, "sparse"), FileMode.CreateNew);
            fs.SetLength(size);
            fs.Position = 100L << 20;
            fs.Write(new byte[4096].Select((_, i) => (byte)(i % 251 + 1)).ToArray());
        });
        Store.Create("snap", "base");
        View("snap", dir =>
        {
            var st = Posix.Lstat(Path.Combine(dir, "sparse"));
            Assert.Equal(size, st.Size);
            Assert.True(st.Blocks * 512 < (4L << 20), $"the copy allocated {st.Blocks * 512} bytes for 4 KiB of data");
            return 0;
        });
        string copy = AssertDiffReproduces("snap", null);
        View(copy, dir =>
        {
            var st = Posix.Lstat(Path.Combine(dir, "sparse"));
            Assert.True(st.Blocks * 512 < (4L << 20), $"the applied file allocated {st.Blocks * 512} bytes for 4 KiB of data");
            return 0;
        });
    }

    [SkippableFact]
    public void Symlinks()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            File(dir, "usr/lib/libx.so", "elf");
            System.IO.File.CreateSymbolicLink(Path.Combine(dir, "lib"), "usr/lib");
            System.IO.File.CreateSymbolicLink(Path.Combine(dir, "abs"), "/etc/passwd");
            System.IO.File.CreateSymbolicLink(Path.Combine(dir, "dangling"), "../../nowhere");
            Posix.LchownAt(FileDescriptor.Cwd, Path.Combine(dir, "abs"), 7, 8);
        });
        Store.Create("snap", "base");
        View("snap", dir =>
        {
            Assert.Equal("usr/lib", Posix.ReadLink(Path.Combine(dir, "lib")));
            Assert.Equal("/etc/passwd", Posix.ReadLink(Path.Combine(dir, "abs")));
            Assert.Equal(7u, Posix.Lstat(Path.Combine(dir, "abs")).Uid);
            return 0;
        });
        Edit("snap", dir =>
        {
            System.IO.File.Delete(Path.Combine(dir, "abs"));
            System.IO.File.CreateSymbolicLink(Path.Combine(dir, "abs"), "/etc/shadow");
        });
        Assert.Equal(["C /abs"], Store.Changes("snap").Select(c => c.ToString()));
        AssertDiffReproduces("snap", "base");
    }

    [SkippableFact]
    public void DirectoryRenamedFromALowerLayer()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            File(dir, "app/conf/main.cf", "main", 0x180, 5, 6);
            File(dir, "app/bin/tool", "tool", 0x1ED);
            Posix.SymlinkAt("bin/tool", FileDescriptor.Cwd, Path.Combine(dir, "app/tool-link"));
            Xattr(dir, "app", "user.kind", "application");
            File(dir, "keep", "k");
        });
        Store.Create("snap", "base", LayerKind.ReadWrite);
        // what `mv /app /srv` does in a container (overlayfs refuses the rename with EXDEV; mv then copies)
        Edit("snap", dir => Shell.Run("mv", Path.Combine(dir, "app"), Path.Combine(dir, "srv")).Check("mv"));
        View("snap", dir =>
        {
            Assert.False(Exists(dir, "app"));
            Assert.Equal("main", Read(dir, "srv/conf/main.cf"));
            Assert.Equal((5u, 6u, 0x180u), (Posix.Lstat(Path.Combine(dir, "srv/conf/main.cf")).Uid, Posix.Lstat(Path.Combine(dir, "srv/conf/main.cf")).Gid, Posix.Lstat(Path.Combine(dir, "srv/conf/main.cf")).Permissions));
            Assert.Equal("bin/tool", Posix.ReadLink(Path.Combine(dir, "srv/tool-link")));
            return 0;
        });
        Assert.Equal(["D /app", "A /srv", "A /srv/bin", "A /srv/bin/tool", "A /srv/conf", "A /srv/conf/main.cf", "A /srv/tool-link"],
            Store.Changes("snap").Select(c => c.ToString()));
        AssertDiffReproduces("snap", "base");
        Assert.Equal("main", View("base", dir => Read(dir, "app/conf/main.cf")));
    }

    [SkippableFact]
    public void FileMovedFromALowerLayer()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            File(dir, "var/log/old.log", "log line\n", 0x1A0, 7, 8);
            Dir(dir, "archive");
        });
        Store.Create("snap", "base", LayerKind.ReadWrite);
        Edit("snap", dir => Posix.Rename(Path.Combine(dir, "var/log/old.log"), Path.Combine(dir, "archive/old.log")));
        View("snap", dir =>
        {
            Assert.False(Exists(dir, "var/log/old.log"));
            var st = Posix.Lstat(Path.Combine(dir, "archive/old.log"));
            Assert.Equal((7u, 8u, 0x1A0u), (st.Uid, st.Gid, st.Permissions));
            Assert.Equal("log line\n", Read(dir, "archive/old.log"));
            return 0;
        });
        Assert.Equal(["C /archive", "A /archive/old.log", "C /var", "C /var/log", "D /var/log/old.log"], Store.Changes("snap").Select(c => c.ToString()));
        AssertDiffReproduces("snap", "base");
    }

    [SkippableFact]
    public void ReplaceDirectoryByFileAndBack()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            File(dir, "thing/inside", "1");
            File(dir, "other", "2");
        });
        Store.Create("l1", "base");
        Edit("l1", dir =>
        {
            Directory.Delete(Path.Combine(dir, "thing"), true);
            File(dir, "thing", "now a file");
            System.IO.File.Delete(Path.Combine(dir, "other"));
            File(dir, "other/inside", "now a dir");
        });
        Assert.Equal(["C /other", "A /other/inside", "C /thing"], Store.Changes("l1").Select(c => c.ToString()));
        AssertDiffReproduces("l1", "base");
        Store.Create("l2", "l1");
        Edit("l2", dir =>
        {
            System.IO.File.Delete(Path.Combine(dir, "thing"));
            File(dir, "thing/again", "dir again");
        });
        AssertDiffReproduces("l2", "l1");
        View("l2", dir =>
        {
            Assert.Equal("dir again", Read(dir, "thing/again"));
            Assert.False(Exists(dir, "thing/inside"));
            return 0;
        });
    }

    [SkippableFact]
    public void OpaqueDirectoryHidesLowerChildren()
    {
        Store.Create("base", null);
        Edit("base", dir =>
        {
            File(dir, "etc/a", "a");
            File(dir, "etc/b", "b");
            File(dir, "etc/sub/c", "c");
        });
        // a tar as `docker commit` of "rm -rf /etc/*; echo new > /etc/b" may be written with an opaque marker
        var tar = new MemoryStream();
        using (var w = new Strata.Archive.Tar.TarWriter(tar))
        {
            w.WriteHeader(new() { Name = "etc/", Type = Strata.Archive.Tar.TarEntryType.Directory, Mode = 0x1ED });
            var data = "new"u8.ToArray();
            w.WriteHeader(new() { Name = "etc/b", Type = Strata.Archive.Tar.TarEntryType.Regular, Mode = 0x1A4, Size = data.Length });
            w.WriteData(data);
            w.Pad(data.Length);
            w.WriteHeader(new() { Name = "etc/sub/", Type = Strata.Archive.Tar.TarEntryType.Directory, Mode = 0x1ED });
            w.WriteHeader(new() { Name = "etc/.wh..wh..opq", Type = Strata.Archive.Tar.TarEntryType.Regular });
            w.Finish();
        }
        tar.Position = 0;
        Store.Create("top", "base", diff: tar);
        View("top", dir =>
        {
            Assert.Equal(["b", "sub"], Posix.ReadDir(Path.Combine(dir, "etc")).Select(e => e.Name));
            Assert.Equal("new", Read(dir, "etc/b"));
            Assert.Empty(Posix.ReadDir(Path.Combine(dir, "etc/sub")));
            return 0;
        });
        Assert.Equal(["C /etc", "D /etc/a", "C /etc/b", "C /etc/sub", "D /etc/sub/c"], Store.Changes("top").Select(c => c.ToString()));
        AssertDiffReproduces("top", "base");
    }

    [SkippableFact]
    public void RemoveIsRefusedWhileChildrenOrMountsExist()
    {
        Store.Create("base", null);
        Store.Create("child", "base");
        var ex = Assert.Throws<StrataException>(() => Store.Remove("base"));
        Assert.Equal(ErrorKind.InUse, ex.Kind);
        Assert.Contains("child", ex.Message);
        Store.Mount("child");
        Store.Mount("child");
        ex = Assert.Throws<StrataException>(() => Store.Remove("child"));
        Assert.Equal(ErrorKind.InUse, ex.Kind);
        Assert.Contains("mounted", ex.Message);
        Store.Unmount("child");
        Assert.Throws<StrataException>(() => Store.Remove("child"));
        Store.Unmount("child");
        Assert.Equal(ErrorKind.InvalidArgument, Assert.Throws<StrataException>(() => Store.Unmount("child")).Kind);
        Store.Remove("child");
        Store.Remove("base");
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => Store.Remove("base")).Kind);
        Assert.Empty(Store.Driver.List());
    }

    [SkippableFact]
    public void AFailedCreateFromTarLeavesNoLayerAndNoData()
    {
        Store.Create("base", null);
        var tar = new MemoryStream();
        using (var w = new Strata.Archive.Tar.TarWriter(tar))
        {
            w.WriteHeader(new() { Name = "big", Type = Strata.Archive.Tar.TarEntryType.Regular, Mode = 0x1A4, Size = 1 << 20 });
            w.WriteData(new byte[4096]);
            w.Finish();
        }
        var truncated = new MemoryStream(tar.ToArray()[..(512 + 4096)]);
        Assert.Equal(ErrorKind.Corrupt, Assert.Throws<StrataException>(() => Store.Create("broken", "base", diff: truncated)).Kind);
        Assert.False(Store.Exists("broken"));
        Assert.Equal(["base"], Store.Driver.List());
        Store.Remove("base");
    }

    [SkippableFact]
    public void DataNoRecordOwnsIsSweptWhenTheStoreOpens()
    {
        Store.Create("kept", null);
        Store.Create("orphan", "kept");
        // a crash between writing a layer's data and its record leaves exactly this
        System.IO.File.Delete(Path.Combine(Store.Root, "layers", "orphan.json"));
        Reopen();
        Assert.Equal(["kept"], Store.Driver.List());
        Assert.Contains("orphaned data of orphan", Store.Swept);
        Store.Remove("kept");
        Assert.Empty(Store.Driver.List());
    }

    [SkippableFact]
    public void KeyReuseAfterRemove()
    {
        Store.Create("k", null);
        Assert.Equal(ErrorKind.AlreadyExists, Assert.Throws<StrataException>(() => Store.Create("k", null)).Kind);
        Store.Remove("k");
        Store.Create("k", null, LayerKind.ReadWrite);
        Assert.Equal(LayerKind.ReadWrite, Store.Inspect("k").Kind);
    }

    /// <summary>Diffs <paramref name="id"/> against <paramref name="against"/>, applies the tar to a fresh
    /// child of <paramref name="against"/>, and asserts the result equals the original; returns the copy's id.</summary>
    protected string AssertDiffReproduces(string id, string? against)
    {
        long expectedSize = Store.DiffSize(id, against);
        var tar = new MemoryStream();
        Store.Diff(id, against, tar);
        tar.Position = 0;
        string copy = $"{id}-copy-{Guid.NewGuid().ToString("N")[..6]}";
        var layer = Store.Create(copy, against, diff: tar);
        Assert.Equal(expectedSize, layer.Size);
        string a = Store.Mount(id), b = Store.Mount(copy);
        try
        {
            TreeSnapshot.AssertSame(a, b, MtimePrecision.Seconds);
        }
        finally
        {
            Store.Unmount(id);
            Store.Unmount(copy);
        }
        return copy;
    }

    static string RandomText(Random rng, int length)
    {
        var chars = new char[length];
        for (int i = 0; i < length; i++) chars[i] = (char)('a' + rng.Next(26));
        return new string(chars);
    }
}
