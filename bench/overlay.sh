#!/usr/bin/env bash
# The overlay driver's performance section, measured in-process by bench/Strata.OverlayBench (a
# console project, Release, not in Strata.slnx), each scenario on a freshly made, loop-mounted
# filesystem (sparse image, direct I/O), first ext4 (mkfs.ext4, journalled) then xfs (-m reflink=1):
#   containers  create + mount + unmount of N container layers (LayerKind.ReadWrite children of a base
#               layer holding the Debian rootfs from bench/rootfs.sh), timed per container with a
#               Stopwatch (p50/p90/p99/max, and per phase), and the disk per container (statvfs
#               free-bytes and used-inode deltas / N, settled after syncfs). In the same process and
#               interleaved with it in blocks: the kernel floor (mkdir of the container, upper, work
#               and merged dirs + an overlay mount over the base's tree + umount; once with mount(2),
#               once with fsopen/fsconfig/fsmount, which the store uses). Then the vfs driver on the same
#               filesystem for VFS containers (each a whole copy). Goal: p50 < 5 ms, < 16 KiB per container.
#   diff        a container that rewrote one file of the rootfs: native diff (store.Diff, upper dir
#               only) vs the generic NaiveDiffer (compares the mounted trees), alternating, REPS each;
#               checks that both tars hold the same members. Goal: native < 20 ms and >= 20x faster.
#   copyup      a base layer holding one 1 GiB file of non-zero data, a container on it: open for
#               writing through the container's mount (overlayfs copies the file up), pwrite 32 KiB
#               at 512 MiB, fsync, close; reports the time and the bytes the copy-up took (the upper
#               file's st_blocks*512 and the df delta). On xfs reflink=1 overlayfs clones instead of copying.
#   profile     where a container's create + mount + unmount spends its time: `containers` with Strata
#               only (no floor, no vfs) for PROFILE containers under `strace -f -T -ttt -y`; the
#               syscalls the benchmark's thread made inside the timed blocks (found by marker statx
#               calls the benchmark makes outside its timed regions) are summed per syscall, and the
#               fsyncs per file or directory (container ids folded into <id>). strace slows each
#               syscall down, so the times here are inflated; the shares are what matters.
# Before each scenario: sync and a wait until the machine is idle (at most QUIET_MAX seconds, default
# 120; 0 = never). Warm page cache throughout. Everything is cleaned up on exit (overlay mounts,
# the filesystems, loop devices, images, the copied build).
#
# Usage: bench/overlay.sh [-n N] [--vfs N] [--diff-reps N] [--copyup-reps N] [--profile N] [--tar FILE] [--only SCENARIO]
#                         [--ext4-opts "MKFS OPTIONS"]
#   -n N             containers per filesystem (default 1000)
#   --vfs N          vfs containers per filesystem (default 10; 0 skips)
#   --diff-reps N    measured diffs of each kind (default 11, after 2 warm-ups)
#   --copyup-reps N  copy-ups per filesystem (default 3)
#   --profile N      containers per filesystem under strace (default 200; 0 skips)
#   --tar FILE       base layer tar instead of the Debian rootfs from bench/rootfs.sh
#   --only SCENARIO  run only containers, diff, copyup or profile
#   --ext4-opts OPTS more mkfs.ext4 options (word-split), e.g. "-O inline_data" (small dirs and files in the inode)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

n=1000
vfs=10
diff_reps=11
copyup_reps=3
profile_n=200
tarfile=""
only=""
ext4_opts=""
quiet_max="${QUIET_MAX:-120}"
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="$2"; shift 2 ;;
    --vfs) vfs="$2"; shift 2 ;;
    --diff-reps) diff_reps="$2"; shift 2 ;;
    --copyup-reps) copyup_reps="$2"; shift 2 ;;
    --profile) profile_n="$2"; shift 2 ;;
    --tar) tarfile="$(realpath "$2")"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --ext4-opts) ext4_opts="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$only" in ""|containers|diff|copyup|profile) ;; *) echo "$0: --only takes containers, diff, copyup or profile" >&2; exit 2 ;; esac
bench_need_root
bench_apt mkfs.xfs xfsprogs
bench_apt mkfs.ext4 e2fsprogs
[ "$profile_n" = 0 ] || bench_apt strace strace
if ! command -v dotnet >/dev/null 2>&1; then echo "$0: the .NET 10 SDK is required" >&2; exit 1; fi

