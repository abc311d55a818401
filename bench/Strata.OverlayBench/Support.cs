using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Strata.Native;

namespace Strata.OverlayBench;

/// <summary>Free space and inodes of a filesystem, from statvfs(3).</summary>
public readonly record struct Space(long FreeBytes, long UsedInodes)
{
    public static Space operator -(Space a, Space b) => new(a.FreeBytes - b.FreeBytes, a.UsedInodes - b.UsedInodes);
}

public static unsafe partial class Disk
{
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statvfs(string path, byte* buf);

    /// <summary>statvfs now: free bytes (f_bfree * f_frsize, root's view) and inodes in use (f_files - f_ffree).
    /// struct statvfs on 64-bit glibc: f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, ... (8 bytes each).</summary>
    public static Space Now(string path)
    {
        byte* buf = stackalloc byte[256];
        if (statvfs(path, buf) != 0) throw new ErrnoException(Marshal.GetLastPInvokeError(), "statvfs", path);
        ulong* f = (ulong*)buf;
        return new Space((long)(f[3] * f[1]), (long)(f[5] - f[6]));
    }

    /// <summary>statvfs once settled: syncfs, then read every 0.3 s until two readings agree (xfs frees
    /// extents and inactivates inodes in the background), at most 30 times.</summary>
    public static Space Settled(string path)
    {
        Posix.SyncFileSystem(path);
        var b = Now(path);
        for (int i = 0; i < 30; i++)
        {
            var a = b;
            Thread.Sleep(300);
            Posix.SyncFileSystem(path);
            b = Now(path);
            if (a == b) break;
        }
        return b;
    }

    /// <summary>Allocated bytes (st_blocks * 512) of one file, not following symlinks.</summary>
    public static long Allocated(string path) => Posix.Lstat(path).Blocks * 512;
}

/// <summary>CPU that other processes used in user mode while a measurement ran (kernel threads never run in user
/// mode, so what this process did not use of the machine's user time was used by someone else).</summary>
public sealed class ForeignCpu
{
    double _machine, _own;

    public static double MachineUserSeconds()
    {
        var parts = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (double.Parse(parts[1], CultureInfo.InvariantCulture) + double.Parse(parts[2], CultureInfo.InvariantCulture)) / 100.0;
    }

    static double OwnUserSeconds()
    {
        using var p = Process.GetCurrentProcess();
        return p.UserProcessorTime.TotalSeconds;
    }

    public double Seconds { get; private set; }

    public void Start()
    {
        _machine = MachineUserSeconds();
        _own = OwnUserSeconds();
    }

    public void Stop() => Seconds += Math.Max(0, (MachineUserSeconds() - _machine) - (OwnUserSeconds() - _own));
}

public static class Stats
{
    /// <summary>Nearest-rank percentile of sorted values.</summary>
    public static double Percentile(double[] sorted, double p) =>
        sorted[Math.Clamp((int)Math.Ceiling(p / 100.0 * sorted.Length) - 1, 0, sorted.Length - 1)];

    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    public static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
}

public static class Out
{
    public static string F(double v, int decimals = 3) => v.ToString("F" + decimals, CultureInfo.InvariantCulture);

    public static string Kib(double bytes) => (bytes / 1024).ToString("F1", CultureInfo.InvariantCulture) + " KiB";

    public static string Mib(double bytes) => (bytes / 1048576).ToString("F1", CultureInfo.InvariantCulture) + " MiB";

    public static void Line(string s)
    {
        Console.Out.WriteLine(s);
        Console.Out.Flush();
    }

    /// <summary>Raw samples in milliseconds, 20 to a line, in the order they were taken.</summary>
    public static void Raw(string name, IReadOnlyList<double> ms)
    {
        Line($"raw {name} (ms, {ms.Count} samples, in order):");
        for (int i = 0; i < ms.Count; i += 20)
            Line("  " + string.Join(' ', ms.Skip(i).Take(20).Select(v => F(v))));
    }

    public static void PercentileHeader() =>
        Line($"  {"what",-28} {"n",5} {"p50_ms",9} {"p90_ms",9} {"p99_ms",9} {"max_ms",9} {"min_ms",9} {"mean_ms",9}");

    public static void PercentileRow(string name, IReadOnlyList<double> ms)
    {
        var s = ms.Order().ToArray();
        Line($"  {name,-28} {s.Length,5} {F(Stats.Percentile(s, 50)),9} {F(Stats.Percentile(s, 90)),9} {F(Stats.Percentile(s, 99)),9} {F(s[^1]),9} {F(s[0]),9} {F(s.Average()),9}");
    }
}

/// <summary>A read-only stream of a tar holding one regular file <c>blob</c> of <paramref name="size"/> bytes of
/// non-zero pseudo-random data (a 1 MiB random block, varied per MiB), made on the fly.</summary>
public sealed class GeneratedTar : Stream
{
    readonly byte[] _header;
    readonly byte[] _chunk = new byte[1 << 20];
    readonly long _size, _total;
    long _pos;

