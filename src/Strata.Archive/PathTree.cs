namespace Strata.Archive;

/// <summary>
/// A set of <see cref="LayerPath"/>s closed under ancestors: adding "a/b/c" adds "a/b" and "a" too; the root ""
/// is always in it. Stored one entry per component (its parent's number and its name), so a path costs only
/// the components not seen before. A set of whole path strings would hold each ancestor's full path, quadratic
/// in depth: a member 1,000 directories deep would cost 2 MB.
/// </summary>
sealed class PathTree
{
    readonly Dictionary<Component, int> _nodes = new(Comparer.Instance);
    readonly Dictionary<Component, int>.AlternateLookup<Probe> _lookup;

    public PathTree() => _lookup = _nodes.GetAlternateLookup<Probe>();

    public void Add(string path)
    {
        if (path.Length == 0) return;
        int node = 0;
        foreach (var range in path.AsSpan().Split('/'))
        {
            var name = path.AsSpan(range);
            if (_lookup.TryGetValue(new Probe(node, name), out int child))
            {
                node = child;
                continue;
            }
            child = _nodes.Count + 1; // 0 is the root
            _nodes.Add(new Component(node, name.ToString()), child);
            node = child;
        }
    }

    /// <summary>Whether <paramref name="path"/> was added, or is an ancestor of a path that was.</summary>
    public bool Contains(string path)
    {
        if (path.Length == 0) return true;
        int node = 0;
        foreach (var range in path.AsSpan().Split('/'))
        {
            if (!_lookup.TryGetValue(new Probe(node, path.AsSpan(range)), out node)) return false;
        }
        return true;
    }

    readonly record struct Component(int Parent, string Name);

    readonly ref struct Probe(int parent, ReadOnlySpan<char> name)
    {
        public int Parent { get; } = parent;
        public ReadOnlySpan<char> Name { get; } = name;
    }

    sealed class Comparer : IEqualityComparer<Component>, IAlternateEqualityComparer<Probe, Component>
    {
        public static readonly Comparer Instance = new();

        public bool Equals(Component x, Component y) => x.Parent == y.Parent && string.Equals(x.Name, y.Name, StringComparison.Ordinal);

        public int GetHashCode(Component c) => Hash(c.Parent, c.Name);

        public bool Equals(Probe probe, Component c) => probe.Parent == c.Parent && probe.Name.SequenceEqual(c.Name);

        public int GetHashCode(Probe probe) => Hash(probe.Parent, probe.Name);

        public Component Create(Probe probe) => new(probe.Parent, probe.Name.ToString());

        static int Hash(int parent, ReadOnlySpan<char> name) => HashCode.Combine(parent, string.GetHashCode(name, StringComparison.Ordinal));
    }
}
