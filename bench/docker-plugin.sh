#!/usr/bin/env bash
# Strata's Docker graphdriver plugin path against dockerd's built-in overlay2 driver, in one run with
# two private dockerds (Debian's docker.io: /usr/sbin/dockerd, /usr/bin/docker), whose data roots and
# Strata's store are on one freshly made ext4 loop filesystem (journalled, direct I/O):
#   overlay2  dockerd -s overlay2
#   strata    `strata --root STORE --driver overlay serve --docker-plugin NAME` (a snapshot of ./strata's
#             build, started in an empty working directory) and dockerd --experimental -s NAME
# Each dockerd's exec root, API socket and pid file are on tmpfs (/run), as in a normal install.
# The same rootfs tar is imported into both (`docker import`). Then, in BLOCKS blocks, the order of
# the two daemons alternating from block to block, each daemon does CREATES/BLOCKS timed
# `docker create IMAGE true`, `docker rm` of each of them (timed), and RUNS/BLOCKS timed
# `docker run --rm IMAGE true`; before those, 5 timed `docker ps -q` (what any docker command costs:
# client start-up plus one API round trip). Before each daemon's part of a block: sync, and a wait for
# an idle machine. One unmeasured warm-up (3 creates, their rm, 1 run) per daemon first.
# Times are wall clock around the docker client. Every process the script starts (daemons, their
# containerd and shims, strata, the docker clients, the containers: dockerd --cgroup-parent) runs in a
# cpuacct cgroup of its own, so each sample records the user CPU that other processes used meanwhile;
# samples with more than NOISY seconds of it (default 0.01) count as disturbed and are left out of the
# "clean" statistics, on which the goal (strata at most 1.3x overlay2 at p50, for create and run) is
# judged when an operation has at least 3 clean samples.
#
# Diagnostics after the timed blocks (--diag N creates each; 0 skips):
#   1. strace -f -c of `strata serve` during N creates (and strace -f -c of each dockerd,
#      fsync family only, during N creates on each: what dockerd itself syncs per create).
#   1b. strace -f -T -y of strata serve during N creates: its syscalls per GraphDriver request (those between
#      a request's arrival on the socket and the next one's; dockerd sends one at a time), fsyncs by file.
#   2. strata serve restarted with --log-level debug and ASP.NET Core's request log
#      (Logging__LogLevel__Microsoft.AspNetCore.Hosting.Diagnostics=Information): which GraphDriver
#      calls dockerd makes per create, rm and run, and how long Strata takes for each (server side:
#      from request start to reply written). N creates, their rm, and max(3, N/4) runs.
#   3. strata serve restarted with the filesystem holding the store and both data roots as its working
#      directory (as / would be under systemd): its inotify watches, N timed creates, their rm, max(3, N/4)
#      runs, strace -f -c during N more creates; docker commands that fail here are reported, not fatal
#      (ASP.NET Core's content-root watcher can keep a container's mount busy: see bench/RESULTS.md).
#
# Usage: bench/docker-plugin.sh [-n CREATES] [--runs RUNS] [--blocks BLOCKS] [--diag N] [--busybox | --tar FILE]
#   -n CREATES     timed creates (and removals) per daemon (default 100)
#   --runs RUNS    timed `docker run --rm` per daemon (default 20)
#   --blocks B     interleaving blocks (default 5); CREATES and RUNS must be multiples of B
#   --diag N       creates per diagnostic step (default 20; 0 skips the diagnostics)
#   --busybox      import a tiny image instead: the static /bin/busybox with applet symlinks
#   --tar FILE     import this rootfs tar (default: the Debian rootfs from bench/rootfs.sh; needs /bin/true)
# Env: QUIET_MAX (default 20) seconds to wait for an idle machine before each timed group (0 = never);
#      NOISY (default 0.01) seconds of other processes' user CPU that make a sample disturbed;
#      STRATA_BIN=path measures that executable instead of a snapshot of ./strata's build.
# Everything is cleaned up on exit: both dockerds and strata serve are stopped by pid (dockerd first,
# SIGTERM, then SIGKILL after a grace period), mounts under the filesystem are unmounted, the loop
# device is detached, the image, temp dirs and the cgroup are removed.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

creates=100
runs=20
blocks=5
diag=20
image=debian
tarfile=""
quiet_max="${QUIET_MAX:-20}"
noisy="${NOISY:-0.01}"
while [ $# -gt 0 ]; do
  case "$1" in
    -n) creates="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --blocks) blocks="$2"; shift 2 ;;
    --diag) diag="$2"; shift 2 ;;
    --busybox) image=busybox; shift ;;
    --tar) image=tar; tarfile="$(realpath "$2")"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ $((creates % blocks)) != 0 ] || [ $((runs % blocks)) != 0 ] || [ "$creates" -lt "$blocks" ] || [ "$runs" -lt "$blocks" ]; then
  echo "$0: -n $creates and --runs $runs must be positive multiples of --blocks $blocks" >&2; exit 2
