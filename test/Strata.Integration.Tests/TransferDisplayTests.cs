using System.Text.RegularExpressions;
using Strata.Cli;
using Strata.Core.Registry;

namespace Strata.Integration.Tests;

/// <summary>The pull and push progress display, in this process (the CLI has no unit test project): plain lines off a
/// terminal, docker's in-place lines on one.</summary>
public sealed class TransferDisplayTests
{
    /// <summary>A clock the test moves by hand, in milliseconds.</summary>
    sealed class ManualTime : TimeProvider
    {
        public long Now { get; set; } = 1;
        public override long TimestampFrequency => 1000;
        public override long GetTimestamp() => Now;
    }

    const string Esc = "\u001b";

    [Fact]
    public void OffATerminalEachStatusIsOneLineAndBytesAreNot()
    {
        var text = new StringWriter();
        var display = new TransferDisplay(text, terminal: false);
        display.Message("12: Pulling from library/debian");
        display.Progress(new("aaaaaaaaaaaa", "Pulling fs layer"));
        display.Progress(new("bbbbbbbbbbbb", "Already exists"));
        display.Progress(new("aaaaaaaaaaaa", "Downloading", 0, 100));
        display.Progress(new("aaaaaaaaaaaa", "Downloading", 50, 100));
        display.Progress(new("aaaaaaaaaaaa", "Downloading", 100, 100));
        display.Progress(new("aaaaaaaaaaaa", "Verifying Checksum"));
        display.Progress(new("aaaaaaaaaaaa", "Download complete"));
        display.Progress(new("aaaaaaaaaaaa", "Extracting", 10, 300));
        display.Progress(new("aaaaaaaaaaaa", "Extracting", 300, 300));
        display.Progress(new("aaaaaaaaaaaa", "Pull complete"));
        display.Message("Digest: sha256:" + new string('c', 64));
        Assert.Equal($"""
            12: Pulling from library/debian
            aaaaaaaaaaaa: Pulling fs layer
            bbbbbbbbbbbb: Already exists
            aaaaaaaaaaaa: Downloading
            aaaaaaaaaaaa: Verifying Checksum
            aaaaaaaaaaaa: Download complete
            aaaaaaaaaaaa: Extracting
            aaaaaaaaaaaa: Pull complete
            Digest: sha256:{new string('c', 64)}

            """, text.ToString());
    }

    [Fact]
    public void EventsFromManyThreadsMakeWholeLines()
    {
        var text = new StringWriter();
        var display = new TransferDisplay(text, terminal: false);
        string[] statuses = ["Waiting", "Downloading", "Verifying Checksum", "Download complete", "Extracting", "Pull complete"];
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            string id = $"{i:x12}";
            foreach (var status in statuses)
                for (int b = 0; b <= 1000; b++) display.Progress(new(id, status, b, 1000));
        });
        var lines = text.ToString().Split('\n')[..^1];
        Assert.Equal(8 * statuses.Length, lines.Length);
        for (int i = 0; i < 8; i++)
            Assert.Equal(statuses.Select(s => $"{i:x12}: {s}"), lines.Where(l => l.StartsWith($"{i:x12}: ", StringComparison.Ordinal)));
    }

    [Fact]
    public void OnATerminalEachBlobsLineIsRedrawnInPlace()
    {
        var text = new StringWriter();
        var time = new ManualTime();
        var display = new TransferDisplay(text, terminal: true, width: 120, time);
        display.Message("latest: Pulling from team/app");
        display.Progress(new("aaaaaaaaaaaa", "Waiting"));
        display.Progress(new("bbbbbbbbbbbb", "Waiting"));
        Assert.Equal("latest: Pulling from team/app\naaaaaaaaaaaa: Waiting\nbbbbbbbbbbbb: Waiting\n", text.ToString());

        // a and b are the two lines above the cursor: a's update moves up two lines, rewrites the line, moves back down
        text.GetStringBuilder().Clear();
        display.Progress(new("aaaaaaaaaaaa", "Downloading", 5, 10));
        Assert.Equal($"{Esc}[2A\r{Esc}[2Kaaaaaaaaaaaa: Downloading [=========================>                         ]       5B/10B\r{Esc}[2B", text.ToString());

        // bytes alone redraw at most every 100 ms; the rate shows once half a second has passed
        text.GetStringBuilder().Clear();
        display.Progress(new("bbbbbbbbbbbb", "Downloading", 1_000_000, 50_100_000));
        time.Now += 50;
        display.Progress(new("bbbbbbbbbbbb", "Downloading", 2_000_000, 50_100_000));
        Assert.Equal(1, Regex.Count(text.ToString(), @"\[2K"));
        time.Now += 1950;
        text.GetStringBuilder().Clear();
        display.Progress(new("bbbbbbbbbbbb", "Downloading", 12_345_678, 50_100_000));
        Assert.Equal($"{Esc}[1A\r{Esc}[2Kbbbbbbbbbbbb: Downloading [============>                                      ]  12.35MB/50.1MB  6.173MB/s\r{Esc}[1B", text.ToString());

        // a line that is not a blob's starts a new block: the next blob gets a new line under it
        text.GetStringBuilder().Clear();
        display.Message("Digest: sha256:" + new string('c', 64));
        display.Progress(new("aaaaaaaaaaaa", "Pull complete"));
        Assert.Equal($"Digest: sha256:{new string('c', 64)}\naaaaaaaaaaaa: Pull complete\n", text.ToString());
    }

    [Fact]
    public void OnANarrowTerminalLinesAreCutAndHaveNoBar()
    {
        var text = new StringWriter();
        var display = new TransferDisplay(text, terminal: true, width: 36);
        display.Progress(new("aaaaaaaaaaaa", "Downloading", 5_000, 10_000));
        Assert.Equal("aaaaaaaaaaaa: Downloading      5kB/\n", text.ToString());
    }

    [Fact]
    public void TextFromOutsideCannotMoveTheCursor()
    {
        var text = new StringWriter();
        var display = new TransferDisplay(text, terminal: false);
        display.Message("v1\u001b[2J: Pulling from x");
        display.Progress(new("a\u001b[1A", "Downloading\r"));
        Assert.Equal("v1\\u001b[2J: Pulling from x\na\\u001b[1A: Downloading\\r\n", text.ToString());
    }

    [Theory]
    [InlineData(0, "0B")]
    [InlineData(999, "999B")]
    [InlineData(1000, "1kB")]
    [InlineData(12_345_678, "12.35MB")]
    [InlineData(50_100_000, "50.1MB")]
    [InlineData(3_000_000_000, "3GB")]
    public void SizesAreDockers(double bytes, string shown) => Assert.Equal(shown, TransferDisplay.HumanSize(bytes));
}
