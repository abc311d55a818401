using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Strata.Core.Snapshots;

namespace Strata.Daemon.Snapshotter;

/// <summary>
/// containerd's filter syntax (its filters package: scanner.go, parser.go, quote.go) as List takes it, over what a
/// snapshot's info holds: a request's filters are alternatives (any may match; none given: every snapshot matches); each
/// is selectors joined by commas, all of which must match. A selector is a field path, optionally an operator and a
/// value: <c>name</c>, <c>parent</c>, <c>kind</c> (view, active, committed) or <c>labels.KEY</c> (fields are
/// [A-Za-z0-9_]; a key with dots or other characters quoted: <c>labels."containerd.io/gc.root"</c>); operators
/// <c>==</c>, <c>!=</c> and <c>~=</c> (a regular expression, RE2-like: matched in linear time, no backreferences or
/// lookarounds); a path alone asks that the field be present. Values are bare (letters, digits, punctuation, symbols; no
/// space or comma) or quoted ("..." with Go's escapes; /.../ and |...| too after ~=). Space before a token is skipped.
/// Whatever containerd's parser refuses, and a field the info does not have, is InvalidArgument in one line that quotes
/// the filter shortened.
/// </summary>
public sealed class SnapshotFilter
{
    readonly List<List<Selector>> _alternatives;

    SnapshotFilter(List<List<Selector>> alternatives) => _alternatives = alternatives;

