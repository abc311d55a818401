#!/usr/bin/env bash
# NBD servers side by side (issue 7), in one run, with fio's nbd engine (libnbd) over unix sockets, direct=1:
#   strata   `strata pool serve` of a thin device (64 KiB blocks) in a fresh pool (sparse data and metadata files)
#   qemu     `qemu-nbd -f qcow2 --cache=writeback` of a fresh qcow2 (64 KiB clusters)
#   nbdkit   `nbdkit file` of a fresh raw sparse file
# all of SIZE bytes, in fresh files under one directory of BENCH_DIR (default /var/tmp). Rows, in this order
# (each row runs strata, qemu, nbdkit in turn, the order rotating by round; every run RUNTIME seconds,
# time-based, over the whole device):
#   randwrite-4k-qd32   4 KiB random writes, iodepth 32, into the fresh devices (allocating as they go)
#   write-1m-qd8        1 MiB sequential writes, iodepth 8 (the device is all data afterwards)
#   read-1m-qd8         1 MiB sequential reads, iodepth 8
#   randread-4k-qd32    4 KiB random reads, iodepth 32
#   snap-randwrite-4k   4 KiB random writes, iodepth 32, on a snapshot of the written device: strata takes
#                       `pool device snapshot` through the running server's control socket; qemu serves a new
#                       qcow2 overlay whose backing file is the written qcow2; nbdkit has no snapshots, so its
#                       row is plain overwrites of the raw file (the cost copy-on-write adds, for reference)
# Goals (issue 7): strata at least 2x qemu and at least 0.7x nbdkit on every row.
# Each round starts from nothing (fresh files and servers); with -n ROUNDS > 1 the table shows medians.
# With --flush-every N, every writing row also sends a flush (NBD_CMD_FLUSH, fio's fsync=N) after every N writes, so
# that the peers, which otherwise keep all writes in the page cache, make them durable too (Strata commits and
# flushes every second on its own).
# Usage: bench/nbd.sh [-n ROUNDS] [--size SIZE] [--runtime SECONDS] [--flush-every N]
# Env: STRATA_BIN=path measures that executable instead of a snapshot of ./strata's build.
# Servers are stopped by pid and every file is removed on exit, also on failure.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=1
size=2G
runtime=15
flush=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) rounds="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --runtime) runtime="$2"; shift 2 ;;
    --flush-every) flush="$2"; shift 2 ;;
    *) echo "usage: $0 [-n ROUNDS] [--size SIZE] [--runtime SECONDS] [--flush-every N]" >&2; exit 2 ;;
  esac
done
bench_need_root
bench_apt fio fio
bench_apt nbdkit nbdkit
bench_apt qemu-nbd qemu-utils

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/strata-nbd.XXXXXX")
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do bench_stop_pid "$p" 5; done
  pids=()
}
cleanup() { stop_all; rm -rf "$work"; }
trap cleanup EXIT
strata=$(bench_strata_snapshot "$work/bin")
results="$work/results.txt"
: >"$results"

wait_socket() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; echo "$0: no server on $1" >&2; exit 1; }