fi
bench_need_root
bench_apt mkfs.ext4 e2fsprogs
[ "$diag" = 0 ] || bench_apt strace strace
for f in /usr/sbin/dockerd /usr/bin/docker; do [ -x "$f" ] || { echo "$0: $f is missing (apt-get install docker.io)" >&2; exit 1; }; done
cgroot=/sys/fs/cgroup/cpuacct
[ -r "$cgroot/cpuacct.usage_user" ] || { echo "$0: needs the cgroup v1 cpuacct hierarchy at $cgroot" >&2; exit 1; }

work=""; mnt=""; dev=""; img=""; execdir=""; cg=""
plugin="strata-bench-$$"
pid_strata=""
declare -A pid_docker=()
stop_dockerd() {
  local name="$1" cpid
  [ -n "${pid_docker[$name]:-}" ] || return 0
  bench_stop_pid "${pid_docker[$name]}" 30
  pid_docker[$name]=""
  # dockerd stops the containerd it started; if it could not, stop that one too (by its pid file)
  if [ -r "$execdir/$name/containerd/containerd.pid" ]; then
    cpid=$(cat "$execdir/$name/containerd/containerd.pid")
    if [ -n "$cpid" ] && tr '\0' ' ' <"/proc/$cpid/cmdline" 2>/dev/null | grep -qF "$execdir/$name/"; then bench_stop_pid "$cpid" 10; fi
  fi
}
stop_strata() {
  bench_stop_pid "$pid_strata" 60
  pid_strata=""
  rm -f "/run/docker/plugins/$plugin.sock" # strata removes it itself, unless it was killed
}
cleanup() {
  set +e # a trap must finish its work even when one step fails
  for d in strata overlay2; do stop_dockerd "$d"; done
  stop_strata
  [ -n "$strace_pid" ] && kill -0 "$strace_pid" 2>/dev/null && { kill -INT "$strace_pid"; wait "$strace_pid"; }
  if [ -n "$mnt" ]; then
    findmnt -rn -o TARGET | awk -v p="$mnt/" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m"; done
    mountpoint -q "$mnt" && umount "$mnt"
    rmdir "$mnt"
  fi
  if [ -n "$dev" ] && losetup "$dev" >/dev/null 2>&1; then losetup -d "$dev"; fi
  [ -n "$img" ] && rm -f "$img"
  if [ -n "$execdir" ]; then
    findmnt -rn -o TARGET | awk -v p="$execdir/" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$execdir"
  fi
  if [ -n "$cg" ] && [ -d "$cg" ]; then
    echo $$ >"$cgroot/cgroup.procs"
    # $cg and the containers' parent cgroup dockerd made in every hierarchy (--cgroup-parent), once empty
    for d in /sys/fs/cgroup/*/"${cg##*/}"; do
      [ -d "$d" ] || continue
      find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
      rmdir "$d" 2>/dev/null || echo "   (cgroup $d still has processes: $(tr '\n' ' ' <"$d/cgroup.procs"))" >&2
    done
  fi
  [ -n "$work" ] && rm -rf --one-file-system "$work"
}
strace_pid=""
trap cleanup EXIT
trap 'exit 130' INT TERM

work=$(mktemp -d /var/tmp/strata-bench-docker.XXXXXX)
strata=$(bench_strata_snapshot "$work/bin")
mkdir "$work/cwd" "$work/docker-config" # strata serve's (empty) working directory; the docker client's config dir
export DOCKER_CONFIG="$work/docker-config"

case "$image" in
  debian) rootfs=$("$bench_repo/bench/rootfs.sh") ;;
  tar) rootfs="$tarfile" ;;
  busybox)
    bb=$(command -v busybox || true)
    if [ -z "$bb" ] || ldd "$bb" >/dev/null 2>&1; then
      echo "installing busybox-static" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
      bb=/bin/busybox
    fi
    mkdir -p "$work/bbroot/bin" "$work/bbroot/etc" "$work/bbroot/tmp"
    cp "$bb" "$work/bbroot/bin/busybox"
    for a in sh true echo cat ls mkdir rm mv touch find sort sleep; do ln -s busybox "$work/bbroot/bin/$a"; done
    tar --numeric-owner -C "$work/bbroot" -cf "$work/busybox-rootfs.tar" .
    rootfs="$work/busybox-rootfs.tar"
    ;;
esac
tar -tf "$rootfs" | grep -E '^(\./)?(usr/)?bin/true$' >/dev/null || { echo "$0: $rootfs has no /bin/true" >&2; exit 1; }
cat "$rootfs" >/dev/null

