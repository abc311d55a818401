#!/usr/bin/env bash
# The thin driver's performance section (issue 8), each against its peer in the same run, on the filesystem of
# BENCH_DIR (default /var/tmp: the root ext4 here):
#   copyup      in a container, write 32 KiB into the middle of a 1 GiB file of the image, then fsync: thin (ext4 on a
#               thin device: copy-on-write of one 64 KiB block) vs overlay (copy-up of the whole file). Time of
#               open+pwrite+fsync+close and bytes newly allocated on the host. In-process (bench/Strata.ThinDriverBench).
#   containers  create + mount + unmount of N containers of a Debian rootfs image (bench/rootfs.sh), thin vs overlay,
#               p50/p90/p99 and per phase. In-process.
#   fio         fio inside a mounted thin container (ext4 on the thin device, through the pool server's FUSE export
#               and a loop device) vs the same fio on the host filesystem under it: 4 KiB random writes (QD32) and
#               1 MiB sequential writes (QD8), O_DIRECT, each RUNTIME seconds; ratio container / host.
# Usage: bench/thin-driver.sh [-n N] [--reps N] [--runtime S] [--only copyup|containers|fio]
#   -n N         containers per driver (default 100)
#   --reps N     copy-ups per driver (default 5)
#   --runtime S  seconds per fio job (default 10)
# Everything (stores, pool servers, mounts, loop devices) is removed on exit.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
n=100
reps=5
runtime=10
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --runtime) runtime="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$only" in ""|copyup|containers|fio) ;; *) echo "$0: --only takes copyup, containers or fio" >&2; exit 2 ;; esac
bench_need_root
bench_apt fio fio
bench_apt jq jq
bench_apt bc bc
bench_apt mkfs.ext4 e2fsprogs
if ! command -v dotnet >/dev/null 2>&1; then echo "$0: the .NET 10 SDK is required" >&2; exit 1; fi

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/strata-bench-thin.XXXXXX")
cleanup() {
  set +e
  # pool servers the stores started (they stop themselves when nothing is attached; a failed run may leave one)
  for pidfile in "$work"/*/thin/server.pid; do [ -f "$pidfile" ] && bench_stop_pid "$(cat "$pidfile")" 30; done
  findmnt -rn -o TARGET | awk -v p="$work/" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

strata=$(bench_strata_snapshot "$work/strata-bin")
export STRATA_BIN="$strata" # the thin driver starts its pool server with it
bench_build_dotnet Strata.ThinDriverBench "$work/bin"
echo "== thin driver benchmarks in $work ($(findmnt -n -o FSTYPE -T "$work"))"
echo "== $(bench_machine)"
echo "== dotnet $(dotnet --version); fio $(fio --version)"

if [ -z "$only" ] || [ "$only" = copyup ]; then
  mkdir "$work/copyup"
  dotnet "$work/bin/Strata.ThinDriverBench.dll" copyup --dir "$work/copyup" --reps "$reps"
  rm -rf --one-file-system "$work/copyup"
fi

if [ -z "$only" ] || [ "$only" = containers ]; then
  rootfs=$("$bench_repo/bench/rootfs.sh")
  echo "== containers: base layer from $rootfs ($(stat -c %s "$rootfs") bytes)"
  mkdir "$work/containers"
  dotnet "$work/bin/Strata.ThinDriverBench.dll" containers --dir "$work/containers" --tar "$rootfs" -n "$n"
  rm -rf --one-file-system "$work/containers"
fi

if [ -z "$only" ] || [ "$only" = fio ]; then
  root="$work/fio-store"
  "$strata" --root "$root" --driver thin --storage-opt thin.basesize=8G layer create image >/dev/null
  "$strata" --root "$root" layer create c --parent image --rw >/dev/null
  cdir=$("$strata" --root "$root" layer mount c)
  hdir="$work/host"
  mkdir "$hdir"
  echo "== fio: container $cdir (ext4 on $(findmnt -n -o SOURCE -T "$cdir")) vs host $hdir ($(findmnt -n -o FSTYPE -T "$hdir")); ${runtime}s per job, O_DIRECT, libaio"
  run_fio() { # NAME DIR RW BS QD SIZE
    fio --name="$1" --directory="$2" --rw="$3" --bs="$4" --iodepth="$5" --size="$6" --ioengine=libaio --direct=1 \
        --runtime="$runtime" --time_based --end_fsync=1 --output-format=json >"$work/$1.json"
    jq -r '.jobs[0].write | "\(.iops) \(.bw)"' "$work/$1.json"
  }
  printf '%-28s %12s %12s %12s %12s %8s\n' job container_iops host_iops container_MiB/s host_MiB/s ratio
  for job in "randwrite 4k 32 1G" "write 1M 8 2G"; do
    # shellcheck disable=SC2086 # the job's words are its fields
    set -- $job
    read -r ci cb < <(run_fio "c-$1-$2" "$cdir" "$1" "$2" "$3" "$4")
    read -r hi hb < <(run_fio "h-$1-$2" "$hdir" "$1" "$2" "$3" "$4")
    rm -f "$cdir"/* "$hdir"/*
    printf '%-28s %12.0f %12.0f %12.1f %12.1f %8.2f\n' "$1 $2 QD$3" "$ci" "$hi" "$(echo "$cb / 1024" | bc -l)" "$(echo "$hb / 1024" | bc -l)" "$(echo "$ci / $hi" | bc -l)"
  done
  "$strata" --root "$root" layer unmount c >/dev/null
fi
