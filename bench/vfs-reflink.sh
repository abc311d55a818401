#!/usr/bin/env bash
# What reflinks buy the vfs driver: `strata layer create child --parent base` (a full copy of the
# parent's tree, FICLONE per regular file where the filesystem can) on two freshly made, loop-mounted
# xfs filesystems that differ only in reflink support (mkfs.xfs -m reflink=1 vs -m reflink=0), with
# the Debian rootfs from bench/rootfs.sh applied as layer `base`. Reports the time of each create
# (median/min over N repetitions, with `strata layer rm child` between them, timed too), the disk space the
# child takes (df "used" before/after, after a sync) and the ratio (goal: reflink >= 10x faster).
# For scale, the same copy by GNU cp is timed too: `cp -a --reflink=always` on the reflink
# filesystem, `cp -a --reflink=never` on the other, each followed by `sync -f` (strata ends every
# create with syncfs).
# Warm page cache; before each timed command an untimed sync and a wait until the machine is idle
# (at most QUIET_MAX seconds, default 120; 0 = never); the two filesystems alternate which goes first.
#
# Usage: bench/vfs-reflink.sh [-n REPS] [--tar FILE]
#   -n REPS     measured repetitions (default 5), after one unmeasured warm-up round
#   --tar FILE  use this layer tar as `base` instead of the Debian rootfs from bench/rootfs.sh
# Env: STRATA_BIN=path measures that executable instead of a snapshot of ./strata's build.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

reps=5
tarfile=""
quiet_max="${QUIET_MAX:-120}"
while [ $# -gt 0 ]; do
  case "$1" in
    -n) reps="$2"; shift 2 ;;
    --tar) tarfile="$(realpath "$2")"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1" >&2; exit 2 ;;
  esac
done
bench_need_root
bench_apt mkfs.xfs xfsprogs
bench_apt /usr/bin/time time