# the filesystem: room for the rootfs imported twice (each import keeps the layer; dockerd stages it)
gib=$(( $(stat -c %s "$rootfs") * 6 / 1073741824 + 2 ))
[ "$gib" -ge 8 ] || gib=8
img="$work.img"
truncate -s "${gib}G" "$img"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
dev=$(losetup --find --show --direct-io=on "$img")
mnt=$(mktemp -d /mnt/strata-bench-docker.XXXXXX)
mount "$dev" "$mnt"
mkdir "$mnt/store" "$mnt/overlay2" "$mnt/strata"
execdir=$(mktemp -d /run/strata-bench-docker.XXXXXX)
fsdesc="ext4, $(tune2fs -l "$dev" | awk -F: '{ v = $2; gsub(/^[ \t]+|[ \t]+$/, "", v) } /^Block size/ { b = v } /^Inode size/ { i = v } /^Filesystem features/ { f = v } END { printf "%s-byte blocks, %s-byte inodes, features: %s", b, i, f }')"

# every process started from here on (daemons, containerd, shims, docker clients) is accounted in $cg
cg="$cgroot/strata-bench-docker.$$"
mkdir "$cg"
echo $$ >"$cg/cgroup.procs"

# start_strata LOGFILE CWD LEVEL [VAR=VALUE...]: strata serve on the store, working directory CWD
start_strata() {
  local log="$1" cwd="$2" level="$3" i
  shift 3
  (cd "$cwd" && exec env "$@" "$strata" --root "$mnt/store" --driver overlay serve --docker-plugin "$plugin" --log-level "$level") >"$log" 2>&1 &
  pid_strata=$!
  for ((i = 0; i < 600; i++)); do
    [ -S "/run/docker/plugins/$plugin.sock" ] && grep -q "serving store" "$log" && return 0
    kill -0 "$pid_strata" 2>/dev/null || break
    sleep 0.1
  done
  cat "$log" >&2
  echo "$0: strata serve did not start" >&2
  exit 1
}
# start_dockerd NAME DRIVER: a private dockerd, data root $mnt/NAME, the rest in $execdir
start_dockerd() {
  local name="$1" driver="$2" i
  /usr/sbin/dockerd --data-root "$mnt/$name" --exec-root "$execdir/$name" -H "unix://$execdir/$name.sock" \
    --pidfile "$execdir/$name.pid" --iptables=false --ip-masq=false --bridge=none --experimental -s "$driver" \
    --cgroup-parent "/${cg##*/}" \
    >>"$work/dockerd-$name.log" 2>&1 &
  pid_docker[$name]=$!
  for ((i = 0; i < 600; i++)); do
    dk "$name" version >/dev/null 2>&1 && return 0
    kill -0 "${pid_docker[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$work/dockerd-$name.log" >&2
  echo "$0: dockerd ($name) did not start" >&2
  exit 1
}
dk() { local name="$1"; shift; /usr/bin/docker -H "unix://$execdir/$name.sock" "$@"; }
failed() {
  echo "$0: $*" >&2
  for d in overlay2 strata; do echo "-- dockerd ($d) log, last lines:" >&2; tail -n 15 "$work/dockerd-$d.log" >&2; done
  echo "-- strata serve log, last lines:" >&2; tail -n 15 "$strata_log" >&2
  exit 1
}

samples="$work/samples"
: >"$samples"
soft="" # set: a failing docker command is noted in $work/failures instead of ending the run
# timed OP NAME BLOCK ARGS...: `docker ARGS` against dockerd NAME; records "OP NAME BLOCK ms others_ms"
# (BLOCK 0: not recorded); others_ms = user CPU that processes outside this run's cgroup used meanwhile
timed() {
  local op="$1" name="$2" block="$3" t0 t1 r0 r1 o0 o1
  shift 3
  read -r r0 <"$cgroot/cpuacct.usage_user"; read -r o0 <"$cg/cpuacct.usage_user"
  t0=$EPOCHREALTIME
  if ! dk "$name" "$@" </dev/null >>"$work/out" 2>"$work/err"; then
    [ -n "$soft" ] || failed "docker $* on $name failed: $(cat "$work/err")"
    # diagnostics: note the failure, what strata serve holds under the store right now, and go on
    { echo "docker $* on $name failed: $(cat "$work/err")"
      echo "   strata serve's open files under the store then: $(ls -l "/proc/$pid_strata/fd" 2>/dev/null | grep -cF "$mnt/store/" || true)"
      ls -l "/proc/$pid_strata/fd" 2>/dev/null | grep -oE "$mnt/store/[^ ]*" | sed -E 's/[0-9a-f]{64}/<id>/g; s/^/     /' | head -n 5 || true
      echo "   its inotify watches then: $(inotify_watches "$pid_strata")"; } >>"$work/failures" || true
    return 0
  fi
  t1=$EPOCHREALTIME
  read -r r1 <"$cgroot/cpuacct.usage_user"; read -r o1 <"$cg/cpuacct.usage_user"
  [ "$block" = 0 ] && return 0
  echo "$op $name $block $(( ${t1/./} - ${t0/./} )) $(( (r1 - r0 - (o1 - o0)) / 1000 ))" >>"$samples"
}
# creates NAME BLOCK COUNT: COUNT timed creates; their ids in $work/ids
creates() {
  local name="$1" block="$2" n="$3" i
  : >"$work/out"
  for ((i = 0; i < n; i++)); do timed create "$name" "$block" create "$image_ref" true; done
  mv "$work/out" "$work/ids"
}
removes() {
  local name="$1" block="$2" id
  while read -r id; do timed rm "$name" "$block" rm "$id"; done <"$work/ids"
}

