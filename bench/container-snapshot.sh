#!/usr/bin/env bash
# Container snapshots (issue 24), two ways, in one run:
# 1. the operations themselves, in process (bench/Strata.ThinDriverBench snapshots: LayerStore.CopyLayer and
#    RestoreLayer, what `container snapshot create` and `container rollback` do) on a container layer that wrote 1 GiB;
# 2. `strata container snapshot create` and `strata container rollback`, each timed as a whole command (process start,
#    store open, the driver's work) on a container that wrote 1 GiB, beside `strata --version` (the command's floor), on the
# thin driver (a pool device snapshot; a rollback is one pool commit) and the btrfs driver (a subvolume snapshot; a
# rollback is a snapshot and a RENAME_EXCHANGE), with the peer `btrfs subvolume snapshot` of a 1 GiB subvolume (the
# command people use for the same) in the same run, and on the overlay driver (the container's upper dir frozen into a
# layer of its chain by renames; a rollback puts it back over the snapshot with no changes). Before each timed command
# `sync` runs, untimed.
# 3. overlay's merge (`container snapshot rm`: the snapshot folded into the container by renames) of a snapshot holding
#    10,000 files in a directory the container has too, in process (Strata.ThinDriverBench merge), beside `mv -t` of the
#    same files in the same run.
# Goals (issue 24): snapshot and rollback under 10 ms each on thin and btrfs; overlay's merge of 10,000 files at most
# the time of mv.
# btrfs: a sparse 8 GiB image in BENCH_DIR (default /var/tmp), loop-attached, mkfs.btrfs defaults.
# Usage: bench/container-snapshot.sh [-n ROUNDS]
# Env: STRATA_BIN=path measures that executable instead of a snapshot of ./strata's build.
# Everything mounted is unmounted, the loop device detached and every file removed on exit, also on failure.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=10
while [ $# -gt 0 ]; do
  case "$1" in
    -n) rounds="$2"; shift 2 ;;
    *) echo "usage: $0 [-n ROUNDS]" >&2; exit 2 ;;
  esac
done
bench_need_root
bench_apt mkfs.btrfs btrfs-progs
bench_apt busybox busybox-static

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/strata-snapshot.XXXXXX")
mnt=""
dev=""
cleanup() {
  set +e
  for root in "$work/thin" "$work/overlay" "${mnt:+$mnt/store}"; do
    [ -n "$root" ] && [ -d "$root" ] && STRATA_ROOT="$root" "$strata" container rm -f c >/dev/null 2>&1
  done
  if [ -n "$mnt" ]; then
    findmnt -rn -o TARGET | awk -v p="$mnt/" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m"; done
    mountpoint -q "$mnt" && umount "$mnt"
  fi
  findmnt -rn -o TARGET | awk -v p="$work/" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m"; done
  [ -n "$dev" ] && losetup -d "$dev"
  pkill -f "pool serve --pool $work" 2>/dev/null
  rm -rf --one-file-system "$work"
}
strata=""
trap cleanup EXIT
trap 'exit 130' INT TERM
strata=$(bench_strata_snapshot "$work/bin")
mkdir -p "$work/bench"
bench_build_dotnet Strata.ThinDriverBench "$work/bench"

truncate -s 8G "$work/btrfs.img"
mkfs.btrfs -q -f "$work/btrfs.img"
dev=$(losetup --find --show "$work/btrfs.img")
mnt="$work/mnt"
mkdir "$mnt"
mount "$dev" "$mnt"

mkdir -p "$work/rootfs/bin"
cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

results="$work/results.txt"
: >"$results"
ms() { echo "$1 $2" >>"$results"; }
# timed CMD...: runs it, prints its wall time in ms
timed() {
  local t0 t1
  t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000)) | awk '{ printf "%.2f", $1 / 1000 }'
}

# store ROOT DRIVER [OPTS...]: a store with image i:1 and container c that wrote 1 GiB
store() {
  local root="$1" driver="$2"; shift 2
  STRATA_ROOT="$root" "$strata" --driver "$driver" "$@" init >/dev/null
  STRATA_ROOT="$root" "$strata" image import "$work/rootfs.tar" --name i:1 -q >/dev/null
  STRATA_ROOT="$root" "$strata" container create i:1 --name c >/dev/null
  local dir
  dir=$(STRATA_ROOT="$root" "$strata" container mount c)
  dd if=/dev/urandom of="$dir/data" bs=1M count=1024 status=none
  STRATA_ROOT="$root" "$strata" container unmount c
}

echo "$(bench_machine)" >&2
echo "$(btrfs --version); 1 GiB written by the container; $rounds round(s)" >&2
echo "== in process" >&2
mkdir -p "$work/inproc"
STRATA_BIN="$strata" dotnet "$work/bench/Strata.ThinDriverBench.dll" snapshots --dir "$work/inproc" --driver thin -n "$rounds" --size-mib 1024 | grep -v "^  " >&2
mkdir -p "$mnt/inproc"
STRATA_BIN="$strata" dotnet "$work/bench/Strata.ThinDriverBench.dll" snapshots --dir "$mnt/inproc" --driver btrfs -n "$rounds" --size-mib 1024 | grep -v "^  " >&2
STRATA_BIN="$strata" dotnet "$work/bench/Strata.ThinDriverBench.dll" snapshots --dir "$work/inproc" --driver overlay -n "$rounds" --size-mib 1024 | grep -v "^  " >&2
rm -rf --one-file-system "$work/inproc" "$mnt/inproc"
mkdir -p "$work/inproc"
dotnet "$work/bench/Strata.ThinDriverBench.dll" merge --dir "$work/inproc" -n "$rounds" --files 10000 | grep -v "^  " >&2
rm -rf --one-file-system "$work/inproc"
echo "== whole commands" >&2
store "$work/thin" thin --storage-opt thin.basesize=2G
store "$mnt/store" btrfs
store "$work/overlay" overlay
btrfs subvolume create "$mnt/peer" >/dev/null
dd if=/dev/urandom of="$mnt/peer/data" bs=1M count=1024 status=none
for round in $(seq "$rounds"); do
  for side in thin btrfs overlay; do
    root="$work/$side"; [ "$side" = btrfs ] && root="$mnt/store"
    sync; ms "$side-snapshot" "$(STRATA_ROOT="$root" timed "$strata" container snapshot create c "r$round")"
    sync; ms "$side-rollback" "$(STRATA_ROOT="$root" timed "$strata" container rollback c "r$round")"
    STRATA_ROOT="$root" "$strata" container snapshot rm c "r$round" >/dev/null
  done
  sync; ms "btrfs-subvolume-snapshot" "$(timed btrfs subvolume snapshot "$mnt/peer" "$mnt/peer-r$round")"
  btrfs subvolume delete "$mnt/peer-r$round" >/dev/null
  sync; ms "strata-version" "$(timed "$strata" --version)"
done
bench_stats "$results" | awk '
  BEGIN { printf "| command | rounds | median ms | min | max |\n|---|---|---|---|---|\n" }
  { printf "| %s | %d | %.2f | %.2f | %.2f |\n", $1, $2, $3, $4, $5 }'
