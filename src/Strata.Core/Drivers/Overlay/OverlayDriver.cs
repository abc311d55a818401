using System.Security.Cryptography;
using System.Text;
using Strata.Archive;
using Strata.Native;

namespace Strata.Core.Drivers.Overlay;

/// <summary>
/// The overlay driver (moby's overlay2): a layer is an upper directory holding only its own changes,
/// mounted with overlayfs over the upper directories of its ancestors. Layout under the store root:
/// <code>
/// overlay/&lt;id&gt;/diff/     the layer's changes (overlayfs upper dir); the whole tree of a layer without parent
/// overlay/&lt;id&gt;/lower      the chain below it, top first: "l/SHORT1:l/SHORT2" (only with a parent)
/// overlay/&lt;id&gt;/work/     overlayfs work dir, and merged/ where the store mounts the layer (only with a parent)
/// overlay/l/&lt;SHORT&gt;      -&gt; ../&lt;id&gt;/diff, so mount options stay short
/// tmp/overlay-&lt;id&gt;.*    layers being made, and layers being deleted (swept at open)
/// </code>
/// A layer's short name is derived from its id (26 base32 characters of its SHA-256), so unlike
/// moby there is no <c>link</c> file to read or keep in step. Layers without parent are plain
/// directories (nothing to mount). Mounts pass redirect_dir, index and metacopy off so that the
/// upper dir alone describes a layer's changes (see <see cref="OverlayProbe"/>).
/// </summary>
public sealed partial class OverlayDriver : IDriver, ILayerChains
{
    const string MountProgramOption = "overlay.mount_program";
    const string SizeOption = "size";
    const int ShortLength = 26;

    readonly string _home;
    readonly string _links;
    readonly string _tmp;
    readonly string? _mountProgram;
    readonly Lazy<OverlayCapabilities> _caps;
    readonly Lazy<(ProjectQuota? Quota, string WhyNot)> _quota;

    public OverlayDriver(string root, IReadOnlyDictionary<string, string> options)
    {
        DriverOptions.Only("overlay", options, MountProgramOption);
        if (!CanLiveAt(root))
            throw StrataException.Invalid($"overlay cannot use a store path containing ',', ':' or '\\' (they separate overlay mount options): {root}");
        _home = Path.Combine(root, "overlay");
        _links = Path.Combine(_home, "l");
        _tmp = Path.Combine(root, "tmp");
        if (options.TryGetValue(MountProgramOption, out var program))
        {
            // whether it exists is the probe's to find out: a store must open even once it is gone
            if (!Path.IsPathRooted(program))
                throw StrataException.Invalid($"{MountProgramOption}: '{program}' is not an absolute path (e.g. /usr/bin/fuse-overlayfs)");
            _mountProgram = program;
        }
        LayerStore.MakeDir(_home, Modes.OwnerOnly);
        LayerStore.MakeDir(_links, Modes.OwnerOnly);
        LayerStore.MakeDir(_tmp, Modes.OwnerOnly);
        // a probe that failed (say, a full disk) is retried on next use rather than remembered
        _caps = new Lazy<OverlayCapabilities>(() => OverlayProbe.Run(_tmp, _mountProgram), LazyThreadSafetyMode.PublicationOnly);
        _quota = new Lazy<(ProjectQuota?, string)>(() => (ProjectQuota.TryOpen(_home, out var why), why), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public string Name => "overlay";

    /// <summary>Whether overlay mount options can name directories under <paramref name="root"/>.</summary>
    public static bool CanLiveAt(string root) => root.IndexOfAny([',', ':', '\\', '\n']) < 0;

    /// <summary>The start-up probe's findings (run on first use).</summary>
    public OverlayCapabilities Capabilities => _caps.Value;

    string LayerDir(string id) => Path.Combine(_home, id);

    internal string DiffDir(string id) => Path.Combine(_home, id, "diff");

    /// <summary>The short name of a layer's link under overlay/l.</summary>
    internal static string ShortName(string id)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(id), hash);
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        var name = new StringBuilder(ShortLength);
        int bits = 0, buffer = 0, i = 0;
        while (name.Length < ShortLength)
        {
            if (bits < 5)
            {
                buffer = (buffer << 8) | hash[i++];
                bits += 8;
            }
            name.Append(alphabet[(buffer >> (bits - 5)) & 31]);
            bits -= 5;
        }
        return name.ToString();
    }

