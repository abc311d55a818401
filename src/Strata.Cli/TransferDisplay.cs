using System.Globalization;
using Strata.Core.Registry;

namespace Strata.Cli;

/// <summary>
/// A pull's or push's progress as docker shows it (its jsonmessage display). On a terminal, one line per blob, redrawn
/// in place with ANSI cursor movement (up, erase line, down) as the blob moves on:
/// <c>ID: Downloading [=====>    ]  12.3MB/50.1MB  4.1MB/s</c> (the bar only on terminals wider than 110 columns, as
/// docker; sizes in docker's decimal units; lines cut to the width so that none wraps and breaks the count of lines
/// to move up). Otherwise one plain line per change of a blob's status (<c>ID: Downloading</c> once, then
/// <c>ID: Download complete</c>), never per byte. Lines without a blob (<see cref="Message"/>: "TAG: Pulling from
/// REPO", "Digest: ...") print as they come and end the current block of blob lines, so that `pull -a` draws each
/// tag's blobs under its own line. Safe to call from several transfer threads at once. Text from outside (ids,
/// statuses, messages naming tags a registry listed) is shown with control characters escaped: a registry cannot move
/// the cursor.
/// </summary>
sealed class TransferDisplay(TextWriter output, bool terminal, int width = 80, TimeProvider? time = null)
{
    /// <summary>How often a blob's line is redrawn while only its byte count changes.</summary>
    static readonly TimeSpan s_redraw = TimeSpan.FromMilliseconds(100);

    readonly TimeProvider _time = time ?? TimeProvider.System;
    readonly int _width = Math.Max(width, 20);
    readonly Lock _gate = new();
    readonly Dictionary<string, Blob> _blobs = []; // the current block's lines, by blob id

    /// <summary>One blob's line: its row in the block, its status and when that status began, when it was last drawn.</summary>
    sealed class Blob(int row)
    {
        public int Row { get; } = row;
        public string Status { get; set; } = "";
        public long Since { get; set; }
        public long Drawn { get; set; }
    }

    public void Progress(TransferProgress p)
    {
        string id = StrataException.OneLine(p.Id), status = StrataException.OneLine(p.Status);
        lock (_gate)
        {
            bool known = _blobs.TryGetValue(id, out var blob);
            if (blob is null) _blobs[id] = blob = new Blob(_blobs.Count);
            long now = _time.GetTimestamp();
            bool changed = blob.Status != status;
            if (changed)
            {
                blob.Status = status;
                blob.Since = now;
            }
            if (!terminal)
            {
                if (changed) Write($"{id}: {status}\n");
                return;
            }
            bool finished = p.Total > 0 && p.Current >= p.Total;
            if (known && !changed && !finished && _time.GetElapsedTime(blob.Drawn, now) < s_redraw) return;
            blob.Drawn = now;
            string line = Fit($"{id}: {status} {Bytes(p, _time.GetElapsedTime(blob.Since, now))}".TrimEnd());
            if (!known) Write(line + "\n"); // a new line under the block; the cursor stays below it
            else
            {
                int up = _blobs.Count - blob.Row;
                Write($"\u001b[{up}A\r\u001b[2K{line}\r\u001b[{up}B");
            }
        }
    }

    /// <summary>Prints a line that is not about one blob.</summary>
    public void Message(string text)
    {
        string line = StrataException.OneLine(text);
        lock (_gate)
        {
            _blobs.Clear();
            Write(line + "\n");
        }
    }

    void Write(string text)
    {
        output.Write(text);
        output.Flush();
    }

    string Fit(string line) => line.Length < _width ? line : line[..(_width - 1)];

    /// <summary>Docker's progress text: a bar on wide terminals, done/total bytes, and (ours, in place of docker's time
    /// left) the rate since the status began.</summary>
    string Bytes(TransferProgress p, TimeSpan elapsed)
    {
        if (p.Current <= 0 && p.Total <= 0) return "";
        string bar = "", numbers, rate = "";
        if (p.Total > 0)
        {
            int done = (int)Math.Clamp(p.Current * 50 / p.Total, 0, 50);
            if (_width > 110) bar = "[" + new string('=', done) + ">" + new string(' ', 50 - done) + "] ";
            numbers = p.Current > p.Total ? $"{HumanSize(p.Current),8}" : $"{HumanSize(p.Current),8}/{HumanSize(p.Total)}";
        }
        else numbers = $"{HumanSize(p.Current),8}";
        if (_width > 50 && p.Current > 0 && elapsed >= TimeSpan.FromMilliseconds(500))
            rate = $"  {HumanSize(p.Current / elapsed.TotalSeconds)}/s";
        return bar + numbers + rate;
    }

    /// <summary>Sizes as docker prints them (go-units' HumanSize): decimal units, four significant digits ("12.35MB").</summary>
    internal static string HumanSize(double bytes)
    {
        string[] units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
        int u = 0;
        while (bytes >= 1000 && u < units.Length - 1)
        {
            bytes /= 1000;
            u++;
        }
        return bytes.ToString("G4", CultureInfo.InvariantCulture) + units[u];
    }
}
