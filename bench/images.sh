#!/usr/bin/env bash
# Images and containers (issue 5), side by side in one run, on one freshly made ext4 loop filesystem
# (journalled, direct I/O; mkfs.ext4 -E lazy_itable_init=0,lazy_journal_init=0):
#   import  an OCI image layout holding the Debian rootfs from bench/rootfs.sh as one gzip layer (built
#           once per run: `gzip -n` of the rootfs tar, config with its diff id, manifest, index with ref
#           name "bench"; checked with `umoci stat`). Per repetition, each in fresh directories:
#             strata-import   strata --root FRESH_STORE image import LAYOUT -q   (its mounts dropped after)
#             umoci-unpack    umoci unpack --image LAYOUT:bench FRESH_DIR
#             umoci+sync      the same, then sync -f (Strata ends an import with syncfs: the like-for-like peer)
#             tar-xz          tar --numeric-owner --xattrs -xpzf LAYER_BLOB -C FRESH_DIR (reference)
#             tar-x           tar --numeric-owner --xattrs -xpf ROOTFS_TAR -C FRESH_DIR (reference, uncompressed)
#           Untimed sync and a wait for an idle machine before each command; order alternates by round;
#           medians of REPS after one warm-up round. Goal: strata-import at most 0.5x umoci-unpack.
#   create  the same image in a private dockerd (docker.io 20.10, -s overlay2, own data root on the same
#           filesystem, exec root, socket and pid file on tmpfs, --iptables=false --bridge=none), loaded
#           with `docker load` of `strata image export bench --format docker-archive`; and in a Strata
#           store on the same filesystem (imported once, untimed). Then CREATES x `strata --root STORE
#           container create bench` against CREATES x `docker create bench true`, in BLOCKS blocks whose
#           order alternates, each invocation timed as a whole (what a user pays: CLI start-up included).
#           A third side, strata-served, does the same creates on another store that `strata serve` owns
#           (as dockerd owns docker's): the CLI forwards each command to the daemon, which has the store
#           open, the way the docker client forwards to dockerd.
#           Also timed: strata --version and strata --root STORE info (.NET start-up), docker ps -q (the
#           docker client's fixed cost). Goal: Strata at least 5x faster per container (mean and median).
#   profile where strata's import time goes (skip with --no-profile): strata layer apply of the
#           uncompressed tar and of the gzip blob into fresh stores; gzip -dc, sha256sum, copy+fsync of
#           the blob; .NET GZipStream and SHA-256 throughput in-process (a small console project built in
#           the temp dir); and the phases of one import from `strace -f --seccomp-bpf -ttt` (blob store,
#           decompress+hash+apply, syncfs, the rest).
#
# Usage: bench/images.sh [-n REPS] [--creates N] [--blocks B] [--no-profile] [--tar FILE]
#   -n REPS       measured import repetitions per command (default 5), after one warm-up round
#   --creates N   timed creates per side (default 100)
#   --blocks B    interleaving blocks for the creates (default 5; N must be a multiple of B)
#   --no-profile  skip the profile part
#   --tar FILE    use this rootfs tar instead of the Debian rootfs from bench/rootfs.sh
# Env: QUIET_MAX (default 60) seconds to wait for an idle machine before each timed command or block
#      (0 = never); NOISY (default 0.05) seconds of other processes' user CPU during an import sample
#      that mark it disturbed (left out of the "clean" statistics, used when >= 3 clean samples);
#      STRATA_BIN=path measures that executable instead of a snapshot of ./strata's build.
# Everything is cleaned up on exit, also on failure: dockerd is stopped by pid (SIGTERM, then SIGKILL),
# mounts under the filesystem and the exec root are unmounted, the loop device is detached, the image
# and temp dirs are removed.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

