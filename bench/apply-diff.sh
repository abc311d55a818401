#!/usr/bin/env bash
# Strata's layer apply and layer diff against GNU tar, side by side, on the Debian rootfs tar from
# bench/rootfs.sh:
#   apply:  strata layer apply (fresh store)  vs  tar -xpf (empty dir)  and  tar -xpf && sync -f
#   diff:   strata layer diff (vs the empty tree) -o FILE  vs  tar -cf FILE of the same layer tree
#   start-up: strata --root STORE info (what every CLI call pays before doing any work)
# Every command gets fresh directories and runs after an untimed sync, so that no side pays for the
# previous side's dirty pages; which side goes first alternates by round. Page cache is warm for both
# sides: the input tar is read once up front, nothing is dropped, and each round's trees and outputs
# are deleted after the round, so the page cache stays about one round large.
#
# Usage: bench/apply-diff.sh [-n REPS] [--dir DIR] [--tar FILE]
#   -n REPS   measured repetitions per command (default 5), after one unmeasured warm-up round
#   --dir DIR run in a fresh temp dir under DIR (an existing filesystem) instead of the default:
#             a freshly made ext4 image (journalled, mkfs defaults), loop-mounted with direct I/O.
#             (On ext4 without a journal, such as this VM's root, rounds are not deleted until the
#             end, and times swing with other processes' recent deletions: see lib.sh.)
#   --tar FILE  measure with this layer tar instead of the Debian rootfs from bench/rootfs.sh
# Before each command the script waits (up to QUIET_MAX seconds, default 120; 0 = never) until the
# machine is idle, and it records the user-mode CPU time other processes took while the command ran;
# samples where that exceeds NOISY seconds (default 0.05) count as disturbed and are left out of the
# "clean" statistics, on which the goals are judged (when a command has at least 3 clean samples).
# Env: STRATA_BIN=path measures that executable instead of a snapshot of ./strata's build.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

reps=5
tarfile=""
under=""
quiet_max="${QUIET_MAX:-120}"
noisy="${NOISY:-0.05}"
while [ $# -gt 0 ]; do
  case "$1" in
    -n) reps="$2"; shift 2 ;;
    --tar) tarfile="$(realpath "$2")"; shift 2 ;;
    --dir) under="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1" >&2; exit 2 ;;
  esac
done
bench_need_root
bench_apt mkfs.ext4 e2fsprogs
bench_apt /usr/bin/time time

