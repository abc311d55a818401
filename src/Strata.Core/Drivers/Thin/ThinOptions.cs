using Strata.Thin;

namespace Strata.Core.Drivers.Thin;

/// <summary>
/// The thin driver's options (<c>--storage-opt thin.KEY=VALUE</c>, recorded with the store), named after Docker's
/// <c>dm.*</c> options where one applies. Each is checked here, once, with a one-line error naming it.
/// </summary>
public sealed record ThinOptions
{
    public const string Prefix = "thin.";
    static readonly string[] Known =
        ["basesize", "fs", "blocksize", "datasize", "metadatasize", "datadev", "metadatadev", "min_free_space", "blkdiscard", "mkfsarg", "mountopt", "attach"];

    /// <summary>Size of the base device every layer starts from (each layer's filesystem has this size, unless a
    /// container's size= grows it). Default 10G.</summary>
    public long BaseSize { get; init; } = 10L << 30;
    /// <summary>ext4 (default) or xfs.</summary>
    public string FileSystem { get; init; } = "ext4";
    /// <summary>The pool's block size: the unit of allocation and copy-on-write (64K to 1G, a power of two).</summary>
    public uint BlockSize { get; init; } = ThinPool.DefaultBlockSize;
    /// <summary>Size of the sparse data file (it takes disk space only as blocks are written). Default 100G, as Docker's loop files.</summary>
    public long DataSize { get; init; } = 100L << 30;
    /// <summary>Size of the sparse metadata file. Default 2G.</summary>
    public long MetadataSize { get; init; } = 2L << 30;
    /// <summary>Block devices to hold the pool instead of the sparse files (both or neither).</summary>
    public string? DataDevice { get; init; }
    public string? MetadataDevice { get; init; }
    /// <summary>New layers are refused while less than this percent of the pool's data space is available. Default 10.</summary>
    public int MinFreeSpacePercent { get; init; } = 10;
    /// <summary>Whether blocks a removed layer frees are discarded from the data file (punched out, the space back to
    /// the host) or kept allocated for reuse. Default true.</summary>
    public bool BlkDiscard { get; init; } = true;
    /// <summary>Extra mkfs arguments, split on spaces.</summary>
    public IReadOnlyList<string> MkfsArgs { get; init; } = [];
    /// <summary>How devices reach the kernel: auto (its nbd module where /dev/nbd* exist, else the FUSE export and a
    /// loop device), nbd or fuse.</summary>
    public string Attach { get; init; } = "auto";
    /// <summary>Extra mount options, comma-separated.</summary>
    public IReadOnlyList<string> MountOptions { get; init; } = [];

    public static ThinOptions Parse(IReadOnlyDictionary<string, string> options)
    {
        foreach (var key in options.Keys)
            if (!key.StartsWith(Prefix, StringComparison.Ordinal) || !Known.Contains(key[Prefix.Length..], StringComparer.Ordinal))
                throw StrataException.Invalid($"unknown thin option '{key}' (known: {string.Join(", ", Known.Select(k => Prefix + k))})");
        string? Get(string key) => options.TryGetValue(Prefix + key, out var v) ? v : null;
        var o = new ThinOptions();
        if (Get("basesize") is { } basesize) o = o with { BaseSize = Size(basesize, "basesize", 16 << 20) };
        if (Get("fs") is { } fs)
            o = o with { FileSystem = fs is "ext4" or "xfs" ? fs : throw StrataException.Invalid($"thin.fs '{fs}' is not supported (ext4 or xfs)") };
        if (Get("blocksize") is { } bs)
        {
            long b = ByteSize.Parse(bs, "thin.blocksize");
            if (b < ThinPool.MinBlockSize || b > ThinPool.MaxBlockSize || (b & (b - 1)) != 0)
                throw StrataException.Invalid($"thin.blocksize '{bs}' must be a power of two from 64K to 1G");
            o = o with { BlockSize = (uint)b };
        }
        if (Get("datasize") is { } ds) o = o with { DataSize = Size(ds, "datasize", 64 << 20) };
        if (Get("metadatasize") is { } ms) o = o with { MetadataSize = Size(ms, "metadatasize", 2 << 20) };
        if (Get("datadev") is { } dd) o = o with { DataDevice = Device(dd, "datadev") };
        if (Get("metadatadev") is { } md) o = o with { MetadataDevice = Device(md, "metadatadev") };
        if ((o.DataDevice is null) != (o.MetadataDevice is null))
            throw StrataException.Invalid("thin.datadev and thin.metadatadev go together: give both block devices, or neither for sparse files");
        if (Get("min_free_space") is { } mfs)
        {
            string digits = mfs.EndsWith('%') ? mfs[..^1] : mfs;
            if (!int.TryParse(digits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pct) || pct > 99)
                throw StrataException.Invalid($"thin.min_free_space '{mfs}' must be a percent from 0% to 99%");
            o = o with { MinFreeSpacePercent = pct };
        }
        if (Get("blkdiscard") is { } bd)
            o = o with { BlkDiscard = bd is "true" or "1" ? true : bd is "false" or "0" ? false : throw StrataException.Invalid($"thin.blkdiscard '{bd}' must be true or false") };
        if (Get("mkfsarg") is { } mk) o = o with { MkfsArgs = mk.Split(' ', StringSplitOptions.RemoveEmptyEntries) };
        if (Get("attach") is { } at)
            o = o with { Attach = at is "auto" or "nbd" or "fuse" ? at : throw StrataException.Invalid($"thin.attach '{at}' must be auto, nbd or fuse") };
        if (Get("mountopt") is { } mo)
        {
            var opts = mo.Split(',', StringSplitOptions.RemoveEmptyEntries);
            if (opts.Any(x => x.Contains('\0'))) throw StrataException.Invalid("thin.mountopt holds a NUL byte");
            o = o with { MountOptions = opts };
        }
        return o;
    }

    static long Size(string text, string key, long min)
    {
        long size = ByteSize.Parse(text, Prefix + key);
        if (size < min) throw StrataException.Invalid($"{Prefix}{key} '{text}' is too small (at least {ByteSize.Format(min)})");
        return size;
    }

    static string Device(string path, string key)
    {
        if (!Path.IsPathRooted(path)) throw StrataException.Invalid($"{Prefix}{key} '{path}' is not an absolute path to a block device");
        return path;
    }
}
