using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Strata.Daemon;

/// <summary>
/// A JSON request body as the daemon's endpoints take it (the Docker plugin's): read whole up
/// to <see cref="MaxBytes"/>, then parsed; an empty body and JSON null give null. Broken JSON, a value that is not
/// the request type (not an object, a field of the wrong JSON type) and a body past the limit are
/// <see cref="Malformed"/>. Parsing does not make fields non-null whatever their C# type says: callers check them.
/// </summary>
static class RequestBody
{
    /// <summary>Largest body taken: requests are a few hundred bytes; a client must not make the daemon hold more.</summary>
    public const int MaxBytes = 1 << 20;

    public static async Task<T?> ReadJsonAsync<T>(Stream body, JsonTypeInfo<T> type, CancellationToken ct) where T : class
    {
        using var buffer = new MemoryStream();
        var chunk = ArrayPool<byte>.Shared.Rent(1 << 14);
        try
        {
            int n;
            while ((n = await body.ReadAsync(chunk, ct)) > 0)
            {
                if (buffer.Length + n > MaxBytes) throw Malformed("the body is larger than 1 MiB");
                buffer.Write(chunk, 0, n);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
        if (buffer.Length == 0) return null;
        buffer.Position = 0;
        try
        {
            return JsonSerializer.Deserialize(buffer, type);
        }
        catch (JsonException ex)
        {
            throw Malformed(ex.Message);
        }
    }

    /// <summary>The one error for a request that is not one: InvalidArgument, "malformed request: ...".</summary>
    public static StrataException Malformed(string what) => StrataException.Invalid("malformed request: " + what);

    /// <summary>A string from a request, fit to quote in a one-line message: control characters shown as '?',
    /// cut at 64 characters.</summary>
    public static string Quote(string s)
    {
        if (s.Length > 64) s = s[..64] + "...";
        return string.Create(s.Length, s, static (dest, src) =>
        {
            for (int i = 0; i < src.Length; i++) dest[i] = char.IsControl(src[i]) ? '?' : src[i];
        });
    }
}
