using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Strata.Thin.Space;

/// <summary>
/// The erasure code of parity spaces: single parity P (RAID-5) and dual parity P+Q (RAID-6) over
/// GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1 (0x11d) and generator g = 2, the field and
/// generator Linux md uses, so a stripe's Q means the same thing to anyone who knows RAID-6.
/// <para>
/// A stripe is k data chunks D_0..D_{k-1} (1 ≤ k ≤ 16) of chunkSize bytes each (a positive multiple
/// of 64), laid out back to back in one buffer, plus P = D_0 ^ ... ^ D_{k-1} and
/// Q = g^0·D_0 ^ g^1·D_1 ^ ... ^ g^{k-1}·D_{k-1}, byte by byte, each chunkSize bytes. Chunks are
/// numbered 0..k-1 for data, k for P and k+1 for Q. P alone recovers any one lost chunk; P and Q
/// recover any two, because the g^j are distinct and non-zero for j &lt; 255.
/// </para>
/// <para>
/// Encoding runs on every parity write, so it is vectorized: P is a xor, and Q is evaluated by
/// Horner's rule, Q = ((D_{k-1}·g ^ D_{k-2})·g ^ ...)·g ^ D_0, where ·g is a shift and a
/// conditional xor of 0x1d in every byte lane. Recovery multiplies by arbitrary constants; it
/// splits each byte into nibbles and looks both up in 16-entry product tables with a byte shuffle.
/// Nothing here allocates per call.
/// </para>
/// </summary>
internal static class ParityCode
{
    public const int MaxDataChunks = 16;

    /// <summary>A chunk's size is a multiple of this, so the vector loops never leave a remainder.</summary>
    public const int ChunkAlignment = 64;

    /// <summary>The widest vectors a call may use; tests pin each to check all paths give the same bytes.</summary>
    internal enum Simd { Scalar, V128, V256 }

    internal static readonly Simd Best =
        Avx2.IsSupported ? Simd.V256 : Vector128.IsHardwareAccelerated ? Simd.V128 : Simd.Scalar;

    // The methods a call runs through are compiled optimized at once (AggressiveOptimization): the
    // JIT's first tier runs these loops 5 to 10 times slower, a 64 KiB stripe takes microseconds so
    // even the checks count, and in a busy process (a test host, measured) tiered compilation left
    // them in the first tier for seconds.

    const byte Reduction = 0x1d; // 0x11d without x^8: what x^8 becomes after reduction

    /// <summary>Exp[i] = g^i for i in 0..509: twice the group's order, so Exp[Log[a] + Log[b]] needs no modulo.</summary>
    static readonly byte[] Exp = PowersOfTwo();

    /// <summary>Log[Exp[i]] = i for i in 0..254; Log[0] is meaningless (0 is no power of g).</summary>
    static readonly byte[] Log = Logarithms(Exp);

    /// <summary>Computes P and, when <paramref name="q"/> is not empty, Q of the k data chunks in <paramref name="data"/>.</summary>
    public static void Encode(ReadOnlySpan<byte> data, int k, Span<byte> p, Span<byte> q) => Encode(data, k, p, q, Best);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Encode(ReadOnlySpan<byte> data, int k, Span<byte> p, Span<byte> q, Simd simd)
    {
        int chunk = CheckStripe(data, k, p, q);
        if (q.IsEmpty) Xor(data, k, chunk, default, p, simd);
        else Horner(data, k, chunk, default, p, default, q, simd);
    }

