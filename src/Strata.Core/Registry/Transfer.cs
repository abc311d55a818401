using Strata.Core.Images;

namespace Strata.Core.Registry;

/// <summary>One step of a pull or push as docker shows it: <paramref name="Id"/> is a blob's short id (12 hex digits of
/// its digest), <paramref name="Status"/> docker's word for the step ("Waiting", "Downloading", "Verifying Checksum",
/// "Download complete", "Extracting", "Pull complete", "Already exists"; "Preparing", "Pushing", "Pushed", "Layer
/// already exists", "Mounted from REPO"), with bytes done of a total while bytes move (0: not counted).</summary>
public readonly record struct TransferProgress(string Id, string Status, long Current = 0, long Total = 0);

public sealed record PullOptions
{
    /// <summary>The platform to pick from a multi-platform image; null: the host's.</summary>
    public Platform? Platform { get; init; }
    /// <summary>Pull every tag of the repository (the reference must have no tag or digest).</summary>
    public bool AllTags { get; init; }
    /// <summary>Layers downloaded at once; null: the settings' (3, dockerd's default).</summary>
    public int? MaxConcurrentDownloads { get; init; }
    public Action<TransferProgress>? Progress { get; init; }
    /// <summary>Lines docker prints around the layers: "TAG: Pulling from REPO", "Digest: ...", "Status: ...".</summary>
    public Action<string>? Message { get; init; }
}

/// <summary>An image a pull stored: the name it now has (familiar, as `docker images` shows it), its record, its
/// manifest's digest in the registry, and whether anything new came (false: the store had it all).</summary>
public sealed record PulledImage(string Name, ImageRecord Image, Digest ManifestDigest, bool Downloaded);

public sealed record PushOptions
{
    /// <summary>Recompress layers before the upload (the image's manifest is rewritten for the registry); null: as stored.</summary>
    public LayerCompression? Compression { get; init; }
    /// <summary>Upload blobs in PATCH chunks of this many bytes; 0: one monolithic PUT.</summary>
    public long ChunkSize { get; init; }
    public int? MaxConcurrentUploads { get; init; }
    public Action<TransferProgress>? Progress { get; init; }
    public Action<string>? Message { get; init; }
}

/// <summary>What a push left in the registry: the tag, the manifest's digest and size (docker prints
/// "TAG: digest: sha256:... size: N").</summary>
public sealed record PushedImage(string Tag, Digest ManifestDigest, long Size);
