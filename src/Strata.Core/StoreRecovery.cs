// The start-up sweep of a store: what a crash left half-made or orphaned, and mounts nobody counts, are cleaned
// before the store opens.
using Strata.Archive;
using Strata.Native;

namespace Strata.Core;

/// <summary>
/// Recovery when a store opens, under its owner's lock and before anything else may use it: empties tmp/, drops
/// temp records, removes layers left incomplete by a crash mid-apply, finishes the changes of a layer's chain a crash
/// cut short (<see cref="Layer.Pending"/>), deletes driver data and mount counts that no
/// record owns, and makes mounts agree with the counts (<see cref="ReconcileMounts"/>). What cannot be removed is
/// reported and left for the next sweep; it never keeps the store from opening (a corrupt record does).
/// </summary>
static class StoreRecovery
{
    /// <summary>Runs the sweep; returns the layers that remain (with their mount counts). What it did, and what it
    /// could not do (and why), goes in <paramref name="swept"/>.</summary>
    public static List<Layer> Run(string root, IDriver driver, LayerRecords records, MountCounts counts, List<string> swept)
    {
        var leftovers = new List<string>();
        var layers = records.ReadAll(leftovers);
        foreach (var name in leftovers) Sweep(swept, "layers/" + name, () => records.RemoveLeftover(name));
        if (driver is IRecoveringDriver recovering) recovering.Recover(swept);
        counts.Load(layers, records, swept);
        ReconcileMounts(root, driver, layers, counts, swept);
        string tmp = Path.Combine(root, "tmp");
        foreach (var e in Posix.ReadDir(tmp))
            Sweep(swept, "tmp/" + e.Name, () => FileTree.Remove(Path.Combine(tmp, e.Name)));
        foreach (var l in layers.Where(l => l.Incomplete).ToList())
        {
            layers.Remove(l);
            Sweep(swept, "incomplete layer " + l.Id, () =>
            {
                records.Delete(l.Id, sync: false);
                driver.Remove(l.Id);
            });
        }
        LayerStore.FinishPending(driver, records, layers, swept);
        var known = layers.Select(l => l.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var name in counts.Names())
            if (!known.Contains(name)) Sweep(swept, "mounts/" + name, () => counts.Remove(name));
        foreach (var id in driver.List())
            if (!known.Contains(id)) Sweep(swept, "orphaned data of " + id, () => driver.Remove(id));
        if (swept.Count > 0) records.Sync();
        return layers;
    }

    /// <summary>Makes mounts agree with the recorded counts. A mount where the driver's mounts go that no counted
    /// user holds (left by a crashed process, or by an in-process hold for a diff) is detached; a layer
    /// counted as mounted whose mount is gone (the machine rebooted) gets its count reset. Whether a
    /// mount is live is decided from the mount table and the counts alone, so nothing in use is ever
    /// detached because a layer's files cannot be read; when in doubt, nothing changes. Other mounts
    /// below the root are not the store's and are left alone. Runs before anything is deleted.</summary>
    static void ReconcileMounts(string root, IDriver driver, List<Layer> layers, MountCounts counts, List<string> swept)
    {
        string prefix = root.TrimEnd('/') + "/";
        var mounted = MountTable.Read().Select(m => m.MountPoint).Where(p => p.StartsWith(prefix, StringComparison.Ordinal)).ToHashSet(StringComparer.Ordinal);
        if (mounted.Count == 0 && layers.All(l => l.Mounts == 0)) return;
        var counted = layers.Where(l => l.Mounts > 0 && !l.Incomplete).Select(l => l.Id).ToHashSet(StringComparer.Ordinal);
        var found = new HashSet<string>(StringComparer.Ordinal);
        foreach (var path in mounted.OrderByDescending(p => p.Length))
        {
            if (!driver.OwnsMountPoint(path, out var id)) continue;
            if (id is not null && counted.Contains(id))
            {
                found.Add(id);
                continue;
            }
            Sweep(swept, "stale mount " + path, () => Mounter.Unmount(path, detach: true));
        }
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            if (!counted.Contains(layer.Id) || found.Contains(layer.Id)) continue;
            MountSpec spec;
            try
            {
                spec = driver.Mount(layer.Id);
            }
            catch (Exception ex) when (ex is StrataException or IOException)
            {
                swept.Add($"mount count of {layer.Id} kept: cannot check it ({ex.Message})");
                continue;
            }
            if (spec.IsPlainDirectory) continue; // nothing to mount: the count is all there is
            Sweep(swept, $"mount count of {layer.Id} reset from {layer.Mounts} (its mount at {spec.TreePath} was gone)", () =>
            {
                counts.Save(layer.Id, 0);
                layers[i] = layer with { Mounts = 0 };
            });
        }
    }

    static void Sweep(List<string> swept, string what, Action remove)
    {
        try
        {
            remove();
            swept.Add(what);
        }
        catch (StrataException ex)
        {
            swept.Add($"{what}: not removed ({ex.Message})");
        }
    }
}