    /// <summary>
    /// Rebuilds in place the chunks numbered in <paramref name="missing"/> (0..k-1 data, k for P,
    /// k+1 for Q) from the others, which are trusted as they are and not written. P alone rebuilds
    /// one chunk; P and Q rebuild any two. Losing more throws <see cref="InvalidOperationException"/>.
    /// </summary>
    public static void Reconstruct(Span<byte> data, int k, Span<byte> p, Span<byte> q, ReadOnlySpan<int> missing) =>
        Reconstruct(data, k, p, q, missing, Best);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Reconstruct(Span<byte> data, int k, Span<byte> p, Span<byte> q, ReadOnlySpan<int> missing, Simd simd)
    {
        int chunk = CheckStripe(data, k, p, q);
        int last = q.IsEmpty ? k : k + 1;
        uint lost = 0;
        foreach (int index in missing)
        {
            if (index < 0 || index > last)
                throw new ArgumentOutOfRangeException(nameof(missing), index,
                    $"a stripe of {k} data chunks {(q.IsEmpty ? "and P" : "with P and Q")} numbers its chunks 0..{last}");
            if ((lost >> index & 1) != 0) throw new ArgumentException($"chunk {index} is listed twice", nameof(missing));
            lost |= 1u << index;
        }
        int tolerance = q.IsEmpty ? 1 : 2;
        if (BitOperations.PopCount(lost) > tolerance)
            throw new InvalidOperationException(
                $"{BitOperations.PopCount(lost)} chunks of a stripe with {(q.IsEmpty ? "single" : "dual")} parity are lost; it rebuilds at most {tolerance}");

        bool lostP = (lost >> k & 1) != 0, lostQ = (lost >> (k + 1) & 1) != 0;
        uint lostData = lost & ((1u << k) - 1);
        if (lostData == 0)
        {
            if (lostQ) Horner(data, k, chunk, default, lostP ? p : default, default, q, simd);
            else if (lostP) Xor(data, k, chunk, default, p, simd);
            return;
        }

        // The lost data chunks are zeroed so the kernels can sum over all k chunks; each kernel
        // reads every input at an offset before it writes its outputs there, so an output may be
        // one of these zeroed chunks.
        int x = BitOperations.TrailingZeroCount(lostData);
        var dx = data.Slice(x * chunk, chunk);
        dx.Clear();
        uint other = lostData & (lostData - 1);
        if (other != 0)
        {
            // With D_x = D_y = 0 the sums leave Pxy = D_x ^ D_y and Qxy = g^x·D_x ^ g^y·D_y.
            // Then g^y·Pxy ^ Qxy = (g^x ^ g^y)·D_x, so D_x = a·Pxy ^ b·Qxy with
            // b = 1/(g^x ^ g^y) and a = g^y·b (g^x ≠ g^y as x ≠ y < 255), and D_y = Pxy ^ D_x.
            int y = BitOperations.TrailingZeroCount(other);
            var dy = data.Slice(y * chunk, chunk);
            dy.Clear();
            Horner(data, k, chunk, p, dx, q, dy, simd);
            byte b = Inverse((byte)(Exp[x] ^ Exp[y]));
            SolvePair(dx, dy, Multiply(Exp[y], b), b, simd);
        }
        else if (!lostP)
        {
            Xor(data, k, chunk, p, dx, simd);
            if (lostQ) Horner(data, k, chunk, default, default, default, q, simd);
        }
        else
        {
            // Q with D_x = 0 xored into Q leaves g^x·D_x.
            Horner(data, k, chunk, default, default, q, dx, simd);
            Scale(dx, Exp[255 - x], simd);
            Xor(data, k, chunk, default, p, simd);
        }
    }

    /// <summary>Checks the layout and returns chunkSize. Wrong shapes are the caller's bug, hence ArgumentException.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int CheckStripe(ReadOnlySpan<byte> data, int k, ReadOnlySpan<byte> p, ReadOnlySpan<byte> q)
    {
        if (k < 1 || k > MaxDataChunks)
            throw new ArgumentOutOfRangeException(nameof(k), k, $"a stripe has 1 to {MaxDataChunks} data chunks");
        if (data.IsEmpty || data.Length % k != 0 || data.Length / k % ChunkAlignment != 0)
            throw new ArgumentException($"{data.Length} bytes are not {k} chunks of a positive multiple of {ChunkAlignment} bytes", nameof(data));
        int chunk = data.Length / k;
        if (p.Length != chunk) throw new ArgumentException($"P is {p.Length} bytes, not one chunk of {chunk}", nameof(p));
        if (!q.IsEmpty && q.Length != chunk) throw new ArgumentException($"Q is {q.Length} bytes, not one chunk of {chunk} (or none)", nameof(q));
        if (data.Overlaps(p) || data.Overlaps(q) || p.Overlaps(q))
            throw new ArgumentException("the data, P and Q of a stripe overlap");
        return chunk;
    }

