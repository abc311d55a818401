namespace Strata.Thin.DmThin;

/// <summary>
/// Counts, for each device of a dm-thin pool, its mapped blocks that another mapping also points at (thin_ls's
/// SHARED_BLOCKS: a data block with more than one reference). dm-thin's own reference counts cannot say it, since
/// a snapshot shares whole subtrees and counts one reference for them; so the mappings are swept in data block order.
/// </summary>
static class DmSharing
{
    public static long[] SharedBlocks(IReadOnlyList<DmThinDevice> devices)
    {
        int n = 0;
        foreach (var d in devices) n += d.Extents.Length;
        // each extent starts and ends covering its data blocks; between two events, how many cover them, and whose
        // (the sum of the covering devices' indexes names the device when only one covers). An event is packed as
        // data block << 24 | device index: data blocks have 40 bits in dm-thin's mappings, devices ids 24.
        var starts = new ulong[n];
        var ends = new ulong[n];
        int k = 0;
        for (int i = 0; i < devices.Count; i++)
            foreach (var e in devices[i].Extents)
            {
                starts[k] = (ulong)e.Data << 24 | (uint)i;
                ends[k++] = (ulong)(e.Data + e.Length) << 24 | (uint)i;
            }
        Array.Sort(starts);
        Array.Sort(ends);
        var exclusive = new long[devices.Count];
        int s = 0, t = 0, covering = 0;
        long owner = 0, at = 0;
        while (s < n || t < n)
        {
            long next = t < n && (s >= n || ends[t] >> 24 <= starts[s] >> 24) ? (long)(ends[t] >> 24) : (long)(starts[s] >> 24);
            if (covering == 1) exclusive[owner] += next - at;
            at = next;
            for (; t < n && (long)(ends[t] >> 24) == at; t++)
            {
                covering--;
                owner -= (long)(ends[t] & 0xFF_FFFF);
            }
            for (; s < n && (long)(starts[s] >> 24) == at; s++)
            {
                covering++;
                owner += (long)(starts[s] & 0xFF_FFFF);
            }
        }
        var shared = new long[devices.Count];
        for (int i = 0; i < devices.Count; i++) shared[i] = devices[i].MappedBlocks - exclusive[i];
        return shared;
    }
}
