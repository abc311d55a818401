#!/usr/bin/env bash
# What attaching a thin device to the kernel costs on a machine without the nbd module (issue 8 chooses its
# attach path by this): a pool with one ext4-formatted device, served by `strata pool serve --fuse DIR`. Two
# paths, N times each:
#   nbdfuse path (libnbd's nbdfuse over the server's NBD socket):
#     snapshot   `strata pool device snapshot base cN` through the server's control socket
#     nbdfuse    start nbdfuse on a fresh directory with the snapshot's export, until the file appears
#     losetup    losetup -f --show on that file (direct IO off: nbdfuse's file has no O_DIRECT)
#     mount      mount -t ext4 the loop device
#     umount     umount
#     detach     losetup -d, fusermount3 -u, wait for nbdfuse to exit
#     rm         `strata pool device rm cN`
#   export path (the server's own FUSE export, one mount for all devices, what the thin driver uses):
#     snapshot, then x-losetup (losetup --direct-io=on on DIR/cN), x-mount, x-umount, x-detach (losetup -d), rm
# each timed apart (milliseconds), then p50/p90/max per step and of the sum. The peer for scale: the same
# mount/umount of a loop device over a plain file (what a kernel block device would cost without FUSE).
# Then, with --fio S (default 10; 0 skips), IO through each path: fio 4 KiB random reads and random writes at
# QD32 (libaio, O_DIRECT) for S seconds on the loop device of a fresh snapshot.
# Usage: bench/attach.sh [-n N] [--fio S]   (default 20). Everything is unmounted, detached, stopped and removed on exit.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
n=20
fio_s=10
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="$2"; shift 2 ;;
    --fio) fio_s="$2"; shift 2 ;;
    *) echo "usage: $0 [-n N] [--fio S]" >&2; exit 2 ;;
  esac
