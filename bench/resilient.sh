#!/usr/bin/env bash
# Resilient pools side by side (issue 22), in one run: for each resiliency (simple, mirror, mirror3, parity,
# parity2), once with --checksum crc32c and once with --checksum none, a fresh pool over the SAME four sparse disk
# files of --size each (removed and made again for every pool, so simple also spans four disks), one thin device
# of --size in it (it fits every pool: mirror3, the smallest, holds about 4/3 of a disk), served by `strata pool
# serve` on a unix socket, measured with fio's nbd engine (libnbd). Rows, each --seconds long after a ramp:
#   randwrite-4k-qd32   4 KiB random writes, iodepth 32, into the fresh device (allocating as they go)
#   write-1m-qd8        1 MiB sequential writes, iodepth 8
#   (fill)              untimed: 1 MiB writes from where write-1m-qd8 stopped to the end, so that every read
#                       below reads written data (a thin device's unwritten blocks never touch the disks)
#   randread-4k-qd32    4 KiB random reads, iodepth 32, over the whole device
#   read-1m-qd8         1 MiB sequential reads, iodepth 8
#   read-1m-cold        the same, the page cache dropped first: the reads go to the disk files' device (those that
#                       fit in memory come from the page cache in the rows above, where a checksum is one more pass
#                       over the bytes; on a VM the device may be cached by its host too)
# The disks are plain files in the page cache (Strata does not open them O_DIRECT), so when they fit in memory the
# reads measure Strata's own work (placement, checksums, parity) more than the disk's. Before each row the disks'
# filesystem is synced (untimed), so that no row pays for the writeback of the one before. All four disk files share
# one filesystem: once writes are bound by its bandwidth, a mirror (two copies of every byte) can reach at most half of
# simple's rate. `--dir /dev/shm` (tmpfs) takes the disk out: the rows then measure the CPU each resiliency costs.
# The table gives IOPS (4 KiB rows) and MiB/s (1 MiB rows), each resiliency's ratio to simple with the same
# checksum setting, and crc32c's ratio to none on the reads. Goals (issue 22): mirror at least 0.8x simple (checked
# for mirror and mirror3 on every row); parity at least 0.5x simple on 4 KiB writes and 0.8x on 1 MiB writes
# (checked for parity and parity2); checksums cost at most 10% on reads (crc32c at least 0.9x none).
# Then, for mirror and parity with checksums (the pool filled by the rows above), scrub offline against `cat` of the
# disks, and rebuild of a disk's columns onto a new disk (`pool disk replace`) against `cp` of as many bytes.
# Usage: bench/resilient.sh [--size SIZE] [--seconds S] [--dir DIR] [--only RESILIENCY[,RESILIENCY...]]
#   --size     size of each of the four disk files and of the device (default 4G)
#   --seconds  time of each fio row (default 15; plus a ramp of 3 s, 1 s when --seconds is under 10)
#   --dir      where the disk files go (default /var/tmp); a fresh directory is made in it and removed at the end
#   --only     only these resiliencies (simple is added when missing: the ratios need it)
# Env: STRATA_BIN=path measures that executable instead of a snapshot of ./strata's build; QUIET_WAIT=N waits up
# to N seconds (default 5) for an idle machine before each row.
# Output: the whole run, the table (table.txt) and every fio JSON go to bench/results/DATE/resilient/
# (resilient-2 ... when taken). The server is stopped by pid and every file is removed on exit, also on failure.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

