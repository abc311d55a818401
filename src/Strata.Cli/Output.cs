using System.CommandLine;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Spectre.Console;
using Strata.Core;

namespace Strata.Cli;

/// <summary>
/// How commands print what they found, the same for every kind of object: a table for people (ids shortened to 12
/// characters unless --no-trunc), ids only (-q), JSON for scripts (typed values, one shape per kind, documented in
/// docs/cli.md and checked against docs/schemas/), or one line per object from a Go-template-style --format
/// ('{{.Id}} {{.Size}}'). --filter KEY=VALUE selects, as docker's: values of one key are alternatives, keys all hold.
/// </summary>
static partial class Output
{
    static readonly JsonSerializerOptions s_json = new(CliJson.Default.Options) { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    static readonly JsonSerializerOptions s_oneLine = new(s_json) { WriteIndented = false };

    /// <summary>A value as a JSON tree (its type must be in <see cref="CliJson"/>).</summary>
    public static JsonNode? Node(object? value) => value is null ? null : JsonSerializer.SerializeToNode(value, s_json.GetTypeInfo(value.GetType()));

    public static void WriteJson(object? value) => WriteJsonLine(value, indented: true);

    /// <summary>A value as JSON, indented or on one line (a report of a series, one per line).</summary>
    public static void WriteJsonLine(object? value, bool indented)
    {
        var options = indented ? s_json : s_oneLine;
        Io.Current.Out.WriteLine(value is null ? "null" : JsonSerializer.Serialize(value, options.GetTypeInfo(value.GetType())));
    }

    /// <summary>An id as listings show it: a 64-hex-digit id (or sha256:...) by its first 12 digits, unless <paramref name="full"/>;
    /// other ids (layer names people chose) as they are.</summary>
    public static string Id(string? id, bool full)
    {
        if (id is null) return "-";
        if (full) return id;
        string hex = id.StartsWith("sha256:", StringComparison.Ordinal) ? id[7..] : id;
        return hex.Length == 64 && hex.All(char.IsAsciiHexDigitLower) ? hex[..12] : id;
    }

    /// <summary>A status report as a JSON object: one member per line, named without spaces, with typed values.</summary>
    public static JsonObject Status(IEnumerable<StatusField> fields)
    {
        var o = new JsonObject();
        foreach (var f in fields)
            if (f.Data != StatusField.TextOnly) o[f.JsonName] = Node(f.Data);
        return o;
    }

    public static Option<string?> FormatOption() => new("--format")
    {
        Description = "Output format: table (the default), json, or a template such as '{{.Id}} {{.Size}}'",
        HelpName = "table|json|TEMPLATE",
    };

    /// <summary>Whether a command that prints a table or JSON only (no templates) was asked for JSON; anything else is
    /// refused in one line naming <paramref name="command"/>.</summary>
    public static bool Json(string? format, string command) => Kind(format) switch
    {
        FormatKind.Table => false,
        FormatKind.Json => true,
        _ => throw StrataException.Invalid($"--format for {command} is table or json"),
    };

    /// <summary>Prints one document (info): JSON, a template line, or as <paramref name="text"/> writes it.</summary>
    public static int Document(string? format, Func<JsonNode> json, Action text)
    {
        switch (Kind(format))
        {
            case FormatKind.Json:
                WriteJson(json());
                break;
            case FormatKind.Template:
                Io.Current.Out.WriteLine(Template.Parse(format!).Render(json()));
                break;
            default:
                text();
                break;
        }
        return 0;
    }

    /// <summary>The options of a listing: -q, --no-trunc, --filter (with the keys it takes), --format.</summary>
    public sealed class ListOptions
    {
        /// <summary><paramref name="filterKeys"/>: the --filter keys taken, each "key" or "key=value|value|..." when only those
        /// values mean something (checked at once, so `--filter status=paused` is refused even when nothing is listed).</summary>
        public ListOptions(string what, params string[] filterKeys)
        {
            _values = filterKeys.Where(k => k.Contains('=')).ToDictionary(k => k[..k.IndexOf('=')], k => k[(k.IndexOf('=') + 1)..].Split('|'));
            filterKeys = [.. filterKeys.Select(k => k.Contains('=') ? k[..k.IndexOf('=')] : k)];
            FilterKeys = filterKeys;
            Quiet = new("--quiet", "-q") { Description = $"Print only {what} ids" };
            Filter = new("--filter", "-f")
            {
                Description = filterKeys.Length > 0 ? $"KEY=VALUE (repeatable): only {what}s that match; keys: {string.Join(", ", filterKeys)}" : "Not taken by this listing",
                AllowMultipleArgumentsPerToken = false,
                Hidden = filterKeys.Length == 0,
                HelpName = "KEY=VALUE",
            };
        }

        readonly Dictionary<string, string[]> _values;

        public string[] FilterKeys { get; }
        public Option<bool> Quiet { get; }
        public Option<bool> NoTrunc { get; } = new("--no-trunc") { Description = "Show ids in full" };
        public Option<string[]> Filter { get; }
        public Option<string?> Format { get; } = FormatOption();

        public void AddTo(Command command)
        {
            command.Options.Add(Quiet);
            command.Options.Add(NoTrunc);
            command.Options.Add(Filter);
            command.Options.Add(Format);
        }

        /// <summary>The --filter pairs by key, each key checked against <see cref="FilterKeys"/>.</summary>
        public Filters Filters(ParseResult r)
        {
            var by = new Dictionary<string, List<string>>();
            foreach (var item in r.GetValue(Filter) ?? [])
            {
                int eq = item.IndexOf('=');
                string key = eq > 0 ? item[..eq] : item;
                if (!FilterKeys.Contains(key))
                    throw StrataException.Invalid(FilterKeys.Length == 0 ? "this listing takes no --filter"
                        : $"unknown filter '{StrataException.OneLine(key)}' (use {string.Join(", ", FilterKeys.Select(k => k + "=..."))})");
                if (eq <= 0) throw StrataException.Invalid($"--filter '{StrataException.OneLine(item)}' is not KEY=VALUE");
                if (_values.TryGetValue(key, out var valid) && !valid.Contains(item[(eq + 1)..]))
                    throw StrataException.Invalid($"--filter {key}= takes {string.Join(", ", valid[..^1])} or {valid[^1]}, not '{StrataException.OneLine(item[(eq + 1)..])}'");
                (by.TryGetValue(key, out var values) ? values : by[key] = []).Add(item[(eq + 1)..]);
            }
            return new Filters(by);
        }
    }

    /// <summary>--filter's pairs: an object passes when, for every key given, one of its values matches.</summary>
    public sealed class Filters(Dictionary<string, List<string>> by)
    {
        public bool Has(string key) => by.ContainsKey(key);

        public bool Match(string key, Func<string, bool> test) => !by.TryGetValue(key, out var values) || values.Any(test);

        /// <summary>A true/false filter value (dangling=true), as checked by <see cref="ListOptions"/>.</summary>
        public static bool Flag(string value) => value is "true" or "1";

        /// <summary>label=KEY or label=KEY=VALUE against a set of labels.</summary>
        public static bool Label(string value, IReadOnlyDictionary<string, string>? labels)
        {
            int eq = value.IndexOf('=');
            if (labels is null) return false;
            return eq < 0 ? labels.ContainsKey(value) : labels.TryGetValue(value[..eq], out var v) && v == value[(eq + 1)..];
        }
    }

    /// <summary>Prints a listing: ids (-q), a JSON array, template lines, or a table of <paramref name="headers"/>.</summary>
    public static int List<T>(ParseResult r, ListOptions options, IReadOnlyList<T> items, Func<T, string> id, Func<T, JsonNode?> json,
        string[] headers, Func<T, bool, IEnumerable<string[]>> rows)
    {
        bool full = r.GetValue(options.NoTrunc);
        var o = Io.Current.Out;
        string? format = r.GetValue(options.Format);
        if (r.GetValue(options.Quiet))
        {
            if (format is not (null or "table")) throw StrataException.Invalid("--quiet and --format do not go together");
            foreach (var i in items.Select(i => Id(id(i), full)).Distinct()) o.WriteLine(i);
            return 0;
        }
        switch (Kind(format))
        {
            case FormatKind.Json:
                WriteJson(new JsonArray([.. items.Select(json)]));
                return 0;
            case FormatKind.Template:
                var template = Template.Parse(format!);
                foreach (var i in items) o.WriteLine(template.Render(json(i)));
                return 0;
            case FormatKind.TableTemplate:
                // docker's `table {{.A}}\t{{.B}}`: a column per tab-separated part, headed by its fields' names
                var cells = format!["table".Length..].TrimStart().Split(["\\t", "\t"], StringSplitOptions.None).Select(Template.Parse).ToList();
                return WriteTable(cells.Select(c => c.Header).ToArray(), items.Select(i => new[] { cells.Select(c => c.Render(json(i))).ToArray() }));
        }
        return WriteTable(headers, items.Select(i => rows(i, full)));
    }

    /// <summary>A table of <paramref name="headers"/>, each item giving one or more rows.</summary>
    public static int WriteTable(string[] headers, IEnumerable<IEnumerable<string[]>> rows)
    {
        var table = new Table().NoBorder().HideRowSeparators();
        foreach (var h in headers) table.AddColumn(new TableColumn(Markup.Escape(h)).PadLeft(0).PadRight(3));
        foreach (var row in rows.SelectMany(r => r)) table.AddRow(row.Select(Markup.Escape).ToArray());
        Io.Current.Ansi.Write(table);
        return 0;
    }

    /// <summary>Prints one document per object (inspect): a JSON array, or a template line each.</summary>
    public static int Documents(string? format, IEnumerable<JsonNode?> documents)
    {
        switch (Kind(format, table: false))
        {
            case FormatKind.Template:
                var template = Template.Parse(format!);
                foreach (var d in documents) Io.Current.Out.WriteLine(template.Render(d));
                return 0;
            default:
                WriteJson(new JsonArray([.. documents]));
                return 0;
        }
    }

    public enum FormatKind { Table, Json, Template, TableTemplate }

    public static FormatKind Kind(string? format, bool table = true) => format switch
    {
        null => table ? FormatKind.Table : FormatKind.Json,
        "table" when table => FormatKind.Table,
        "json" => FormatKind.Json,
        _ when table && format.StartsWith("table ", StringComparison.Ordinal) && format.Contains("{{", StringComparison.Ordinal) => FormatKind.TableTemplate,
        _ when !table && format.StartsWith("table", StringComparison.Ordinal) => throw StrataException.Invalid("--format 'table ...' is for listings; use json or a template such as '{{.Id}}'"),
        _ when format.Contains("{{", StringComparison.Ordinal) => FormatKind.Template,
        _ => throw StrataException.Invalid($"unknown --format '{StrataException.OneLine(format)}' (use {(table ? "table, " : "")}json, or a template such as '{{{{.Id}}}}')"),
    };

    /// <summary>
    /// The part of Go's text/template that docker users put in --format: text with {{.Field}}, {{.Field.Sub}}, {{.}},
    /// {{json .Field}} and {{json .}} (field names matched without regard to case: {{.ID}} is Id). No .NET library
    /// implements Go templates; anything else in braces (range, if, pipes) is refused with one line, not guessed.
    /// Values print as Go prints them: text as is, numbers and booleans plainly, lists as [a b], nothing as &lt;no value&gt;.
    /// </summary>
    public sealed partial class Template
    {
        readonly List<(string Text, string[]? Path, bool Json)> _parts = [];

        /// <summary>The template with each field as its name in capitals ("{{.Name}} ({{.Size}})": "NAME (SIZE)"), a column's header.</summary>
        public string Header => string.Concat(_parts.Select(p => p.Path is null ? p.Text : p.Path.Length == 0 ? "VALUE" : p.Path[^1].ToUpperInvariant()));

        [GeneratedRegex(@"\{\{-?\s*(?<json>json\s+)?(?<path>\.[A-Za-z0-9_.]*)\s*-?\}\}")]
        private static partial Regex Action();

        public static Template Parse(string text)
        {
            var t = new Template();
            int at = 0;
            foreach (Match m in Action().Matches(text))
            {
                t.Literal(text[at..m.Index]);
                string path = m.Groups["path"].Value;
                t._parts.Add(("", path == "." ? [] : path[1..].Split('.'), m.Groups["json"].Success));
                at = m.Index + m.Length;
            }
            t.Literal(text[at..]);
            return t;
        }

        void Literal(string text)
        {
            int open = text.IndexOf("{{", StringComparison.Ordinal);
            if (open >= 0 || text.Contains("}}", StringComparison.Ordinal))
            {
                string action = open >= 0 ? text[open..Math.Min(text.Length, open + 40)] : text;
                throw StrataException.Invalid($"--format: '{StrataException.OneLine(action)}' is not supported; use {{{{.Field}}}}, {{{{.Field.Sub}}}} or {{{{json .Field}}}} (or --format json)");
            }
            _parts.Add((text.Replace("\\t", "\t", StringComparison.Ordinal).Replace("\\n", "\n", StringComparison.Ordinal), null, false));
        }

        public string Render(JsonNode? value)
        {
            var sb = new StringBuilder();
            foreach (var (text, path, json) in _parts)
            {
                if (path is null)
                {
                    sb.Append(text);
                    continue;
                }
                JsonNode? v = value;
                foreach (var name in path)
                {
                    if (v is not JsonObject o) throw StrataException.Invalid($"--format: {string.Concat(path.Select(p => "." + p))}: '{StrataException.OneLine(name)}' is not a field here");
                    var member = o.FirstOrDefault(p => string.Equals(p.Key, name, StringComparison.OrdinalIgnoreCase));
                    if (member.Key is null)
                        throw StrataException.Invalid($"--format: no field '{StrataException.OneLine(name)}' (fields: {string.Join(", ", o.Select(p => p.Key))})");
                    v = member.Value;
                }
                sb.Append(json ? (v is null ? "null" : v.ToJsonString(s_oneLine)) : Plain(v));
            }
            return sb.ToString();
        }

        static string Plain(JsonNode? v) => v switch
        {
            null => "<no value>",
            JsonArray a => "[" + string.Join(' ', a.Select(Plain)) + "]",
            JsonValue j when j.GetValueKind() == JsonValueKind.String => j.GetValue<string>(),
            _ => v.ToJsonString(s_oneLine),
        };
    }
}