reps=5
creates=100
blocks=5
profile=1
tarfile=""
quiet_max="${QUIET_MAX:-60}"
noisy="${NOISY:-0.05}"
while [ $# -gt 0 ]; do
  case "$1" in
    -n) reps="$2"; shift 2 ;;
    --creates) creates="$2"; shift 2 ;;
    --blocks) blocks="$2"; shift 2 ;;
    --no-profile) profile=""; shift ;;
    --tar) tarfile="$(realpath "$2")"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$creates" -lt "$blocks" ] || [ $((creates % blocks)) != 0 ]; then
  echo "$0: --creates $creates must be a positive multiple of --blocks $blocks" >&2; exit 2
fi
bench_need_root
bench_apt mkfs.ext4 e2fsprogs
bench_apt /usr/bin/time time
bench_apt umoci umoci
[ -z "$profile" ] || bench_apt strace strace
for f in /usr/sbin/dockerd /usr/bin/docker; do [ -x "$f" ] || { echo "$0: $f is missing (apt-get install docker.io)" >&2; exit 1; }; done
if [ -n "$profile" ] && ! command -v dotnet >/dev/null 2>&1; then echo "$0: the profile part needs the .NET SDK (or pass --no-profile)" >&2; exit 1; fi

work=""; mnt=""; dev=""; img=""; execdir=""; pid_docker=""; pid_serve=""; cg=""
cgroot=/sys/fs/cgroup/cpuacct
stop_dockerd() {
  local cpid
  [ -n "$pid_docker" ] || return 0
  bench_stop_pid "$pid_docker" 30
  pid_docker=""
  # dockerd stops the containerd it started; if it could not, stop that one too (by its pid file)
  if [ -r "$execdir/docker/containerd/containerd.pid" ]; then
    cpid=$(cat "$execdir/docker/containerd/containerd.pid")
    if [ -n "$cpid" ] && tr '\0' ' ' <"/proc/$cpid/cmdline" 2>/dev/null | grep -qF "$execdir/docker/"; then bench_stop_pid "$cpid" 10; fi
  fi
}
# umount_under DIR: unmounts everything mounted below DIR, deepest first
umount_under() {
  findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m"; done
}
cleanup() {
  set +e # a trap must finish its work even when one step fails
  stop_dockerd
  [ -z "$pid_serve" ] || bench_stop_pid "$pid_serve" 60
  if [ -n "$mnt" ]; then
    umount_under "$mnt"
    mountpoint -q "$mnt" && umount "$mnt"
    rmdir "$mnt"
  fi
  if [ -n "$dev" ] && losetup "$dev" >/dev/null 2>&1; then losetup -d "$dev"; fi
  [ -n "$img" ] && rm -f "$img"
  if [ -n "$execdir" ]; then
    umount_under "$execdir"
    rm -rf --one-file-system "$execdir"
  fi
  if [ -n "$cg" ] && [ -d "$cg" ]; then
    echo $$ >"$cgroot/cgroup.procs"
    rmdir "$cg" 2>/dev/null || echo "   (cgroup $cg still has processes: $(tr '\n' ' ' <"$cg/cgroup.procs"))" >&2
  fi
  [ -n "$work" ] && rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$tarfile" ]; then rootfs="$tarfile"; else rootfs=$("$bench_repo/bench/rootfs.sh"); fi
work=$(mktemp -d /var/tmp/strata-bench-images.XXXXXX)
strata=$(bench_strata_snapshot "$work/bin")
mkdir "$work/docker-config"
export DOCKER_CONFIG="$work/docker-config"

# the filesystem: the layout (gzip blob), per round a store (blob + tree), umoci's and tar's trees, dockerd's copy
gib=$(( $(stat -c %s "$rootfs") * 10 / 1073741824 + 2 ))
[ "$gib" -ge 8 ] || gib=8
img="$work.img"
truncate -s "${gib}G" "$img"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
dev=$(losetup --find --show --direct-io=on "$img")
mnt=$(mktemp -d /mnt/strata-bench-images.XXXXXX)
mount "$dev" "$mnt"
execdir=$(mktemp -d /run/strata-bench-images.XXXXXX)
fsdesc="ext4, $(tune2fs -l "$dev" | awk -F: '{ v = $2; gsub(/^[ \t]+|[ \t]+$/, "", v) } /^Block size/ { b = v } /^Inode size/ { i = v } /^Filesystem features/ { f = v } END { printf "%s-byte blocks, %s-byte inodes, features: %s", b, i, f }')"

# ---- the OCI layout: one gzip layer, built once ----
layout="$mnt/layout"
bench_oci_layout "$layout" "$rootfs" bench bench/images.sh
blob="$layout/blobs/sha256/${layer_digest#sha256:}"
umoci stat --image "$layout:bench" >/dev/null || { echo "$0: umoci does not accept the layout it was given" >&2; exit 1; }
cat "$rootfs" "$blob" >/dev/null

entries=$(tar -tf "$rootfs" | wc -l)
echo "== images benchmark (issue 5): import vs umoci unpack, container create vs docker create"
echo "== $(bench_machine)"
echo "== strata: $strata ($("$strata" --version)); $(umoci --version); $(tar --version | head -1); $(/usr/sbin/dockerd --version)"
echo "== filesystem: fresh ${gib} GiB sparse image on $(findmnt -n -o FSTYPE -T "$work") $img, loop $dev (direct I/O), mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 (journalled), mounted at $mnt"
echo "==   $fsdesc"
echo "== rootfs: $rootfs ($(stat -c %s "$rootfs") bytes, $entries entries, diff id $diffid)"
echo "== layout: $layout, one layer $layer_digest ($layer_size bytes, gzip -6 -n), ref name bench; umoci stat accepts it"
echo "== imports: $reps measured rounds (+1 warm-up), warm page cache, untimed sync + wait for idle before each command, order alternates"
echo "== creates: $creates per side in $blocks blocks (order alternates); docker exec root, socket and pid file on tmpfs $execdir"
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

times="$work/times"
: >"$times"
# timed NAME REP CMD...: runs CMD after an untimed sync and once the machine is quiet; records
# "NAME wall user sys rep foreign" unless REP is 0 (warm-up); foreign = user CPU seconds other processes
# used meanwhile (a sample with much of it was disturbed)
timed() {
  local name="$1" rep="$2" t0 t1 b0 b1 u s
  shift 2
  sync -f "$mnt"
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
tarxz() { tar --numeric-owner --xattrs -xpzf "$blob" -C "$1"; }
tarx() { tar --numeric-owner --xattrs -xpf "$rootfs" -C "$1"; }
umocis() { umoci unpack --image "$layout:bench" "$1" && sync -f "$1"; }
export -f tarxz tarx umocis
export blob rootfs layout

# ---- part 1: import ----
echo
echo "######## import: strata image import vs umoci unpack (and tar -x for scale)"
checks=""
for i in $(seq 0 "$reps"); do
  r="$mnt/r$i"
  mkdir -p "$r/tar-xz" "$r/tar-x"
  s_import() { timed strata-import "$i" "$strata" --root "$r/store" image import "$layout" -q; }
  s_umoci() { timed umoci-unpack "$i" umoci unpack --image "$layout:bench" "$r/umoci"; }
  s_umocis() { timed umoci+sync "$i" bash -c 'umocis "$1"' _ "$r/umoci-sync"; }
  s_tarxz() { timed tar-xz "$i" bash -c 'tarxz "$1"' _ "$r/tar-xz"; }
  s_tarx() { timed tar-x "$i" bash -c 'tarx "$1"' _ "$r/tar-x"; }
  if [ $((i % 2)) = 1 ]; then s_import; s_umoci; s_umocis; s_tarxz; s_tarx; else s_tarx; s_tarxz; s_umocis; s_umoci; s_import; fi
  if [ "$i" = 1 ]; then
    ids=$("$strata" --root "$r/store" image ls | tail -n +2 | tr -s ' ')
    cid=$("$strata" --root "$r/store" container create "$config_digest")
    m=$("$strata" --root "$r/store" container mount "$cid")
    # diff does not compare device nodes: it reports each pair, also when both are the same kind of node
    diff -r --no-dereference -q "$m" "$r/umoci/rootfs" 2>&1 | grep -vE ' is a (.+) while file .* is a \1$' >"$work/diff.txt" || true
    if [ ! -s "$work/diff.txt" ]; then same="identical (device nodes: same kind on both sides, not compared further)"; else same="DIFFERENT ($(wc -l <"$work/diff.txt") lines of diff -rq)"; fi
    "$strata" --root "$r/store" container unmount "$cid" >/dev/null
    "$strata" --root "$r/store" container rm "$cid" >/dev/null
    checks="== check: strata image ls after import: $(echo "$ids" | tr '\n' ';')
== check: a container's mounted rootfs vs umoci's rootfs (diff -r, contents and names): $same"
  fi
  umount_under "$r"
  rm -rf --one-file-system "$r"
  echo "   round $i done$([ "$i" = 0 ] && echo ' (warm-up, not counted)')" >&2
done
echo "== load average at end of imports: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$checks"
[ ! -s "$work/diff.txt" ] || sed -E 's/^/     /' "$work/diff.txt" | head -n 10

clean="$work/times.clean"
awk -v t="$noisy" '$6 <= t' "$times" >"$clean"
table() {
  printf '  %-16s %3s %9s %9s %9s %8s %8s\n' command n median_s min_s max_s user_s sys_s
  bench_stats "$1" | while read -r name n med min max us ss; do
    printf '  %-16s %3s %9s %9s %9s %8s %8s\n' "$name" "$n" "$med" "$min" "$max" "$us" "$ss"
  done
}
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
summary="$work/summary"
: >"$summary"
for pair in "strata-import umoci-unpack" "strata-import umoci+sync" "strata-import tar-xz" "strata-import tar-x"; do
  set -- $pair
  m=$(ratio "$(get "$1" 3)" "$(get "$2" 3)"); n=$(ratio "$(get "$1" 4)" "$(get "$2" 4)")
  goal=""
  [ "$2" = umoci-unpack ] && goal="  goal <= 0.5x: $(awk -v r="$m" 'BEGIN { print (r <= 0.5 ? "met" : "MISSED") }')"
  printf 'ratio %-13s / %-12s median %5sx  min %5sx  (%s/%s samples)%s\n' "$1" "$2" "$m" "$n" "$(which "$1")" "$(which "$2")" "$goal" | tee -a "$summary"
done
printf 'import medians: strata %s s, umoci unpack %s s, umoci unpack + sync -f %s s, tar -xzf %s s, tar -xf %s s\n' \
  "$(get strata-import 3)" "$(get umoci-unpack 3)" "$(get umoci+sync 3)" "$(get tar-xz 3)" "$(get tar-x 3)" | tee -a "$summary"

# ---- part 2: container create ----
echo
echo "######## create: strata container create vs docker create (overlay2)"
cstore="$mnt/cstore"
"$strata" --root "$cstore" image import "$layout" --name bench -q >/dev/null
echo "strata store $cstore: driver $("$strata" --root "$cstore" info 2>/dev/null | awk -F': *' 'tolower($1) ~ /driver/ { print $2; exit }')"
"$strata" --root "$cstore" image export bench -o "$work/bench-docker.tar" --format docker-archive
# from here on every process the script starts (dockerd, its containerd, the clients, strata) is
# accounted in the cpuacct cgroup $cg, so each create sample records the user CPU others used meanwhile
if [ -r "$cgroot/cpuacct.usage_user" ]; then
  cg="$cgroot/strata-bench-images.$$"
  mkdir "$cg"
  echo $$ >"$cg/cgroup.procs"
fi
/usr/sbin/dockerd --data-root "$mnt/docker" --exec-root "$execdir/docker" -H "unix://$execdir/docker.sock" \
  --pidfile "$execdir/docker.pid" --iptables=false --ip-masq=false --bridge=none -s overlay2 \
  >>"$work/dockerd.log" 2>&1 &
pid_docker=$!
dk() { /usr/bin/docker -H "unix://$execdir/docker.sock" "$@"; }
for ((i = 0; i < 600; i++)); do
  dk version >/dev/null 2>&1 && break
  kill -0 "$pid_docker" 2>/dev/null || break
  sleep 0.1
done
if ! dk version >/dev/null 2>&1; then tail -n 20 "$work/dockerd.log" >&2; echo "$0: dockerd did not start" >&2; exit 1; fi
[ "$(dk info --format '{{.Driver}}')" = overlay2 ] || { echo "$0: dockerd is not using overlay2" >&2; exit 1; }
dk load -q -i "$work/bench-docker.tar" >/dev/null
dimage=$(dk images -q | head -1)
sid=$("$strata" --root "$cstore" image inspect bench | grep -oE 'sha256:[0-9a-f]{64}' | head -1)
echo "docker image $(dk images --no-trunc -q | head -1) ($(dk images --format '{{.Repository}}:{{.Tag}}' | head -1)); strata image id $sid"

csamples="$work/csamples"
: >"$csamples"
cnoisy="${CNOISY:-0.01}"
# ctimed SIDE BLOCK CMD...: one timed invocation; records "SIDE BLOCK us others_ms" (BLOCK 0: not
# recorded); others_ms = user CPU that processes outside this run's cgroup used meanwhile (0 without cgroup v1)
ctimed() {
  local side="$1" block="$2" t0 t1 r0=0 r1=0 o0=0 o1=0
  shift 2
  if [ -n "$cg" ]; then read -r r0 <"$cgroot/cpuacct.usage_user"; read -r o0 <"$cg/cpuacct.usage_user"; fi
  t0=$EPOCHREALTIME
  "$@" </dev/null >>"$work/ids-$side" 2>"$work/err" || { echo "$0: $* failed: $(cat "$work/err")" >&2; exit 1; }
  t1=$EPOCHREALTIME
  if [ -n "$cg" ]; then read -r r1 <"$cgroot/cpuacct.usage_user"; read -r o1 <"$cg/cpuacct.usage_user"; fi
  [ "$block" = 0 ] && return 0
  echo "$side $block $(( ${t1/./} - ${t0/./} )) $(( (r1 - r0 - (o1 - o0)) / 1000000 ))" >>"$csamples"
}
s_creates() { local b="$1" n="$2" k; for ((k = 0; k < n; k++)); do ctimed strata-create "$b" "$strata" --root "$cstore" container create bench; done; }
v_creates() { local b="$1" n="$2" k; for ((k = 0; k < n; k++)); do ctimed strata-served "$b" "$strata" --root "$sstore" container create bench; done; }
d_creates() { local b="$1" n="$2" k; for ((k = 0; k < n; k++)); do ctimed docker-create "$b" dk create "$dimage" true; done; }
# the served store: strata serve owns it (its Docker plugin socket in the private exec root, unused)
sstore="$mnt/sstore"
"$strata" --root "$sstore" image import "$layout" --name bench -q >/dev/null
"$strata" --root "$sstore" serve --docker-plugin "strata-bench-$$" --plugin-dir "$execdir/plugins" >>"$work/serve.log" 2>&1 &
pid_serve=$!
for ((i = 0; i < 300; i++)); do
  [ -S "$sstore/strata.sock" ] && "$strata" --root "$sstore" image ls >/dev/null 2>&1 && break
  kill -0 "$pid_serve" 2>/dev/null || break
  sleep 0.1
done
[ -S "$sstore/strata.sock" ] || { tail -n 20 "$work/serve.log" >&2; echo "$0: strata serve did not start" >&2; exit 1; }
echo "strata serve (pid $pid_serve) owns $sstore"
# warm-up, unmeasured
s_creates 0 3; d_creates 0 3; v_creates 0 3
per=$((creates / blocks))
for ((b = 1; b <= blocks; b++)); do
  for side in $([ $((b % 2)) = 1 ] && echo "strata docker served" || echo "served docker strata"); do
    sync -f "$mnt"; bench_wait_quiet "$quiet_max"
    case "$side" in strata) s_creates "$b" "$per" ;; docker) d_creates "$b" "$per" ;; served) v_creates "$b" "$per" ;; esac
  done
  sync -f "$mnt"; bench_wait_quiet "$quiet_max"
  for k in 1 2 3 4 5; do
    ctimed strata-version "$b" "$strata" --version
    ctimed strata-info "$b" "$strata" --root "$cstore" info
    ctimed docker-ps "$b" dk ps -q
  done
  echo "   create block $b of $blocks done" >&2