strata_log="$work/strata-serve.log"
start_strata "$strata_log" "$work/cwd" info
start_dockerd strata "$plugin"
start_dockerd overlay2 overlay2
for d in overlay2 strata; do
  drv=$(dk "$d" info --format '{{.Driver}}')
  [ "$drv" = "$([ "$d" = strata ] && echo "$plugin" || echo overlay2)" ] || failed "dockerd $d reports storage driver $drv"
done

echo "== docker graphdriver plugin benchmark: built-in overlay2 vs strata serve (overlay driver)"
echo "== $(bench_machine)"
echo "== $(/usr/sbin/dockerd --version); client $(/usr/bin/docker --version); $(containerd --version 2>/dev/null | cut -d' ' -f1-3); $(runc --version 2>/dev/null | head -1)"
echo "== strata: $strata ($("$strata" --version)), serving as plugin '$plugin' on /run/docker/plugins/$plugin.sock, working directory $work/cwd (empty)"
echo "== filesystem: fresh ${gib} GiB sparse image on $(findmnt -n -o FSTYPE -T "$work") $work.img, loop $dev (direct I/O), mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 (journalled), mounted at $mnt"
echo "==   $fsdesc"
echo "==   data roots $mnt/overlay2 and $mnt/strata, strata store $mnt/store; exec roots, API sockets and pid files in $execdir (tmpfs)"
echo "== image: $rootfs ($(stat -c %s "$rootfs") bytes, $(tar -tf "$rootfs" | wc -l) entries), imported into both"
echo "== per daemon: $creates x \`docker create IMAGE true\` (then \`docker rm\` of each), $runs x \`docker run --rm IMAGE true\`, in $blocks blocks (order alternates); 5 x \`docker ps -q\` per block"
echo "== before each daemon's part of a block: sync and wait for an idle machine (at most ${quiet_max}s); samples marked * had more than ${noisy}s of other processes' user CPU"

image_ref="strata-bench:base"
for d in overlay2 strata; do
  sync
  t0=$EPOCHREALTIME
  dk "$d" import "$rootfs" "$image_ref" >/dev/null || failed "docker import into $d failed"
  t1=$EPOCHREALTIME
  echo "== import into $d: $(( (${t1/./} - ${t0/./}) / 1000 )) ms, image size $(dk "$d" image inspect --format '{{.Size}}' "$image_ref") bytes"
done
# warm-up, not recorded
for d in overlay2 strata; do
  creates "$d" 0 3; removes "$d" 0; timed run "$d" 0 run --rm "$image_ref" true
done

echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
t_start=$SECONDS
per_c=$((creates / blocks)); per_r=$((runs / blocks))
for ((b = 1; b <= blocks; b++)); do
  if [ $((b % 2)) = 1 ]; then order="overlay2 strata"; else order="strata overlay2"; fi
  for d in $order; do
    sync
    bench_wait_quiet "$quiet_max"
    for ((i = 0; i < 5; i++)); do timed ps "$d" "$b" ps -q; done
    creates "$d" "$b" "$per_c"
    removes "$d" "$b"
    sync
    for ((i = 0; i < per_r; i++)); do timed run "$d" "$b" run --rm "$image_ref" true; done
    [ -z "$(dk "$d" ps -aq)" ] || failed "containers left on $d"
  done
  echo "   block $b ($order) done at +$((SECONDS - t_start))s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo "== timed blocks took $((SECONDS - t_start)) s"

echo
echo "######## raw samples (ms, wall clock around the docker client; * = disturbed: other processes used > ${noisy}s user CPU meanwhile)"
awk -v noisy="$noisy" '{
    key = $1 " " $2 " block " $3
    if (!(key in seen)) { seen[key] = 1; order[++k] = key }
    line[key] = line[key] sprintf(" %.1f%s", $4 / 1000, ($5 / 1000 > noisy * 1000) ? "*" : "")
  }
  END { for (i = 1; i <= k; i++) printf "%-26s%s\n", order[i] ":", line[order[i]] }' "$samples" | sort -s -k1,1 -k2,2