work=""; mnt=""; loopdev=""; img=""; wsdir=""; nojournal=""
cleanup() {
  set +e # a trap must finish its work even when one step fails
  [ -n "$wsdir" ] && rm -rf --one-file-system "$wsdir"
  if [ -n "$mnt" ]; then
    mountpoint -q "$mnt" && umount -d "$mnt"
    rmdir "$mnt"
  fi
  [ -n "$loopdev" ] && losetup "$loopdev" >/dev/null 2>&1 && losetup -d "$loopdev"
  [ -n "$img" ] && rm -f "$img"
  [ -n "$work" ] && rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$tarfile" ]; then rootfs="$tarfile"; else rootfs=$("$bench_repo/bench/rootfs.sh"); fi
work=$(mktemp -d /var/tmp/strata-bench.XXXXXX)
strata=$(bench_strata_snapshot "$work/bin")

if [ -n "$under" ]; then
  ws=$(mktemp -d "$under/strata-bench.XXXXXX")
  wsdir="$ws"
  where="fresh temp dir $ws on $(findmnt -n -o FSTYPE,SOURCE -T "$ws" | tr -s ' ') ($(findmnt -n -o OPTIONS -T "$ws"))"
  if bench_ext4_nojournal "$ws"; then
    # deleting a round's trees would slow the next round's inode allocation for minutes (see lib.sh)
    nojournal=1
    where="$where; ext4 WITHOUT a journal: rounds are kept until the end; recent mass deletions by any process slow file creation here"
  fi
else
  img="$work.img"
  # one round's trees and outputs: three extracted copies and two tars
  gib=$(( $(stat -c %s "$rootfs") * 6 / 1073741824 + 2 ))
  [ "$gib" -ge 8 ] || gib=8
  truncate -s "${gib}G" "$img"
  mkfs.ext4 -q -F "$img"
  loopdev=$(losetup --find --show --direct-io=on "$img")
  mnt=$(mktemp -d /mnt/strata-bench.XXXXXX)
  mount "$loopdev" "$mnt"
  ws="$mnt"
  where="fresh ext4 (mkfs.ext4 defaults, journalled) on $loopdev, direct I/O to a sparse file on $(findmnt -n -o FSTYPE -T /var/tmp) /var/tmp"
fi

entries=$(tar -tf "$rootfs" | wc -l)
echo "== apply/diff: $rootfs ($(stat -c %s "$rootfs") bytes, $entries entries)"
echo "== $(bench_machine)"
echo "== in: $where"
echo "== $(tar --version | head -1); strata: $strata ($("$strata" --version))"
echo "== $reps measured repetitions (+1 warm-up), warm page cache, untimed sync before each command, order alternates"
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$rootfs" >/dev/null

times="$work/times"
: >"$times"
tarx() { tar --numeric-owner --xattrs -xpf "$rootfs" -C "$1"; }
tarxs() { tarx "$1" && sync -f "$1"; }
# timed NAME REP CMD...: runs CMD after an untimed sync and once the machine is quiet; records
# "NAME wall user sys rep foreign" unless REP is 0 (warm-up). foreign = user-mode CPU seconds that other
# processes used while CMD ran: a sample with much of it was disturbed.
timed() {
  local name="$1" rep="$2" t0 t1 b0 b1 u s
  shift 2
  sync -f "$ws"
  bench_wait_quiet "$quiet_max"
  b0=$(bench_cpu_user)
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S' -o "$work/rusage" "$@" >/dev/null
  t1=$EPOCHREALTIME
  b1=$(bench_cpu_user)
  read -r u s <"$work/rusage"
  [ "$rep" = 0 ] && return 0
  awk -v n="$name" -v a="$t0" -v b="$t1" -v u="$u" -v s="$s" -v r="$rep" -v b0="$b0" -v b1="$b1" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { f = (b1 - b0) / hz - u - s; if (f < 0) f = 0; printf "%s %.4f %s %s %s %.2f\n", n, b - a, u, s, r, f }' >>"$times"
}
export -f tarx tarxs
export rootfs

# same work on both sides? (checked once, on round 1, untimed)
listing() { (cd "$1" && find . -mindepth 1 -printf '%y %m %U %G %s %TY-%Tm-%Td_%TT %p -> %l\n' | LC_ALL=C sort); }
check() {
  local same
  if cmp -s <(listing "$r/store/vfs/base") <(listing "$r/tar-x"); then same="identical"; else same="DIFFERENT (compare find listings)"; fi
  checks="== check: strata's layer tree vs tar -x's tree (type, mode, owner, size, mtime, link target): $same
== check: entries in strata diff: $(tar -tf "$r/strata-diff.tar" | wc -l) ($(stat -c %s "$r/strata-diff.tar") bytes); in tar -c: $(tar -tf "$r/tar-c.tar" | grep -vc '^\./$') ($(stat -c %s "$r/tar-c.tar") bytes)"
}
checks=""
for i in $(seq 0 "$reps"); do
  r="$ws/r$i"
  mkdir -p "$r/tar-x" "$r/tar-x-sync"
  apply_strata() { timed strata-apply "$i" "$strata" --root "$r/store" layer apply base -i "$rootfs"; }
  apply_tar() { timed tar-x "$i" bash -c 'tarx "$1"' _ "$r/tar-x"; }
  apply_tars() { timed tar-x+sync "$i" bash -c 'tarxs "$1"' _ "$r/tar-x-sync"; }
  if [ $((i % 2)) = 1 ]; then apply_strata; apply_tar; apply_tars; else apply_tars; apply_tar; apply_strata; fi
  layer="$r/store/vfs/base"
  [ -d "$layer" ] || { echo "$0: layer tree $layer missing (store layout changed?)" >&2; exit 1; }
  diff_strata() { timed strata-diff "$i" "$strata" --root "$r/store" layer diff base -o "$r/strata-diff.tar"; }
  diff_tar() { timed tar-c "$i" tar --numeric-owner --xattrs -C "$layer" -cf "$r/tar-c.tar" .; }
  if [ $((i % 2)) = 1 ]; then diff_strata; diff_tar; else diff_tar; diff_strata; fi
  timed strata-info "$i" "$strata" --root "$r/store" info
  timed strata-version "$i" "$strata" --version
  if [ "$i" = 1 ]; then check; fi
  if [ -z "$nojournal" ]; then rm -rf --one-file-system "$r"; fi
  echo "   round $i done$([ "$i" = 0 ] && echo ' (warm-up, not counted)')" >&2
done
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$checks"

clean="$work/times.clean"
awk -v t="$noisy" '$6 <= t' "$times" >"$clean"
table() {
  printf '  %-16s %3s %9s %9s %9s %8s %8s\n' command n median_s min_s max_s user_s sys_s
  bench_stats "$1" | while read -r name n med min max us ss; do
    printf '  %-16s %3s %9s %9s %9s %8s %8s\n' "$name" "$n" "$med" "$min" "$max" "$us" "$ss"
  done
}
echo
echo "all samples (wall seconds; user/sys are means):"
table "$times"
echo "clean samples (other processes used <= $noisy s of user CPU meanwhile):"
table "$clean"
echo "raw: wall seconds (user CPU seconds other processes used meanwhile), in round order:"
for name in $(cut -d' ' -f1 "$times" | sort -u); do
  printf '  %-16s %s\n' "$name" "$(awk -v n="$name" '$1 == n { printf "%.3f(%s) ", $2, $6 }' "$times")"
done

all_stats=$(bench_stats "$times")
clean_stats=$(bench_stats "$clean")
# get NAME FIELD: from the clean statistics when NAME has >= 3 clean samples, else from all samples
get() {
  local v
  v=$(awk -v n="$1" -v f="$2" '$1 == n && $2 >= 3 { print $f }' <<<"$clean_stats")
  [ -n "$v" ] || v=$(awk -v n="$1" -v f="$2" '$1 == n { print $f }' <<<"$all_stats")
  echo "$v"
}
which() { awk -v n="$1" '$1 == n && $2 >= 3 { found = 1 } END { print found ? "clean" : "all" }' <<<"$clean_stats"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v g="$2" 'BEGIN { print (r <= g ? "met" : "MISSED") }'; }
echo
for pair in "strata-apply tar-x" "strata-apply tar-x+sync" "strata-diff tar-c"; do
  set -- $pair
  m=$(ratio "$(get "$1" 3)" "$(get "$2" 3)"); n=$(ratio "$(get "$1" 4)" "$(get "$2" 4)")
  printf 'ratio %-12s / %-10s  median %5sx  min %5sx  (%s/%s samples)  goal <= 1.2x on medians: %s\n' \
    "$1" "$2" "$m" "$n" "$(which "$1")" "$(which "$2")" "$(verdict "$m" 1.2)"
done
up=$(get strata-info 3)
echo "start-up: strata info median $up s (min $(get strata-info 4) s); strata --version median $(get strata-version 3) s"
for pair in "strata-apply tar-x+sync" "strata-diff tar-c"; do
  set -- $pair
  printf 'without start-up: (%s - info) / %s  median %5sx\n' "$1" "$2" \
    "$(awk -v a="$(get "$1" 3)" -v s="$up" -v b="$(get "$2" 3)" 'BEGIN { printf "%.2f", (a - s) / b }')"
done
