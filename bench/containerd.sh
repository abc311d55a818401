#!/usr/bin/env bash
# Strata as containerd's snapshotter (issue 19) against containerd's built-in overlayfs snapshotter, side by side in
# one run, with one private containerd (Debian's containerd 1.6: /usr/bin/containerd, ctr, containerd-shim-runc-v2)
# whose config.toml names one proxy plugin per Strata driver benched:
#   [proxy_plugins.strata-DRIVER] type = "snapshot", address = SOCKET of
#   `strata --root STORE --driver DRIVER serve --snapshotter-socket SOCKET --plugin-dir DIR` (a snapshot of ./strata's
#   build; its Docker plugin socket goes unused into a temp DIR)
# containerd's root (content store, metadata, its overlayfs snapshots), Strata's stores and the registry's storage share
# one freshly made, journalled ext4 loop filesystem (direct I/O); containerd's state dir and all sockets are on tmpfs.
# The image: the Debian rootfs from bench/rootfs.sh as an OCI layout with one gzip layer (`gzip -n`), pushed with
# `skopeo copy oci:LAYOUT docker://127.0.0.1:PORT/bench/debian:bookworm` to a private registry (Debian's
# docker-registry, own config and storage, on loopback). Parts:
#   run   RUNS x `ctr run --rm --snapshotter S IMAGE ID true` per snapshotter, in blocks of 10 whose order rotates;
#         the image pulled (and unpacked) into every snapshotter beforehand, 2 unmeasured runs each first.
#         Goal: strata at most 1.05x overlayfs at p50.
#   ops   Prepare(key, parent) + Mounts(key) + Remove(key), OPS times per side, each call timed in the gRPC client
#         bench/Strata.SnapshotterBench (one process; blocks of 100 whose order rotates): straight to the snapshotter
#         socket of a second strata serve per driver, on a store of its own that containerd does not use (goal: the
#         three under 1 ms at p50), and through containerd's socket
#         (containerd.services.snapshots.v1.Snapshots, namespace header) for overlayfs and for each strata-DRIVER.
#   pull  PULLS x `ctr images pull --plain-http --snapshotter S REF` (download from the registry + unpack) per
#         snapshotter, order rotating, each after `ctr images rm --sync` (content and snapshots garbage-collected).
#         Goal: strata at most 0.8x overlayfs at p50.
# Before each timed block or pull: sync and a wait for an idle machine (at most QUIET_MAX seconds). A driver that strata
# refuses (serve exits, or its first Prepare fails) gets "skipped: REASON" rows instead of numbers.
#
# Usage: bench/containerd.sh [-n RUNS] [--ops N] [--pulls N] [--tar FILE] [DRIVER...]   (drivers default: overlay thin)
#   -n RUNS     timed `ctr run --rm` per snapshotter (default 50, a multiple of 10)
#   --ops N     timed Prepare + Mounts + Remove rounds per side (default 1000, a multiple of 100)
#   --pulls N   timed pulls per snapshotter (default 5)
#   --tar FILE  the rootfs tar to make the image of (default: bench/rootfs.sh's Debian rootfs; needs /bin/true)
# Env: QUIET_MAX (default 10) seconds to wait for an idle machine; STRATA_BIN=path measures that executable.
# Everything is cleaned up on exit, also on failure: containerd (and any shim of its), strata serve and the registry are
# stopped by pid, mounts under the filesystem are unmounted, the loop device detached, image and temp dirs removed,
# and the namespace's cgroups removed.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

runs=50
ops=1000
pulls=5
tarfile=""
drivers=()
quiet_max="${QUIET_MAX:-10}"
while [ $# -gt 0 ]; do
  case "$1" in
    -n) runs="$2"; shift 2 ;;
    --ops) ops="$2"; shift 2 ;;
    --pulls) pulls="$2"; shift 2 ;;
    --tar) tarfile="$(realpath "$2")"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "$0: unknown argument $1" >&2; exit 2 ;;
    *) drivers+=("$1"); shift ;;
  esac