# stats FILTER: "op name n p50 p90 mean min max" per op and daemon over the samples FILTER selects (all|clean)
stats() {
  awk -v which="$1" -v noisy="$noisy" '
    which == "clean" && $5 / 1000 > noisy * 1000 { next }
    { k = $1 " " $2; v[k, ++n[k]] = $4 / 1000; s[k] += $4 / 1000 }
    END {
      for (k in n) {
        m = n[k]
        for (i = 1; i <= m; i++) a[i] = v[k, i]
        for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
        p50 = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
        r = int(0.9 * m); if (r < 0.9 * m) r++; if (r < 1) r = 1
        printf "%s %d %.2f %.2f %.2f %.2f %.2f\n", k, m, p50, a[r], s[k] / m, a[1], a[m]
      }
    }' "$samples" | sort -k1,1 -k2,2
}
stats all >"$work/stats-all"
stats clean >"$work/stats-clean"
echo
echo "######## results (ms; p50 = median, p90 = nearest rank; clean = samples without disturbance)"
printf "%-7s %-9s | %4s %8s %8s %8s %8s %8s | %5s %8s %8s %8s\n" op driver n p50 p90 mean min max clean p50 p90 mean
awk 'FNR == 1 { f++ } f == 1 { k[++n] = $1 " " $2; A[$1 " " $2] = $0 } f == 2 { C[$1 " " $2] = $0 }
  END {
    for (i = 1; i <= n; i++) {
      split(A[k[i]], a); if (k[i] in C) split(C[k[i]], c); else { c[3] = 0; c[4] = c[5] = c[6] = "-" }
      printf "%-7s %-9s | %4d %8.2f %8.2f %8.2f %8.2f %8.2f | %5d %8s %8s %8s\n", a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], c[3], c[4], c[5], c[6]
    }
  }' "$work/stats-all" "$work/stats-clean"
