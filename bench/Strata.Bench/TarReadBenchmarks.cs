using BenchmarkDotNet.Attributes;
using Strata.Archive.Tar;
using Strata.Native;

namespace Strata.Bench;

/// <summary>
/// Walking the headers of an in-memory tar of many small files, data skipped: Strata's TarReader
/// (<c>Next()</c> until null) against System.Formats.Tar's (<c>GetNextEntry(copyData: false)</c>).
/// The archive is written once by Strata's TarWriter, laid out like a rootfs layer: directories of
/// 50 files each, sizes 0..4 KiB. <see cref="Pax"/> gives every file an xattr, so every member also
/// carries a PAX extended header (as layers with file capabilities or SELinux labels do).
/// </summary>
[MemoryDiagnoser]
public class TarReadBenchmarks
{
    byte[] _tar = [];

    [Params(10_000)]
    public int Files { get; set; }

    [Params(false, true)]
    public bool Pax { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var ms = new MemoryStream();
        using (var w = new TarWriter(ms))
        {
            var data = new byte[4096];
            new Random(42).NextBytes(data);
            var mtime = new UnixTime(1_700_000_000, 0);
            for (int i = 0; i < Files; i++)
            {
                string dir = $"usr/share/doc/package-{i / 50:D4}";
                if (i % 50 == 0)
                    w.WriteHeader(new TarEntry { Name = dir + "/", Type = TarEntryType.Directory, Mode = 0x1ED, Mtime = mtime });
                int size = (i * 397) % 4097;
                w.WriteHeader(new TarEntry
                {
                    Name = $"{dir}/file-{i:D5}.txt",
                    Type = TarEntryType.Regular,
                    Mode = 0x1A4,
                    Size = size,
                    Mtime = mtime,
                    Xattrs = Pax ? [new("user.bench", "value"u8.ToArray())] : null,
                });
                w.WriteData(data.AsSpan(0, size));
                w.Pad(size);
            }
            w.Finish();
        }
        _tar = ms.ToArray();
        int ours = Strata(), theirs = SystemFormatsTar();
        if (ours != theirs || ours != Files + (Files + 49) / 50)
            throw new InvalidOperationException($"readers disagree: Strata saw {ours} entries, System.Formats.Tar {theirs}");
    }

    [Benchmark(Baseline = true, Description = "System.Formats.Tar GetNextEntry(copyData: false)")]
    public int SystemFormatsTar()
    {
        using var stream = new MemoryStream(_tar, writable: false);
        using var r = new System.Formats.Tar.TarReader(stream);
        int n = 0;
        while (r.GetNextEntry(copyData: false) is { }) n++;
        return n;
    }

    [Benchmark(Description = "Strata TarReader.Next()")]
    public int Strata()
    {
        using var stream = new MemoryStream(_tar, writable: false);
        using var r = new TarReader(stream);
        int n = 0;
        while (r.Next() is { }) n++;
        return n;
    }
}
