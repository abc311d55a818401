#!/usr/bin/env bash
# The btrfs driver's performance section (issue 9): create + remove of N layers on top of a Debian rootfs layer
# (bench/rootfs.sh), btrfs vs overlay vs vfs (whose copies are reflinks on btrfs), all on the same fresh btrfs
# filesystem: a sparse image in BENCH_DIR (default /var/tmp), loop-attached with direct IO, mkfs.btrfs defaults.
# In-process (bench/Strata.ThinDriverBench layers): each layer is Create(child of the rootfs layer) then Remove,
# timed apart; p50/p90/p99 per driver and phase. Goal for btrfs: p50 under 5 ms.
# Usage: bench/btrfs.sh [-n N] [--vfs-n N]   (defaults 1000 and 20: a vfs copy of the rootfs takes seconds)
# Everything is unmounted, detached and removed on exit.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
n=1000
vfs_n=20
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="$2"; shift 2 ;;
    --vfs-n) vfs_n="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1" >&2; exit 2 ;;
  esac
done
bench_need_root
bench_apt mkfs.btrfs btrfs-progs
if ! command -v dotnet >/dev/null 2>&1; then echo "$0: the .NET 10 SDK is required" >&2; exit 1; fi
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/strata-bench-btrfs.XXXXXX")
mnt=""
dev=""
cleanup() {
  set +e
  if [ -n "$mnt" ]; then
    findmnt -rn -o TARGET | awk -v p="$mnt/" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m"; done
    mountpoint -q "$mnt" && umount "$mnt"
  fi
  [ -n "$dev" ] && losetup -d "$dev"
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rootfs=$("$bench_repo/bench/rootfs.sh")
bench_build_dotnet Strata.ThinDriverBench "$work/bin"
truncate -s 16G "$work/btrfs.img"
mkfs.btrfs -q -f "$work/btrfs.img"
dev=$(losetup --find --show --direct-io=on "$work/btrfs.img")
mnt="$work/mnt"
mkdir "$mnt"
mount "$dev" "$mnt"
echo "== btrfs driver benchmark: base layer from $rootfs ($(stat -c %s "$rootfs") bytes, $(tar -tf "$rootfs" | wc -l) entries)"
echo "== $(bench_machine)"
echo "== dotnet $(dotnet --version); $(mkfs.btrfs --version | head -1); a fresh 16 GiB btrfs image on $(findmnt -n -o FSTYPE -T "$work"), loop with direct IO"
cat "$rootfs" >/dev/null
dotnet "$work/bin/Strata.ThinDriverBench.dll" layers --dir "$mnt" --tar "$rootfs" --drivers btrfs,overlay,vfs -n "$n" --vfs-n "$vfs_n"