all_kinds="simple mirror mirror3 parity parity2"
usage="usage: $0 [--size SIZE] [--seconds S] [--dir DIR] [--only RESILIENCY[,RESILIENCY...]]"
size=4G
seconds=15
dir="${BENCH_DIR:-/var/tmp}"
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
size_bytes=$(numfmt --from=iec "$size") || { echo "$0: --size $size is not a size (like 4G)" >&2; exit 2; }
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --seconds $seconds is not a whole number of seconds" >&2; exit 2; }
[ -d "$dir" ] || { echo "$0: --dir $dir is not a directory" >&2; exit 2; }
kinds="$all_kinds"
if [ -n "$only" ]; then
  kinds="simple"
  for k in ${only//,/ }; do
    [[ " $all_kinds " == *" $k "* ]] || { echo "$0: --only $k: not one of $all_kinds" >&2; exit 2; }
    [[ " $kinds " == *" $k "* ]] || kinds="$kinds $k"
  done
fi
ramp=3
if [ "$seconds" -lt 10 ]; then ramp=1; fi
checksums="crc32c none"

bench_need_root
bench_apt fio fio
bench_apt jq jq
if ! fio --enghelp=nbd >/dev/null 2>&1; then
  echo "$0: this fio has no nbd engine (fio --enghelp=nbd); Debian 12's fio 3.33 has it" >&2; exit 1
fi

out="$bench_repo/bench/results/$(date +%F)/resilient"
for ((i = 2; ; i++)); do [ -e "$out" ] || break; out="$bench_repo/bench/results/$(date +%F)/resilient-$i"; done
mkdir -p "$out"
# everything printed also goes to run.txt (tee ignores ^C, so the cleanup's lines still reach both)
exec 3>&1 4>&2
exec > >(trap '' INT TERM; exec tee -a "$out/run.txt") 2>&1
pid_tee=$!

work=$(mktemp -d "$dir/strata-resilient.XXXXXX")
server=""
cleanup() {
  bench_stop_pid "$server" 30
  server=""
  rm -rf "$work"
  # let tee write the last lines before the shell prompt comes back
  exec 1>&3 2>&4 3>&- 4>&-
  for ((i = 0; i < 20; i++)); do kill -0 "$pid_tee" 2>/dev/null || break; sleep 0.1; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
strata=$(bench_strata_snapshot "$work/bin")
results="$out/results.txt" # lines "RESILIENCY CHECKSUM ROW IOPS MiB/s"
: >"$results"
sock="$work/strata.sock"
pool="$work/pool"

wait_socket() {
  for _ in $(seq 100); do
    [ -S "$sock" ] && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  echo "$0: no server on $sock; its log:" >&2; cat "$work/serve.log" >&2; exit 1
}

# new_pool KIND CHECKSUM: removes the previous pool and disks, makes them again and serves a device "vol" of --size.
new_pool() {
  local kind="$1" csum="$2" disks=() usable i
  bench_stop_pid "$server" 30
  server=""
  rm -rf "$pool" "$work"/disk* "$sock"
  for i in 0 1 2 3; do disks+=(--disk "$work/disk$i,size=${size_bytes}B"); done
  "$strata" pool --pool "$pool" create "${disks[@]}" --resiliency "$kind" --checksum "$csum" >/dev/null
  usable=$("$strata" pool --pool "$pool" info --format json | jq -r .UsableSpace)
  if [ "$usable" -lt "$size_bytes" ]; then
    echo "$0: a device of $size does not fit the $kind pool ($usable bytes usable)" >&2; exit 1
  fi
  "$strata" pool --pool "$pool" device create vol --size "${size_bytes}B" >/dev/null
  "$strata" pool --pool "$pool" serve --socket "$sock" >"$work/serve.log" 2>&1 &
  server=$!
  wait_socket
}

# fio_job NAME JSON ARGS...: runs fio on the served device, its JSON into JSON; on failure shows fio's and the
# server's last words and exits.
fio_job() {
  local name="$1" json="$2"; shift 2
  if ! fio --name="$name" --ioengine=nbd --uri="nbd+unix:///vol?socket=$sock" --size="$size_bytes" \
      --output-format=json --output="$json" "$@" >"$work/fio.log" 2>&1 ||
     [ "$(jq '[.jobs[].error] | max' "$json" 2>/dev/null)" != 0 ]; then
    echo "$0: fio $name failed:" >&2; cat "$work/fio.log" >&2
    echo "server log:" >&2; tail -20 "$work/serve.log" >&2
    exit 1
  fi
}

# run_row KIND CHECKSUM ROW RW BS DEPTH [cold]: one timed fio row (cold: the page cache dropped first); appends
# "KIND CHECKSUM ROW IOPS MiB/s" to the results.
run_row() {
  local kind="$1" csum="$2" row="$3" rw="$4" bs="$5" depth="$6" cold="${7:-}" json dir iops mibs
  json="$out/$kind-$csum-$row.json"
  dir=write
  if [[ "$rw" == *read* ]]; then dir=read; fi
  # each row starts with no dirty page cache: the rows before it (random writes copy 64 KiB blocks, once per copy)
  # would otherwise leave gigabytes to write back, and the writeback throttles whichever row comes next
  sync -f "$work"
  bench_wait_quiet "${QUIET_WAIT:-5}"
  if [ -n "$cold" ]; then drop_caches; fi
  fio_job "$row" "$json" --rw="$rw" --bs="$bs" --iodepth="$depth" --time_based --runtime="$seconds" --ramp_time="$ramp"
  read -r iops mibs < <(jq -r --arg d "$dir" '.jobs[0][$d] | "\(.iops) \(.bw_bytes / 1048576)"' "$json")
  printf '%s %s %s %.0f %.1f\n' "$kind" "$csum" "$row" "$iops" "$mibs" >>"$results"
  printf '  %-8s %-7s %-17s %9.0f IOPS %8.1f MiB/s\n' "$kind" "$csum" "$row" "$iops" "$mibs"
}

# fill KIND CHECKSUM: writes the device from where write-1m-qd8 stopped to its end (that row ran sequentially from
# offset 0; the bytes it counted exclude the ramp's, so this may rewrite some, never skip any).
fill() {
  local kind="$1" csum="$2" done start t0
  done=$(jq '.jobs[0].write.io_bytes' "$out/$kind-$csum-write-1m-qd8.json")
  [ "$done" -lt "$size_bytes" ] || { echo "  (write-1m-qd8 covered the whole device: no fill)"; return 0; }
  start=$(( done / 1048576 * 1048576 ))
  t0=$SECONDS
  fio_job fill "$work/fill.json" --rw=write --bs=1M --iodepth=8 --offset="$start"
  echo "  (filled $(( (size_bytes - start) / 1048576 )) MiB from offset $(( start / 1048576 )) MiB in $((SECONDS - t0)) s)"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# drop_caches: so that reads below come from the disks, for Strata and its floor alike
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# measure_rebuild KIND: issue 22's rebuild goal, at most 1.5x `cp`'s time for the same data, no foreground IO.
# The pool's device is filled (by the rows above and fill), the server stopped; `pool disk replace disk0 disk4` on
# the pool opened by the command waits for the rebuild of disk0's columns onto the new disk (the other disks are
# full: random writes place every slab). Its time against `cp` of a file of as many bytes as disk0 held, between the
# same filesystems (then `sync -f`), caches dropped first.
measure_rebuild() {
  local kind="$1" info slab used bytes t0 t1 strata_s cp_s
  bench_stop_pid "$server" 30
  server=""
  info=$("$strata" pool --pool "$pool" info --format json)
  slab=$(jq .SlabSize <<<"$info")
  used=$(jq '.Disks[0].SlabsUsed' <<<"$info")
  bytes=$(( slab * used ))
  drop_caches
  t0=$(date +%s.%N)
  "$strata" pool --pool "$pool" disk replace "$work/disk0" "$work/disk4,size=${size_bytes}B" >"$work/rebuild.out"
  t1=$(date +%s.%N)
  strata_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  rm -f "$work/disk4"
  head -c "$bytes" /dev/urandom >"$work/cp-src"
  drop_caches
  t0=$(date +%s.%N)
  cp "$work/cp-src" "$work/cp-dst" && sync -f "$work/cp-dst"
  t1=$(date +%s.%N)
  cp_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  rm -f "$work/cp-src" "$work/cp-dst"
  echo "  rebuild ($kind): disk0 held $used slabs ($(numfmt --to=iec "$bytes")): strata $strata_s s ($(cat "$work/rebuild.out")), cp+sync $cp_s s, ratio $(ratio "$strata_s" "$cp_s") (goal <= 1.5)"
  printf '%s rebuild %s %s %s\n' "$kind" "$bytes" "$strata_s" "$cp_s" >>"$out/rebuild.txt"
}

# measure_scrub KIND: issue 22's scrub goal, at least 0.8x the rate of a plain sequential read of the disks. The
# pool (server stopped) is scrubbed offline, caches dropped; its rate (bytes read from the disks per second, from
# its report) against `cat` of the disk files (their allocated bytes per second), caches dropped.
measure_scrub() {
  local kind="$1" json read secs alloc t0 t1 cat_s
  bench_stop_pid "$server" 30
  server=""
  drop_caches
  json=$("$strata" pool --pool "$pool" scrub --format json || true)
  read=$(jq '[.Disks[].BytesRead] | add' <<<"$json")
  secs=$(jq .Seconds <<<"$json")
  alloc=$(du -B1 -c "$work"/disk? | tail -1 | cut -f1)
  drop_caches
  t0=$(date +%s.%N)
  cat "$work"/disk? >/dev/null
  t1=$(date +%s.%N)
  cat_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  echo "  scrub ($kind): read $(numfmt --to=iec "$read") in $secs s ($(awk -v b="$read" -v s="$secs" 'BEGIN { printf "%.0f", b / s / 1048576 }') MiB/s); cat of the disks: $(numfmt --to=iec "$alloc") allocated in $cat_s s ($(awk -v b="$alloc" -v s="$cat_s" 'BEGIN { printf "%.0f", b / s / 1048576 }') MiB/s); ratio $(awk -v b="$read" -v s="$secs" -v a="$alloc" -v c="$cat_s" 'BEGIN { printf "%.2f", (b / s) / (a / c) }') (goal >= 0.8)"
  printf '%s scrub %s %s %s %s\n' "$kind" "$read" "$secs" "$alloc" "$cat_s" >>"$out/scrub.txt"
}

echo "$(bench_machine)"
echo "command: $0 --size $size --seconds $seconds --dir $dir${only:+ --only $only}"
echo "fio $(fio --version) (nbd engine), $("$strata" --version | head -1); 4 disks of $size ($(numfmt --to=iec "$size_bytes")) on $(findmnt -n -o FSTYPE -T "$work") under $work, a device of the same size; ${seconds}s per row after a ${ramp}s ramp"
echo "results: $out"
for kind in $kinds; do
  for csum in $checksums; do
    echo "$kind, checksum $csum:"
    t0=$SECONDS
    new_pool "$kind" "$csum"
    run_row "$kind" "$csum" randwrite-4k-qd32 randwrite 4k 32
    run_row "$kind" "$csum" write-1m-qd8 write 1M 8
    fill "$kind" "$csum"
    run_row "$kind" "$csum" randread-4k-qd32 randread 4k 32
    run_row "$kind" "$csum" read-1m-qd8 read 1M 8
    run_row "$kind" "$csum" read-1m-cold read 1M 8 cold
    "$strata" pool --pool "$pool" info --format json >"$out/$kind-$csum-info.json" 2>/dev/null || true
    bench_stop_pid "$server" 30
    server=""
    if [ "$csum" = crc32c ] && { [ "$kind" = mirror ] || [ "$kind" = parity ]; }; then
      measure_scrub "$kind"
      measure_rebuild "$kind"
    fi
    echo "  ($((SECONDS - t0)) s for this pool)"
  done
done

# value KIND CHECKSUM ROW: the row's IOPS for 4 KiB rows, MiB/s for 1 MiB rows
value() { awk -v k="$1" -v c="$2" -v r="$3" '$1 == k && $2 == c && $3 == r { print (r ~ /-4k-/) ? $4 : $5 }' "$results"; }
rows="randwrite-4k-qd32 write-1m-qd8 randread-4k-qd32 read-1m-qd8 read-1m-cold"
# mark VALUE GOAL: VALUE, with a '!' when it is under GOAL
mark() { awk -v x="$1" -v g="$2" 'BEGIN { printf "%s%s", x, (g != "" && x != "-" && x < g) ? "!" : " " }'; }
{
  echo
  echo "4 KiB rows in IOPS, 1 MiB rows in MiB/s. '/simple': over simple with the same checksum setting; '/none': crc32c"
  echo "over none for the same resiliency. Goals: mirror >= 0.8x simple (every row); parity >= 0.5x simple on 4 KiB"
  echo "writes and >= 0.8x on 1 MiB writes; crc32c >= 0.9x none on reads. '!' marks a missed goal."
  printf '%-8s %-6s %9s %9s %9s %9s %9s   %-44s   %s\n' "" "" randw-4k write-1m randr-4k read-1m rd-1m-cd \
    "------------------ /simple -----------------" "----------- /none ----------"
  printf '%-8s %-6s %9s %9s %9s %9s %9s   %8s %8s %8s %8s %8s   %8s %8s %8s\n' resil csum IOPS MiB/s IOPS MiB/s MiB/s \
    randw-4k write-1m randr-4k read-1m rd-1m-cd randr-4k read-1m rd-1m-cd
  for kind in $kinds; do
    for csum in $checksums; do
      vals=() vs=() vn=()
      for r in $rows; do
        v=$(value "$kind" "$csum" "$r")
        vals+=("$v")
        goal=""
        case "$kind:$r" in
          mirror*:*) goal=0.8 ;;
          parity*:randwrite-4k-qd32) goal=0.5 ;;
          parity*:write-1m-qd8) goal=0.8 ;;
        esac
        if [ "$kind" = simple ]; then vs+=("-"); else vs+=("$(mark "$(ratio "$v" "$(value simple "$csum" "$r")")" "$goal")"); fi
      done
      for r in randread-4k-qd32 read-1m-qd8 read-1m-cold; do
        if [ "$csum" = crc32c ]; then vn+=("$(mark "$(ratio "$(value "$kind" crc32c "$r")" "$(value "$kind" none "$r")")" 0.9)"); else vn+=(""); fi
      done
      printf '%-8s %-6s %9s %9s %9s %9s %9s   %8s %8s %8s %8s %8s   %8s %8s %8s\n' "$kind" "$csum" "${vals[@]}" "${vs[@]}" "${vn[@]}"
    done
  done
} | tee "$out/table.txt"
echo
echo "raw fio JSON, pool info and this output: $out"
