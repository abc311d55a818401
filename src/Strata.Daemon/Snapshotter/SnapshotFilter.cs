using System.Text;
using System.Text.RegularExpressions;
using Strata.Core.Snapshots;

namespace Strata.Daemon.Snapshotter;

/// <summary>
/// containerd's filter syntax (its filters package) as List takes it, over what a snapshot's info holds: a request's
/// filters are alternatives (any may match; none given: every snapshot matches); each is selectors joined by commas, all
/// of which must match. A selector is a field path, optionally an operator and a value: <c>name</c>, <c>parent</c>,
/// <c>kind</c> (view, active, committed) or <c>labels.KEY</c> (a key with dots or other characters quoted:
/// <c>labels."containerd.io/gc.root"</c>); operators <c>==</c>, <c>!=</c> and <c>~=</c> (a regular expression); a path
/// alone asks that the field be present. Values may be quoted ("..." with backslash escapes) or bare.
/// Anything else is InvalidArgument, naming the filter.
/// </summary>
public sealed class SnapshotFilter
{
    readonly List<List<Selector>> _alternatives;

    SnapshotFilter(List<List<Selector>> alternatives) => _alternatives = alternatives;

    public static SnapshotFilter Parse(IEnumerable<string> filters)
    {
        var alternatives = new List<List<Selector>>();
        foreach (var filter in filters)
            if (filter.Length > 0) alternatives.Add(new Reader(filter).Selectors());
        return new SnapshotFilter(alternatives);
    }

    public bool Matches(SnapshotInfo info) => _alternatives.Count == 0 || _alternatives.Any(all => all.All(s => s.Matches(info)));

    sealed record Selector(string[] Path, string? Op, string? Value, Regex? Pattern)
    {
        /// <summary>As containerd's snapshot adaptor and selector: name, parent and kind are always present (an absent
        /// parent is ""), a label is present when it is set; == needs the field present, != compares "" for an absent
        /// one, ~= matches the value ("" when absent).</summary>
        public bool Matches(SnapshotInfo info)
        {
            string? field = Path switch
            {
                ["name"] => info.Name,
                ["parent"] => info.Parent ?? "",
                ["kind"] => info.Kind.ToString().ToLowerInvariant(),
                ["labels", var key] => info.Labels.GetValueOrDefault(key),
                _ => null,
            };
            return Op switch
            {
                null => field is not null,
                "==" => field is not null && field == Value,
                "!=" => (field ?? "") != Value,
                _ => Pattern!.IsMatch(field ?? ""),
            };
        }
    }

    /// <summary>A cursor over one filter's text.</summary>
    sealed class Reader(string text)
    {
        int _at;

        StrataException Bad(string why) => StrataException.Invalid($"filter '{text}': {why}");

        public List<Selector> Selectors()
        {
            var all = new List<Selector>();
            while (true)
            {
                all.Add(Selector());
                if (_at == text.Length) return all;
                if (text[_at] != ',') throw Bad($"expected ',' at {_at}");
                _at++;
            }
        }

        Selector Selector()
        {
            var path = new List<string> { Field() };
            while (_at < text.Length && text[_at] == '.')
            {
                _at++;
                path.Add(Field());
            }
            string[] p = [.. path];
            if (p is not (["name"] or ["parent"] or ["kind"] or ["labels", _]))
                throw Bad($"unknown field '{string.Join('.', p)}' (name, parent, kind, labels.KEY)");
            if (_at == text.Length || text[_at] == ',') return new Selector(p, null, null, null);
            string op = _at + 1 < text.Length ? text.Substring(_at, 2) : "";
            if (op is not ("==" or "!=" or "~=")) throw Bad($"expected ==, != or ~= at {_at}");
            _at += 2;
            string value = Value();
            Regex? pattern = null;
            if (op == "~=")
                try
                {
                    pattern = new Regex(value, RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(100));
                }
                catch (ArgumentException ex)
                {
                    throw Bad($"bad regular expression: {ex.Message}");
                }
            return new Selector(p, op, value, pattern);
        }

        string Field()
        {
            if (_at < text.Length && text[_at] == '"') return Quoted();
            int start = _at;
            while (_at < text.Length && (char.IsAsciiLetterOrDigit(text[_at]) || text[_at] is '_' or '-')) _at++;
            if (_at == start) throw Bad($"expected a field name at {start}");
            return text[start.._at];
        }

        string Value()
        {
            if (_at < text.Length && text[_at] == '"') return Quoted();
            int start = _at;
            while (_at < text.Length && text[_at] != ',') _at++;
            return text[start.._at];
        }

        string Quoted()
        {
            var sb = new StringBuilder();
            _at++; // the opening quote
            while (_at < text.Length && text[_at] != '"')
            {
                if (text[_at] == '\\' && _at + 1 < text.Length) _at++;
                sb.Append(text[_at++]);
            }
            if (_at == text.Length) throw Bad("a quoted string does not end");
            _at++;
            return sb.ToString();
        }
    }
}
