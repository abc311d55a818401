using System.Runtime.InteropServices.Marshalling;
using System.Text;

namespace Strata.Native;

/// <summary>
/// File names are bytes; .NET strings are UTF-16. Valid UTF-8 maps as usual, and each byte that is
/// not part of valid UTF-8 maps to a lone low surrogate U+DC80..U+DCFF (Python's "surrogateescape"),
/// so every name read from the kernel or a tar goes back to exactly the same bytes. Valid UTF-8 can
/// never produce a lone surrogate, so the mapping is unambiguous.
/// </summary>
public static class PathEncoding
{
    const char EscapeFirst = '\uDC80', EscapeLast = '\uDCFF';

    public static string Decode(ReadOnlySpan<byte> bytes)
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return Encoding.UTF8.GetString(bytes);
        var sb = new StringBuilder(bytes.Length);
        while (!bytes.IsEmpty)
        {
            if (Rune.DecodeFromUtf8(bytes, out var rune, out int used) == System.Buffers.OperationStatus.Done)
            {
                sb.Append(rune.ToString());
                bytes = bytes[used..];
            }
            else
            {
                sb.Append((char)(0xDC00 + bytes[0]));
                bytes = bytes[1..];
            }
        }
        return sb.ToString();
    }

    static bool HasEscapes(ReadOnlySpan<char> s) => s.IndexOfAnyInRange(EscapeFirst, EscapeLast) >= 0;

    public static int GetByteCount(string s)
    {
        if (!HasEscapes(s)) return Encoding.UTF8.GetByteCount(s);
        int n = 0;
        for (int i = 0; i < s.Length; i++) n += CharBytes(s, ref i, default);
        return n;
    }

    /// <summary>Encodes into <paramref name="dest"/>, which must hold <see cref="GetByteCount"/> bytes; returns the count.</summary>
    public static int Encode(string s, Span<byte> dest)
    {
        if (!HasEscapes(s)) return Encoding.UTF8.GetBytes(s, dest);
        int n = 0;
        for (int i = 0; i < s.Length; i++) n += CharBytes(s, ref i, dest[n..]);
        return n;
    }

    public static byte[] Encode(string s)
    {
        var bytes = new byte[GetByteCount(s)];
        Encode(s, bytes);
        return bytes;
    }

    /// <summary>Bytes of the character (or surrogate pair) at <paramref name="i"/>; writes them when <paramref name="dest"/> is not empty.</summary>
    static int CharBytes(string s, ref int i, Span<byte> dest)
    {
        char c = s[i];
        if (c >= EscapeFirst && c <= EscapeLast && !(i > 0 && char.IsHighSurrogate(s[i - 1])))
        {
            if (!dest.IsEmpty) dest[0] = (byte)(c - 0xDC00);
            return 1;
        }
        Rune rune;
        if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
        {
            rune = new Rune(c, s[i + 1]);
            i++;
        }
        else rune = Rune.IsValid(c) ? new Rune(c) : Rune.ReplacementChar;
        return dest.IsEmpty ? rune.Utf8SequenceLength : rune.EncodeToUtf8(dest);
    }
}

/// <summary>Marshals path and xattr-name strings to NUL-terminated bytes with <see cref="PathEncoding"/>,
/// on the stack when they are short.</summary>
[CustomMarshaller(typeof(string), MarshalMode.ManagedToUnmanagedIn, typeof(ManagedToUnmanagedIn))]
public static unsafe class PathMarshaller
{
    public ref struct ManagedToUnmanagedIn
    {
        public static int BufferSize => 512;

        byte* _ptr;
        bool _allocated;

        public void FromManaged(string? s, Span<byte> buffer)
        {
            if (s is null)
            {
                _ptr = null;
                return;
            }
            // the kernel would stop at a NUL and act on a different, shorter name
            if (s.Contains('\0')) throw StrataException.Invalid($"name '{s.Replace('\0', '?')}' contains a NUL byte");
            int n = PathEncoding.GetByteCount(s);
            if (n + 1 > buffer.Length)
            {
                _ptr = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)(n + 1));
                _allocated = true;
                buffer = new Span<byte>(_ptr, n + 1);
            }
            else
            {
                // the caller-provided buffer is stack memory of the generated stub: it does not move
                _ptr = (byte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(buffer));
            }
            PathEncoding.Encode(s, buffer);
            buffer[n] = 0;
        }

        public readonly byte* ToUnmanaged() => _ptr;

        public readonly void Free()
        {
            if (_allocated) System.Runtime.InteropServices.NativeMemory.Free(_ptr);
        }
    }
}
