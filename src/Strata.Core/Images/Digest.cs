using System.Security.Cryptography;

namespace Strata.Core.Images;

/// <summary>A content digest, <c>sha256:&lt;64 lowercase hex&gt;</c> (the only algorithm OCI requires and the one
/// every tool writes). Parsing is strict: a digest names a file in the blob store.</summary>
public readonly record struct Digest(string Hex)
{
    static bool IsSha256(string text) =>
        text.Length == 71 && text.StartsWith("sha256:", StringComparison.Ordinal) && text.AsSpan(7).IndexOfAnyExcept("0123456789abcdef") < 0;

    public override string ToString() => "sha256:" + Hex;

    public static Digest Parse(string? text, string what = "digest")
    {
        if (text is not null && IsSha256(text)) return new Digest(text[7..]);
        if (text is not null && text.StartsWith("sha512:", StringComparison.Ordinal))
            throw StrataException.Unsupported($"{what} {text[..Math.Min(text.Length, 20)]}...: only sha256 digests are supported");
        throw StrataException.Corrupt($"invalid {what} '{Shorten(text ?? "")}' (expected sha256:<64 hex digits>)");
    }

    public static bool TryParse(string? text, out Digest digest)
    {
        digest = default;
        if (text is null || !IsSha256(text)) return false;
        digest = new Digest(text[7..]);
        return true;
    }

    public static Digest Of(ReadOnlySpan<byte> data) => new(Convert.ToHexStringLower(SHA256.HashData(data)));

    public static Digest From(IncrementalHash hash) => new(Convert.ToHexStringLower(hash.GetHashAndReset()));

    /// <summary>The chain id of a layer stack (OCI image-spec config.md): the first layer's diff id, then
    /// sha256("&lt;chain id below&gt; &lt;diff id&gt;") for each layer above.</summary>
    public static Digest Chain(Digest below, Digest diffId) => Of(System.Text.Encoding.ASCII.GetBytes($"{below} {diffId}"));

    static string Shorten(string s) => s.Length <= 80 ? s : s[..80] + "...";
}

/// <summary>A read-only stream that hashes what passes through it and counts it.</summary>
public sealed class HashingStream(Stream inner, bool ownsInner = false) : Strata.Archive.ReadOnlyStream
{
    readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    public long BytesRead { get; private set; }

    /// <summary>Reads what is left, then returns the digest of everything read.</summary>
    public Digest Finish()
    {
        var buffer = new byte[1 << 16];
        while (Read(buffer, 0, buffer.Length) > 0) { }
        return Digest.From(_hash);
    }

    public override int Read(Span<byte> buffer)
    {
        int n = inner.Read(buffer);
        _hash.AppendData(buffer[..n]);
        BytesRead += n;
        return n;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _hash.Dispose();
            if (ownsInner) inner.Dispose();
        }
        base.Dispose(disposing);
    }

    public override long Position { get => BytesRead; set => throw new NotSupportedException(); }
}
