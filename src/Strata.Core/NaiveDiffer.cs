using Strata.Archive;

namespace Strata.Core;

/// <summary>The generic diff any driver can use (moby's NaiveDiffDriver): mount the layer and the base,
/// compare the trees, write or apply OCI tars.</summary>
public sealed class NaiveDiffer(ILayerMounter mounter) : IDiffer
{
    public List<Change> Changes(string id, string? against) =>
        WithTrees(id, against, (layer, baseTree) => TreeChanges.Compute(layer, baseTree));

    public DiffResult Diff(string id, string? against, Stream output) =>
        WithTrees(id, against, (layer, baseTree) => DiffWriter.Write(output, layer, TreeChanges.Compute(layer, baseTree)));

    public long DiffSize(string id, string? against) =>
        WithTrees(id, against, (layer, baseTree) => TreeChanges.Size(layer, TreeChanges.Compute(layer, baseTree)));

    public long ApplyDiff(string id, Stream diff)
    {
        string path = mounter.Acquire(id);
        try
        {
            return LayerApplier.Apply(diff, path, WhiteoutFormat.Oci);
        }
        finally
        {
            mounter.Release(id);
        }
    }

    T WithTrees<T>(string id, string? against, Func<string, string?, T> work)
    {
        string layer = mounter.Acquire(id);
        try
        {
            if (against is null) return work(layer, null);
            string baseTree = mounter.Acquire(against);
            try
            {
                return work(layer, baseTree);
            }
            finally
            {
                mounter.Release(against);
            }
        }
        finally
        {
            mounter.Release(id);
        }
    }
}