done
echo "== load average at end of creates: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "containers at the end: strata $("$strata" --root "$cstore" container ls -a | tail -n +2 | wc -l), served $("$strata" --root "$sstore" container ls -a | tail -n +2 | wc -l), docker $(dk ps -aq | wc -l) (3 warm-up creates each included)"
# cstat SIDE [clean]: "n mean p50 p90 min max" in ms, of all samples or of the clean ones
cstat() {
  awk -v s="$1" -v c="${2:-}" -v t="$cnoisy" '$1 == s && (c == "" || $4 <= t * 1000) { print $3 / 1000 }' "$csamples" | sort -g | awk '
    { v[++n] = $1; sum += $1 }
    END { if (!n) exit; p50 = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; i90 = int(0.9 * n + 0.999); if (i90 < 1) i90 = 1
          printf "%d %.2f %.2f %.2f %.2f %.2f\n", n, sum / n, p50, v[i90], v[1], v[n] }'
}
for c in "" clean; do
  if [ -z "$c" ]; then echo "all samples:"; else echo "clean samples (other processes used <= $cnoisy s of user CPU meanwhile):"; fi
  printf '  %-15s %4s %8s %8s %8s %8s %8s   (ms per invocation, wall clock)\n' what n mean p50 p90 min max
  for s in strata-create strata-served docker-create strata-version strata-info docker-ps; do
    read -r n mean p50 p90 mn mx < <(cstat "$s" "$c"; echo)
    printf '  %-15s %4s %8s %8s %8s %8s %8s\n' "$s" "${n:-0}" "$mean" "$p50" "$p90" "$mn" "$mx"
  done
