// The persisted count of users of each mounted layer, under mounts/: state of the running system, not of the data.
using System.Globalization;
using System.Text;
using Strata.Native;

namespace Strata.Core;

/// <summary>
/// <c>mounts/&lt;id&gt;</c>: how many users a mounted layer has (<see cref="Layer.Mounts"/>), as decimal text and a
/// newline; absent means 0. Counts are state of the running system, like the mounts themselves: they survive a
/// process, not a machine crash, so they are replaced atomically but without fsync (a create + mount + unmount
/// would otherwise pay for six). A count that a crash left unreadable is counted as 0 (the start-up reconcile
/// then detaches its mount if nothing else holds it). Callers serialize changes to one id (the store's id lock).
/// </summary>
sealed class MountCounts(string directory)
{
    public string Directory => directory;

    /// <summary>Records <paramref name="count"/> users of layer <paramref name="id"/>; 0 deletes the file.</summary>
    public void Save(string id, int count)
    {
        string file = Path.Combine(directory, id);
        if (count > 0)
        {
            AtomicFile.Write(file, Encoding.ASCII.GetBytes(count.ToString(CultureInfo.InvariantCulture) + "\n"), durable: false);
            return;
        }
        int err = Posix.TryUnlinkAt(FileDescriptor.Cwd, file, directory: false);
        if (err != 0 && err != Errno.ENOENT) throw new ErrnoException(err, "unlink", file);
    }

    /// <summary>Sets each layer's <see cref="Layer.Mounts"/> from its file. Records written before counts moved here
    /// carry theirs in the record: such a count moves here and the record is rewritten without it (idempotent,
    /// should a crash interrupt the move).</summary>
    public void Load(List<Layer> layers, LayerRecords records, List<string> swept)
    {
        var present = Names().ToHashSet(StringComparer.Ordinal); // one listing, not a stat per layer
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            string file = Path.Combine(directory, layer.Id);
            int count = 0;
            if (present.Contains(layer.Id))
            {
                if (!int.TryParse(Encoding.UTF8.GetString(Posix.ReadFile(file)).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out count))
                {
                    swept.Add($"mount count of {layer.Id} was unreadable; counted as 0");
                    count = 0;
                    File.Delete(file);
                }
            }
            if (layer.Mounts > 0) // an older record
            {
                count = layer.Mounts;
                AtomicFile.Write(file, Encoding.ASCII.GetBytes(count + "\n"), durable: false);
                records.Write(layer);
            }
            layers[i] = layer with { Mounts = count };
        }
    }

    /// <summary>The names of the files here: layer ids, and leftovers of interrupted writes.</summary>
    public IEnumerable<string> Names() => Posix.ReadDir(directory).Select(e => e.Name);

    /// <summary>Removes the file <paramref name="name"/> (for the sweep of counts no layer owns).</summary>
    public void Remove(string name) => Posix.UnlinkAt(FileDescriptor.Cwd, Path.Combine(directory, name), directory: false);
}
