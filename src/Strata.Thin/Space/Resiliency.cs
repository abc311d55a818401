using Strata.Native;

namespace Strata.Thin.Space;

/// <summary>How a resilient pool keeps each block: one copy (simple), two or three copies on different disks (mirror,
/// mirror3), or a stripe of data chunks with one or two parity chunks on different disks (parity, parity2).</summary>
public enum Resiliency : byte
{
    Simple = 1,
    Mirror = 2,
    Mirror3 = 3,
    Parity = 4,
    Parity2 = 5,
}

/// <summary>The shape of a resiliency on a number of disks: how many columns (disks) a slab takes, how many of them
/// hold data, and how many disk failures it survives.</summary>
public readonly record struct SlabShape(Resiliency Resiliency, int DataColumns, int ParityColumns, int Copies)
{
    /// <summary>Disks one slab is spread over (each column on its own disk).</summary>
    public int Columns => Resiliency is Resiliency.Parity or Resiliency.Parity2 ? DataColumns + ParityColumns : Copies;

    public bool IsParity => ParityColumns > 0;

    /// <summary>Disks that can fail at once without losing data.</summary>
    public int Tolerates => IsParity ? ParityColumns : Copies - 1;

    /// <summary>Pool data bytes one slab holds when each of its columns is <paramref name="slabSize"/> bytes on its disk.</summary>
    public long DataBytes(long slabSize) => IsParity ? slabSize * DataColumns : slabSize;

    public override string ToString() => ResiliencyNames.Name(Resiliency) + (IsParity ? $" ({DataColumns}+{ParityColumns})" : "");

    /// <summary>The shape on <paramref name="disks"/> disks for stripes of <paramref name="blockSize"/> bytes: parity uses the
    /// most data columns the disks allow, a power of two (so a block splits into whole 4 KiB sectors), at most 8, and
    /// leaves one disk out of each stripe when there are more disks than the minimum, so that a failed disk's columns have
    /// somewhere to be rebuilt without a replacement.</summary>
    public static SlabShape For(Resiliency resiliency, int disks, uint blockSize)
    {
        int minimum = MinimumDisks(resiliency);
        if (disks < minimum)
            throw StrataException.Invalid($"{ResiliencyNames.Name(resiliency)} needs at least {minimum} disks; {disks} given");
        switch (resiliency)
        {
            case Resiliency.Simple: return new(resiliency, 1, 0, 1);
            case Resiliency.Mirror: return new(resiliency, 1, 0, 2);
            case Resiliency.Mirror3: return new(resiliency, 1, 0, 3);
            default:
                int parity = resiliency == Resiliency.Parity ? 1 : 2;
                int data = 1, room = disks > minimum ? disks - 1 : disks;
                while (data * 2 + parity <= room && data * 2 <= 8 && blockSize / (uint)(data * 2) >= ResilientStore.SectorSize) data *= 2;
                return new(resiliency, data, parity, 1);
        }
    }

    public static int MinimumDisks(Resiliency resiliency) => resiliency switch
    {
        Resiliency.Simple => 1,
        Resiliency.Mirror => 2,
        Resiliency.Mirror3 => 3,
        Resiliency.Parity => 3,
        _ => 4,
    };
}

/// <summary>The resiliencies' names as the CLI and pool.json spell them.</summary>
public static class ResiliencyNames
{
    public static string Name(Resiliency r) => r switch
    {
        Resiliency.Simple => "simple",
        Resiliency.Mirror => "mirror",
        Resiliency.Mirror3 => "mirror3",
        Resiliency.Parity => "parity",
        Resiliency.Parity2 => "parity2",
        _ => $"resiliency {(byte)r}",
    };

    public static Resiliency Parse(string text) => text switch
    {
        "simple" => Resiliency.Simple,
        "mirror" => Resiliency.Mirror,
        "mirror3" => Resiliency.Mirror3,
        "parity" => Resiliency.Parity,
        "parity2" => Resiliency.Parity2,
        _ => throw StrataException.Invalid($"unknown resiliency '{text}' (simple, mirror, mirror3, parity or parity2)"),
    };
}
