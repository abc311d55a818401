// The snapshotter's vocabulary as values: kinds, the info containerd sees, usage, and the limits on keys and labels.
using System.Text;
using System.Text.Json.Serialization;

namespace Strata.Core.Snapshots;

/// <summary>containerd's snapshot kinds (its numbering: VIEW 1, ACTIVE 2, COMMITTED 3).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<SnapshotKind>))]
public enum SnapshotKind
{
    View = 1,
    Active = 2,
    Committed = 3,
}

/// <summary>What containerd's Stat, Walk and Update see of a snapshot: its key (<see cref="Name"/>), its parent's key,
/// kind, times and labels.</summary>
public sealed record SnapshotInfo(string Name, string? Parent, SnapshotKind Kind, DateTimeOffset Created, DateTimeOffset Updated,
    IReadOnlyDictionary<string, string> Labels);

/// <summary>Disk use of a snapshot's own layer: bytes allocated and inodes, each hard-linked inode counted once.</summary>
public readonly record struct SnapshotUsage(long Bytes, long Inodes);

/// <summary>
/// What keys and labels may be. Keys are containerd's, any string a client names (its metadata store sends
/// "NAMESPACE/SEQ/KEY"): never a file name here, but bounded (<see cref="MaxKeyBytes"/> of UTF-8, no NUL, not
/// empty) so a record stays small. Labels follow containerd's labels.Validate: key plus value at most
/// <see cref="MaxLabelBytes"/> bytes a pair.
/// </summary>
public static class SnapshotLimits
{
    /// <summary>A key's UTF-8 bytes at most; containerd sets none of its own below bolt's 32 KiB.</summary>
    public const int MaxKeyBytes = 4096;

    /// <summary>containerd's labels.Validate: a label's key and value together.</summary>
    public const int MaxLabelBytes = 4096;

    static readonly UTF8Encoding s_strict = new(false, true);

    public static string ValidateKey(string? key, string what = "key")
    {
        if (string.IsNullOrEmpty(key)) throw StrataException.Invalid($"snapshot {what} is empty");
        if (key.Contains('\0')) throw StrataException.Invalid($"snapshot {what} contains NUL");
        int bytes;
        try
        {
            bytes = s_strict.GetByteCount(key);
        }
        catch (EncoderFallbackException)
        {
            throw StrataException.Invalid($"snapshot {what} is not valid Unicode");
        }
        if (bytes > MaxKeyBytes) throw StrataException.Invalid($"snapshot {what} is {bytes} bytes long, over the limit of {MaxKeyBytes}");
        return key;
    }

    public static void ValidateLabels(IReadOnlyDictionary<string, string>? labels)
    {
        if (labels is null) return;
        foreach (var (k, v) in labels)
        {
            if (string.IsNullOrEmpty(k)) throw StrataException.Invalid("snapshot label with an empty key");
            if (v is null) throw StrataException.Invalid($"snapshot label '{Shorten(k)}' has no value");
            int size;
            try
            {
                size = s_strict.GetByteCount(k) + s_strict.GetByteCount(v);
            }
            catch (EncoderFallbackException)
            {
                throw StrataException.Invalid($"snapshot label '{Shorten(k)}' is not valid Unicode");
            }
            if (size > MaxLabelBytes)
                throw StrataException.Invalid($"snapshot label '{Shorten(k)}': key and value are {size} bytes, over the limit of {MaxLabelBytes}");
        }
    }

    /// <summary>A key or label as a message quotes it: its first 64 characters, never half of a surrogate pair (which
    /// a message would carry as U+FFFD, or not at all). <see cref="StrataException"/> escapes its line breaks.</summary>
    public static string Shorten(string s)
    {
        if (s.Length <= 64) return s;
        int cut = char.IsHighSurrogate(s[63]) ? 63 : 64;
        return s[..cut] + "...";
    }
}