    /// <summary>pOut = pIn ^ D_0 ^ ... ^ D_{k-1}; an empty pIn counts as zeros. pOut may be a data chunk that is zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Xor(ReadOnlySpan<byte> data, int k, int chunk, ReadOnlySpan<byte> pIn, Span<byte> pOut, Simd simd)
    {
        ref byte d = ref MemoryMarshal.GetReference(data);
        ref byte pi = ref MemoryMarshal.GetReference(pIn);
        ref byte po = ref MemoryMarshal.GetReference(pOut);
        bool withIn = !pIn.IsEmpty;
        nuint stride = (nuint)chunk;
        int i = 0;
        if (simd >= Simd.V256 && Vector256.IsHardwareAccelerated)
            for (; i <= chunk - Vector256<byte>.Count; i += Vector256<byte>.Count)
            {
                nuint at = (nuint)i;
                var pv = withIn ? Vector256.LoadUnsafe(ref pi, at) : Vector256<byte>.Zero;
                for (int j = 0; j < k; j++, at += stride) pv ^= Vector256.LoadUnsafe(ref d, at);
                pv.StoreUnsafe(ref po, (nuint)i);
            }
        if (simd >= Simd.V128 && Vector128.IsHardwareAccelerated)
            for (; i <= chunk - Vector128<byte>.Count; i += Vector128<byte>.Count)
            {
                nuint at = (nuint)i;
                var pv = withIn ? Vector128.LoadUnsafe(ref pi, at) : Vector128<byte>.Zero;
                for (int j = 0; j < k; j++, at += stride) pv ^= Vector128.LoadUnsafe(ref d, at);
                pv.StoreUnsafe(ref po, (nuint)i);
            }
        for (; i <= chunk - sizeof(ulong); i += sizeof(ulong))
        {
            nuint at = (nuint)i;
            ulong pv = withIn ? Read(ref pi, at) : 0;
            for (int j = 0; j < k; j++, at += stride) pv ^= Read(ref d, at);
            Write(ref po, (nuint)i, pv);
        }
    }

