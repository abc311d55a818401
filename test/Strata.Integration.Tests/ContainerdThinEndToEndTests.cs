// containerd on Strata's snapshotter end to end on the thin driver: each snapshot a thin device, mounted as ext4 on a
// loop device, as containerd's devmapper snapshotter mounts its own.
using System.Text.RegularExpressions;
using Strata.Native;
using Strata.Testing;
using Xunit.Abstractions;

namespace Strata.Integration.Tests;

/// <summary>containerd 1.6 on `strata serve --driver thin`: an image pulled and unpacked into thin devices, a snapshot's
/// mount an ext4 filesystem on a loop device over the pool server's FUSE export, a container that keeps running (and
/// writing) across a restart of strata serve while the pool server holds its device, and nothing left once containerd has
/// removed everything: no layer, no record, no loop device, and no pool server once strata serve stops.</summary>
public sealed class ContainerdThinEndToEndTests(ContainerdOnThinStrata stack, ITestOutputHelper output)
    : ContainerdTests(stack, output), IClassFixture<ContainerdOnThinStrata>
{
    /// <summary>Loop devices bound to a file of the store (the devices' files in the pool server's FUSE export).</summary>
    List<string> LoopsOfTheStore() => Posix.LoopDevicesIn(Posix.RealPath(Stack.Store));

    /// <summary>The {type, source, options} of a snapshot's mount, as `ctr snapshots mounts` prints it.</summary>
    (string Type, string Source, string[] Options) MountOf(string ns, string key)
    {
        string mount = Containerd.CtrOk(ns, "snapshots", "--snapshotter", Snapshotter, "mounts", "/mnt", key).Trim();
        var m = Regex.Match(mount, @"^mount -t (?<type>\S+) (?<source>\S+) /mnt -o (?<options>\S+)$");
        Assert.True(m.Success, $"not one mount: {mount}");
        return (m.Groups["type"].Value, m.Groups["source"].Value, m.Groups["options"].Value.Split(','));
    }

    [ContainerdFact]
    public void ContainersRunOnThinDevicesAcrossARestartAndLeaveNothingBehind()
    {
        const string ns = "e2e-thin";
        Diagnose(() =>
        {
            Stack.Start();
            Containerd.CtrOk(ns, "images", "pull", "--plain-http", "--snapshotter", Snapshotter, Stack.BaseImage);
            Assert.Equal("hello\nshared\n", RunOk(ns, "--rm", Stack.BaseImage, "once", "cat", "/etc/file", "/data/hard2"));

            // a new container's snapshot is a thin device attached as a loop device over its file in the FUSE export,
            // mounted as ext4 (containerd's devmapper shape), until the snapshot goes
            Containerd.CtrOk(ns, "containers", "create", "--snapshotter", Snapshotter, Stack.BaseImage, "probe");
            var probe = MountOf(ns, "probe");
            Assert.Equal("ext4", probe.Type);
            Assert.Matches(@"^/dev/loop\d+$", probe.Source);
            Assert.Contains("rw", probe.Options);
            Assert.Contains(probe.Source, LoopsOfTheStore());
            Containerd.CtrOk(ns, "containers", "rm", "probe");
            WaitFor(() => !LoopsOfTheStore().Contains(probe.Source), $"{probe.Source} of the removed snapshot to go");

            RunOk(ns, "-d", Stack.BaseImage, "survivor", "sh", "-c", "echo before > /before; exec busybox sleep 3600");
            string rootfs = Containerd.RootfsOf(ns, "survivor");
            var device = MountOf(ns, "survivor").Source;
            Assert.Contains(device, LoopsOfTheStore());
            Assert.Contains(MountTable.Read(), m => m.MountPoint == rootfs && m.Type == "ext4" && m.Source == device);
            WaitFor(() => File.Exists(Path.Combine(rootfs, "before")), "the container's first write");
            var task = TaskOf(ns, "survivor");
            Assert.Equal("RUNNING", task.Status);

            const string serving = "to containerd as a snapshotter";
            int starts = Count(Stack.Serve.Log(), serving);
            Assert.Equal(0, Stack.Serve.Stop()); // SIGTERM, as systemd stops it
            Assert.False(File.Exists(Stack.SnapshotterSocket));
            Assert.NotEmpty(PoolServers.Under(Stack.Store)); // it serves the mounted device's blocks
            Assert.Equal(task, TaskOf(ns, "survivor"));
            Stack.Serve.Start();
            WaitFor(() => Count(Stack.Serve.Log(), serving) == starts + 1, "strata serve to serve again");

            Assert.Equal(task, TaskOf(ns, "survivor"));
            Assert.Contains(MountTable.Read(), m => m.MountPoint == rootfs && m.Type == "ext4" && m.Source == device);
            Assert.Equal("before\n", Containerd.CtrOk(ns, "tasks", "exec", "--exec-id", "after", "--fifo-dir", Containerd.FifoDir, "survivor",
                "sh", "-c", "cat /before; echo after > /after"));
            Assert.Equal("after\n", File.ReadAllText(Path.Combine(rootfs, "after")));
            // the new daemon knows the snapshot and names the device it is mounted from
            Assert.Contains(Snapshots(ns), s => s.Key == "survivor" && s.Kind == "Active");
            Assert.Equal(device, MountOf(ns, "survivor").Source);
            Assert.Equal("hello\n", RunOk(ns, "--rm", Stack.BaseImage, "after-restart", "cat", "/etc/file"));
            Assert.Equal(task, TaskOf(ns, "survivor"));

            AssertRemovedWithoutTrace(ns);
            WaitFor(() => LoopsOfTheStore().Count == 0, "the loop devices of the store to go");
            // with nothing attached, strata serve's stop stops the pool server and its FUSE export goes with it
            Assert.Equal(0, Stack.Serve.Stop());
            Assert.Empty(PoolServers.Under(Stack.Store));
            Assert.Empty(Mounts.Under(Path.Combine(Posix.RealPath(Stack.Store), "thin", "dev")));
        }, ns);
    }
}
