using Strata.Native;

namespace Strata.Archive.Tar;

/// <summary>Tar typeflags this code reads and writes.</summary>
public enum TarEntryType : byte
{
    Regular = (byte)'0',
    HardLink = (byte)'1',
    Symlink = (byte)'2',
    CharDevice = (byte)'3',
    BlockDevice = (byte)'4',
    Directory = (byte)'5',
    Fifo = (byte)'6',
}

/// <summary>One member of a tar stream after PAX and GNU long-name records have been folded in.
/// <see cref="Name"/> is as stored (not yet normalised); <see cref="Mode"/> holds permission bits only.</summary>
public sealed class TarEntry
{
    public required string Name { get; set; }
    public TarEntryType Type { get; set; }
    public string LinkName { get; set; } = "";
    public uint Mode { get; set; }
    public uint Uid { get; set; }
    public uint Gid { get; set; }
    public long Size { get; set; }
    public UnixTime Mtime { get; set; }
    public uint DevMajor { get; set; }
    public uint DevMinor { get; set; }
    /// <summary>Extended attributes (PAX <c>SCHILY.xattr.*</c>), sorted by name; null when none.</summary>
    public List<KeyValuePair<string, byte[]>>? Xattrs { get; set; }
}