    public GeneratedTar(long size)
    {
        if (size % 512 != 0 || size % _chunk.Length != 0) throw new ArgumentException("size must be a multiple of 1 MiB", nameof(size));
        _size = size;
        var ms = new MemoryStream();
        using (var w = new Strata.Archive.Tar.TarWriter(ms))
        {
            w.WriteHeader(new Strata.Archive.Tar.TarEntry
            {
                Name = "blob",
                Type = Strata.Archive.Tar.TarEntryType.Regular,
                Mode = 0x1A4,
                Size = size,
                Mtime = new UnixTime(1_700_000_000, 0),
            });
            w.Finish(); // flushes; its end-of-archive marker is dropped below and written after the data
        }
        _header = ms.ToArray()[..^1024];
        _total = _header.Length + size + 1024;
        new Random(42).NextBytes(_chunk);
        for (int i = 0; i < _chunk.Length; i++) if (_chunk[i] == 0) _chunk[i] = 0x5A;
    }

    /// <summary>The byte of the file at <paramref name="offset"/> (to check what a mount shows).</summary>
    public static void Expected(byte[] chunk, long offset, Span<byte> into)
    {
        for (int i = 0; i < into.Length; i++)
        {
            long o = offset + i;
            into[i] = Byte(chunk, o);
        }
    }

    public byte[] Chunk => _chunk;

    /// <summary>What the mount shows: the written bytes at the offset, the original data around them.</summary>
    public static void Check(string path, byte[] chunk, byte[] written, long offset, long size)
    {
        using var fd = Posix.Open(path, Posix.O_RDONLY);
        var got = new byte[written.Length];
        var want = new byte[written.Length];
        if (Posix.Pread(fd, got, offset, path) != got.Length || !got.AsSpan().SequenceEqual(written))
            throw new InvalidOperationException($"{path}: the written bytes are not there");
        foreach (long at in new[] { 0, offset - got.Length, offset + got.Length, size - got.Length })
        {
            GeneratedTar.Expected(chunk, at, want);
            if (Posix.Pread(fd, got, at, path) != got.Length || !got.AsSpan().SequenceEqual(want))
                throw new InvalidOperationException($"{path}: the data at {at} is not the generated file's");
        }
    }

    static byte Byte(byte[] chunk, long o)
    {
        int mib = (int)(o >> 20), at = (int)(o & ((1 << 20) - 1));
        byte b = (byte)(chunk[at] ^ (at < 8 ? (byte)(mib >> (8 * at)) : (byte)0));
        return b == 0 ? (byte)0xA5 : b;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (_pos >= _total || buffer.Length == 0) return 0;
        int n;
        if (_pos < _header.Length)
        {
            n = (int)Math.Min(buffer.Length, _header.Length - _pos);
            _header.AsSpan((int)_pos, n).CopyTo(buffer);
        }
        else if (_pos < _header.Length + _size)
        {
            long o = _pos - _header.Length;
            int at = (int)(o & ((1 << 20) - 1));
            n = (int)Math.Min(buffer.Length, _chunk.Length - at);
            _chunk.AsSpan(at, n).CopyTo(buffer);
            if (at < 8)
                for (int i = 0; i < Math.Min(n, 8 - at); i++) buffer[i] = Byte(_chunk, o + i);
        }
        else
        {
            n = (int)Math.Min(buffer.Length, _total - _pos);
            buffer[..n].Clear();
        }
        _pos += n;
        return n;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => _total;
    public override long Position { get => _pos; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>A bench program's arguments: the scenario, then --key value pairs.</summary>
public sealed class BenchArgs
{
    readonly Dictionary<string, string> _opts = new(StringComparer.Ordinal);

    BenchArgs(string scenario) => Scenario = scenario;

    public string Scenario { get; }

    /// <summary>Parses SCENARIO --key value...; null (after saying why on stderr) when they do not parse.</summary>
    public static BenchArgs? Parse(string[] args)
    {
        var parsed = new BenchArgs(args[0]);
        for (int i = 1; i < args.Length; i++)
        {
            if (!args[i].StartsWith('-') || i + 1 >= args.Length)
            {
                Console.Error.WriteLine($"unexpected argument '{args[i]}'");
                return null;
            }
            parsed._opts[args[i].TrimStart('-')] = args[++i];
        }
        return parsed;
    }

    public int Int(string key, int def) => _opts.TryGetValue(key, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : def;

    public string Need(string key) => _opts.TryGetValue(key, out var v) ? v : throw new ArgumentException($"--{key} is required");
}

public static class Cycle
{
    /// <summary>One container: Create (a read-write child of base) + Mount + Unmount; returns ms, and each phase's ms
    /// into <paramref name="phases"/> (create, mount, unmount) when given.</summary>
    public static double CreateMountUnmount(Strata.Core.LayerStore store, string id, Dictionary<string, List<double>>? phases)
    {
        long t0 = Stopwatch.GetTimestamp();
        store.Create(id, "base", Strata.Core.LayerKind.ReadWrite);
        long t1 = Stopwatch.GetTimestamp();
        store.Mount(id);
        long t2 = Stopwatch.GetTimestamp();
        store.Unmount(id);
        long t3 = Stopwatch.GetTimestamp();
        if (phases is not null)
        {
            phases["create"].Add(Stats.Ms(t1 - t0));
            phases["mount"].Add(Stats.Ms(t2 - t1));
            phases["unmount"].Add(Stats.Ms(t3 - t2));
        }
        return Stats.Ms(t3 - t0);
    }
}
