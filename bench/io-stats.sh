#!/usr/bin/env bash
# What the devices' IO counters cost (issue 24): 4 KiB random reads over NBD (fio's nbd engine, iodepth 32, direct=1)
# from `strata pool serve` built as it ships (counters on) and built with them compiled out (-p:StrataIoStats=false),
# in one run, on one pool: a thin device of SIZE written whole first (1 MiB writes), then each round serves it with
# one build and then the other (the order alternating by round), RUNTIME seconds of random reads each.
# Goal (issue 24): counters on at most 2% fewer IOPS than compiled out.
# Both builds are NativeAOT publishes of one copy of the working tree's src/ (made at the start, so that edits
# meanwhile change nothing measured), differing only in that property.
# Usage: bench/io-stats.sh [-n ROUNDS] [--size SIZE] [--runtime SECONDS]
# Servers are stopped by pid and every file is removed on exit, also on failure.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=5
size=1G
runtime=15
while [ $# -gt 0 ]; do
  case "$1" in
    -n) rounds="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --runtime) runtime="$2"; shift 2 ;;
    *) echo "usage: $0 [-n ROUNDS] [--size SIZE] [--runtime SECONDS]" >&2; exit 2 ;;
  esac
done
bench_need_root
bench_apt fio fio
bench_apt clang clang

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/strata-io-stats.XXXXXX")
pid=""
cleanup() { [ -z "$pid" ] || bench_stop_pid "$pid" 5; rm -rf "$work"; }
trap cleanup EXIT

# the two builds, from one copy of the sources
mkdir -p "$work/tree"
cp -a "$bench_repo/src" "$bench_repo/Directory.Build.props" "$bench_repo/global.json" "$work/tree/"
find "$work/tree/src" \( -name bin -o -name obj \) -prune -exec rm -rf {} +
case "$(uname -m)" in x86_64) rid=linux-x64 ;; aarch64) rid=linux-arm64 ;; *) rid="linux-$(uname -m)" ;; esac
build() {
  local out="$1" log; shift
  echo "building $out ($*) ..." >&2
  if ! log=$(dotnet publish "$work/tree/src/Strata.Cli/Strata.Cli.csproj" -c Release -r "$rid" -p:PublishAot=true -p:CopyOutputSymbolsToPublishDirectory=false "$@" -o "$work/$out" -nologo -v quiet 2>&1); then
    echo "$log" >&2; exit 1
  fi
  find "$work/tree/src" \( -name bin -o -name obj \) -prune -exec rm -rf {} + # the next build starts clean
}
build on
build off -p:StrataIoStats=false
declare -A bin=([on]="$work/on/strata" [off]="$work/off/strata")

wait_socket() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; echo "$0: no server on $1" >&2; exit 1; }
serve() {
  rm -f "$work/nbd.sock"
  "${bin[$1]}" pool serve --pool "$work/pool" --socket "$work/nbd.sock" >"$work/serve.log" 2>&1 &
  pid=$!
  wait_socket "$work/nbd.sock"
}
stop() { bench_stop_pid "$pid" 10; pid=""; }

"${bin[on]}" pool create --pool "$work/pool" --data-size "$(( $(numfmt --from=iec "$size") * 2 ))B" >/dev/null
"${bin[on]}" pool device create vol --size "$size" --pool "$work/pool" >/dev/null
uri="nbd+unix:///vol?socket=$work/nbd.sock"
serve on
fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size="$size" --output-format=terse >/dev/null
stop

results="$work/results.txt"
: >"$results"
echo "$(bench_machine)" >&2
echo "fio $(fio --version); size $size, ${runtime}s per run, $rounds round(s)" >&2
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="on off"; else order="off on"; fi
  for side in $order; do
    serve "$side"
    iops=$(fio --name=randread --ioengine=nbd --uri="$uri" --rw=randread --bs=4k --iodepth=32 --direct=1 --size="$size" \
      --time_based --runtime="$runtime" --output-format=terse --terse-version=3 | awk -F';' 'NF > 50 { print $8 }')
    stop
    echo "$side $iops" >>"$results"
    printf '  round %d  counters %-3s %9s IOPS\n' "$round" "$side" "$iops" >&2
  done
done
# medians (bench_stats takes NAME VALUE lines)
bench_stats "$results" | awk '
  { med[$1] = $3; lo[$1] = $4; hi[$1] = $5; n = $2 }
  END {
    printf "| build | rounds | median IOPS | min | max |\n|---|---|---|---|---|\n"
    printf "| counters on | %d | %.0f | %.0f | %.0f |\n", n, med["on"], lo["on"], hi["on"]
    printf "| counters compiled out | %d | %.0f | %.0f | %.0f |\n", n, med["off"], lo["off"], hi["off"]
    printf "\non / off = %.3f (goal: at least 0.98)\n", med["on"] / med["off"]
  }'