# run_fio ROW SIDE URI RW BS DEPTH: appends "ROW SIDE IOPS MB/s" to the results.
run_fio() {
  local row="$1" side="$2" uri="$3" rw="$4" bs="$5" depth="$6" out iops bw
  local sync=()
  if [ -n "$flush" ] && [[ "$rw" != *read* ]]; then sync=(--fsync="$flush"); fi
  out=$(fio --name="$row" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$depth" --direct=1 \
    --size="$size" --time_based --runtime="$runtime" "${sync[@]}" --output-format=terse --terse-version=3)
  # terse v3: field 7/8 read KiB/s and IOPS, 48/49 write KiB/s and IOPS
  read -r iops bw < <(echo "$out" | awk -F';' -v rw="$rw" 'NF > 50 { if (rw ~ /read/) print $8, $7 / 1024; else print $49, $48 / 1024 }')
  printf '%s %s %s %.0f\n' "$row" "$side" "$iops" "$bw" >>"$results"
  printf '  %-18s %-7s %9s IOPS %7.0f MiB/s\n' "$row" "$side" "$iops" "$bw" >&2
}

echo "$(bench_machine)" >&2
echo "fio $(fio --version), $(qemu-nbd --version | head -1), $(nbdkit --version); size $size, ${runtime}s per run, $rounds round(s)${flush:+, a flush every $flush writes}" >&2
for round in $(seq "$rounds"); do
  dir="$work/r$round"
  mkdir -p "$dir"
  # fresh devices and servers
  "$strata" pool create --pool "$dir/pool" --data-size "$(( $(numfmt --from=iec "$size") * 3 ))" >/dev/null
  "$strata" pool device create vol --size "$size" --pool "$dir/pool" >/dev/null
  "$strata" pool serve --pool "$dir/pool" --socket "$dir/strata.sock" >"$dir/strata.log" 2>&1 &
  pids+=($!)
  qemu-img create -q -f qcow2 -o cluster_size=64k "$dir/base.qcow2" "$size"
  qemu-nbd --persistent --cache=writeback -f qcow2 -x vol -k "$dir/qemu.sock" "$dir/base.qcow2" &
  qpid=$!
  pids+=($qpid)
  truncate -s "$size" "$dir/raw.img"
  nbdkit -f -U "$dir/nbdkit.sock" file "$dir/raw.img" &
  pids+=($!)
  for s in strata qemu nbdkit; do wait_socket "$dir/$s.sock"; done
  declare -A uri=(
    [strata]="nbd+unix:///vol?socket=$dir/strata.sock"
    [qemu]="nbd+unix:///vol?socket=$dir/qemu.sock"
    [nbdkit]="nbd+unix:///vol?socket=$dir/nbdkit.sock"
  )
  case $((round % 3)) in
    1) order="strata qemu nbdkit" ;;
    2) order="qemu nbdkit strata" ;;
    0) order="nbdkit strata qemu" ;;
  esac
  echo "round $round (order: $order)" >&2
  row() { local name="$1"; shift; for s in $order; do run_fio "$name" "$s" "${uri[$s]}" "$@"; done; }
  row randwrite-4k-qd32 randwrite 4k 32
  row write-1m-qd8 write 1M 8
  row read-1m-qd8 read 1M 8
  row randread-4k-qd32 randread 4k 32
  # snapshots: strata through its server's control socket; qemu on an overlay of the written qcow2
  "$strata" pool device snapshot vol snap --pool "$dir/pool" >/dev/null
  uri[strata]="nbd+unix:///snap?socket=$dir/strata.sock"
  bench_stop_pid "$qpid" 5
  rm -f "$dir/qemu.sock"
  qemu-img create -q -f qcow2 -o cluster_size=64k -b "$dir/base.qcow2" -F qcow2 "$dir/overlay.qcow2"
  qemu-nbd --persistent --cache=writeback -f qcow2 -x vol -k "$dir/qemu.sock" "$dir/overlay.qcow2" &
  pids+=($!)
  wait_socket "$dir/qemu.sock"
  row snap-randwrite-4k randwrite 4k 32
  stop_all
  rm -rf "$dir"
done

echo
echo "medians of $rounds round(s), IOPS (MiB/s); ratios are strata's IOPS over the peer's (goal: >= 2 vs qemu, >= 0.7 vs nbdkit)"
printf '%-18s %18s %18s %18s %9s %9s\n' row strata qemu nbdkit vs-qemu vs-nbdkit
for r in randwrite-4k-qd32 write-1m-qd8 read-1m-qd8 randread-4k-qd32 snap-randwrite-4k; do
  declare -A med=() mbs=()
  for s in strata qemu nbdkit; do
    med[$s]=$(awk -v r="$r" -v s="$s" '$1 == r && $2 == s { print $3 }' "$results" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    mbs[$s]=$(awk -v r="$r" -v s="$s" '$1 == r && $2 == s { print $4 }' "$results" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
  done
  printf '%-18s %18s %18s %18s %9.2f %9.2f\n' "$r" "${med[strata]} (${mbs[strata]})" "${med[qemu]} (${mbs[qemu]})" "${med[nbdkit]} (${mbs[nbdkit]})" \
    "$(echo "${med[strata]} ${med[qemu]}" | awk '{ print $1 / $2 }')" "$(echo "${med[strata]} ${med[nbdkit]}" | awk '{ print $1 / $2 }')"
done
