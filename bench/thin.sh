#!/usr/bin/env bash
# Thin pool benchmarks (BenchmarkDotNet, bench/Strata.ThinBench), Strata beside the raw sparse file in one run:
#   IoBenchmarks          4 KiB random writes into fresh blocks and into blocks shared with a snapshot, 4 KiB
#                         random reads, with 1 and 16 writers
#   SequentialBenchmarks  1 MiB sequential writes and reads
#   MetadataBenchmarks    snapshot create at 1k and 1M mapped blocks, delete of a device of that many exclusive
#                         blocks, discard of all of them; metadata bytes per mapped block (printed by its setup
#                         and appended to $TMPDIR/strata-thinbench-metadata.txt)
# Files go to fresh directories under BENCH_DIR (default /var/tmp), removed afterwards.
# Usage: bench/thin.sh [FILTER] [BenchmarkDotNet args...]   (FILTER default '*', e.g. '*Metadata*')
# Reports (markdown, csv) go to bench/Strata.ThinBench/BenchmarkDotNet.Artifacts/results/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v dotnet >/dev/null 2>&1; then echo "$0: the .NET 10 SDK is required" >&2; exit 1; fi
filter="${1:-*}"
[ $# -gt 0 ] && shift
rm -f "${TMPDIR:-/tmp}/strata-thinbench-metadata.txt"
cd "$here/Strata.ThinBench"
dotnet run -c Release --project Strata.ThinBench.csproj -- --filter "$filter" \
  --artifacts "$here/Strata.ThinBench/BenchmarkDotNet.Artifacts" "$@"
if [ -s "${TMPDIR:-/tmp}/strata-thinbench-metadata.txt" ]; then
  echo "metadata per mapped block (mapped, metadata blocks, bytes per mapped block, check clean):"
  sort -u "${TMPDIR:-/tmp}/strata-thinbench-metadata.txt"
fi
