#!/usr/bin/env bash
# Micro-benchmarks (BenchmarkDotNet, bench/Strata.Bench): Strata's TarReader against
# System.Formats.Tar's reader, walking the headers of an in-memory tar of 10,000 small files.
# Runs in Release with a short job (3 warm-ups, 3 iterations: for comparisons on one machine, not
# for publication; pass --job default or more arguments for a longer run).
# Usage: bench/micro.sh [FILTER] [BenchmarkDotNet args...]   (FILTER default '*', e.g. '*TarRead*')
# Reports (markdown, csv, html) go to bench/Strata.Bench/BenchmarkDotNet.Artifacts/results/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v dotnet >/dev/null 2>&1; then echo "$0: the .NET 10 SDK is required" >&2; exit 1; fi
filter="${1:-*}"
[ $# -gt 0 ] && shift
job=(--job short)
for a in "$@"; do case "$a" in --job|-j|--job=*) job=() ;; esac; done
cd "$here/Strata.Bench"
dotnet run -c Release --project Strata.Bench.csproj -- --filter "$filter" "${job[@]}" \
  --artifacts "$here/Strata.Bench/BenchmarkDotNet.Artifacts" "$@"
