#!/usr/bin/env bash
# Page cache of N containers of one image (issue 25): an image holding one file of SIZE MiB (random bytes), N containers
# of it made and mounted, the page cache dropped, then the file read once through each container in turn; after each
# read, the growth of `Cached:` in /proc/meminfo since the drop, and (thin) the pages of the pool's data file in the page
# cache (fincore: the pool server's copy under the FUSE export). Drivers: overlay (the peer: containers share the image's
# pages) and thin (today's mode: each container's filesystem caches its own copy above its loop device).
# This is a measurement of memory, not of time: the machine should be quiet, since `Cached:` is the whole machine's.
# Goals (issue 25): one container at most 1.1x the file size; in a shared thin mode, 20 containers at most 1.2x.
# Usage: bench/thin-memory.sh [-n CONTAINERS] [--size MIB] [--drivers overlay,thin]
# Env: STRATA_BIN=path measures that executable instead of a snapshot of ./strata's build; BENCH_DIR (default /var/tmp).
# Every container is unmounted and removed, the pool's server stopped and every file removed on exit, also on failure.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

n=4
size=100
drivers=overlay,thin
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --drivers) drivers="$2"; shift 2 ;;
    *) echo "usage: $0 [-n CONTAINERS] [--size MIB] [--drivers overlay,thin]" >&2; exit 2 ;;
  esac
done
bench_need_root
bench_apt busybox busybox-static
bench_apt fincore util-linux

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/strata-memory.XXXXXX")
strata=""
cleanup() {
  set +e
  for root in "$work"/store-*; do
    [ -d "$root" ] || continue
    for i in $(seq "$n"); do STRATA_ROOT="$root" "$strata" container rm -f "c$i" >/dev/null 2>&1; done
  done
  pkill -f "pool serve --pool $work" 2>/dev/null
  findmnt -rn -o TARGET | awk -v p="$work/" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
strata=$(bench_strata_snapshot "$work/bin")

mkdir -p "$work/rootfs/bin"
cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
head -c "$((size << 20))" /dev/urandom >"$work/rootfs/big"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
rm -rf "$work/rootfs"

cached_kib() { awk '/^Cached:/ { print $2 }' /proc/meminfo; }
# the pool's data file's pages in the page cache, in MiB (0 without a pool)
pool_mib() {
  local data="$1/thin/data"
  [ -f "$data" ] || { echo 0; return; }
  fincore --bytes --noheadings --output RES "$data" | awk '{ printf "%.0f", $1 / 1048576 }'
}

echo "$(bench_machine)" >&2
echo "file of $size MiB in the image; $n container(s); drivers $drivers" >&2
printf "| driver | containers | Cached: growth MiB | x file size | pool data file cached MiB |\n|---|---:|---:|---:|---:|\n"
for driver in ${drivers//,/ }; do
  root="$work/store-$driver"
  opts=()
  [ "$driver" = thin ] && opts=(--storage-opt "thin.basesize=$((size * 2 + 256))M")
  STRATA_ROOT="$root" "$strata" --driver "$driver" "${opts[@]}" init >/dev/null
  STRATA_ROOT="$root" "$strata" image import "$work/rootfs.tar" --name mem:1 -q >/dev/null
  dirs=()
  for i in $(seq "$n"); do
    STRATA_ROOT="$root" "$strata" container create mem:1 --name "c$i" >/dev/null
    dirs+=("$(STRATA_ROOT="$root" "$strata" container mount "c$i")")
  done
  sync
  echo 3 >/proc/sys/vm/drop_caches
  base=$(cached_kib)
  for i in $(seq "$n"); do
    cat "${dirs[$((i - 1))]}/big" >/dev/null
    grown=$(( ($(cached_kib) - base) / 1024 ))
    printf "| %s | %d | %d | %s | %s |\n" "$driver" "$i" "$grown" "$(awk -v g="$grown" -v s="$size" 'BEGIN { printf "%.2f", g / s }')" "$(pool_mib "$root")"
  done
  for i in $(seq "$n"); do STRATA_ROOT="$root" "$strata" container rm -f "c$i" >/dev/null; done
done