done
echo "raw create samples, ms (others' user CPU in ms when > 0), in order:"
for s in strata-create strata-served docker-create; do
  printf '  %-15s %s\n' "$s" "$(awk -v s="$s" '$1 == s { printf "%.1f%s ", $3 / 1000, ($4 > 0 ? "(" $4 ")" : "") }' "$csamples")"
done
echo "p50 per block (ms):"
for s in strata-create strata-served docker-create; do
  printf '  %-15s %s\n' "$s" "$(for ((b = 1; b <= blocks; b++)); do awk -v s="$s" -v b="$b" '$1 == s && $2 == b { print $3 / 1000 }' "$csamples" | sort -g | awk '{ v[++n] = $1 } END { printf "%.1f ", (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'; done)"
done
# the goal on the clean samples when each side has at least 10 of them, else on all
which_c="clean"
for s in strata-create strata-served docker-create; do
  [ "$(cstat "$s" clean | cut -d' ' -f1)" -ge 10 ] 2>/dev/null || which_c=""
done
read -r _ smean sp50 _ < <(cstat strata-create $which_c)
read -r _ dmean dp50 _ < <(cstat docker-create $which_c)
read -r _ emean ep50 _ < <(cstat strata-served $which_c)
read -r _ vmean vp50 _ < <(cstat strata-version $which_c)
read -r _ imean ip50 _ < <(cstat strata-info $which_c)
echo "(create statistics below: ${which_c:-all} samples)" | tee -a "$summary"
{
  printf 'create: strata mean %s ms, p50 %s ms; docker mean %s ms, p50 %s ms\n' "$smean" "$sp50" "$dmean" "$dp50"
  printf 'speed-up docker/strata per create: mean %sx, p50 %sx  goal >= 5x: %s\n' "$(ratio "$dmean" "$smean")" "$(ratio "$dp50" "$sp50")" \
    "$(awk -v a="$(ratio "$dmean" "$smean")" -v b="$(ratio "$dp50" "$sp50")" 'BEGIN { print (a >= 5 && b >= 5 ? "met" : "MISSED") }')"
  printf 'served (strata serve owns the store): strata mean %s ms, p50 %s ms; speed-up docker/served: mean %sx, p50 %sx  goal >= 5x: %s\n' "$emean" "$ep50" \
    "$(ratio "$dmean" "$emean")" "$(ratio "$dp50" "$ep50")" "$(awk -v a="$(ratio "$dmean" "$emean")" -v b="$(ratio "$dp50" "$ep50")" 'BEGIN { print (a >= 5 && b >= 5 ? "met" : "MISSED") }')"
  printf 'strata start-up: --version p50 %s ms, info p50 %s ms; strata create minus --version p50 %s ms\n' "$vp50" "$ip50" "$(awk -v a="$sp50" -v b="$vp50" 'BEGIN { printf "%.2f", a - b }')"
} | tee -a "$summary"
stop_dockerd
bench_stop_pid "$pid_serve" 60; pid_serve=""

