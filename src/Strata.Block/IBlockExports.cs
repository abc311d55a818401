namespace Strata.Block;

/// <summary>Block devices by name, as a server exports them to the kernel or to clients (the NBD server, the FUSE
/// export): each open is one user's handle, held until disposed.</summary>
public interface IBlockExports
{
    IReadOnlyList<string> Names();

    /// <summary>The device named <paramref name="name"/>, open until disposed; null when there is none.</summary>
    IBlockDevice? Open(string name);

    bool ReadOnly(string name);
}

/// <summary>Exports that count their devices' IO (a thin pool's): a device's statistics as text, which the FUSE export
/// shows as a read-only file per device (as the kernel shows a tape drive's in /sys/class/scsi_tape/nst0/stats).</summary>
public interface IBlockExportStats
{
    /// <summary>The statistics of <paramref name="name"/> as "key value" lines; null when there is no such device.</summary>
    string? StatsText(string name);
}
