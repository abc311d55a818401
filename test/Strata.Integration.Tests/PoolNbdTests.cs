using System.Diagnostics;
using System.Net.Sockets;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>`strata pool serve`: thin devices over NBD to real clients from Debian's packages (nbdinfo,
/// qemu-img, qemu-io, nbdcopy), garbage that closes only its own connection, and a clean stop on SIGTERM.</summary>
[Collection(HeavyIo.Name)]
public sealed class PoolNbdTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;

    public PoolNbdTests() => _cli = new Cli(_temp.Combine("store"));

    public void Dispose() => _temp.Dispose();

    string Socket => _temp.Combine("nbd.sock");

    string Uri(string name) => $"nbd+unix:///{name}?socket={Socket}";

    Process Serve()
    {
        var p = _cli.Start("pool", "serve", "--socket", Socket);
        p.StandardInput.Close();
        var line = p.StandardOutput.ReadLineAsync();
        Assert.True(line.Wait(TimeSpan.FromSeconds(30)), "strata pool serve did not start");
        Assert.StartsWith("serving pool ", line.Result);
        return p;
    }

    static void Stop(Process p)
    {
        Shell.Run("kill", "-TERM", p.Id.ToString());
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)), "strata pool serve did not stop on SIGTERM");
        Assert.Equal(0, p.ExitCode);
    }

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
    /// it a block device; mkfs.ext4, mount, write a tree, unmount (e2fsck clean); then a snapshot of the device,
    /// served and attached the same way, mounts with the same tree.</summary>
    [NbdClientsFact]
    public void AnExt4OnAThinDeviceSurvivesIntoItsSnapshot()
    {
        foreach (var tool in new[] { "nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck" })
            if (!Shell.Has(tool)) Assert.Fail($"{tool} is missing (test.sh installs libnbd-bin, fuse3, util-linux, e2fsprogs)");
        _cli.Ok("pool", "create", "--data-size", "1G", "--metadata-size", "64M");
        _cli.Ok("pool", "device", "create", "vol", "--size", "128M");
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
            Shell.Run("mkfs.ext4", "-q", loop).Check("mkfs.ext4");
            Shell.Run("mount", loop, mnt).Check("mount");
            Shell.Run("cp", "-a", tree + "/.", mnt).Check("cp");
            Shell.Run("umount", mnt).Check("umount");
            Shell.Run("e2fsck", "-fn", loop).Check("e2fsck");
        });
        Assert.Equal("snap", _cli.Ok("pool", "device", "snapshot", "vol", "snap"));
        Attached("snap", readOnly: true, loop =>
        {
            Shell.Run("e2fsck", "-fn", loop).Check("e2fsck of the snapshot");
            Shell.Run("mount", "-o", "ro", loop, mnt).Check("mount the snapshot");
            Shell.Run("diff", "-r", "-x", "lost+found", tree, mnt).Check("diff -r tree snapshot");
        });
        Assert.EndsWith("clean", _cli.Ok("pool", "check"));
    }
}
