using System.CommandLine;
using System.Globalization;
using Strata.Thin;
using Strata.Thin.Service;

namespace Strata.Cli;

/// <summary>`strata pool device stats`: the devices' IO statistics as `iostat -x` shows a disk's, from the counters the
/// process that has the pool open keeps (<see cref="DeviceCounters"/>): the first report over the time since they
/// started, each report of --watch over its interval; JSON gives the raw counters.</summary>
public static partial class Commands
{
    static Command DeviceStatsCommand()
    {
        var names = new Argument<string[]>("NAME") { Description = "Devices to show (default: all)", Arity = ArgumentArity.ZeroOrMore };
        var watch = new Option<string?>("--watch")
        {
            Description = "Report again every SECONDS (default 1; a number right after --watch is the interval) with the rates over that interval, until interrupted",
            HelpName = "SECONDS",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var count = new Option<int?>("--count") { Description = "With --watch: stop after N reports", HelpName = "N" };
        var format = new Option<string?>("--format") { Description = "table (the default) or json (the raw counters; one line per report with --watch)", HelpName = "table|json" };
        var stats = new Command("stats", "Show the devices' IO statistics like `iostat -x`: requests, bytes and latency per kind, copy-on-write, allocation, no-space failures; counted by the pool's server since it started") { names, watch, count, format };
        stats.SetAction(r =>
        {
            bool json = Output.Json(r.GetValue(format), "stats");
            bool watching = r.GetResult(watch) is not null;
            var listed = (r.GetValue(names) ?? []).ToList();
            double seconds = 1;
            if (r.GetValue(watch) is { } w)
            {
                // `--watch NAME` takes the name as the option's value: a value that is not a number is a device
                if (double.TryParse(w, NumberStyles.Float, CultureInfo.InvariantCulture, out double s)) seconds = s;
                else listed.Insert(0, w);
            }
            if (watching && seconds is not (>= 0.1 and <= 86400)) throw StrataException.Invalid($"--watch takes 0.1 to 86400 seconds, not {seconds.ToString(CultureInfo.InvariantCulture)}");
            int? reports = r.GetValue(count);
            if (reports is < 1) throw StrataException.Invalid("--count must be at least 1");
            if (reports is not null && !watching) throw StrataException.Invalid("--count is for --watch");
            var wanted = listed.Count > 0 ? listed.Distinct(StringComparer.Ordinal).ToList() : null;
            if (!Served(r))
                Io.Current.Err.WriteLine($"strata: no server has pool {PoolDir(r)} open: the counters start when one does (`strata pool serve`, or the thin driver's when it mounts a layer)");
            // each report asks whoever has the pool open then, and holds nothing between reports
            using var service = new PerCallPool(PoolDir(r), callTimeout: null);
            PoolStats? previous = null;
            for (int done = 0; ; done++)
            {
                var now = service.Stats(wanted);
                if (json) Output.WriteJsonLine(now, indented: !watching);
                else WriteStats(PoolDir(r), previous, now);
                previous = now;
                if (!watching || done + 1 == reports) return 0;
                Thread.Sleep(TimeSpan.FromSeconds(seconds));
                if (!json) Io.Current.Out.WriteLine();
            }
        });
        return stats;
    }

    /// <summary>One report: the pool's line, then a row per device with the rates since <paramref name="previous"/> (or
    /// since the counters started, when there is none or they started again: a new server).</summary>
    static void WriteStats(string dir, PoolStats? previous, PoolStats now)
    {
        if (previous is not null && previous.Since != now.Since) previous = null;
        double seconds = Math.Max(1e-3, ((previous?.At ?? now.Since) - now.At).Duration().TotalSeconds);
        long commits = now.Commits - (previous?.Commits ?? 0), commitNs = now.CommitNs - (previous?.CommitNs ?? 0);
        Io.Current.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"pool {dir}: {(previous is null ? $"since {now.Since.ToLocalTime():yyyy-MM-dd HH:mm:ss}" : $"over {seconds:0.##} s")}: " +
            $"{commits / seconds:0.##} commits/s ({Await(commitNs, commits)} ms each); data {Bytes(now.DataBytesUsed)} of {Bytes(now.DataBytes)} " +
            $"({Percent(now.DataBytesUsed, now.DataBytes)}), metadata {Bytes(now.MetadataBytesUsed)} of {Bytes(now.MetadataBytes)} ({Percent(now.MetadataBytesUsed, now.MetadataBytes)})"));
        var before = previous?.Devices.ToDictionary(d => (d.Id, d.Name));
        Output.WriteTable(["DEVICE", "r/s", "rkB/s", "r_await", "w/s", "wkB/s", "w_await", "f/s", "d/s", "dkB/s", "cow/s", "alloc/s", "aqu-sz", "%util", "nospace"],
            now.Devices.Select(d =>
            {
                var p = before?.GetValueOrDefault((d.Id, d.Name)) ?? DeviceCounters.Zero(d.Name, d.Id);
                long reads = d.Reads - p.Reads, writes = d.Writes - p.Writes, discards = d.Discards - p.Discards;
                long requestNs = d.ReadNs + d.WriteNs + d.FlushNs + d.DiscardNs - (p.ReadNs + p.WriteNs + p.FlushNs + p.DiscardNs);
                return new[]
                {
                    new[]
                    {
                        d.Name, Rate(reads, seconds), Rate((d.ReadBytes - p.ReadBytes) / 1024.0, seconds), Await(d.ReadNs - p.ReadNs, reads),
                        Rate(writes, seconds), Rate((d.WriteBytes - p.WriteBytes) / 1024.0, seconds), Await(d.WriteNs - p.WriteNs, writes),
                        Rate(d.Flushes - p.Flushes, seconds), Rate(discards, seconds), Rate((d.DiscardBytes - p.DiscardBytes) / 1024.0, seconds),
                        Rate(d.CowBlocks - p.CowBlocks, seconds), Rate(d.AllocatedBlocks - p.AllocatedBlocks, seconds),
                        (requestNs / 1e9 / seconds).ToString("0.00", CultureInfo.InvariantCulture),
                        Math.Min(100, (d.BusyNs - p.BusyNs) / 1e9 / seconds * 100).ToString("0.0", CultureInfo.InvariantCulture),
                        d.NoSpaceErrors.ToString(CultureInfo.InvariantCulture),
                    },
                };
            }));

        static string Rate(double n, double seconds) => (n / seconds).ToString("0.00", CultureInfo.InvariantCulture);
        static string Await(long ns, long requests) => requests == 0 ? "0.00" : (ns / 1e6 / requests).ToString("0.00", CultureInfo.InvariantCulture);
        static string Percent(long used, long total) => total == 0 ? "0%" : (100.0 * used / total).ToString("0.#", CultureInfo.InvariantCulture) + "%";
    }
}