work=""
declare -A mnt=() dev=()
cleanup() {
  set +e # a trap must finish its work even when one step fails
  local k
  for k in "${!mnt[@]}"; do
    mountpoint -q "${mnt[$k]}" && umount -d "${mnt[$k]}"
    rmdir "${mnt[$k]}"
  done
  for k in "${!dev[@]}"; do losetup "${dev[$k]}" >/dev/null 2>&1 && losetup -d "${dev[$k]}"; done
  [ -n "$work" ] && rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$tarfile" ]; then rootfs="$tarfile"; else rootfs=$("$bench_repo/bench/rootfs.sh"); fi
work=$(mktemp -d /var/tmp/strata-bench-xfs.XXXXXX)
strata=$(bench_strata_snapshot "$work/bin")
cat "$rootfs" >/dev/null

# room for base, one child and one cp copy even without reflinks
gib=$(( $(stat -c %s "$rootfs") * 3 / 1073741824 + 2 ))
[ "$gib" -ge 4 ] || gib=4
for k in reflink noreflink; do
  flag=$([ "$k" = reflink ] && echo 1 || echo 0)
  truncate -s "${gib}G" "$work/$k.img"
  mkfs.xfs -q -f -m reflink="$flag" "$work/$k.img"
  dev[$k]=$(losetup --find --show --direct-io=on "$work/$k.img")
  mnt[$k]=$(mktemp -d "/mnt/strata-bench-$k.XXXXXX")
  mount "${dev[$k]}" "${mnt[$k]}"
done

echo "== vfs create --parent: $rootfs ($(stat -c %s "$rootfs") bytes, $(tar -tf "$rootfs" | wc -l) entries)"
echo "== $(bench_machine)"
echo "== strata: $strata ($("$strata" --version))"
for k in reflink noreflink; do
  echo "== $k: xfs on ${dev[$k]} (${gib} GiB sparse file, direct I/O), $(xfs_info "${mnt[$k]}" | grep -o 'reflink=[01]'), mounted at ${mnt[$k]}"
done
echo "== $reps measured repetitions (+1 warm-up), warm page cache, untimed sync before each command, order alternates"
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# used MNT: bytes in use, once settled (xfs frees the extents of deleted files in the background,
# so a reading right after a delete can still include them): sync, then read until two agree.
used() {
  local a b n=0
  sync -f "$1"; b=$(df -B1 --output=used "$1" | tail -1 | tr -d ' ')
  while :; do
    a="$b"; sleep 0.3; sync -f "$1"
    b=$(df -B1 --output=used "$1" | tail -1 | tr -d ' ')
    if [ "$a" = "$b" ] || [ $((n += 1)) -ge 30 ]; then echo "$b"; return; fi
  done
}
times="$work/times"
: >"$times"
# timed NAME REP CMD...: wall seconds of CMD after an untimed sync and a quiet machine (REP 0: not recorded)
timed() {
  local name="$1" rep="$2" t0 t1 u s
  shift 2
  sync
  bench_wait_quiet "$quiet_max"
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S' -o "$work/rusage" "$@" >/dev/null
  t1=$EPOCHREALTIME
  [ "$rep" = 0 ] && return 0
  read -r u s <"$work/rusage"
  awk -v n="$name" -v a="$t0" -v b="$t1" -v u="$u" -v s="$s" 'BEGIN { printf "%s %.4f %s %s\n", n, b - a, u, s }' >>"$times"
}

for k in reflink noreflink; do
  s="${mnt[$k]}/store"
  timed "apply-base-$k" 1 "$strata" --root "$s" layer apply base -i "$rootfs"
  [ -d "$s/vfs/base" ] || { echo "$0: layer tree $s/vfs/base missing (store layout changed?)" >&2; exit 1; }
  echo "== $k: $("$strata" --root "$s" info | grep "Reflink Copies" | sed 's/^ *//'); base layer uses $(numfmt --to=iec-i --suffix=B "$(used "${mnt[$k]}")") of the filesystem"
done

# one FS REP: strata create + rm of the child, and the cp -a peer; which of the two goes first
# alternates too (every other pair of rounds), so neither always runs right after the other's delete
one() {
  local k="$1" i="$2"
  if [ $(( (i / 2) % 2 )) = 1 ]; then cp_peer "$k" "$i"; strata_child "$k" "$i"; else strata_child "$k" "$i"; cp_peer "$k" "$i"; fi
}
strata_child() {
  local k="$1" i="$2" s="${mnt[$1]}/store" before after
  before=$(used "${mnt[$k]}")
  timed "create-$k" "$i" "$strata" --root "$s" layer create child --parent base
  after=$(used "${mnt[$k]}")
  [ "$i" = 0 ] || echo "space-$k $((after - before))" >>"$work/space"
  timed "rm-$k" "$i" "$strata" --root "$s" layer rm child
  if [ "$k" = reflink ]; then timed strata-info "$i" "$strata" --root "$s" info; fi
}
cp_peer() {
  local k="$1" i="$2" s="${mnt[$1]}/store" how
  how=$([ "$k" = reflink ] && echo always || echo never)
  timed "cp-a-$k+sync" "$i" bash -c 'cp -a --reflink="$1" "$2" "$3" && sync -f "$3"' _ "$how" "$s/vfs/base" "${mnt[$k]}/cp-copy"
  rm -rf --one-file-system "${mnt[$k]}/cp-copy"
}
: >"$work/space"
for i in $(seq 0 "$reps"); do
  if [ $((i % 2)) = 1 ]; then one reflink "$i"; one noreflink "$i"; else one noreflink "$i"; one reflink "$i"; fi
  echo "   round $i done$([ "$i" = 0 ] && echo ' (warm-up, not counted)')" >&2
done
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "wall seconds (user/sys are means):"
printf '  %-20s %3s %9s %9s %9s %8s %8s\n' command n median_s min_s max_s user_s sys_s
bench_stats "$times" | while read -r name n med min max us ss; do
  printf '  %-20s %3s %9s %9s %9s %8s %8s\n' "$name" "$n" "$med" "$min" "$max" "$us" "$ss"
done
echo "raw wall seconds, in round order:"
for name in $(cut -d' ' -f1 "$times" | sort -u); do
  printf '  %-20s %s\n' "$name" "$(awk -v n="$name" '$1 == n { printf "%.3f ", $2 }' "$times")"
done
echo "disk used by the child layer (df used after - before, bytes; per repetition):"
for k in reflink noreflink; do
  printf '  %-10s %s\n' "$k" "$(awk -v n="space-$k" '$1 == n { printf "%s (%s)  ", $2, "" }' "$work/space" | sed 's/ ()//g')"
done
stats=$(bench_stats "$times")
get() { awk -v n="$1" -v f="$2" '$1 == n { print $f }' <<<"$stats"; }
med_space() { awk -v n="space-$1" '$1 == n { print $2 }' "$work/space" | sort -n | awk '{ v[++n] = $1 } END { print (n % 2) ? v[(n + 1) / 2] : int((v[n / 2] + v[n / 2 + 1]) / 2) }'; }
echo
for k in reflink noreflink; do
  echo "create --parent base on $k: median $(get "create-$k" 3) s, min $(get "create-$k" 4) s; child uses $(numfmt --to=iec-i --suffix=B "$(med_space "$k")") (median)"
done
awk -v a="$(get create-noreflink 3)" -v b="$(get create-reflink 3)" -v c="$(get create-noreflink 4)" -v d="$(get create-reflink 4)" \
  'BEGIN { r = a / b; printf "ratio noreflink / reflink: median %.1fx, min %.1fx   goal >= 10x: %s\n", r, c / d, (r >= 10 ? "met" : "MISSED") }'
awk -v a="$(med_space noreflink)" -v b="$(med_space reflink)" 'BEGIN { printf "space ratio noreflink / reflink: %.1fx\n", (b > 0 ? a / b : 0) }'
for k in reflink noreflink; do
  awk -v k="$k" -v a="$(get "create-$k" 3)" -v b="$(get "cp-a-$k+sync" 3)" -v u="$(get strata-info 3)" \
    'BEGIN { printf "peer on %s: cp -a + sync median %.3f s; strata create / cp = %.2fx (strata start-up, `info`: %.3f s)\n", k, b, a / b, u }'
done