    public void Create(string id, string? parent, CreateOptions options)
    {
        DriverOptions.Only("overlay layer", options.StorageOptions, SizeOption);
        long? size = null;
        if (options.StorageOptions.TryGetValue(SizeOption, out var sizeText))
        {
            if (options.Kind != LayerKind.ReadWrite)
                throw StrataException.Invalid("size= applies to read-write (container) layers only");
            size = ByteSize.Parse(sizeText, "size");
            if (size <= 0) throw StrataException.Invalid($"size '{sizeText}' must be larger than zero");
        }
        var chain = parent is null ? [] : LowerChain(parent).Prepend("l/" + ShortName(parent)).ToList();
        if (chain.Count > Mounter.MaxOverlayLayers)
            throw StrataException.Unsupported(
                $"layer {id} would sit on {chain.Count} layers; overlayfs mounts at most {Mounter.MaxOverlayLayers} (commit the container to a new image with fewer layers)");

        string staging = Path.Combine(_tmp, $"overlay-{id}.{Guid.NewGuid():N}");
        Posix.MkdirAt(FileDescriptor.Cwd, staging, 0x1C9 /* 0711 */);
        string final = LayerDir(id), link = Path.Combine(_links, ShortName(id));
        bool moved = false, linked = false;
        try
        {
            if (size is { } bytes)
            {
                var (quota, whyNot) = _quota.Value;
                if (quota is null) throw StrataException.Unsupported($"size= is not supported here: {whyNot}");
                quota.Assign(staging, bytes); // before anything is made in it: work/ and diff/ inherit the project
            }
            string diff = Path.Combine(staging, "diff");
            Posix.MkdirAt(FileDescriptor.Cwd, diff, 0x1ED);
            using (var d = Posix.Open(diff, Posix.O_RDONLY | Posix.O_DIRECTORY))
            {
                if (parent is null) Posix.Fchmod(d, 0x1ED, diff);
                else
                {
                    // the merged root shows the upper root's attributes: start from the parent's
                    var p = Posix.Lstat(DiffDir(parent));
                    Posix.SetOwnerAndMode(d, p.Uid, p.Gid, p.Permissions, diff);
                }
                Posix.Fsync(d, diff);
            }
            if (parent is not null)
            {
                Posix.MkdirAt(FileDescriptor.Cwd, Path.Combine(staging, "work"), Modes.OwnerOnly);
                Posix.MkdirAt(FileDescriptor.Cwd, Path.Combine(staging, "merged"), Modes.OwnerOnly);
                // no temp file needed: the whole staging directory appears at once, by rename
                string lower = Path.Combine(staging, "lower");
                using var fd = Posix.Open(lower, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL, 0x180);
                Posix.WriteAll(fd, Encoding.ASCII.GetBytes(string.Join(':', chain)), lower);
                Posix.Fsync(fd, lower);
            }
            Posix.FsyncDirectory(staging);
            Posix.Rename(staging, final, Posix.RENAME_NOREPLACE);
            moved = true;
            MakeLink(link, id);
            linked = true;
            Posix.FsyncDirectory(_links);
            Posix.FsyncDirectory(_home);
        }
        catch
        {
            if (linked) Posix.TryUnlinkAt(FileDescriptor.Cwd, link, directory: false);
            RemoveTree(moved ? final : staging);
            throw;
        }
    }

    void MakeLink(string link, string id)
    {
        string target = $"../{id}/diff";
        try
        {
            Posix.SymlinkAt(target, FileDescriptor.Cwd, link);
        }
        catch (ErrnoException ex) when (ex.Errno == Errno.EEXIST)
        {
            // left by a crash between making a layer and recording it: reuse it if it is ours
            if (Posix.ReadLink(link) != target)
                throw StrataException.Corrupt($"{link} points at {Posix.ReadLink(link)}, not {target}; remove it to continue");
        }
    }