# ---- part 3: profile of the import ----
if [ -n "$profile" ]; then
  echo
  echo "######## profile: where strata image import's time goes"
  p="$mnt/p"
  mkdir -p "$p"
  zcat "$blob" >"$p/layer.tar"
  pt() { timed "$@"; }
  : >"$times"
  for i in $(seq 0 "$reps"); do
    pt p-import "$i" "$strata" --root "$p/s1" image import "$layout" -q
    pt p-apply-tar "$i" "$strata" --root "$p/s2" layer apply base -i "$p/layer.tar"
    pt p-apply-gz "$i" "$strata" --root "$p/s3" layer apply base -i "$blob"
    pt p-gzip-dc "$i" bash -c 'gzip -dc "$1" >/dev/null' _ "$blob"
    pt p-sha256sum "$i" sha256sum "$p/layer.tar"
    pt p-blob-copy "$i" bash -c 'cat "$1" >"$2" && sync -f "$2"' _ "$blob" "$p/blobcopy"
    pt p-version "$i" "$strata" --version
    umount_under "$p"
    rm -rf --one-file-system "$p/s1" "$p/s2" "$p/s3" "$p/blobcopy"
  done
  echo "(wall seconds, fresh store each; warm cache)"
  table "$times"
  # .NET in-process throughput: GZipStream, SHA-256, both (as the import reads the layer: gunzip, hash, then apply)
  mkdir -p "$work/gz"
  cat >"$work/gz/gz.csproj" <<'EOF'
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><OutputType>Exe</OutputType><TargetFramework>net10.0</TargetFramework><Nullable>enable</Nullable><ImplicitUsings>enable</ImplicitUsings><InvariantGlobalization>true</InvariantGlobalization></PropertyGroup>
</Project>
EOF
  cat >"$work/gz/Program.cs" <<'EOF'