echo
echo "p50 per block (ms; the block's samples of each daemon), and the ratio strata/overlay2:"
awk '$3 ~ /^[0-9]+$/ && $1 != "ps" { k = $1 SUBSEP $2 SUBSEP $3; v[k, ++n[k]] = $4 / 1000; if ($3 > nb) nb = $3; ops[$1] = 1 }
  function med(k,   m, i, j, x, a) { m = n[k]; for (i = 1; i <= m; i++) a[i] = v[k, i]
    for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
  END {
    split("create rm run", order, " ")
    for (o = 1; o <= 3; o++) {
      op = order[o]; if (!(op in ops)) continue
      lo = sprintf("  %-6s overlay2:", op); ls = sprintf("  %-6s strata:  ", op); lr = sprintf("  %-6s ratio:   ", op)
      for (b = 1; b <= nb; b++) {
        x = med(op SUBSEP "overlay2" SUBSEP b); y = med(op SUBSEP "strata" SUBSEP b)
        lo = lo sprintf(" %7.2f", x); ls = ls sprintf(" %7.2f", y); lr = lr sprintf(" %6.2fx", y / x)
      }
      print lo; print ls; print lr
    }
  }' "$samples"
echo
summary="$work/summary"
: >"$summary"
for op in create rm run ps; do
  awk -v op="$op" -v goal=1.3 -v sa="$work/stats-all" '
    FNR == 1 { f++ }
    f == 1 && $1 == op { A[$2] = $0 }
    f == 2 && $1 == op { C[$2] = $0 }
    END {
      split(A["overlay2"], ao); split(A["strata"], as)
      if (ao[3] == "" || as[3] == "") exit
      split(C["overlay2"], co); split(C["strata"], cs)
      useclean = (co[3] >= 3 && cs[3] >= 3)
      if (useclean) { split(C["overlay2"], o); split(C["strata"], s); basis = "clean samples" } else { split(A["overlay2"], o); split(A["strata"], s); basis = "all samples (fewer than 3 clean)" }
      printf "ratio %-6s strata/overlay2: p50 %.2fx (%.2f vs %.2f ms), p90 %.2fx, mean %.2fx, strata extra %+.2f ms at p50 [%s]", op, s[4] / o[4], s[4], o[4], s[5] / o[5], s[6] / o[6], s[4] - o[4], basis
      if (op == "create" || op == "run") printf "; goal <= %.1fx at p50: %s", goal, (s[4] / o[4] <= goal) ? "met" : "MISSED"
      printf "; all samples: p50 %.2fx, mean %.2fx\n", as[4] / ao[4], as[6] / ao[6]
    }' "$work/stats-all" "$work/stats-clean" | tee -a "$summary"
done

[ "$diag" != 0 ] || exit 0

# strace_c PID OUT [ARGS]: strace -f -c attached to PID in the background (strace_pid); stop with strace_stop
strace_c() {
  local pid="$1" out="$2"
  shift 2
  strace -f -c "$@" -o "$out" -p "$pid" 2>>"$work/strace.err" &
  strace_pid=$!
  sleep 1 # let it attach to every thread
}
strace_stop() { kill -INT "$strace_pid"; wait "$strace_pid" || true; strace_pid=""; }
# strace_table FILE N TOP: the strace -c table with calls per operation (N operations), the TOP rows by time
strace_table() {
  awk -v n="$2" -v top="$3" '
    /^-+/ || /^% time/ { next }
    NF >= 5 && $1 ~ /^[0-9.]+$/ {
      name = $NF; calls = $4; errs = (NF == 6) ? $5 : 0
      if (name == "total") { tot = sprintf("  %-18s %9.1f %10.3f", "total", calls / n, $2 * 1000 / n); next }
      rows[++k] = sprintf("  %-18s %9.1f %10.3f %10.1f %8.1f", name, calls / n, $2 * 1000 / n, $3, errs / n)
    }
    END {
      printf "  %-18s %9s %10s %10s %8s\n", "syscall", "per_op", "ms_per_op", "us_each", "errs/op"
      for (i = 1; i <= k && i <= top; i++) print rows[i]
      print tot
    }' "$1"
}
# strace_counts FILE N NAMES...: "name calls/N" for the named syscalls
strace_counts() {
  local f="$1" n="$2"
  shift 2
  awk -v n="$n" -v names="$*" 'BEGIN { split(names, w, " "); for (i in w) want[w[i]] = 1 }
    NF >= 5 && $1 ~ /^[0-9.]+$/ && ($NF in want) { printf "%s %.1f/op  ", $NF, $4 / n; seen[$NF] = 1 }
    END { for (x in want) if (!(x in seen)) printf "%s 0/op  ", x; print "" }' "$f"
}
# wall_stats OP NAME BLOCK: "p50 mean" of the samples recorded under BLOCK
wall_stats() {
  awk -v op="$1" -v nm="$2" -v bl="$3" '$1 == op && $2 == nm && $3 == bl { v[++n] = $4 / 1000; s += $4 / 1000 }
    END { for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
          printf "n %d, p50 %.2f ms, mean %.2f ms, min %.2f, max %.2f", n, (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2, s / n, v[1], v[n] }' "$samples"
}
# inotify_watches PID: how many inotify watches PID holds, and on which filesystems (fdinfo's sdev)
inotify_watches() {
  local fd loopdev
  loopdev=$(printf '%x' $(( ($(stat -c '0x%t' "$dev") << 20) | $(stat -c '0x%T' "$dev") )))
  for fd in /proc/"$1"/fd/*; do
    if [ "$(readlink "$fd" 2>/dev/null)" = "anon_inode:inotify" ]; then grep '^inotify' "/proc/$1/fdinfo/${fd##*/}" || true; fi
  done | awk -v loop="$loopdev" '{ for (i = 1; i <= NF; i++) if ($i ~ /^sdev:/) { d = substr($i, 6); if (d == loop) l++; else o++ } }
    END { printf "%d (%d on the benchmark filesystem, %d elsewhere)", l + o, l, o }'
}

echo
echo "######## diagnostics 1: syscalls during $diag creates (strace inflates the times; read counts and shares)"
sync; bench_wait_quiet "$quiet_max"
strace_c "${pid_docker[overlay2]}" "$work/strace-dockerd-overlay2.txt" -e trace=fsync,fdatasync,syncfs,sync_file_range,sync
creates overlay2 diag1 "$diag"
strace_stop
removes overlay2 0
sync; bench_wait_quiet "$quiet_max"
strace_c "${pid_docker[strata]}" "$work/strace-dockerd-strata.txt" -e trace=fsync,fdatasync,syncfs,sync_file_range,sync
strace_dockerd=$strace_pid
strace_c "$pid_strata" "$work/strace-strata.txt"
creates strata diag1 "$diag"
strace_stop
strace_pid=$strace_dockerd; strace_stop
removes strata 0
echo "fsync-family syscalls of dockerd itself per create (strace -f -c -e trace=fsync,...):"
echo "  dockerd -s overlay2: $(strace_counts "$work/strace-dockerd-overlay2.txt" "$diag" fsync fdatasync syncfs sync_file_range)"
echo "  dockerd -s $plugin: $(strace_counts "$work/strace-dockerd-strata.txt" "$diag" fsync fdatasync syncfs sync_file_range)"
echo "creates on overlay2 with its dockerd under that strace: $(wall_stats create overlay2 diag1)"
echo "creates on strata with strata serve under strace -f -c: $(wall_stats create strata diag1)"
echo "strata serve, strace -f -c -p PID during $diag creates (all threads; futex, epoll_wait, sched_yield are mostly idle waits and spinning of the .NET thread pool):"
strace_table "$work/strace-strata.txt" "$diag" 30

echo
echo "######## diagnostics 1b: syscalls of strata serve per GraphDriver request, during $diag creates (strace -f -T -y; a request's"
echo "######## syscalls are those between its arrival on the socket and the next request's: dockerd sends one at a time)"
sync; bench_wait_quiet "$quiet_max"
strace -f -T -y -s 64 -o "$work/strace-requests.txt" -p "$pid_strata" \
  -e trace=read,recvmsg,recvfrom,fsync,fdatasync,syncfs,umount2,fsopen,fsconfig,fsmount,move_mount,mount,mkdirat,mkdir,renameat,renameat2,rename,symlinkat,unlinkat,rmdir,openat,flock \
  2>>"$work/strace.err" &
strace_pid=$!
sleep 1
creates strata diag1b "$diag"
strace_stop
removes strata 0
echo "creates on strata with strata serve under strace -f -T: $(wall_stats create strata diag1b)"
# (ids and temp names folded by sed: mawk has no {n} intervals)
sed -E "s#$mnt/store#STORE#g; s/[0-9a-f]{64}/{id}/g; s/\.[0-9a-f]{32}/.{tmp}/g; s/\.tmp-[0-9]+-[0-9a-f]+/.tmp-{tmp}/g; s#/l/[A-Z2-7]+#/l/{short}#g" "$work/strace-requests.txt" | awk -v n="$diag" '
  match($0, /POST \/GraphDriver\.[A-Za-z]+/) { cur = substr($0, RSTART + 18, RLENGTH - 18); if (!(cur in req)) order[++k] = cur; req[cur]++; next }
  cur == "" { next }
  {
    tid = $1; rest = $0; sub(/^[0-9]+ +/, "", rest)
    if (rest ~ /<unfinished \.\.\.>$/) { pend[tid] = rest; next }
    if (rest ~ /^<\.\.\. /) { call = pend[tid]; name = rest; sub(/^<\.\.\. /, "", name); sub(/ resumed>.*/, "", name) } else { call = rest; name = rest; sub(/\(.*/, "", name) }
    if (name ~ /^(read|recvmsg|recvfrom)$/) next
    if (!match(rest, /<[0-9.]+>$/)) next
    d = substr(rest, RSTART + 1, RLENGTH - 2) * 1000
    if (name ~ /^(fsopen|fsconfig|fsmount|move_mount|mount)$/) name = "mount API"
    if (name ~ /^(renameat|renameat2|rename)$/) name = "rename"
    if (name ~ /^(mkdirat|mkdir)$/) name = "mkdir"
    c[cur, name]++; t[cur, name] += d; names[name] = 1; tot[cur] += d
    if (name ~ /^(fsync|fdatasync|syncfs)$/ && match(call, /\([0-9]+<[^>]*>/)) { p = substr(call, RSTART + 1, RLENGTH - 2); sub(/^[0-9]+</, "", p); fc[cur, p]++; ft[cur, p] += d; paths[cur, p] = 1 }
  }
  END {
    for (i = 1; i <= k; i++) {
      m = order[i]; r = req[m]
      printf "%s: %.1f per create; per request (count, ms under strace):", m, r / n
      for (x in names) if (c[m, x]) printf "  %s %.1f (%.2f ms)", x, c[m, x] / r, t[m, x] / r
      printf "\n"
      for (x in paths) { split(x, kk, SUBSEP); if (kk[1] == m) printf "    fsync %.1f x %s (%.2f ms each)\n", fc[x] / r, kk[2], ft[x] / fc[x] }
    }
  }'

echo
echo "######## diagnostics 2: GraphDriver calls and Strata's time for each (strata serve --log-level debug + ASP.NET Core request log)"
stop_dockerd strata
stop_strata
strata_log="$work/strata-serve-debug.log"
start_strata "$strata_log" "$work/cwd" debug 'Logging__LogLevel__Microsoft.AspNetCore.Hosting.Diagnostics=Information'
start_dockerd strata "$plugin"
creates strata 0 3; removes strata 0 # warm-up after the restart
mark() { sleep 0.5; wc -l <"$strata_log"; } # the console logger writes from a queue
sync; bench_wait_quiet "$quiet_max"
l0=$(mark)
creates strata diag2 "$diag"
l1=$(mark)
removes strata diag2
l2=$(mark)
nruns=$((diag / 4)); [ "$nruns" -ge 3 ] || nruns=3
for ((i = 0; i < nruns; i++)); do timed run strata diag2 run --rm "$image_ref" true; done
l3=$(mark)
# calls LO HI N: per GraphDriver method in log lines LO+1..HI, calls per operation (N operations) and Strata's
# time for them (ASP.NET Core's "Request finished ... 1.234ms": from request start to reply written)
calls() {
  sed -n "$(($1 + 1)),$2p" "$strata_log" | awk -v n="$3" '
    /Request finished/ && match($0, /GraphDriver\.[A-Za-z]+/) {
      m = substr($0, RSTART + 12, RLENGTH - 12)
      st = $0; sub(/.*GraphDriver\.[A-Za-z]+ - /, "", st); split(st, f, " ")
      if (!match($0, /[0-9.]+ms$/)) next
      t = substr($0, RSTART, RLENGTH - 2) + 0
      if (!(m in c)) order[++k] = m
      c[m]++; s[m] += t; v[m, c[m]] = t; tot += t; calls++
      if (f[1] != "200") bad[m]++
    }
    END {
      printf "  %-16s %8s %9s %9s %9s %11s\n", "method", "calls/op", "mean_ms", "p50_ms", "max_ms", "ms_per_op"
      for (i = 1; i <= k; i++) {
        m = order[i]; q = c[m]
        for (a = 1; a <= q; a++) w[a] = v[m, a]
        for (a = 2; a <= q; a++) { x = w[a]; for (b = a - 1; b >= 1 && w[b] > x; b--) w[b + 1] = w[b]; w[b + 1] = x }
        printf "  %-16s %8.2f %9.3f %9.3f %9.3f %11.3f%s\n", m, q / n, s[m] / q, (q % 2) ? w[(q + 1) / 2] : (w[q / 2] + w[q / 2 + 1]) / 2, w[q], s[m] / n, (m in bad) ? "  (" bad[m] " not 200)" : ""
      }
      printf "  %-16s %8.2f %9s %9s %9s %11.3f\n", "all", calls / n, "", "", "", tot / n
    }'
}
for ph in "create $l0 $l1 $diag" "rm $l1 $l2 $diag" "run $l2 $l3 $nruns"; do
  set -- $ph
  echo "-- docker $1 x $4 on strata (debug logging): $(wall_stats "$1" strata diag2)"
  calls "$2" "$3" "$4"
done
echo "-- the calls of the last of those creates, as logged (ids shortened; aspnet = ASP.NET Core's request log, dbug = Strata's):"
sed -n "$((l0 + 1)),${l1}p" "$strata_log" | awk '
  { line[++n] = $0 }
  /dbug: strata\[0\] CreateReadWrite/ && /-init","Parent"/ { first = n - 1 }
  END { for (i = first; i <= n; i++) print line[i] }' |
  sed -E 's/[0-9a-f]{64}/<id>/g; s/ application\/vnd\.docker\.plugins\.v1\.2\+json//; s/Microsoft\.AspNetCore\.Hosting\.Diagnostics\[[0-9]\]/aspnet/; s/^/  /'

echo
echo "######## diagnostics 3: strata serve started with the filesystem holding the store and both data roots as its working directory"
stop_dockerd strata
stop_strata
strata_log="$work/strata-serve-cwd.log"
start_strata "$strata_log" "$mnt" info
start_dockerd strata "$plugin"
sleep 1
echo "inotify watches held by strata serve after start: $(inotify_watches "$pid_strata")"
: >"$work/failures"
soft=1 # failures are findings here
creates strata 0 3; removes strata 0
sync; bench_wait_quiet "$quiet_max"
creates strata diag3 "$diag"
w1=$(inotify_watches "$pid_strata")
removes strata diag3
for ((i = 0; i < nruns; i++)); do timed run strata diag3 run --rm "$image_ref" true; done
echo "creates: $(wall_stats create strata diag3); inotify watches after them: $w1"
echo "rm: $(wall_stats rm strata diag3); run --rm: $(wall_stats run strata diag3)"
sync; bench_wait_quiet "$quiet_max"
strace_c "$pid_strata" "$work/strace-strata-cwd.txt"
creates strata 0 "$diag"
strace_stop
removes strata diag3s
for ((i = 0; i < nruns; i++)); do timed run strata diag3s run --rm "$image_ref" true; done
echo "strace -f -c during $diag creates, selected syscalls per create:"
echo "  working directory $mnt: $(strace_counts "$work/strace-strata-cwd.txt" "$diag" inotify_add_watch lstat getdents64 openat fsync)"
echo "  empty working directory:    $(strace_counts "$work/strace-strata.txt" "$diag" inotify_add_watch lstat getdents64 openat fsync)"
echo "  total syscalls per create: $(awk -v n="$diag" '$NF == "total" { printf "%.1f", $4 / n }' "$work/strace-strata-cwd.txt") (working directory $mnt) vs $(awk -v n="$diag" '$NF == "total" { printf "%.1f", $4 / n }' "$work/strace-strata.txt") (empty)"
echo "docker commands that failed in this step (creates, rm, run --rm; with and without strace): $(grep -c '^docker ' "$work/failures" || true)"
sed 's/^/  /' "$work/failures" | sed -E 's/[0-9a-f]{64}/<id>/g'
soft=""
echo "strata serve's warnings in this step: $(grep -c 'warn:' "$strata_log" || true)"
grep 'warn:' "$strata_log" | head -n 4 | sed -E 's/[0-9a-f]{64}/<id>/g; s/^/  /' || true
stop_dockerd strata
stop_strata
(cd "$work/cwd" && exec "$strata" --root "$mnt/store" --driver overlay serve --docker-plugin "$plugin") >"$work/strata-serve-empty.log" 2>&1 &
pid_strata=$!
for ((i = 0; i < 600; i++)); do grep -q "serving store" "$work/strata-serve-empty.log" && break; sleep 0.1; done
sleep 1
echo "for comparison, strata serve in an empty working directory holds $(inotify_watches "$pid_strata") inotify watch(es)"
stop_strata

echo
echo "######## summary"
cat "$summary"