work=""
mnt=""
dev=""
img=""
# drop_fs: unmounts the current scenario's filesystem (and any overlay a failed scenario left below
# it), detaches its loop device and deletes its image
drop_fs() {
  if [ -n "$mnt" ]; then
    findmnt -rn -o TARGET | awk -v p="$mnt/" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m"; done
    mountpoint -q "$mnt" && umount "$mnt"
    rmdir "$mnt"
  fi
  if [ -n "$dev" ] && losetup "$dev" >/dev/null 2>&1; then losetup -d "$dev"; fi
  if [ -n "$img" ]; then rm -f "$img"; fi
  mnt=""; dev=""; img=""
}
cleanup() {
  set +e # a trap must finish its work even when one step fails
  drop_fs
  [ -n "$work" ] && rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$tarfile" ]; then rootfs="$tarfile"; else rootfs=$("$bench_repo/bench/rootfs.sh"); fi
work=$(mktemp -d /var/tmp/strata-bench-overlay.XXXXXX)

bench_build_dotnet Strata.OverlayBench "$work/bin"
bench_bin="$work/bin/Strata.OverlayBench.dll"
cat "$rootfs" >/dev/null

# room for two copies of the rootfs plus vfs copies (ext4 has no reflinks), or the 1 GiB file and its copy-up
gib=$(( $(stat -c %s "$rootfs") * (vfs + 3) / 1073741824 + 2 ))
[ "$gib" -ge 8 ] || gib=8

echo "== overlay driver benchmarks: base tar $rootfs ($(stat -c %s "$rootfs") bytes, $(tar -tf "$rootfs" | wc -l) entries)"
echo "== $(bench_machine)"
echo "== dotnet $(dotnet --version); bench build copied to $work/bin"
echo "== each scenario on a fresh ${gib} GiB sparse image in $(findmnt -n -o FSTYPE -T "$work") $work, loop device with direct I/O:"
echo "==   ext4: mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0${ext4_opts:+ $ext4_opts} (journalled, defaults otherwise; no background inode-table init)"
echo "==   xfs:  mkfs.xfs -q -m reflink=1 (defaults otherwise)"
echo "== containers: -n $n, vfs $vfs; diff: $diff_reps reps; copyup: $copyup_reps reps; profile: $profile_n containers under strace; warm page cache"

# fresh_fs TYPE: makes, loop-mounts and describes a new filesystem; sets mnt, dev, img
fresh_fs() {
  local type="$1"
  img="$work/$type.img"
  truncate -s "${gib}G" "$img"
  case "$type" in
    # shellcheck disable=SC2086 # extra options are word-split on purpose
    ext4) mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 $ext4_opts "$img" ;;
    xfs) mkfs.xfs -q -f -m reflink=1 "$img" ;;
  esac
  dev=$(losetup --find --show --direct-io=on "$img")
  mnt=$(mktemp -d "/mnt/strata-bench-overlay-$type.XXXXXX")
  mount "$dev" "$mnt"
  mkdir "$mnt/bench"
  case "$type" in
    ext4) fsdesc="ext4, $(tune2fs -l "$dev" | awk -F: '{ v = $2; gsub(/^[ \t]+|[ \t]+$/, "", v) } /^Block size/ { b = v } /^Inode size/ { i = v } /^Filesystem features/ { f = v } END { printf "%s-byte blocks, %s-byte inodes, features: %s", b, i, f }')" ;;
    xfs) fsdesc="xfs, $(xfs_info "$mnt" | grep -oE '(isize|bsize|reflink|ftype|crc)=[0-9]+' | sort -u | tr '\n' ' ')" ;;
  esac
}

status=0
outs=()
# scenario NAME TYPE ARGS...: runs one scenario on a fresh filesystem of TYPE
scenario() {
  local name="$1" type="$2" rc=0 out
  shift 2
  fresh_fs "$type"
  out="$work/$name-$type.txt"
  outs+=("$out")
  echo
  echo "######## $name on $type: $fsdesc; $dev mounted at $mnt"
  sync
  bench_wait_quiet "$quiet_max"
  echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  dotnet "$bench_bin" "$name" --dir "$mnt/bench" "$@" | tee "$out" || rc=$?
  echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "$rc" != 0 ]; then echo "$0: scenario $name on $type failed (exit $rc)" >&2; status=1; fi
  drop_fs
}