    /// <summary>
    /// pOut = pIn ^ sum of D_j and qOut = qIn ^ sum of g^j·D_j (empty inputs count as zeros; an
    /// empty pOut is not written). Outputs may be data chunks that are zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Horner(ReadOnlySpan<byte> data, int k, int chunk, ReadOnlySpan<byte> pIn, Span<byte> pOut,
        ReadOnlySpan<byte> qIn, Span<byte> qOut, Simd simd)
    {
        ref byte d = ref MemoryMarshal.GetReference(data);
        ref byte pi = ref MemoryMarshal.GetReference(pIn);
        ref byte po = ref MemoryMarshal.GetReference(pOut);
        ref byte qi = ref MemoryMarshal.GetReference(qIn);
        ref byte qo = ref MemoryMarshal.GetReference(qOut);
        bool withPIn = !pIn.IsEmpty, withQIn = !qIn.IsEmpty, withP = !pOut.IsEmpty;
        nuint stride = (nuint)chunk, top = (nuint)(k - 1) * stride;
        int i = 0;
        if (simd >= Simd.V256 && Vector256.IsHardwareAccelerated)
            for (; i <= chunk - Vector256<byte>.Count; i += Vector256<byte>.Count)
            {
                nuint at = top + (nuint)i;
                var qv = Vector256.LoadUnsafe(ref d, at);
                var pv = qv;
                for (int j = k - 1; j > 0; j--)
                {
                    at -= stride;
                    var dv = Vector256.LoadUnsafe(ref d, at);
                    qv = Times2(qv) ^ dv;
                    pv ^= dv;
                }
                if (withQIn) qv ^= Vector256.LoadUnsafe(ref qi, (nuint)i);
                if (withPIn) pv ^= Vector256.LoadUnsafe(ref pi, (nuint)i);
                if (withP) pv.StoreUnsafe(ref po, (nuint)i);
                qv.StoreUnsafe(ref qo, (nuint)i);
            }
        if (simd >= Simd.V128 && Vector128.IsHardwareAccelerated)
            for (; i <= chunk - Vector128<byte>.Count; i += Vector128<byte>.Count)
            {
                nuint at = top + (nuint)i;
                var qv = Vector128.LoadUnsafe(ref d, at);
                var pv = qv;
                for (int j = k - 1; j > 0; j--)
                {
                    at -= stride;
                    var dv = Vector128.LoadUnsafe(ref d, at);
                    qv = Times2(qv) ^ dv;
                    pv ^= dv;
                }
                if (withQIn) qv ^= Vector128.LoadUnsafe(ref qi, (nuint)i);
                if (withPIn) pv ^= Vector128.LoadUnsafe(ref pi, (nuint)i);
                if (withP) pv.StoreUnsafe(ref po, (nuint)i);
                qv.StoreUnsafe(ref qo, (nuint)i);
            }
        for (; i <= chunk - sizeof(ulong); i += sizeof(ulong))
        {
            nuint at = top + (nuint)i;
            ulong qv = Read(ref d, at), pv = qv;
            for (int j = k - 1; j > 0; j--)
            {
                at -= stride;
                ulong dv = Read(ref d, at);
                qv = Times2(qv) ^ dv;
                pv ^= dv;
            }
            if (withQIn) qv ^= Read(ref qi, (nuint)i);
            if (withPIn) pv ^= Read(ref pi, (nuint)i);
            if (withP) Write(ref po, (nuint)i, pv);
            Write(ref qo, (nuint)i, qv);
        }
    }

    /// <summary>Each byte times g: shifted left, and 0x1d xored in where the top bit fell out (the compare makes that lane all ones).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<byte> Times2(Vector256<byte> v) =>
        (v + v) ^ (Vector256.LessThan(v.AsSByte(), Vector256<sbyte>.Zero).AsByte() & Vector256.Create(Reduction));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<byte> Times2(Vector128<byte> v) =>
        (v + v) ^ (Vector128.LessThan(v.AsSByte(), Vector128<sbyte>.Zero).AsByte() & Vector128.Create(Reduction));

    /// <summary>Eight bytes at once in a ulong: the top bits, moved to bit 0 of their byte, times 0x1d cannot carry across bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static ulong Times2(ulong v) =>
        ((v & 0x7f7f7f7f7f7f7f7fUL) << 1) ^ ((v >> 7 & 0x0101010101010101UL) * Reduction);

    /// <summary>x = c·x for every byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Scale(Span<byte> x, byte c, Simd simd)
    {
        var table = new ProductTable(c);
        ref byte r = ref MemoryMarshal.GetReference(x);
        int i = 0;
        if (simd >= Simd.V256 && Avx2.IsSupported)
            for (; i <= x.Length - Vector256<byte>.Count; i += Vector256<byte>.Count)
                table.Times(Vector256.LoadUnsafe(ref r, (nuint)i)).StoreUnsafe(ref r, (nuint)i);
        if (simd >= Simd.V128 && Vector128.IsHardwareAccelerated)
            for (; i <= x.Length - Vector128<byte>.Count; i += Vector128<byte>.Count)
                table.Times(Vector128.LoadUnsafe(ref r, (nuint)i)).StoreUnsafe(ref r, (nuint)i);
        if (i == x.Length) return;
        Span<byte> product = stackalloc byte[256];
        Products(c, product);
        for (; i < x.Length; i++) x[i] = product[x[i]];
    }

    /// <summary>With u in dx and v in dy: dx = a·u ^ b·v, then dy = u ^ dx.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void SolvePair(Span<byte> dx, Span<byte> dy, byte a, byte b, Simd simd)
    {
        var ta = new ProductTable(a);
        var tb = new ProductTable(b);
        ref byte rx = ref MemoryMarshal.GetReference(dx);
        ref byte ry = ref MemoryMarshal.GetReference(dy);
        int i = 0;
        if (simd >= Simd.V256 && Avx2.IsSupported)
            for (; i <= dx.Length - Vector256<byte>.Count; i += Vector256<byte>.Count)
            {
                var u = Vector256.LoadUnsafe(ref rx, (nuint)i);
                var x = ta.Times(u) ^ tb.Times(Vector256.LoadUnsafe(ref ry, (nuint)i));
                x.StoreUnsafe(ref rx, (nuint)i);
                (u ^ x).StoreUnsafe(ref ry, (nuint)i);
            }
        if (simd >= Simd.V128 && Vector128.IsHardwareAccelerated)
            for (; i <= dx.Length - Vector128<byte>.Count; i += Vector128<byte>.Count)
            {
                var u = Vector128.LoadUnsafe(ref rx, (nuint)i);
                var x = ta.Times(u) ^ tb.Times(Vector128.LoadUnsafe(ref ry, (nuint)i));
                x.StoreUnsafe(ref rx, (nuint)i);
                (u ^ x).StoreUnsafe(ref ry, (nuint)i);
            }
        if (i == dx.Length) return;
        Span<byte> productA = stackalloc byte[256], productB = stackalloc byte[256];
        Products(a, productA);
        Products(b, productB);
        for (; i < dx.Length; i++)
        {
            byte u = dx[i], x = (byte)(productA[u] ^ productB[dy[i]]);
            dx[i] = x;
            dy[i] = (byte)(u ^ x);
        }
    }

    /// <summary>
    /// Multiplication by a constant c as two 16-entry tables: c·x = c·(x &amp; 0x0f) ^ c·(x &amp; 0xf0),
    /// both looked up with a byte shuffle (pshufb / tbl), by the low and the high nibble.
    /// </summary>
    readonly struct ProductTable
    {
        readonly Vector128<byte> _low, _high;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public ProductTable(byte c)
        {
            Span<byte> low = stackalloc byte[16], high = stackalloc byte[16];
            for (int n = 0; n < 16; n++)
            {
                low[n] = Multiply(c, (byte)n);
                high[n] = Multiply(c, (byte)(n << 4));
            }
            _low = Vector128.Create<byte>(low);
            _high = Vector128.Create<byte>(high);
        }

        /// <summary>Indexes are 0..15, where ShuffleNative is exact on every platform.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector128<byte> Times(Vector128<byte> x)
        {
            var nibble = Vector128.Create((byte)0x0f);
            return Vector128.ShuffleNative(_low, x & nibble)
                ^ Vector128.ShuffleNative(_high, Vector128.ShiftRightLogical(x.AsUInt16(), 4).AsByte() & nibble);
        }

        /// <summary>vpshufb looks up within each 128-bit lane, so the tables are repeated in both lanes.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<byte> Times(Vector256<byte> x)
        {
            var nibble = Vector256.Create((byte)0x0f);
            return Avx2.Shuffle(Vector256.Create(_low, _low), x & nibble)
                ^ Avx2.Shuffle(Vector256.Create(_high, _high), Vector256.ShiftRightLogical(x.AsUInt16(), 4).AsByte() & nibble);
        }
    }

    /// <summary>The scalar loops' table: product[x] = c·x.</summary>
    static void Products(byte c, Span<byte> product)
    {
        for (int x = 0; x < 256; x++) product[x] = Multiply(c, (byte)x);
    }

    static byte Multiply(byte a, byte b) => a == 0 || b == 0 ? (byte)0 : Exp[Log[a] + Log[b]];

    static byte Inverse(byte a) => Exp[255 - Log[a]];

    static byte[] PowersOfTwo()
    {
        var exp = new byte[510];
        int v = 1;
        for (int i = 0; i < exp.Length; i++)
        {
            exp[i] = (byte)v;
            v <<= 1;
            if (v > 0xff) v ^= 0x100 | Reduction;
        }
        return exp;
    }

    static byte[] Logarithms(byte[] exp)
    {
        var log = new byte[256];
        for (int i = 0; i < 255; i++) log[exp[i]] = (byte)i;
        return log;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static ulong Read(ref byte at, nuint offset) => Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref at, offset));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Write(ref byte at, nuint offset, ulong value) => Unsafe.WriteUnaligned(ref Unsafe.Add(ref at, offset), value);
}
