using System.Diagnostics;
using System.Net.Sockets;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>`strata pool serve`: thin devices over NBD to real clients from Debian's packages (nbdinfo,
/// qemu-img, qemu-io, nbdcopy, fio, nbdfuse with ext4 and xfs), pool commands while it serves, garbage that closes only its own connection, and a clean stop on SIGTERM.</summary>
[Collection(HeavyIo.Name)]
public sealed class PoolNbdTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;

    public PoolNbdTests() => _cli = new Cli(_temp.Combine("store"));

    public void Dispose() => _temp.Dispose();

    string Socket => _temp.Combine("nbd.sock");

    string Uri(string name) => $"nbd+unix:///{name}?socket={Socket}";

    readonly System.Text.StringBuilder _serverLog = new();

    Process Serve() => PoolServe.Start(_cli, _serverLog, "--socket", Socket).Process;

    static void Stop(Process p) => PoolServe.Stop(p);

    [NbdClientsFact]
    public void RealClientsReadAndWriteAThinDevice()
    {
        _cli.Ok("pool", "create", "--data-size", "1G", "--metadata-size", "64M");
        _cli.Ok("pool", "device", "create", "vol", "--size", "64M");
        var server = Serve();
        try
        {
            string list = Shell.Run("nbdinfo", "--list", $"nbd+unix:///?socket={Socket}").Check("nbdinfo --list").Stdout;
            Assert.Contains("export=\"vol\"", list);
            string json = Shell.Run("nbdinfo", "--json", Uri("vol")).Check("nbdinfo --json").Stdout;
            Assert.Contains("\"export-size\": 67108864", json);
            foreach (var can in new[] { "flush", "trim", "zero", "multi-conn", "fua" })
                Assert.Equal(0, Shell.Run("nbdinfo", "--can", can, Uri("vol")).ExitCode);

            // qemu-img in and back, qemu-io patterns, nbdcopy with 4 connections
            string src = _temp.Combine("src.raw");
            var bytes = new byte[24 << 20];
            new Random(7).NextBytes(bytes);
            File.WriteAllBytes(src, bytes);
            Shell.Run("truncate", "-s", "64M", src).Check("truncate");
            Shell.Run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, Uri("vol")).Check("qemu-img convert");
            Shell.Run("qemu-img", "compare", "-f", "raw", "-F", "raw", src, Uri("vol")).Check("qemu-img compare");
            var io = Shell.Run("qemu-io", "-f", "raw", "-c", "write -P 0xab 40M 192k", "-c", "read -P 0xab 40M 192k",
                "-c", "discard 40M 64k", "-c", "read -P 0 40M 64k", "-c", "read -P 0xab 41024k 128k", Uri("vol")).Check("qemu-io");
            Assert.DoesNotContain("Pattern verification failed", io.Stdout + io.Stderr);
            // block status: data where written, holes where not and where discarded
            var map = Shell.Run("nbdinfo", "--map", Uri("vol")).Check("nbdinfo --map").Stdout
                .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
                .Select(f => (Offset: long.Parse(f[0]), Length: long.Parse(f[1]), Type: int.Parse(f[2]))).ToList();
            bool At(long offset, int type) => map.Any(m => m.Offset <= offset && offset < m.Offset + m.Length && m.Type == type);
            Assert.True(At(0, 0) && At((24 << 20) - 1, 0), "the converted data does not show as data");
            Assert.True(At(30L << 20, 3), "an unwritten range does not show as a hole");
            Assert.True(At(40L << 20, 3), "the discarded block does not show as a hole");
            Assert.True(At((40L << 20) + (64 << 10), 0), "the written block after it does not show as data");
            Assert.Contains("\"structured\": true", json);
            string back = _temp.Combine("back.raw");
            Shell.Run("nbdcopy", "--connections=4", Uri("vol"), back).Check("nbdcopy out");
            Assert.True(File.ReadAllBytes(back).AsSpan(0, bytes.Length).SequenceEqual(bytes), "nbdcopy read back other bytes");
            // qemu-img map sees the same allocation as block status: data at the start, zeros after the converted part
            string qmap = Shell.Run("qemu-img", "map", "--output=json", "-f", "raw", Uri("vol")).Check("qemu-img map").Stdout;
            Assert.Contains("\"start\": 0, \"length\": 25165824, \"depth\": 0, \"present\": true, \"zero\": false, \"data\": true", qmap);
            Assert.Contains("\"zero\": true, \"data\": false", qmap);
            // and nbdcopy the other way, into a second device, with 4 connections
            _cli.Ok("pool", "device", "create", "copy", "--size", "64M");
            Shell.Run("nbdcopy", "--connections=4", back, Uri("copy")).Check("nbdcopy in");
            Shell.Run("qemu-img", "compare", "-f", "raw", "-F", "raw", back, Uri("copy")).Check("qemu-img compare after nbdcopy in");

            // garbage on one connection closes that connection only
            using (var raw = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                raw.Connect(new UnixDomainSocketEndPoint(Socket));
                var hello = new byte[18];
                raw.Receive(hello);
                raw.Send(new byte[] { 0, 0, 0, 3 }); // fixed newstyle, no zeroes
                raw.Send(new byte[64].Select((_, i) => (byte)(i * 37)).ToArray());
                var buffer = new byte[256];
                raw.ReceiveTimeout = 10_000;
                bool closed = false;
                try
                {
                    while (raw.Receive(buffer) > 0) { }
                    closed = true;
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
                {
                    closed = true; // closed with the rest of the garbage unread: a reset
                }
                catch (SocketException)
                {
                    // timed out: still open
                }
                Assert.True(closed, "the server kept a connection that sent garbage");
            }
            Shell.Run("qemu-img", "compare", "-f", "raw", "-F", "raw", back, Uri("vol")).Check("qemu-img compare after garbage");
        }
        finally
        {
            Stop(server);
        }
        Assert.False(File.Exists(Socket), "the socket is left after SIGTERM");
        Assert.EndsWith("clean", _cli.Ok("pool", "check"));
    }

    /// <summary>A kernel filesystem on a thin device: nbdfuse exposes the export as a file, a loop device makes
    /// it a block device; mkfs, mount, write a tree, unmount (fsck clean); then a snapshot of the device,
    /// served and attached the same way, mounts with the same tree.</summary>
    [NbdClientsFact]
    public void AnExt4OnAThinDeviceSurvivesIntoItsSnapshot() =>
        FileSystemSurvivesIntoSnapshot("128M", ["mkfs.ext4", "-q"], ["e2fsck", "-fn"], "e2fsprogs");

    [NbdClientsFact]
    public void AnXfsOnAThinDeviceSurvivesIntoItsSnapshot() =>
        FileSystemSurvivesIntoSnapshot("512M", ["mkfs.xfs", "-q"], ["xfs_repair", "-n"], "xfsprogs"); // xfs needs 300 MiB at least

    void FileSystemSurvivesIntoSnapshot(string size, string[] mkfs, string[] fsck, string package)
    {
        foreach (var tool in new[] { "nbdfuse", "fusermount3", "losetup", mkfs[0], fsck[0] })
            if (!Shell.Has(tool)) Assert.Fail($"{tool} is missing (test.sh installs libnbd-bin, fuse3, util-linux, {package})");
        _cli.Ok("pool", "create", "--data-size", "2G", "--metadata-size", "64M");
        _cli.Ok("pool", "device", "create", "vol", "--size", size);
        string fuse = _temp.Dir("fuse"), mnt = _temp.Dir("mnt");
        string tree = _temp.Dir("tree");
        for (int i = 0; i < 20; i++) File.WriteAllBytes(Path.Combine(tree, $"f{i}"), new byte[i * 5000].Select((_, j) => (byte)(j * i)).ToArray());
        Directory.CreateDirectory(Path.Combine(tree, "sub"));
        File.WriteAllText(Path.Combine(tree, "sub", "motd"), "hello from a thin device\n");

        void Attached(string export, bool readOnly, Action<string> use)
        {
            var server = Serve();
            Process? nbdfuse = null;
            string? loop = null;
            string file = Path.Combine(fuse, export);
            try
            {
                nbdfuse = Process.Start(new ProcessStartInfo("nbdfuse", [file, Uri(export)]) { UseShellExecute = false })!;
                for (int i = 0; i < 100 && !File.Exists(file); i++) Thread.Sleep(100);
                Assert.True(File.Exists(file), "nbdfuse did not expose the export");
                loop = Shell.Run("losetup", readOnly ? ["-f", "--show", "-r", file] : ["-f", "--show", file]).Check("losetup").Stdout.Trim();
                use(loop);
            }
            finally
            {
                if (Shell.Run("mountpoint", "-q", mnt).ExitCode == 0) Shell.Run("umount", mnt);
                if (loop is not null) Shell.Run("losetup", "-d", loop);
                Shell.Run("fusermount3", "-u", fuse);
                if (nbdfuse is not null && !nbdfuse.WaitForExit(TimeSpan.FromSeconds(10))) nbdfuse.Kill();
                Stop(server);
            }
        }

        Attached("vol", readOnly: false, loop =>
        {
            Shell.Run(mkfs[0], [.. mkfs[1..], loop]).Check(mkfs[0]);
            Shell.Run("mount", loop, mnt).Check("mount");
            Shell.Run("cp", "-a", tree + "/.", mnt).Check("cp");
            Shell.Run("umount", mnt).Check("umount");
            Shell.Run(fsck[0], [.. fsck[1..], loop]).Check(fsck[0]);
        });
        Assert.Equal("snap", _cli.Ok("pool", "device", "snapshot", "vol", "snap"));
        Attached("snap", readOnly: true, loop =>
        {
            Shell.Run(fsck[0], [.. fsck[1..], loop]).Check($"{fsck[0]} of the snapshot");
            Shell.Run("mount", "-o", "ro", loop, mnt).Check("mount the snapshot");
            Shell.Run("diff", "-r", "-x", "lost+found", tree, mnt).Check("diff -r tree snapshot");
        });
        Assert.EndsWith("clean", _cli.Ok("pool", "check"));
    }

    /// <summary>While `pool serve` owns the pool (and its lock), pool commands go through its control socket
    /// and behave as they do on a closed pool; a device made meanwhile is exported at once.</summary>
    [NbdClientsFact]
    public void PoolCommandsRunInsideTheServer()
    {
        _cli.Ok("pool", "create", "--data-size", "1G", "--metadata-size", "64M");
        _cli.Ok("pool", "device", "create", "vol", "--size", "64M");
        string embeddedInfo = _cli.Ok("pool", "info");
        var server = Serve();
        try
        {
            Assert.True(File.Exists(_temp.Combine("store", "thin", "strata.sock")), "no control socket in the pool directory");
            Assert.Equal(embeddedInfo, _cli.Ok("pool", "info")); // same lines, from the open pool
            Assert.Equal("new", _cli.Ok("pool", "device", "create", "new", "--size", "32M"));
            // a client that names the store by STRATA_ROOT (the server has none, or another): the command still runs on
            // the pool whose socket it came in on, not on the server's idea of the default root
            var byEnv = Shell.Run("env", $"STRATA_ROOT={_temp.Combine("store")}", Cli.Binary, "pool", "device", "create", "env", "--size", "1M");
            Assert.True(byEnv.ExitCode == 0, byEnv.Stderr);
            Assert.Contains("export=\"env\"", Shell.Run("nbdinfo", "--list", $"nbd+unix:///?socket={Socket}").Check("nbdinfo --list").Stdout);
            _cli.Ok("pool", "device", "rm", "env");
            Assert.Contains("export=\"new\"", Shell.Run("nbdinfo", "--list", $"nbd+unix:///?socket={Socket}").Check("nbdinfo --list").Stdout);
            Shell.Run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 1M", Uri("new")).Check("qemu-io write");
            Assert.Equal("new", _cli.Ok("pool", "device", "resize", "new", "--size", "48M"));
            Assert.Contains("\"export-size\": 50331648", Shell.Run("nbdinfo", "--json", Uri("new")).Check("nbdinfo --json").Stdout);
            Assert.Equal("copy", _cli.Ok("pool", "device", "snapshot", "new", "copy"));
            Shell.Run("qemu-io", "-f", "raw", "-c", "read -P 0x5a 0 1M", Uri("copy")).Check("qemu-io read of the snapshot");
            string ls = _cli.Ok("pool", "device", "ls", "--format", "json");
            Assert.Contains("\"Name\": \"copy\"", ls);
            Assert.EndsWith("clean", _cli.Ok("pool", "check"));
            Assert.Contains("<superblock", _cli.Ok("pool", "dump", "--xml"));
            Assert.Equal("1048576", _cli.Run(new byte[1 << 20], "pool", "device", "write", "vol").Out);

            // a device a client has open cannot go; changes that need the pool closed are refused, not queued
            using (var client = new NbdTestClient(Socket, "copy"))
            {
                var busy = _cli.Run("pool", "device", "rm", "copy");
                Assert.Equal(5, busy.ExitCode);
                Assert.Contains("is open", busy.Stderr);
            }
            var repair = _cli.Run("pool", "repair");
            Assert.Equal(5, repair.ExitCode);
            Assert.Equal($"strata: cannot repair pool {_temp.Combine("store", "thin")} while `strata pool serve` owns it: stop the server (SIGTERM) first\n", repair.Stderr);
            Assert.Equal(4, _cli.Run("pool", "create").ExitCode);
            Assert.Equal("copy", _cli.Ok("pool", "device", "rm", "copy"));
            Assert.DoesNotContain("export=\"copy\"", Shell.Run("nbdinfo", "--list", $"nbd+unix:///?socket={Socket}").Check("nbdinfo --list").Stdout);
        }
        finally
        {
            Stop(server);
        }
        Assert.False(File.Exists(_temp.Combine("store", "thin", "strata.sock")), "the control socket is left after SIGTERM");
        Assert.Equal("vol\nnew", string.Join('\n', _cli.Ok("pool", "device", "ls").Split('\n').Skip(1).Select(l => l.Split(' ')[0])));
        Assert.EndsWith("clean", _cli.Ok("pool", "check"));
    }

    /// <summary>A snapshot taken while a client writes holds every write the client saw completed before the
    /// snapshot command was sent, and none sent after the command returned: the writes form one sequence (each
    /// block's value is the write's number), so the snapshot must equal the device after some prefix of them.</summary>
    [NbdClientsFact]
    public void ASnapshotTakenWhileAClientWritesIsCrashConsistent()
    {
        const int blocks = 2048, blockSize = 4096;
        _cli.Ok("pool", "create", "--data-size", "1G", "--metadata-size", "64M");
        _cli.Ok("pool", "device", "create", "vol", "--size", $"{blocks * blockSize}B");
        var server = Serve();
        try
        {
            long completed = 0;
            using var stop = new CancellationTokenSource();
            var writer = Task.Run(() =>
            {
                using var client = new NbdTestClient(Socket, "vol");
                var data = new byte[blockSize];
                for (long n = 1; !stop.IsCancellationRequested; n++)
                {
                    for (int i = 0; i < blockSize; i += 8) BitConverter.TryWriteBytes(data.AsSpan(i), n);
                    Assert.Equal(0u, client.Write((n - 1) % blocks * blockSize, data));
                    Interlocked.Exchange(ref completed, n);
                }
            });
            while (Interlocked.Read(ref completed) < 3 * blocks && !writer.IsCompleted) Thread.Sleep(10);
            long before = Interlocked.Read(ref completed);
            Assert.Equal("snap", _cli.Ok("pool", "device", "snapshot", "vol", "snap"));
            long after = Interlocked.Read(ref completed);
            while (Interlocked.Read(ref completed) < after + blocks && !writer.IsCompleted) Thread.Sleep(10);
            stop.Cancel();
            writer.GetAwaiter().GetResult();

            using var reader = new NbdTestClient(Socket, "snap");
            var values = new long[blocks];
            var block = new byte[blockSize];
            for (int b = 0; b < blocks; b++)
            {
                Assert.Equal(0u, reader.Read((long)b * blockSize, block));
                values[b] = BitConverter.ToInt64(block);
                for (int i = 8; i < blockSize; i += 8) Assert.Equal(values[b], BitConverter.ToInt64(block, i)); // no torn block
            }
            long cut = values.Max(); // the last write the snapshot holds
            Assert.InRange(cut, before, after);
            for (int b = 0; b < blocks; b++)
            {
                long expected = cut - (cut - 1 - b % blocks + blocks) % blocks; // the last write to block b up to the cut
                Assert.True(values[b] == expected, $"block {b} of the snapshot holds write {values[b]}, not {expected}: not the device at one moment (cut {cut}, before {before}, after {after})");
            }
        }
        finally
        {
            Stop(server);
        }
        Assert.EndsWith("clean", _cli.Ok("pool", "check"));
    }

    /// <summary>fio's own NBD engine (libnbd): random writes of several jobs, each on its own connection and
    /// region, then fio reads every block back and checks its crc32c.</summary>
    [NbdClientsFact]
    public void FioRandomWritesVerify()
    {
        if (!Shell.Has("fio")) Assert.Fail("fio is missing (test.sh installs it)");
        _cli.Ok("pool", "create", "--data-size", "1G", "--metadata-size", "64M");
        _cli.Ok("pool", "device", "create", "vol", "--size", "256M");
        var server = Serve();
        try
        {
            foreach (var (bs, depth) in new[] { ("4k-4k", "32"), ("64k-64k", "8"), ("4k-256k", "4") })
            {
                var fio = Shell.Run("fio", "--name=verify", "--ioengine=nbd", $"--uri={Uri("vol")}", "--rw=randwrite", $"--bsrange={bs}",
                    $"--iodepth={depth}", "--numjobs=4", "--size=48M", "--offset_increment=64M", "--verify=crc32c", "--verify_fatal=1",
                    "--do_verify=1", "--group_reporting", "--output-format=json");
                Assert.True(fio.ExitCode == 0, $"fio --bsrange={bs} failed: {fio.Stderr}\n{fio.Stdout}");
                Assert.Contains("\"error\" : 0", fio.Stdout);
            }
            // fio's writes are data; the untouched tail of each region is still a hole
            var map = Shell.Run("nbdinfo", "--map", Uri("vol")).Check("nbdinfo --map").Stdout;
            Assert.Contains("hole,zero", map);
        }
        finally
        {
            Stop(server);
        }
        Assert.EndsWith("clean", _cli.Ok("pool", "check"));
    }

    /// <summary>The NBD and control sockets a SIGKILLed server leaves are replaced by the next one; a socket a
    /// live server answers on is not taken over by a second server (of another pool).</summary>
    [NbdClientsFact]
    public void ALiveServersSocketIsRefusedAndADeadOnesIsReplaced()
    {
        _cli.Ok("pool", "create", "--data-size", "1G", "--metadata-size", "64M");
        _cli.Ok("pool", "device", "create", "vol", "--size", "16M");
        var killed = Serve();
        Shell.Run("kill", "-KILL", killed.Id.ToString());
        Assert.True(killed.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.True(File.Exists(Socket), "a SIGKILLed server should leave its socket behind");
        var server = Serve(); // over the leftovers
        try
        {
            Assert.Contains("export=\"vol\"", Shell.Run("nbdinfo", "--list", $"nbd+unix:///?socket={Socket}").Check("nbdinfo --list").Stdout);
            _cli.Ok("pool", "create", "--pool", _temp.Combine("other"), "--data-size", "1G", "--metadata-size", "64M");
            var second = _cli.Run("pool", "serve", "--pool", _temp.Combine("other"), "--socket", Socket);
            Assert.Equal(5, second.ExitCode);
            Assert.Equal($"strata: another process serves NBD on {Socket}\n", second.Stderr);
            Assert.Contains("export=\"vol\"", Shell.Run("nbdinfo", "--list", $"nbd+unix:///?socket={Socket}").Check("nbdinfo --list after").Stdout);
        }
        finally
        {
            Stop(server);
        }
    }
}
