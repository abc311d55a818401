using System.Text;

namespace Strata.Core.Containers;

/// <summary>
/// The environment variables a caller gives `strata run`, read as docker reads them: `-e KEY=VALUE` as it is, `-e KEY`
/// from the caller's own environment (left out when the caller has no KEY), and env files of KEY=VALUE lines (leading
/// white space dropped, empty lines and lines starting with `#` skipped, a bare KEY taken from the caller's
/// environment as with -e, the value kept as written: no quotes removed, nothing expanded). A key is not empty and
/// has no white space. <see cref="Merge"/> lays them over the image's.
/// </summary>
public static class ContainerEnv
{
    /// <summary>The most of an env file read: far above any real one, and a bound on what a wrong file can make us hold.</summary>
    public const int MaxFile = 1 << 20;

    /// <summary>One -e argument as KEY=VALUE, or null when it names a variable the caller does not have.</summary>
    public static string? FromOption(string item, Func<string, string?> callerEnv)
    {
        int eq = item.IndexOf('=');
        string key = eq < 0 ? item : item[..eq];
        if (key.Length == 0) throw StrataException.Invalid($"-e '{item}': no variable name");
        if (key.Any(char.IsWhiteSpace)) throw StrataException.Invalid($"-e '{item}': the variable name '{key}' contains white space");
        if (eq >= 0) return item;
        return callerEnv(key) is { } value ? key + "=" + value : null;
    }

    /// <summary>The variables of an env file's <paramref name="content"/> (named <paramref name="file"/> in errors).</summary>
    public static List<string> ParseFile(string file, ReadOnlySpan<byte> content, Func<string, string?> callerEnv)
    {
        if (content.StartsWith("\uFEFF"u8)) content = content[3..];
        string text;
        try
        {
            text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(content);
        }
        catch (DecoderFallbackException)
        {
            throw StrataException.Invalid($"env file {file} is not UTF-8 text");
        }
        var env = new List<string>();
        int number = 0;
        foreach (var raw in text.Split('\n'))
        {
            number++;
            string line = raw.TrimEnd('\r').TrimStart();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            int eq = line.IndexOf('=');
            string key = eq < 0 ? line : line[..eq];
            if (key.Length == 0) throw StrataException.Invalid($"env file {file}, line {number}: no variable name");
            if (key.Any(char.IsWhiteSpace)) throw StrataException.Invalid($"env file {file}, line {number}: the variable name '{key}' contains white space");
            if (eq >= 0) env.Add(line);
            else if (callerEnv(key) is { } value) env.Add(key + "=" + value);
        }
        return env;
    }

    /// <summary>Reads an env file of the caller (a regular file, or a pipe such as bash's <c>&lt;(...)</c>), bounded.</summary>
    public static List<string> ReadFile(string path, Func<string, string?> callerEnv)
    {
        if (Directory.Exists(path)) throw StrataException.Invalid($"env file {path} is a directory");
        byte[]? content;
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.SequentialScan);
            content = ConfinedFile.ReadAtMost(file, MaxFile);
        }
        catch (FileNotFoundException)
        {
            throw StrataException.NotFound($"env file {path} does not exist");
        }
        catch (DirectoryNotFoundException)
        {
            throw StrataException.NotFound($"env file {path} does not exist");
        }
        catch (UnauthorizedAccessException)
        {
            throw StrataException.PermissionDenied($"env file {path} cannot be read: permission denied");
        }
        catch (IOException ex)
        {
            throw StrataException.Io($"env file {path} cannot be read: {ex.Message}");
        }
        if (content is null) throw StrataException.Invalid($"env file {path} is more than {MaxFile} bytes");
        return ParseFile(path, content, callerEnv);
    }

    /// <summary>The image's variables with <paramref name="overrides"/> laid over them: one of the same key replaces the
    /// image's where it stands, a new one is added at the end, in order.</summary>
    public static List<string> Merge(IEnumerable<string> image, IEnumerable<string> overrides)
    {
        var env = image.ToList();
        foreach (var item in overrides)
        {
            string key = Key(item);
            int at = env.FindIndex(e => Key(e) == key);
            if (at >= 0) env[at] = item;
            else env.Add(item);
        }
        return env;
    }

    static string Key(string item) => item.IndexOf('=') is var eq and >= 0 ? item[..eq] : item;
}
