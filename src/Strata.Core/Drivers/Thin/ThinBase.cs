using Strata.Native;
using Strata.Thin;
using Strata.Thin.Service;

namespace Strata.Core.Drivers.Thin;

/// <summary>
/// The thin driver's pool and its base device: the pool is made on first use (sparse files under the store, or the
/// devices given), and the base device (<see cref="ThinDriver.BaseDevice"/>) once per pool, holding the empty
/// filesystem every layer without parent starts from. The base appears whole or not at all: it is made under
/// <see cref="ThinDriver.BaseStaging"/> and snapshotted into its name in one commit; a staging device left by a crash
/// is deleted at the next start.
/// </summary>
sealed class ThinBase(string home, string mnt, ThinOptions options, IPoolService pool, KernelDevices kernel)
{
    /// <summary>The owner the pool records for the base device and its staging device.</summary>
    public const string Owner = "the thin driver (the base of its layers)";

    bool _ready;

    /// <summary>Makes the pool (on first use) and the base device with its filesystem (once per pool).</summary>
    public void EnsureReady()
    {
        if (_ready) return;
        if (!PoolDirectory.Exists(home))
        {
            var poolOptions = new PoolOptions { AutoextendThreshold = 100, DiscardFreed = options.BlkDiscard };
            using var _ = PoolDirectory.Create(home, options.DataSize, options.MetadataSize, options.BlockSize, options.DataDevice, options.MetadataDevice, poolOptions);
        }
        var names = pool.DeviceNames();
        // left by a crash mid-mkfs, or between the base's snapshot and this delete
        if (names.Contains(ThinDriver.BaseStaging)) pool.Delete(ThinDriver.BaseStaging, defer: true, owner: Owner);
        if (!names.Contains(ThinDriver.BaseDevice))
        {
            pool.Create(ThinDriver.BaseStaging, options.BaseSize, Owner);
            try
            {
                using (var attached = kernel.Attach(ThinDriver.BaseStaging))
                {
                    FileSystemTools.Make(options.FileSystem, attached.Device, options.MkfsArgs);
                    EmptyRoot(attached.Device);
                }
                // the base appears whole or not at all: a snapshot of the formatted device, made in one commit
                pool.Snapshot(ThinDriver.BaseStaging, ThinDriver.BaseDevice, Owner);
            }
            finally
            {
                pool.Delete(ThinDriver.BaseStaging, defer: true, owner: Owner);
            }
        }
        _ready = true;
    }

    /// <summary>A layer without parent starts empty: mkfs.ext4's lost+found goes (e2fsck makes it again should it need
    /// one), and the root gets mode 0755.</summary>
    void EmptyRoot(string device)
    {
        string dir = Path.Combine(mnt, ".base");
        LayerStore.MakeDir(dir, Modes.OwnerOnly);
        try
        {
            FileSystemTools.Mount(options, device, dir);
            try
            {
                string lostFound = Path.Combine(dir, "lost+found");
                if (Directory.Exists(lostFound)) Directory.Delete(lostFound);
                Posix.ChmodAt(FileDescriptor.Cwd, dir, 0x1ED);
            }
            finally
            {
                FileSystemTools.UnmountScratch(dir);
            }
        }
        finally
        {
            Directory.Delete(dir);
        }
    }
}