using System.Diagnostics;
using System.IO.Compression;
using System.Security.Cryptography;
string gz = args[0], tar = args[1];
static double Run(Func<long> f) { var sw = Stopwatch.StartNew(); f(); return sw.Elapsed.TotalSeconds; }
static long Drain(Stream s, bool hash) {
  using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
  var buf = new byte[1 << 16]; long t = 0; int n;
  while ((n = s.Read(buf, 0, buf.Length)) > 0) { if (hash) h.AppendData(buf, 0, n); t += n; }
  return t;
}
Stream Open(string p) => new FileStream(p, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
for (int rep = 0; rep < 4; rep++) {
  double a = Run(() => { using var s = new GZipStream(Open(gz), CompressionMode.Decompress); return Drain(s, false); });
  double b = Run(() => { using var s = Open(tar); return Drain(s, true); });
  double c = Run(() => { using var s = new GZipStream(Open(gz), CompressionMode.Decompress); return Drain(s, true); });
  double d = Run(() => { using var s = Open(gz); return Drain(s, true); });
  if (rep > 0) Console.WriteLine($"dotnet-inproc rep {rep}: gunzip {a:F3} s, sha256 of tar {b:F3} s, gunzip+sha256 {c:F3} s, sha256 of gz blob {d:F3} s");
}
EOF
  if log=$(dotnet build "$work/gz/gz.csproj" -c Release -nologo -v quiet -o "$work/gz/out" 2>&1); then
    bench_wait_quiet "$quiet_max"
    dotnet "$work/gz/out/gz.dll" "$blob" "$p/layer.tar"
  else
    echo "$log" | tail -n 5; echo "(the .NET throughput probe did not build; skipped)"
  fi
  # phases of one import, from the syscalls that bound them
  umount_under "$p"; rm -rf --one-file-system "$p/s4"
  sync -f "$mnt"; bench_wait_quiet "$quiet_max"
  strace -f --seccomp-bpf -ttt -T -y -e trace=execve,openat,rename,renameat,renameat2,fsync,fdatasync,syncfs,exit_group -o "$work/strace.txt" \
    "$strata" --root "$p/s4" image import "$layout" -q >/dev/null
  # lines: PID START_TIME CALL ... <DURATION>; a call another thread interrupted is split into
  # "... <unfinished ...>" and "<... NAME resumed> ... <DURATION>"
  awk -v blob="${layer_digest#sha256:}" '
    function dur(   d) { return match($0, /<[0-9.]+>$/) ? substr($0, RSTART + 1, RLENGTH - 2) + 0 : -1 }
    { ts = $2 + 0; d = dur() }
    NR == 1 { t0 = ts }
    /openat\(.*\/tmp\/blob-/ && /O_CREAT/ && !bs { bs = ts }
    /rename.*\/tmp\/blob-/ && !be { be = ts }
    be && !as && /openat\(/ && index($0, "/images/blobs/sha256/" blob "\"") { as = ts }
    as && !ss && /syncfs\(/ { ss = ts; if (d >= 0) se = ts + d }
    ss && !se && /<\.\.\. syncfs resumed>/ { se = ts + (d > 0 ? d : 0) }
    /(fsync|fdatasync|syncfs)\(/ { nf++ }
    /(fsync|fdatasync)\(/ && d >= 0 { fs += d }
    { last = ts + (d > 0 ? d : 0) }
    END {
      printf "phases of one import (strace -f --seccomp-bpf -T; traced: execve openat rename* fsync fdatasync syncfs exit_group):\n"
      if (!bs || !be || !as) { print "  (could not find the phase boundaries)"; exit }
      printf "  start-up, reading the layout, up to the blob copy   %7.3f s\n", bs - t0
      printf "  storing the gzip blob (copy + sha256 + fsync)       %7.3f s\n", be - bs
      printf "  from the rename to opening the blob for applying    %7.3f s\n", as - be
      if (ss) {
        printf "  gunzip + sha256 (diff id) + apply, up to syncfs     %7.3f s\n", ss - as
        printf "  syncfs                                              %7.3f s\n", (se ? se : ss) - ss
        printf "  after syncfs (records, exit)                        %7.3f s\n", last - (se ? se : ss)
      } else printf "  gunzip + sha256 + apply + the rest (no syncfs seen) %7.3f s\n", last - as
      printf "  total                                               %7.3f s; %d fsync/fdatasync/syncfs calls, fsync+fdatasync %.3f s\n", last - t0, nf, fs
    }' "$work/strace.txt" | tee -a "$summary"
  echo "fsync/fdatasync/syncfs by file (count, total s; STORE = the fresh store):"
  grep -E '(fsync|fdatasync|syncfs)\(' "$work/strace.txt" | sed -E "s|$p/s4|STORE|g; s/[0-9a-f]{64}/<hex>/g; s/[0-9a-f]{32}/<guid>/g" |
    awk '{ c = $3; sub(/\(.*/, "", c); f = $3; sub(/^[^<]*</, "", f); sub(/>.*/, "", f); d = 0; if (match($0, /<[0-9.]+>$/)) d = substr($0, RSTART + 1, RLENGTH - 2)
           k = c " " f; n[k]++; t[k] += d } END { for (k in n) printf "  %3d %8.4f  %s\n", n[k], t[k], k }' | sort -k2,2gr
  umount_under "$p"
fi

echo
echo "######## summary"
cat "$summary"