done
bench_need_root
bench_apt nbdfuse libnbd-bin
bench_apt fusermount3 fuse3
bench_apt fio fio
bench_apt jq jq
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/strata-attach.XXXXXX")
server=""
cleanup() {
  set +e
  for m in "$work"/mnt*; do mountpoint -q "$m" && umount "$m"; done
  losetup -j "$work/plain.img" -O NAME -n 2>/dev/null | xargs -r -n1 losetup -d
  for f in "$work"/fuse*/* "$work"/dev/*; do [ -e "$f" ] && losetup -j "$f" -O NAME -n | xargs -r -n1 losetup -d; done
  for d in "$work"/fuse*; do mountpoint -q "$d" && fusermount3 -u "$d"; done
  bench_stop_pid "$server" 30
  [ -s "$work/serve.log" ] && grep -v "^serving pool" "$work/serve.log" >&2
  rm -rf "$work"
}
trap cleanup EXIT
strata=$(bench_strata_snapshot "$work/bin")
ms() { date +%s%N; }
"$strata" pool create --pool "$work/pool" --data-size 4G >/dev/null
"$strata" pool device create base --size 1G --pool "$work/pool" >/dev/null
"$strata" pool serve --pool "$work/pool" --socket "$work/nbd.sock" --fuse "$work/dev" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do [ -S "$work/nbd.sock" ] && break; sleep 0.1; done
# format the base device once, through the same path
mkdir -p "$work/fuse0" "$work/mnt"
nbdfuse "$work/fuse0/base" "nbd+unix:///base?socket=$work/nbd.sock" &
for _ in $(seq 100); do [ -e "$work/fuse0/base" ] && break; sleep 0.05; done
loop=$(losetup -f --show "$work/fuse0/base")
mkfs.ext4 -q "$loop"
losetup -d "$loop"
fusermount3 -u "$work/fuse0"
wait "$!"
samples="$work/samples.txt"
: >"$samples"
echo "$(bench_machine)" >&2
for i in $(seq "$n"); do
  t0=$(ms); "$strata" pool device snapshot base "c$i" --pool "$work/pool" >/dev/null; t1=$(ms)
  mkdir -p "$work/fuse$i"
  nbdfuse "$work/fuse$i/c$i" "nbd+unix:///c$i?socket=$work/nbd.sock" &
  fpid=$!
  while [ ! -e "$work/fuse$i/c$i" ]; do sleep 0.001; done; t2=$(ms)
  loop=$(losetup -f --show "$work/fuse$i/c$i"); t3=$(ms)
  mount -t ext4 "$loop" "$work/mnt"; t4=$(ms)
  umount "$work/mnt"; t5=$(ms)
  losetup -d "$loop"; fusermount3 -u "$work/fuse$i"; wait "$fpid"; t6=$(ms)
  "$strata" pool device rm "c$i" --pool "$work/pool" >/dev/null; t7=$(ms)
  echo "snapshot $(( (t1 - t0) / 1000 )) nbdfuse $(( (t2 - t1) / 1000 )) losetup $(( (t3 - t2) / 1000 )) mount $(( (t4 - t3) / 1000 )) umount $(( (t5 - t4) / 1000 )) detach $(( (t6 - t5) / 1000 )) rm $(( (t7 - t6) / 1000 )) total $(( (t7 - t0) / 1000 ))" >>"$samples"
done
for i in $(seq "$n"); do
  t0=$(ms); "$strata" pool device snapshot base "x$i" --pool "$work/pool" >/dev/null; t1=$(ms)
  loop=$(losetup -f --show --direct-io=on "$work/dev/x$i"); t2=$(ms)
  mount -t ext4 "$loop" "$work/mnt"; t3=$(ms)
  umount "$work/mnt"; t4=$(ms)
  losetup -d "$loop"; t5=$(ms)
  "$strata" pool device rm "x$i" --pool "$work/pool" >/dev/null; t6=$(ms)
  echo "x-snapshot $(( (t1 - t0) / 1000 )) x-losetup $(( (t2 - t1) / 1000 )) x-mount $(( (t3 - t2) / 1000 )) x-umount $(( (t4 - t3) / 1000 )) x-detach $(( (t5 - t4) / 1000 )) x-rm $(( (t6 - t5) / 1000 )) x-total $(( (t6 - t0) / 1000 ))" >>"$samples"
done
# the peer for scale: a loop device over a plain ext4 image file
truncate -s 1G "$work/plain.img"; mkfs.ext4 -q "$work/plain.img"
for i in $(seq "$n"); do
  t0=$(ms); loop=$(losetup -f --show "$work/plain.img"); t1=$(ms)
  mount -t ext4 "$loop" "$work/mnt"; t2=$(ms)
  umount "$work/mnt"; t3=$(ms); losetup -d "$loop"; t4=$(ms)
  echo "plain-losetup $(( (t1 - t0) / 1000 )) plain-mount $(( (t2 - t1) / 1000 )) plain-umount $(( (t3 - t2) / 1000 )) plain-detach $(( (t4 - t3) / 1000 )) plain-total $(( (t4 - t0) / 1000 ))" >>"$samples"
done
echo "microseconds over $n runs: step p50 p90 max"
awk '{ for (i = 1; i < NF; i += 2) print $i, $(i + 1) }' "$samples" | sort -k1,1 -k2,2n | awk '
  function flush() { if (name != "") printf "%-14s %8d %8d %8d\n", name, v[int((c + 1) / 2)], v[int(c * 0.9 + 0.999)], v[c] }
  $1 != name { flush(); name = $1; c = 0 }
  { v[++c] = $2 }
  END { flush() }'

if [ "$fio_s" != 0 ]; then
  echo "IO through each path: fio on the loop device, ${fio_s}s per job, 4 KiB, QD32, libaio, O_DIRECT (IOPS)"
  printf '%-10s %12s %12s\n' path randread randwrite
  # the nbdfuse path
  "$strata" pool device snapshot base fio1 --pool "$work/pool" >/dev/null
  mkdir -p "$work/fusefio"
  nbdfuse "$work/fusefio/fio1" "nbd+unix:///fio1?socket=$work/nbd.sock" &
  fpid=$!
  while [ ! -e "$work/fusefio/fio1" ]; do sleep 0.01; done
  loop=$(losetup -f --show "$work/fusefio/fio1")
  r=(); for rw in randread randwrite; do
    r+=("$(fio --name=a --filename="$loop" --rw=$rw --bs=4k --iodepth=32 --ioengine=libaio --direct=1 --runtime="$fio_s" --time_based --size=1G --output-format=json | jq '.jobs[0].read.iops + .jobs[0].write.iops')")
  done
  printf '%-10s %12.0f %12.0f\n' nbdfuse "${r[0]}" "${r[1]}"
  losetup -d "$loop"; fusermount3 -u "$work/fusefio"; wait "$fpid"
  # the server's own FUSE export, loop with direct IO
  "$strata" pool device snapshot base fio2 --pool "$work/pool" >/dev/null
  loop=$(losetup -f --show --direct-io=on "$work/dev/fio2")
  r=(); for rw in randread randwrite; do
    r+=("$(fio --name=a --filename="$loop" --rw=$rw --bs=4k --iodepth=32 --ioengine=libaio --direct=1 --runtime="$fio_s" --time_based --size=1G --output-format=json | jq '.jobs[0].read.iops + .jobs[0].write.iops')")
  done
  printf '%-10s %12.0f %12.0f\n' export "${r[0]}" "${r[1]}"
  losetup -d "$loop"
fi
