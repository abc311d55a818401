#!/usr/bin/env bash
# Issue 23: a dm-thin pool opened without the kernel, side by side with Strata's own pool, in one run.
#   read rows   `strata dm serve` of a dm-thin device (thin_restore-made metadata, one device of SIZE, every 64 KiB
#               block mapped, the data file full of random bytes) against `strata pool serve` of a Strata pool
#               device holding the same bytes (written into it with `pool device write`); fio's nbd engine over
#               unix sockets, direct=1, RUNTIME seconds each, the order alternating by round:
#                 read-1m-qd8       1 MiB sequential reads, iodepth 8
#                 randread-4k-qd32  4 KiB random reads, iodepth 32
#               Goal: dm at least 0.9x the Strata pool on both.
#   open row    a pool of BLOCKS (default 1,048,576) mapped blocks, none of them next to another (every mapping is
#               its own extent, as on a well-used pool): wall time of `strata dm ls -q` (process start included:
#               it opens the pool, reads every mapping and counts the sharing) against `thin_ls` of the same
#               metadata (thin-provisioning-tools 0.9). Goal: under 1 s.
# Usage: bench/dm.sh [-n ROUNDS] [--size SIZE] [--runtime SECONDS] [--blocks N]
# Env: STRATA_BIN=path measures that executable instead of a snapshot of ./strata's build; BENCH_DIR (default /var/tmp).
# Servers are stopped by pid and every file is removed on exit, also on failure.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=1
size=2G
runtime=15
blocks=1048576
while [ $# -gt 0 ]; do
  case "$1" in
    -n) rounds="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --runtime) runtime="$2"; shift 2 ;;
    --blocks) blocks="$2"; shift 2 ;;
    *) echo "usage: $0 [-n ROUNDS] [--size SIZE] [--runtime SECONDS] [--blocks N]" >&2; exit 2 ;;
  esac
done
bench_need_root
bench_apt fio fio
bench_apt thin_restore thin-provisioning-tools

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/strata-dm.XXXXXX")
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

run_fio() { # ROW SIDE URI RW BS DEPTH: appends "ROW SIDE IOPS MiB/s"
  local row="$1" side="$2" uri="$3" rw="$4" bs="$5" depth="$6" out iops bw
  out=$(fio --name="$row" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$depth" --direct=1 \
    --size="$size" --time_based --runtime="$runtime" --output-format=terse --terse-version=3)
  read -r iops bw < <(echo "$out" | awk -F';' 'NF > 50 { print $8, $7 / 1024 }')
  printf '%s %s %s %.0f\n' "$row" "$side" "$iops" "$bw" >>"$results"
  printf '  %-18s %-7s %9s IOPS %7.0f MiB/s\n' "$row" "$side" "$iops" "$bw" >&2
}

bytes=$(numfmt --from=iec "$size")
n=$((bytes / 65536))
echo "$(bench_machine)" >&2
echo "fio $(fio --version), thin-provisioning-tools $(thin_restore -V); size $size ($n blocks of 64 KiB), ${runtime}s per run, $rounds round(s); open: $blocks blocks" >&2

# the same bytes in both: a dm-thin pool mapping every block of device 1 in one run, and a Strata pool device
d="$work/data"
mkdir -p "$d"
head -c "$bytes" /dev/urandom >"$d/dm-data"
printf '<superblock uuid="" time="0" transaction="1" data_block_size="128" nr_data_blocks="%d">\n<device dev_id="1" mapped_blocks="%d" transaction="0" creation_time="0" snap_time="0">\n<range_mapping origin_begin="0" data_begin="0" length="%d" time="0"/>\n</device>\n</superblock>\n' "$n" "$n" "$n" >"$d/dm.xml"
truncate -s 64M "$d/dm-meta"
thin_restore -q -i "$d/dm.xml" -o "$d/dm-meta"
"$strata" pool create --pool "$d/pool" --data-size "$((bytes * 2))B" >/dev/null
"$strata" pool device create vol --size "${bytes}B" --pool "$d/pool" >/dev/null
"$strata" pool device write vol --pool "$d/pool" -i "$d/dm-data" >/dev/null
sync
for round in $(seq "$rounds"); do
  "$strata" dm serve --data "$d/dm-data" --metadata "$d/dm-meta" --socket "$work/dm.sock" >"$work/dm.log" 2>&1 &
  pids+=($!)
  "$strata" pool serve --pool "$d/pool" --socket "$work/pool.sock" >"$work/pool.log" 2>&1 &
  pids+=($!)
  wait_socket "$work/dm.sock"
  wait_socket "$work/pool.sock"
  declare -A uri=([dm]="nbd+unix:///1?socket=$work/dm.sock" [pool]="nbd+unix:///vol?socket=$work/pool.sock")
  order="dm pool"
  [ $((round % 2)) = 0 ] && order="pool dm"
  echo "round $round (order: $order)" >&2
  for s in $order; do run_fio read-1m-qd8 "$s" "${uri[$s]}" read 1M 8; done
  for s in $order; do run_fio randread-4k-qd32 "$s" "${uri[$s]}" randread 4k 32; done
  stop_all
done

# opening a pool of many mapped blocks, none adjacent: virtual block 2i -> data block i
o="$work/open"
mkdir -p "$o"
awk -v n="$blocks" 'BEGIN {
  printf "<superblock uuid=\"\" time=\"0\" transaction=\"1\" data_block_size=\"128\" nr_data_blocks=\"%d\">\n", n
  printf "<device dev_id=\"1\" mapped_blocks=\"%d\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">\n", n
  for (i = 0; i < n; i++) printf "<single_mapping origin_block=\"%d\" data_block=\"%d\" time=\"0\"/>\n", 2 * i, i
  print "</device>\n</superblock>" }' >"$o/open.xml"
truncate -s 1G "$o/meta"
thin_restore -q -i "$o/open.xml" -o "$o/meta"
truncate -s "$((blocks * 65536))" "$o/data"
rm -f "$o/open.xml"
"$strata" dm ls --data "$o/data" --metadata "$o/meta" >&2
for round in $(seq "$rounds"); do
  for side in dm thin_ls; do
    t0=$(date +%s.%N)
    if [ "$side" = dm ]; then "$strata" dm ls -q --data "$o/data" --metadata "$o/meta" >/dev/null
    else thin_ls --no-headers -o DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS "$o/meta" >/dev/null; fi
    t1=$(date +%s.%N)
    secs=$(echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }')
    echo "open-${blocks} $side $secs 0" >>"$results"
    printf '  %-18s %-7s %9s s\n' "open-$blocks" "$side" "$secs" >&2
  done
done

med() { awk -v r="$1" -v s="$2" -v f="$3" '$1 == r && $2 == s { print $f }' "$results" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "medians of $rounds round(s); reads: IOPS (MiB/s), dm over pool (goal >= 0.9); open: seconds (goal: dm < 1 s)"
printf '%-18s %20s %20s %8s\n' row dm pool dm/pool
for r in read-1m-qd8 randread-4k-qd32; do
  printf '%-18s %20s %20s %8.2f\n' "$r" "$(med "$r" dm 3) ($(med "$r" dm 4))" "$(med "$r" pool 3) ($(med "$r" pool 4))" \
    "$(echo "$(med "$r" dm 3) $(med "$r" pool 3)" | awk '{ print $1 / $2 }')"
done
printf '%-18s %20s %20s\n' "open-$blocks" "$(med "open-$blocks" dm 3) s" "thin_ls $(med "open-$blocks" thin_ls 3) s"