    public void Remove(string id)
    {
        int err = Posix.TryUnlinkAt(FileDescriptor.Cwd, Path.Combine(_links, ShortName(id)), directory: false);
        if (err != 0 && err != Errno.ENOENT) throw new ErrnoException(err, "unlink", Path.Combine(_links, ShortName(id)));
        string dir = LayerDir(id);
        if (!Posix.TryLstat(dir, out var st)) return;
        // the store removes only unmounted layers; a mount still there is a leftover (a crashed process's)
        string merged = Path.Combine(dir, "merged");
        if (Posix.TryLstat(merged, out var m) && m.MountId != st.MountId) Mounter.Unmount(merged, detach: true);
        if (_quota.IsValueCreated || HasProject(dir)) _quota.Value.Quota?.Release(dir);
        RemoveTree(dir);
    }

    static bool HasProject(string dir)
    {
        if (FileSystems.Name(dir) != "xfs") return false;
        using var fd = Posix.Open(dir, Posix.O_RDONLY | Posix.O_DIRECTORY);
        return Posix.GetFsXattr(fd, dir).ProjectId != 0;
    }

    void RemoveTree(string dir)
    {
        if (!Posix.TryLstat(dir, out _)) return;
        string doomed = Path.Combine(_tmp, $"overlay-{Path.GetFileName(dir)}.rm.{Guid.NewGuid():N}");
        Posix.Rename(dir, doomed);
        FileTree.Remove(doomed);
    }

    public bool Exists(string id) => Posix.TryLstat(DiffDir(id), out var st) && st.IsDirectory;

    /// <summary>The chain below a layer as stored in its lower file ("l/SHORT", top first); empty without parent.</summary>
    internal List<string> LowerChain(string id)
    {
        string file = Path.Combine(LayerDir(id), "lower");
        if (!Posix.TryLstat(file, out _)) return [];
        var chain = System.Text.Encoding.UTF8.GetString(Posix.ReadFile(file)).Split(':', StringSplitOptions.RemoveEmptyEntries).ToList();
        foreach (var entry in chain)
            if (entry.Length != 2 + ShortLength || !entry.StartsWith("l/", StringComparison.Ordinal) || entry.Skip(2).Any(c => c is not (>= 'A' and <= 'Z' or >= '2' and <= '7')))
                throw StrataException.Corrupt($"{file} names '{entry}', which is not a layer link");
        return chain;
    }

    /// <summary>The upper dirs of the layers below <paramref name="id"/>, top first (through their links).</summary>
    internal List<string> LowerDirs(string id) => LowerChain(id).Select(l => Path.Combine(_home, l)).ToList();

    public MountSpec Mount(string id)
    {
        var lowers = LowerDirs(id);
        if (lowers.Count == 0) return new MountSpec("bind", DiffDir(id), []);
        var caps = Capabilities;
        if (!caps.Supported) throw StrataException.Unsupported($"overlay cannot mount here: {caps.WhyNot}");
        var options = new List<string>
        {
            "lowerdir=" + string.Join(':', lowers),
            "upperdir=" + DiffDir(id),
            "workdir=" + Path.Combine(LayerDir(id), "work"),
        };
        options.AddRange(caps.FeatureOptions);
        string merged = Path.Combine(LayerDir(id), "merged");
        return caps.MountProgram is { Length: > 0 } program
            ? new MountSpec("fuse-overlayfs", program, options) { Target = merged }
            : new MountSpec("overlay", "overlay", options) { Target = merged };
    }

    /// <summary>overlay/&lt;id&gt;/merged of a layer, and merged/ of the probe's or of a layer being made or removed in tmp/.</summary>
    public bool OwnsMountPoint(string path, out string? layerId)
    {
        layerId = null;
        if (Path.GetFileName(path) != "merged" || Path.GetDirectoryName(path) is not { } dir) return false;
        if (Path.GetDirectoryName(dir) == _tmp) return Path.GetFileName(dir).StartsWith("overlay-", StringComparison.Ordinal);
        if (Path.GetDirectoryName(dir) != _home || !LayerId.IsValid(Path.GetFileName(dir))) return false;
        layerId = Path.GetFileName(dir);
        return true;
    }

    public IReadOnlyCollection<string> List() =>
        Posix.ReadDir(_home).Select(e => e.Name).Where(n => n != "l" && LayerId.IsValid(n)).ToList();

