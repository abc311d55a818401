namespace Strata.Native;

/// <summary>Permission bits Strata gives what it makes, by name instead of octal literals.</summary>
public static class Modes
{
    /// <summary>0700: only root may enter. The store's directories (layer trees hold setuid binaries and device nodes),
    /// pool and mount directories, staging and scratch space.</summary>
    public const uint OwnerOnly = 0x1C0;
}