done
[ "${#drivers[@]}" -gt 0 ] || drivers=(overlay thin)
if [ "$runs" -lt 10 ] || [ $((runs % 10)) != 0 ] || [ "$ops" -lt 100 ] || [ $((ops % 100)) != 0 ] || [ "$pulls" -lt 1 ]; then
  echo "$0: -n must be a multiple of 10, --ops a multiple of 100, --pulls at least 1" >&2; exit 2
fi
bench_need_root
bench_apt mkfs.ext4 e2fsprogs
bench_apt docker-registry docker-registry
bench_apt skopeo skopeo
bench_apt curl curl
for f in /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2; do [ -x "$f" ] || { echo "$0: $f is missing (apt-get install containerd)" >&2; exit 1; }; done
command -v dotnet >/dev/null 2>&1 || { echo "$0: needs the .NET SDK for the gRPC client" >&2; exit 1; }

ns="strata-bench-$$"
work=""; mnt=""; dev=""; img=""; rundir=""; pid_containerd=""; pid_registry=""
declare -A pid_strata=()
umount_under() {
  findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m"; done
}
stop_containerd() {
  local p
  bench_stop_pid "$pid_containerd" 30
  pid_containerd=""
  # shims of this containerd outlive it (they are started with -address OUR_SOCKET): any left by a failed run
  [ -n "$rundir" ] || return 0
  for p in $(pgrep -f -- "-address $rundir/containerd.sock" || true); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "-namespace $ns" && bench_stop_pid "$p" 5
  done
}
cleanup() {
  set +e # a trap must finish its work even when one step fails
  stop_containerd
  for d in "${!pid_strata[@]}"; do bench_stop_pid "${pid_strata[$d]}" 60; done
  bench_stop_pid "$pid_registry" 10
  if [ -n "$mnt" ]; then
    umount_under "$mnt"
    mountpoint -q "$mnt" && umount "$mnt"
    rmdir "$mnt"
  fi
  if [ -n "$dev" ] && losetup "$dev" >/dev/null 2>&1; then losetup -d "$dev"; fi
  [ -n "$img" ] && rm -f "$img"
  if [ -n "$rundir" ]; then
    umount_under "$rundir"
    rm -rf --one-file-system "$rundir"
  fi
  for d in /sys/fs/cgroup/*/"$ns"; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
  [ -n "$work" ] && rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$tarfile" ]; then rootfs="$tarfile"; else rootfs=$("$bench_repo/bench/rootfs.sh"); fi
tar -tf "$rootfs" | grep -E '^(\./)?(usr/)?bin/true$' >/dev/null || { echo "$0: $rootfs has no /bin/true" >&2; exit 1; }
work=$(mktemp -d /var/tmp/strata-bench-containerd.XXXXXX)
strata=$(bench_strata_snapshot "$work/bin")
mkdir "$work/client"
bench_build_dotnet Strata.SnapshotterBench "$work/client"
client() { dotnet "$work/client/Strata.SnapshotterBench.dll" "$@"; }

# the filesystem: the layout, the registry's copy, containerd's content + overlayfs snapshots, one store per driver
gib=$(( $(stat -c %s "$rootfs") * (8 + 2 * ${#drivers[@]}) / 1073741824 + 2 ))
[ "$gib" -ge 8 ] || gib=8
img="$work.img"
truncate -s "${gib}G" "$img"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
dev=$(losetup --find --show --direct-io=on "$img")
mnt=$(mktemp -d /mnt/strata-bench-containerd.XXXXXX)
mount "$dev" "$mnt"
rundir=$(mktemp -d /run/strata-bench-containerd.XXXXXX)

# ---- the image: an OCI layout with one gzip layer, pushed to a private registry on loopback ----
layout="$mnt/layout"
bench_oci_layout "$layout" "$rootfs" bookworm bench/containerd.sh

port=""
for p in $(seq 5100 5199); do
  if [ -z "$(ss -Hltn "sport = :$p")" ]; then port=$p; break; fi
done
[ -n "$port" ] || { echo "$0: no free port in 5100-5199 for the registry" >&2; exit 1; }
mkdir "$mnt/registry"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $mnt/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pid_registry=$!
for ((i = 0; i < 100; i++)); do
  curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break
  kill -0 "$pid_registry" 2>/dev/null || break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$port/v2/" >/dev/null || { cat "$work/registry.log" >&2; echo "$0: the registry did not start" >&2; exit 1; }
ref="127.0.0.1:$port/bench/debian:bookworm"
skopeo copy -q --dest-tls-verify=false "oci:$layout:bookworm" "docker://$ref" >/dev/null

# ---- strata serve, two per driver: one for containerd, one (on a store of its own) for the direct ops ----
# (the direct ops cannot share containerd's store: containerd's gc removes every snapshot of a proxy snapshotter that its
# metadata does not know, so snapshots made straight on that socket vanish while containerd removes its own)
declare -A skipped=()
# start_strata NAME DRIVER: strata serve --driver DRIVER on store $mnt/store-NAME, socket $rundir/NAME.sock; false when it
# does not start (the reason in $why)
start_strata() {
  local name="$1" d="$2" parent="${3:-$mnt}" sock="$rundir/$1.sock" log="$work/$1.log" i
  mkdir "$rundir/plugins-$name" "$parent/store-$name"
  local opts=()
  # thin: a pool the bench's filesystem can hold (the default 100 GiB sparse data file is more than its free space,
  # which thin.min_free_space counts)
  [ "$d" != thin ] || opts=(--storage-opt thin.datasize=4G)
  "$strata" --root "$parent/store-$name" --driver "$d" "${opts[@]}" serve --snapshotter-socket "$sock" --plugin-dir "$rundir/plugins-$name" \
    --docker-plugin "bench-$name" >"$log" 2>&1 &
  pid_strata[$name]=$!
  for ((i = 0; i < 600; i++)); do
    [ -S "$sock" ] && grep -q "serving store" "$log" && return 0
    kill -0 "${pid_strata[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  why="strata --driver $d serve did not start: $(grep -v '^\s*$' "$log" | tail -n 1)"
  return 1
}
sides=(overlayfs) # containerd snapshotter names, built-in first
proxies=""
for d in "${drivers[@]}"; do
  why=""
  if start_strata "strata-$d" "$d" && ! probe=$(client probe --target "strata-$d=$rundir/strata-$d.sock,strata-$d"); then
    why="strata --driver $d serve refused a Prepare: ${probe#refused strata-$d: }"
  fi
  [ -n "$why" ] || start_strata "strata-$d-direct" "$d" || true
  # the same on a store in tmpfs ($rundir): what a call costs without the disk's flushes (not durable: a reference only)
  if [ -z "$why" ] && ! { start_strata "strata-$d-tmpfs" "$d" "$rundir" &&
    client probe --target "strata-$d-tmpfs=$rundir/strata-$d-tmpfs.sock,strata-$d" >/dev/null; }; then
    [ -z "${pid_strata[strata-$d-tmpfs]:-}" ] || { bench_stop_pid "${pid_strata[strata-$d-tmpfs]}" 60; unset "pid_strata[strata-$d-tmpfs]"; }
  fi
  if [ -n "$why" ]; then
    skipped[$d]="$why"
    for n in "strata-$d" "strata-$d-direct" "strata-$d-tmpfs"; do [ -z "${pid_strata[$n]:-}" ] || { bench_stop_pid "${pid_strata[$n]}" 60; unset "pid_strata[$n]"; }; done
    continue
  fi
  sides+=("strata-$d")
  proxies+="
[proxy_plugins.strata-$d]
  type = \"snapshot\"
  address = \"$rundir/strata-$d.sock\"
"
done

# ---- the private containerd ----
cat >"$work/config.toml" <<EOF
version = 2
root = "$mnt/containerd"
state = "$rundir/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$rundir/containerd.sock"
[ttrpc]
  address = "$rundir/containerd.sock.ttrpc"
[debug]
  address = "$rundir/containerd-debug.sock"
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$mnt/opt"
$proxies
EOF
/usr/bin/containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
pid_containerd=$!
cr() { /usr/bin/ctr --address "$rundir/containerd.sock" --namespace "$ns" "$@"; }
for ((i = 0; i < 300; i++)); do
  cr version >/dev/null 2>&1 && break
  kill -0 "$pid_containerd" 2>/dev/null || break
  sleep 0.1
done
cr version >/dev/null 2>&1 || { tail -n 20 "$work/containerd.log" >&2; echo "$0: containerd did not start" >&2; exit 1; }
failed() {
  echo "$0: $*" >&2
  echo "-- containerd log, last lines:" >&2; tail -n 15 "$work/containerd.log" >&2
  for d in "${!pid_strata[@]}"; do echo "-- strata serve ($d) log, last lines:" >&2; tail -n 15 "$work/$d.log" >&2; done
  exit 1
}

echo "== containerd snapshotter benchmark (issue 19): containerd's built-in overlayfs vs strata serve --snapshotter-socket"
echo "== $(bench_machine)"
echo "== $(/usr/bin/containerd --version); $(runc --version 2>/dev/null | head -1); $(skopeo --version); docker-registry $(dpkg-query -W -f '${Version}' docker-registry)"
echo "== strata: $strata ($("$strata" --version)); drivers asked: ${drivers[*]}; snapshotters benched: ${sides[*]}"
for d in "${drivers[@]}"; do [ -z "${skipped[$d]:-}" ] || echo "== skipped strata-$d: ${skipped[$d]}"; done
echo "== filesystem: fresh ${gib} GiB sparse image on $(findmnt -n -o FSTYPE -T "$work") $img, loop $dev (direct I/O), mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 (journalled), mounted at $mnt:"
echo "==   containerd root $mnt/containerd, strata stores $mnt/store-strata-DRIVER (containerd's) and $mnt/store-strata-DRIVER-direct, registry storage $mnt/registry; containerd state and sockets in $rundir (tmpfs)"
echo "== image: $ref, pushed with skopeo copy from an OCI layout of $rootfs ($(stat -c %s "$rootfs") bytes, $(tar -tf "$rootfs" | wc -l) entries), one layer $layer_digest ($layer_size bytes, gzip -n)"
echo "== containerd namespace $ns; run: $runs per snapshotter in blocks of 10; ops: $ops rounds per side in blocks of 100; pull: $pulls per snapshotter"
echo "== before each timed block or pull: sync and wait for an idle machine (at most ${quiet_max}s); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

samples="$work/samples"
: >"$samples"
# timed OP SIDE BLOCK CMD...: runs CMD, records "OP SIDE BLOCK ms"
timed() {
  local op="$1" side="$2" block="$3" t0 t1
  shift 3
  t0=$EPOCHREALTIME
  "$@" </dev/null >>"$work/out" 2>"$work/err" || failed "$* failed: $(cat "$work/err")"
  t1=$EPOCHREALTIME
  echo "$op $side $block $(( (${t1/./} - ${t0/./}) / 1000 )).$(printf '%03d' $(( (${t1/./} - ${t0/./}) % 1000 )))" >>"$samples"
}

# ---- setup: the image in every snapshotter (the first pull downloads, the others unpack) ----
for s in "${sides[@]}"; do
  t0=$EPOCHREALTIME
  cr images pull --plain-http --snapshotter "$s" "$ref" >/dev/null 2>"$work/err" || failed "pull into $s failed: $(cat "$work/err")"
  t1=$EPOCHREALTIME
  echo "== setup pull into $s (untimed part of the run): $(( (${t1/./} - ${t0/./}) / 1000 )) ms"
done

# ---- run ----
echo
echo "######## run: ctr run --rm --snapshotter S $ref ID true"
seq_id=0
for s in "${sides[@]}"; do for i in 1 2; do seq_id=$((seq_id + 1)); timed warm "$s" 0 cr run --rm --snapshotter "$s" "$ref" "bench-$seq_id" true; done; done
nb=$((runs / 10))
for ((b = 1; b <= nb; b++)); do
  for ((k = 0; k < ${#sides[@]}; k++)); do
    s=${sides[$(( (b + k) % ${#sides[@]} ))]}
    sync; bench_wait_quiet "$quiet_max"
    for ((i = 0; i < 10; i++)); do seq_id=$((seq_id + 1)); timed run "$s" "$b" cr run --rm --snapshotter "$s" "$ref" "bench-$seq_id" true; done
  done
done
[ -z "$(cr containers ls -q)" ] || failed "containers left behind: $(cr containers ls -q | tr '\n' ' ')"

# ---- ops ----
echo "######## ops: Prepare + Mounts + Remove through the snapshot service (bench/Strata.SnapshotterBench)"
targets=(--target "overlayfs-ctrd=$rundir/containerd.sock,overlayfs,$ns")
for s in "${sides[@]:1}"; do
  targets+=(--target "$s-direct=$rundir/$s-direct.sock,$s" --target "$s-ctrd=$rundir/containerd.sock,$s,$ns")
  [ -z "${pid_strata[$s-tmpfs]:-}" ] || targets+=(--target "$s-tmpfs=$rundir/$s-tmpfs.sock,$s")
done
sync; bench_wait_quiet "$quiet_max"
client ops "${targets[@]}" -n "$ops" --block 100 --warmup 50 --raw "$work/ops-raw" >"$work/ops" || failed "the gRPC client failed"

# ---- pull ----
echo "######## pull: ctr images pull --plain-http --snapshotter S $ref, after ctr images rm --sync"
cr images rm --sync "$ref" >/dev/null
for ((r = 1; r <= pulls; r++)); do
  for ((k = 0; k < ${#sides[@]}; k++)); do
    s=${sides[$(( (r + k) % ${#sides[@]} ))]}
    sync; bench_wait_quiet "$quiet_max"
    timed pull "$s" "$r" cr images pull --plain-http --snapshotter "$s" "$ref"
    cr images rm --sync "$ref" >/dev/null
  done
done
[ -z "$(cr content ls -q)" ] || failed "content left after the last rm --sync: $(cr content ls -q | wc -l) blobs"
for s in "${sides[@]}"; do
  left=$(cr snapshots --snapshotter "$s" ls | tail -n +2 | wc -l)
  [ "$left" = 0 ] || echo "   (note: $left snapshot(s) left in $s after the last rm --sync)"
done
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- results ----
echo
echo "######## raw samples (ms; run and pull per snapshotter in the order taken; ops in $work/ops-raw: microseconds, below)"
for op in warm run pull; do
  for s in "${sides[@]}"; do
    awk -v op="$op" -v s="$s" '$1 == op && $2 == s { printf "%s%s", (n++ ? " " : ""), $4 } END { if (n) printf "\n" }' "$samples" |
      fold -s -w 150 | sed "1s/^/$op $s: /; 2,\$s/^/  /"
  done
done
while read -r name op rest; do
  echo "ops $name $op (us): $rest" | fold -s -w 150 | sed '2,$s/^/  /'
done <"$work/ops-raw"

# stats_of OP SIDE: "n p50 p90 min max" of the samples (nearest rank)
stats_of() {
  awk -v op="$1" -v s="$2" '$1 == op && $2 == s { v[++n] = $4 }
    END { if (!n) { print "0 - - - -"; exit }
      for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
      p50 = v[int((n + 1) / 2)]; p90 = v[int(0.9 * n + 0.999)]
      printf "%d %.1f %.1f %.1f %.1f\n", n, p50, p90, v[1], v[n] }' "$samples"
}
echo
echo "######## results (ms; p50/p90 nearest rank)"
echo "p50 of each block of 10 runs (ms):"
for s in "${sides[@]}"; do
  awk -v s="$s" -v nb="$nb" '$1 == "run" && $2 == s { v[$3, ++c[$3]] = $4 }
    END { printf "  %-16s", s
      for (b = 1; b <= nb; b++) { m = c[b]; for (i = 1; i <= m; i++) a[i] = v[b, i]
        for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
        printf " %7.1f", (a[m / 2] + a[m / 2 + 1]) / 2 }
      printf "\n" }' "$samples"
done
echo
printf "%-34s %-16s %5s %9s %9s %9s %9s  %s\n" measure side n p50 p90 min max "ratio to overlayfs (p50; p90)"
row() { # row MEASURE SIDE N P50 P90 MIN MAX BASE_P50 BASE_P90 GOAL
  local ratio="-"
  if [ "$2" != overlayfs ] && [ -n "$8" ]; then
    ratio=$(awk -v a="$4" -v b="$8" -v c="$5" -v d="$9" -v g="${10}" 'BEGIN { printf "%.2fx; %.2fx", a / b, c / d; if (g != "") printf " (goal <= %sx: %s)", g, (a / b <= g) ? "met" : "MISSED" }')
  fi
  printf "%-34s %-16s %5s %9s %9s %9s %9s  %s\n" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$ratio"
}
skip_rows() { # skip_rows MEASURE
  local d
  for d in "${drivers[@]}"; do [ -z "${skipped[$d]:-}" ] || printf "%-34s %-16s  skipped: %s\n" "$1" "strata-$d" "${skipped[$d]}"; done
}
for op in run pull; do
  [ "$op" = run ] && m="ctr run --rm IMAGE ID true" || m="ctr images pull (download+unpack)"
  [ "$op" = run ] && goal=1.05 || goal=0.8
  read -r _ b50 b90 _ _ < <(stats_of "$op" overlayfs)
  for s in "${sides[@]}"; do row "$m" "$s" $(stats_of "$op" "$s") "$b50" "$b90" "$goal"; done
  skip_rows "$m"
done
for op in all prepare mounts remove; do
  m="ops $op, via containerd"
  read -r b50 b90 < <(awk -v op="$op" '$2 == "overlayfs-ctrd" && $3 == op { print $5, $6 }' "$work/ops")
  awk -v op="$op" '$2 == "overlayfs-ctrd" && $3 == op { print $4, $5, $6, $9, $10 }' "$work/ops" | { read -r n a b c d; row "$m" overlayfs "$n" "$a" "$b" "$c" "$d" "" ""; }
  for s in "${sides[@]:1}"; do
    awk -v op="$op" -v t="$s-ctrd" '$2 == t && $3 == op { print $4, $5, $6, $9, $10 }' "$work/ops" | { read -r n a b c d; row "$m" "$s" "$n" "$a" "$b" "$c" "$d" "$b50" "$b90" ""; }
  done
  skip_rows "$m"
done
for op in all prepare mounts remove; do
  m="ops $op, straight to strata"
  for s in "${sides[@]:1}"; do
    awk -v op="$op" -v t="$s-direct" '$2 == t && $3 == op { print $4, $5, $6, $9, $10 }' "$work/ops" | { read -r n a b c d
      printf "%-34s %-16s %5s %9s %9s %9s %9s  %s\n" "$m" "$s" "$n" "$a" "$b" "$c" "$d" "$([ "$op" = all ] && awk -v a="$a" 'BEGIN { printf "goal p50 < 1 ms: %s", (a < 1) ? "met" : "MISSED" }')"; }
    awk -v op="$op" -v t="$s-tmpfs" '$2 == t && $3 == op { print $4, $5, $6, $9, $10 }' "$work/ops" | { read -r n a b c d
      [ -z "$n" ] || printf "%-34s %-16s %5s %9s %9s %9s %9s  %s\n" "$m" "$s-tmpfs" "$n" "$a" "$b" "$c" "$d" "(store on tmpfs: no flush cost; not durable)"; }
  done
  skip_rows "$m"
done
echo
echo "ops p99/mean per side (ms): $(awk '$3 == "all" { printf "%s p99 %s mean %s; ", $2, $7, $8 }' "$work/ops")"