    public static SnapshotFilter Parse(IEnumerable<string> filters)
    {
        var alternatives = new List<List<Selector>>();
        foreach (var filter in filters)
            if (filter.Length > 0) alternatives.Add(new Parser(filter).Selectors());
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
                _ => IsMatch(field ?? ""),
            };
        }

        bool IsMatch(string field)
        {
            try
            {
                return Pattern!.IsMatch(field);
            }
            catch (RegexMatchTimeoutException)
            {
                throw StrataException.Invalid($"filter regular expression '{SnapshotLimits.Shorten(Value!)}' takes too long to match");
            }
        }
    }

    /// <summary>containerd's scanner and parser over one filter's text: the scanner reads runes (a NUL or a broken
    /// surrogate is illegal), skips white space before a token, and reads a value where an operator came before.</summary>
    sealed class Parser(string text)
    {
        const int Eof = -1, Illegal = -2;

        enum Token { Eof, Illegal, Quoted, Separator, Operator, Value, Field, Other }

        int _pos, _next; // where the last rune read starts, and where the next one does
        bool _value;
        string _error = "";

        StrataException Bad(int at, string why) =>
            StrataException.Invalid($"filter '{SnapshotLimits.Shorten(text)}': parse error at {at}: {why}");

        public List<Selector> Selectors()
        {
            var all = new List<Selector> { Selector() };
            while (true)
            {
                int ch = Peek();
                if (ch == Eof) return all;
                if (ch != ',') throw Bad(_next, $"unexpected input: {Show(ch)}");
                Scan();
                all.Add(Selector());
            }
        }

        Selector Selector()
        {
            int at = _next;
            var path = new List<string> { Field() };
            while (Peek() == '.')
            {
                Scan();
                path.Add(Field());
            }
            string[] p = [.. path];
            if (p is not (["name"] or ["parent"] or ["kind"] or ["labels", _]))
                throw Bad(at, $"unknown field '{SnapshotLimits.Shorten(string.Join('.', p))}' (name, parent, kind, labels.KEY)");
            if (Peek() is ',' or Eof) return new Selector(p, null, null, null);
            string op = Operator();
            at = _next;
            string value = Value(allowAltQuotes: op == "~=");
            Regex? pattern = null;
            if (op == "~=")
                try
                {
                    pattern = new Regex(value, RegexOptions.CultureInvariant | RegexOptions.NonBacktracking, TimeSpan.FromSeconds(1));
                }
                catch (RegexParseException ex)
                {
                    throw Bad(at, $"bad regular expression: {ex.Error} at offset {ex.Offset}");
                }
                catch (NotSupportedException)
                {
                    throw Bad(at, "the regular expression uses what RE2 does not have (backreferences, lookarounds, atomic groups)");
                }
            return new Selector(p, op, value, pattern);
        }

        string Field()
        {
            var (token, at, s) = Scan();
            return token switch
            {
                Token.Field => s,
                Token.Quoted => Unquote(at, s, allowAltQuotes: false),
                Token.Illegal => throw Bad(at, _error),
                _ => throw Bad(at, "expected field or quoted"),
            };
        }

        string Operator()
        {
            var (token, at, s) = Scan();
            return token switch
            {
                Token.Operator when s is "==" or "!=" or "~=" => s,
                Token.Operator => throw Bad(at, $"unsupported operator '{SnapshotLimits.Shorten(s)}'"),
                Token.Illegal => throw Bad(at, _error),
                _ => throw Bad(at, "expected an operator (\"==\"|\"!=\"|\"~=\")"),
            };
        }

        string Value(bool allowAltQuotes)
        {
            var (token, at, s) = Scan();
            return token switch
            {
                Token.Value or Token.Field => s,
                Token.Quoted => Unquote(at, s, allowAltQuotes),
                Token.Illegal => throw Bad(at, _error),
                _ => throw Bad(at, "expected value or quoted"),
            };
        }

        (Token Token, int At, string Text) Scan()
        {
            int ch = Next();
            while (ch >= 0 && Rune.IsWhiteSpace(new Rune(ch))) ch = Next();
            int at = _pos;
            switch (ch)
            {
                case Eof: return (Token.Eof, at, "");
                case Illegal: return (Token.Illegal, at, "");
                case '"' or '/' or '|':
                    return (ScanQuoted(ch) ? Token.Quoted : Token.Illegal, at, text[at.._next]);
                case ',' or '.':
                    _value = false;
                    return (Token.Separator, at, text[at.._next]);
                case '=' or '!' or '~':
                    while (Peek() is '=' or '!' or '~') Next();
                    _value = true;
                    return (Token.Operator, at, text[at.._next]);
            }
            if (_value)
            {
                while (IsValueRune(Peek())) Next();
                _value = false;
                return (Token.Value, at, text[at.._next]);
            }
            if (IsFieldRune(ch))
            {
                while (IsFieldRune(Peek())) Next();
                return (Token.Field, at, text[at.._next]);
            }
            return (Token.Other, at, char.ConvertFromUtf32(ch));
        }

        bool ScanQuoted(int quote)
        {
            bool legal = true;
            int ch = Next();
            while (ch != quote)
            {
                if (ch == '\n' || ch < 0)
                {
                    _error = "quoted literal not terminated";
                    return false;
                }
                if (ch != '\\')
                {
                    ch = Next();
                    continue;
                }
                ch = Next();
                switch (ch)
                {
                    case 'a' or 'b' or 'f' or 'n' or 'r' or 't' or 'v' or '\\':
                        ch = Next();
                        break;
                    case >= '0' and <= '7':
                        legal &= ScanDigits(ref ch, 8, 3);
                        break;
                    case 'x' or 'u' or 'U':
                        int n = ch == 'x' ? 2 : ch == 'u' ? 4 : 8;
                        ch = Next();
                        legal &= ScanDigits(ref ch, 16, n);
                        break;
                    default:
                        if (ch == quote)
                        {
                            ch = Next();
                            break;
                        }
                        _error = "illegal escape sequence";
                        legal = false;
                        break;
                }
            }
            return legal;
        }

        bool ScanDigits(ref int ch, int radix, int n)
        {
            for (; n > 0 && DigitValue(ch) < radix; n--) ch = Next();
            if (n == 0) return true;
            _error = "illegal numeric escape sequence";
            return false;
        }

        /// <summary>quote.go's unquote: a quoted token's text (quotes included) as the string it stands for.</summary>
        string Unquote(int at, string quoted, bool allowAltQuotes)
        {
            if (!allowAltQuotes && quoted[0] != '"') throw Bad(at, "invalid quote encountered");
            char quote = quoted[0];
            if (quoted.Length < 2 || quoted[^1] != quote || quoted.AsSpan(1, quoted.Length - 2).Contains('\n'))
                throw Bad(at, "unquoting failed: invalid syntax");
            var sb = new StringBuilder(quoted.Length);
            for (int i = 1; i < quoted.Length - 1;)
            {
                char c = quoted[i++];
                if (c == quote) throw Bad(at, "unquoting failed: invalid syntax");
                if (c != '\\')
                {
                    sb.Append(c);
                    continue;
                }
                char e = i < quoted.Length - 1 ? quoted[i++] : throw Bad(at, "unquoting failed: invalid syntax");
                switch (e)
                {
                    case 'a': sb.Append('\a'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'n': sb.Append('\n'); break;
                    case 'r': sb.Append('\r'); break;
                    case 't': sb.Append('\t'); break;
                    case 'v': sb.Append('\v'); break;
                    case '\\': sb.Append('\\'); break;
                    case '"' or '\'' or '/' or '|' when e == quote: sb.Append(e); break;
                    case 'x' or 'u' or 'U':
                    {
                        int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                        if (i + n > quoted.Length - 1 || !int.TryParse(quoted.AsSpan(i, n), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int v)
                            || quoted.AsSpan(i, n).ContainsAnyExcept(HexDigits) || v > 0x10FFFF || v < 0)
                            throw Bad(at, "unquoting failed: invalid syntax");
                        i += n;
                        if (e == 'x') sb.Append((char)v);
                        else if (Rune.IsValid(v)) sb.Append(char.ConvertFromUtf32(v));
                        else sb.Append('\uFFFD'); // a surrogate: Go's utf8.EncodeRune writes RuneError
                        break;
                    }
                    case >= '0' and <= '7':
                    {
                        int v = e - '0';
                        for (int j = 0; j < 2; j++)
                        {
                            int d = i < quoted.Length - 1 ? quoted[i++] - '0' : -1;
                            if (d is < 0 or > 7) throw Bad(at, "unquoting failed: invalid syntax");
                            v = v << 3 | d;
                        }
                        if (v > 255) throw Bad(at, "unquoting failed: invalid syntax");
                        sb.Append((char)v);
                        break;
                    }
                    default: throw Bad(at, "unquoting failed: invalid syntax");
                }
            }
            return sb.ToString();
        }

        int Next()
        {
            _pos = _next;
            if (_next >= text.Length) return Eof;
            if (Rune.DecodeFromUtf16(text.AsSpan(_next), out var rune, out int used) != OperationStatus.Done)
            {
                _next += Math.Max(used, 1);
                _error = "rune error";
                return Illegal;
            }
            _next += used;
            if (rune.Value == 0)
            {
                _error = "unexpected null";
                return Illegal;
            }
            return rune.Value;
        }

        int Peek()
        {
            var (pos, next, error) = (_pos, _next, _error);
            int ch = Next();
            (_pos, _next, _error) = (pos, next, error);
            return ch;
        }

        static readonly SearchValues<char> HexDigits = SearchValues.Create("0123456789abcdefABCDEF");

        static int DigitValue(int ch) => ch switch
        {
            >= '0' and <= '9' => ch - '0',
            >= 'a' and <= 'f' => ch - 'a' + 10,
            >= 'A' and <= 'F' => ch - 'A' + 10,
            _ => 16,
        };

        static bool IsFieldRune(int ch) => ch is '_' or (>= 'A' and <= 'Z') or (>= 'a' and <= 'z') or (>= '0' and <= '9');

        /// <summary>Go's isValueRune: not a comma or space, and a letter, mark, number, punctuation or symbol.</summary>
        static bool IsValueRune(int ch)
        {
            if (ch < 0 || ch == ',' || Rune.IsWhiteSpace(new Rune(ch))) return false;
            return Rune.GetUnicodeCategory(new Rune(ch)) switch
            {
                UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse
                    or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => false,
                _ => true,
            };
        }

        static string Show(int ch) => ch >= 0 ? SnapshotLimits.Shorten(char.ConvertFromUtf32(ch)) : "illegal input";
    }
}
