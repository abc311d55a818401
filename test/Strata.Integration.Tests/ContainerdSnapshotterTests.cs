using System.Diagnostics;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>containerd's own snapshotter conformance suite (snapshots/testsuite, containerd 1.6 from Debian's
/// golang-github-containerd-containerd-dev) through containerd's proxy client against `strata serve
/// --snapshotter-socket`, one daemon per test (test/containerd/run.sh and snapshotter_test.go), on every driver the
/// snapshotter serves (btrfs with the suite's roots on a btrfs loop filesystem). Every test of the suite must pass,
/// except Rename, which containerd 1.6 skips itself.</summary>
public sealed class ContainerdSnapshotterTests(Xunit.Abstractions.ITestOutputHelper output)
{
    static readonly string[] SuiteTests =
    [
        "Basic", "StatActive", "StatComitted", "TransitivityTest", "PreareViewFailingtest", "Update", "Remove", "Walk",
        "LayerFileupdate", "RemoveDirectoryInLowerLayer", "Chown", "DirectoryPermissionOnCommit", "RemoveIntermediateSnapshot",
        "DeletedFilesInChildSnapshot", "MoveFileFromLowerLayer", "ViewReadonly", "StatInWalk", "CloseTwice", "RootPermission",
        "128LayersMount",
    ];

    [SkippableTheory]
    [InlineData("overlay")]
    [InlineData("vfs")]
    [InlineData("thin")]
    [InlineData("btrfs")]
    public void ContainerdsSuitePasses(string driver)
    {
        Skip.If(!Shell.Has("go"), "go is not installed (test.sh installs golang-go)");
        Skip.If(!Directory.Exists("/usr/share/gocode/src/github.com/containerd/containerd/snapshots/testsuite"),
            "containerd's Go sources are not installed (test.sh installs golang-github-containerd-containerd-dev)");
        string repo = RepositoryRoot();
        using var temp = new TempRoot();
        // btrfs: the suite's roots on a btrfs loop filesystem of the test's own
        string? why = null;
        using var btrfs = driver == "btrfs" ? LoopFileSystem.TryCreate(temp, "btrfs", ["-q"], out why, sizeMiB: 2048) : null;
        Skip.If(driver == "btrfs" && btrfs is null, $"no btrfs loop filesystem: {why}");
        var psi = new ProcessStartInfo(Path.Combine(repo, "test/containerd/run.sh")) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(driver);
        psi.Environment["STRATA_BIN"] = Cli.Binary;
        if (btrfs is not null) psi.Environment["TMPDIR"] = btrfs.MountPoint;
        // thin: a small base device keeps each test's mkfs quick (the suite writes a few files per snapshot)
        if (driver == "thin") psi.Environment["STRATA_STORAGE_OPTS"] = "thin.basesize=512M";
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string log = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        log += err.Result;
        var failed = SuiteTests.Where(t => !log.Contains($"--- PASS: TestStrataSnapshotter/{t} ", StringComparison.Ordinal)).ToList();
        if (p.ExitCode != 0 || failed.Count > 0)
        {
            foreach (var line in log.Split('\n').Where(l => !l.Contains("level=", StringComparison.Ordinal)).TakeLast(200)) output.WriteLine(line);
        }
        Assert.True(p.ExitCode == 0, $"containerd's suite failed on {driver} (exit {p.ExitCode}); not passed: {string.Join(", ", failed)}");
        Assert.Empty(failed); // a suite that skipped itself (no STRATA_BIN, not root) passes nothing
        // every strata serve stopped with its test: nothing of theirs runs on (thin: the pool servers they started)
        Assert.Empty(LeftBehind(driver));
    }

    /// <summary>What the suite's roots left behind: processes still running, mounts, directories under /tmp (all of it
    /// removed, so the machine is left clean either way).</summary>
    static List<string> LeftBehind(string driver)
    {
        var left = new List<string>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            string cmdline;
            try
            {
                cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
            }
            catch (IOException)
            {
                continue;
            }
            if (!cmdline.Contains($"snapshot-suite-strata-{driver}-", StringComparison.Ordinal)) continue;
            left.Add($"pid {pid}: {cmdline}");
            Shell.Run("kill", "-KILL", pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        foreach (var mount in Strata.Native.MountTable.Read().Where(m => m.MountPoint.Contains($"/snapshot-suite-strata-{driver}-", StringComparison.Ordinal)))
        {
            left.Add($"mount {mount.MountPoint}");
            Shell.Run("umount", "-l", mount.MountPoint);
        }
        foreach (var root in Directory.GetDirectories(Path.GetTempPath(), $"snapshot-suite-strata-{driver}-*"))
        {
            left.Add($"directory {root}");
            Shell.Run("rm", "-rf", "--one-file-system", root);
        }
        return left;
    }

    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Strata.slnx"))) return dir.FullName;
        throw new InvalidOperationException($"no Strata.slnx above {AppContext.BaseDirectory}");
    }
}
