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