# profile TYPE: containers (Strata only) under strace on a fresh filesystem of TYPE; prints the breakdown
profile() {
  local type="$1" trace out rc=0
  fresh_fs "$type"
  trace="$work/strace-$type.txt"
  out="$work/profile-$type.txt"
  echo
  echo "######## profile on $type: $fsdesc; $dev mounted at $mnt"
  echo "== strace -f -T -ttt -y -o TRACE dotnet Strata.OverlayBench.dll containers -n $profile_n --vfs 0 --floor 0"
  sync
  bench_wait_quiet "$quiet_max"
  strace -f -T -ttt -y -o "$trace" dotnet "$bench_bin" containers --dir "$mnt/bench" --tar "$rootfs" -n "$profile_n" --vfs 0 --floor 0 >"$out" || rc=$?
  if [ "$rc" != 0 ]; then cat "$out"; echo "$0: profile on $type failed (exit $rc)" >&2; status=1; drop_fs; return; fi
  echo "timings under strace (inflated by it):"
  grep -E '^  (strata overlay|  strata) ' "$out" | grep -v KiB
  awk -v n="$profile_n" -v store="$mnt/bench/overlay-store" '
    function norm(p) {
      if (index(p, store) == 1) p = "STORE" substr(p, length(store) + 1)
      gsub(/\/c[0-9][0-9][0-9][0-9]/, "/<id>", p)
      gsub(/overlay-c[0-9]+\.[0-9a-f]+/, "overlay-<id>.*", p)
      gsub(/\.tmp-[0-9a-f-]+/, ".tmp-*", p)
      gsub(/\/l\/[A-Z2-7]+/, "/l/<short>", p)
      return p
    }
    {
      tid = $1; ts = $2
      if (index($0, "/.strata-bench-mark/begin_")) { if (!on) { on = 1; main = tid; start = ts }; next }
      if (index($0, "/.strata-bench-mark/end_")) { if (on && tid == main) { on = 0; wall += ts - start }; next }
      if (!on || tid != main) next
      rest = $0; sub(/^[0-9]+ +[0-9.]+ +/, "", rest)
      if (rest ~ /<unfinished \.\.\.>$/) { pending = rest; next }
      if (rest ~ /^<\.\.\. /) { name = rest; sub(/^<\.\.\. /, "", name); sub(/ resumed>.*/, "", name); call = pending }
      else { name = rest; sub(/\(.*/, "", name); call = rest }
      if (!match(rest, /<[0-9.]+>$/)) next
      d = substr(rest, RSTART + 1, RLENGTH - 2) + 0
      cnt[name]++; tim[name] += d; total += d
      if (name ~ /^(fsync|fdatasync|syncfs)$/ && match(call, /<\/[^>]*>/)) { p = norm(substr(call, RSTART + 1, RLENGTH - 2)); fc[p]++; ft[p] += d }
      if (name ~ /^(mount|umount2|fsopen|fsconfig|fsmount|move_mount)$/) { mt += d }
    }
    END {
      printf "syscalls of the benchmark thread inside the timed blocks: %d containers, %.1f ms of wall time in the blocks (%.3f ms per container)\n", n, wall * 1000, wall * 1000 / n
      printf "  %-14s %9s %10s %12s %8s\n", "syscall", "per_cont", "total_ms", "ms_per_cont", "share"
      for (k in cnt) printf "  %-14s %9.1f %10.1f %12.3f %7.1f%%\n", k, cnt[k] / n, tim[k] * 1000, tim[k] * 1000 / n, 100 * tim[k] / wall | "sort -k4,4gr | head -n 18"
      close("sort -k4,4gr | head -n 18")
      printf "  %-14s %9s %10.1f %12.3f %7.1f%%   (user space, runtime and strace overhead)\n", "(outside)", "", (wall - total) * 1000, (wall - total) * 1000 / n, 100 * (wall - total) / wall
      printf "  mount and umount syscalls together (fsopen, fsconfig, fsmount, move_mount, mount, umount2): %.3f ms per container (%.1f%%)\n", mt * 1000 / n, 100 * mt / wall
      print "fsyncs by file (STORE = the store root; per container):"
      for (p in fc) printf "  %5.2f x %8.3f ms = %7.3f ms  %s\n", fc[p] / n, ft[p] * 1000 / fc[p], ft[p] * 1000 / n, p | "sort -k5,5gr"
      close("sort -k5,5gr")
    }' "$trace"
  drop_fs
}

want() { [ -z "$only" ] || [ "$only" = "$1" ]; }
t0=$SECONDS
for t in ext4 xfs; do
  if want containers; then scenario containers "$t" --tar "$rootfs" -n "$n" --vfs "$vfs"; fi
done
for t in ext4 xfs; do
  if want diff; then scenario diff "$t" --tar "$rootfs" --reps "$diff_reps"; fi
done
for t in ext4 xfs; do
  if want copyup; then scenario copyup "$t" --reps "$copyup_reps"; fi
done
if [ "$profile_n" != 0 ]; then
  for t in ext4 xfs; do
    if want profile; then profile "$t"; fi
  done
fi

echo
echo "######## summary ($((SECONDS - t0)) s)"
for f in "${outs[@]}"; do
  base=$(basename "$f" .txt)
  echo "-- $base"
  awk '/^(goal|ratio|copy-up median|disk per vfs|same entries)/ { print "   " $0; next }
       /^disk per container/ { disk = 1; next }
       disk && /^what one container/ { disk = 0 }
       disk { print "   disk" $0; next }
       /^  (strata overlay|kernel floor|record rewrite|strata vfs|native|generic)[ ,]/ && !/remove/ { print "   " $0 }' "$f"
done
exit "$status"
