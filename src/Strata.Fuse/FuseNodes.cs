// The node ids of the mount's files: one per device name, handed out on first sight and kept while mounted, so the
// kernel's ids stay valid across a device being removed and made again under the same name. The root is 1, the
// statistics directory 2; a device's statistics file goes by "/NAME" here (a name holds no slash).
namespace Strata.Fuse;

/// <summary>Device names and their node ids, both ways; ids are never reused. Thread-safe.</summary>
sealed class FuseNodes
{
    readonly object _lock = new();
    readonly Dictionary<string, ulong> _idsByName = new(StringComparer.Ordinal);
    readonly Dictionary<ulong, string> _namesById = [];
    public const ulong StatsDirId = FuseWire.RootId + 1;
    public const string StatsDir = ".stats";

    ulong _next = StatsDirId + 1;

    public ulong NodeOf(string name)
    {
        lock (_lock)
        {
            if (_idsByName.TryGetValue(name, out var id)) return id;
            id = _next++;
            _idsByName[name] = id;
            _namesById[id] = name;
            return id;
        }
    }

    /// <summary>The name behind <paramref name="node"/>; null for the root and for ids never handed out.</summary>
    public string? NameOf(ulong node)
    {
        lock (_lock) return _namesById.GetValueOrDefault(node);
    }
}
