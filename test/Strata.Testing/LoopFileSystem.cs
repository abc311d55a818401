namespace Strata.Testing;

/// <summary>A real filesystem on a sparse image file, mounted through a loop device for one test;
/// dispose unmounts it and detaches the loop device (mount -o loop / umount -d), even after a failure.</summary>
public sealed class LoopFileSystem : IDisposable
{
    readonly string _image;

    public string MountPoint { get; }

    LoopFileSystem(string image, string mountPoint)
    {
        _image = image;
        MountPoint = mountPoint;
    }

    /// <summary>Makes and mounts a filesystem, or returns null with the reason when this machine cannot.</summary>
    public static LoopFileSystem? TryCreate(TempRoot root, string fsType, string[] mkfsArgs, out string? whyNot, long sizeMiB = 512, string mountOptions = "")
    {
        whyNot = null;
        string mkfs = "mkfs." + fsType;
        if (!Shell.Has(mkfs)) { whyNot = $"{mkfs} is not installed"; return null; }
        string image = root.Combine($"{fsType}.img");
        string mnt = root.Dir($"{fsType}-mnt");
        Shell.Run("truncate", "-s", $"{sizeMiB}M", image).Check("truncate");
        var mk = Shell.Run(mkfs, [.. mkfsArgs, image]);
        if (mk.ExitCode != 0) { whyNot = $"{mkfs} failed: {mk.Stderr.Trim()}"; return null; }
        var args = new List<string> { "-o", "loop" + (mountOptions.Length > 0 ? "," + mountOptions : ""), image, mnt };
        var m = Shell.Run("mount", [.. args]);
        if (m.ExitCode != 0) { whyNot = $"cannot mount a {fsType} loop image here: {m.Stderr.Trim()}"; return null; }
        return new LoopFileSystem(image, mnt);
    }

    public void Dispose()
    {
        Shell.Run("umount", "-d", MountPoint);
        File.Delete(_image);
    }
}