    public IReadOnlyList<StatusField> Status()
    {
        var caps = Capabilities;
        var pairs = new List<StatusField>
        {
            new("Backing Filesystem", caps.BackingFilesystem),
            StatusField.Flag("Supports d_type", caps.SupportsDType),
        };
        if (!caps.Supported)
        {
            pairs.Add(new("Overlay", $"unavailable: {caps.WhyNot}"));
            return pairs;
        }
        pairs.Add(new("Mount", caps.MountProgram is { Length: > 0 } p ? $"{p} (FUSE)"
            : Mounter.CanAppendLowerdirs ? $"kernel overlayfs (up to {Mounter.MaxOverlayLayers} layers)" : "kernel overlayfs (options in one page)"));
        pairs.Add(new("Native Overlay Diff", caps.NativeDiff ? "true" : $"false ({caps.NativeDiffNote})", caps.NativeDiff));
        var (quota, whyNot) = _quota.Value;
        pairs.Add(new("Size Limits", quota is not null ? "xfs project quotas" : $"no ({whyNot})"));
        return pairs;
    }

    public IReadOnlyDictionary<string, string> Metadata(string id)
    {
        var meta = new Dictionary<string, string> { ["UpperDir"] = DiffDir(id) };
        var lowers = LowerChain(id);
        if (lowers.Count > 0)
        {
            meta["LowerDir"] = string.Join(':', lowers.Select(l => Path.GetFullPath(Path.Combine(_links, Posix.ReadLink(Path.Combine(_home, l))))));
            meta["WorkDir"] = Path.Combine(LayerDir(id), "work");
            meta["MergedDir"] = Path.Combine(LayerDir(id), "merged");
        }
        if (_quota.IsValueCreated || HasProject(LayerDir(id)))
            if (_quota.Value.Quota is { } q && q.LimitOf(LayerDir(id)) is > 0 and var limit)
                meta["Size"] = limit.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return meta;
    }

    public void Cleanup() { }

    public IDiffer Differ(IDiffer generic) => new OverlayDiffer(this, generic);

    public void Dispose()
    {
        if (_quota.IsValueCreated) _quota.Value.Quota?.Dispose();
    }
}

/// <summary>
/// Overlay's differ: a layer against its own parent is diffed from its upper dir alone
/// (<see cref="OverlayChanges"/>); any other pair, and every diff when the probe found the upper
/// dir unreliable, goes to the generic differ. Diffs are applied straight into the upper dir, with
/// deletions recorded overlay-style (0/0 character devices, opaque directories).
/// </summary>
sealed class OverlayDiffer(OverlayDriver driver, IDiffer generic) : IDiffer
{
    /// <summary>The lower dirs to diff <paramref name="id"/> against when <paramref name="against"/> is its parent; null otherwise.</summary>
    List<string>? NativeLowers(string id, string? against)
    {
        if (against is null || !driver.Capabilities.NativeDiff) return null;
        var chain = driver.LowerChain(id);
        return chain.Count > 0 && chain[0] == "l/" + OverlayDriver.ShortName(against) ? driver.LowerDirs(id) : null;
    }

    public List<Change> Changes(string id, string? against) =>
        NativeLowers(id, against) is { } lowers ? OverlayChanges.Compute(driver.DiffDir(id), lowers) : generic.Changes(id, against);

    public DiffResult Diff(string id, string? against, Stream output) =>
        NativeLowers(id, against) is { } lowers
            ? DiffWriter.Write(output, driver.DiffDir(id), OverlayChanges.Compute(driver.DiffDir(id), lowers))
            : generic.Diff(id, against, output);

    public long DiffSize(string id, string? against) =>
        NativeLowers(id, against) is { } lowers
            ? TreeChanges.Size(driver.DiffDir(id), OverlayChanges.Compute(driver.DiffDir(id), lowers))
            : generic.DiffSize(id, against);

    /// <summary>Writes the diff straight into the upper dir. Deletions become whiteouts only where the layers below
    /// have something to hide (none at all for a layer without parent), and 0:0 character devices are refused:
    /// overlayfs would read them as deletions.</summary>
    public long ApplyDiff(string id, Stream diff)
    {
        string upper = driver.DiffDir(id);
        using var lower = OverlayChanges.OpenLower(upper, driver.LowerDirs(id));
        return LayerApplier.Apply(diff, upper, WhiteoutFormat.Overlay, lower.Below);
    }
}
