#!/bin/bash
# The scenario test/vm/quota.sh runs inside the VM (chrooted into the host's root, read-only over
# 9p; only /tmp, /run, /mnt and /dev are writable). Prints "PASS: ..." / "FAIL: ..." per expectation
# and ends with "STRATA-VM-RESULT: PASS" only if every expectation held.
set -u
share=/run/strata-vm
. "$share/vm.env" # DOTNET_ROOT
export DOTNET_ROOT DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_EnableDiagnostics=0
cli="$share/strata/strata"
root=/mnt/x/store
passed=0 failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
# strata ARGS...: runs the CLI on the store, shows the command, its output and how long it took
strata() {
  local t0=$SECONDS
  echo "\$ strata --root $root $*"
  out=$("$cli" --root "$root" "$@" 2>&1)
  local rc=$?
  [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/  /'
  echo "  (exit $rc, ${SECONDS}s since start, $((SECONDS - t0))s)"
  return $rc
}
# dd_write FILE MIB: writes MIB MiB of zeros with fsync; keeps dd's messages in $out
dd_write() {
  echo "\$ dd if=/dev/zero of=$1 bs=1M count=$2 conv=fsync"
  out=$(dd if=/dev/zero of="$1" bs=1M count="$2" conv=fsync 2>&1)
  local rc=$?
  printf '%s\n' "$out" | sed 's/^/  /'
  echo "  (exit $rc)"
  return $rc
}
finish() {
  echo "STRATA-VM: $passed passed, $failed failed, ${SECONDS}s in the guest"
  if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then echo "STRATA-VM-RESULT: PASS"; else echo "STRATA-VM-RESULT: FAIL"; fi
  exit 0
}

echo "STRATA-VM: guest: $(uname -srm); $(. /etc/os-release && echo "$PRETTY_NAME") root over 9p"

# --- an xfs with project quotas, in RAM
mkdir -p /mnt/x
if truncate -s 512M /tmp/xfs.img && mkfs.xfs -q /tmp/xfs.img && mount -o loop,prjquota /tmp/xfs.img /mnt/x; then
  opts=$(awk '$2 == "/mnt/x" { print $4 }' /proc/mounts)
  echo "mounted /tmp/xfs.img at /mnt/x: $opts"
  case ",$opts," in
    *,prjquota,*) pass "xfs image mounted with prjquota" ;;
    *) fail "xfs mounted without prjquota ($opts)" ;;
  esac
else
  fail "cannot make and mount a 512 MiB xfs with -o loop,prjquota"
  finish
fi

echo "\$ strata --version"
if out=$("$cli" --version 2>&1); then pass "strata runs in the guest: $out (${SECONDS}s since start)"
else printf '%s\n' "$out" | sed 's/^/  /'; fail "strata does not run in the guest"; finish; fi

# --- the probe: on this kernel (no lowerdir+ before 6.8, no overlay mount-API parser before 6.5) a
# new store must still get overlay, mounted with options in one page (init makes the store: info only reads one)
echo "\$ strata --root /mnt/x/probed init && strata --root /mnt/x/probed info"
out=$("$cli" --root /mnt/x/probed init 2>&1 && "$cli" --root /mnt/x/probed info 2>&1)
printf '%s\n' "$out" | sed 's/^/  /'
kv=$(uname -r | awk -F. '{ print $1 * 100 + $2 }')
if [ "$kv" -lt 608 ]; then mount_line='Mount: kernel overlayfs (options in one page)'; else mount_line='Mount: kernel overlayfs (up to 500 layers)'; fi
if printf '%s\n' "$out" | grep -q '^Storage Driver: overlay' && printf '%s\n' "$out" | grep -qF "$mount_line"; then
  pass "a new store probes overlay: $mount_line"
else fail "a new store does not get overlay with '$mount_line'"; fi

# --- a container layer limited to 50M
# the store is made for the overlay driver (without --driver a new store gets what the probe picks)
strata --driver overlay layer create base && pass "layer create base (--driver overlay)" || fail "layer create base (--driver overlay)"
if strata layer create c --parent base --rw --storage-opt size=50M; then pass "layer create c --rw --storage-opt size=50M"
else fail "layer create c --rw --storage-opt size=50M"; fi
strata info
if printf '%s\n' "$out" | grep -q '^ *Storage Driver: overlay'; then pass "info says: Storage Driver: overlay"
else fail "info does not say 'Storage Driver: overlay'"; fi
if printf '%s\n' "$out" | grep -q 'Size Limits: xfs project quotas'; then pass "info says: Size Limits: xfs project quotas"
else fail "info does not say 'Size Limits: xfs project quotas'"; fi
strata layer inspect c
if printf '%s\n' "$out" | grep -Eq '"Size": *"?52428800'; then pass "inspect c shows Size 52428800"
else fail "inspect c does not show the 50M limit (Size 52428800)"; fi
echo "\$ xfs_io -c lsproj /mnt/x/store/overlay/c; lsattr -pd"
xfs_io -c lsproj /mnt/x/store/overlay/c 2>&1 | sed 's/^/  /'
lsattr -pd /mnt/x/store/overlay/c /mnt/x/store/overlay/c/diff 2>&1 | sed 's/^/  /'

if strata layer mount c && merged=$(printf '%s\n' "$out" | tail -1) && [ -d "$merged" ]; then
  pass "layer mount c: $merged"
  echo "\$ df -h $merged"
  df -h "$merged" | sed 's/^/  /'
  if dd_write "$merged/a" 25; then pass "25 MiB written into the 50M layer"
  else fail "25 MiB could not be written into the 50M layer"; fi
  if dd_write "$merged/b" 50; then fail "another 50 MiB was written: the 50M limit does not hold"
  elif printf '%s\n' "$out" | grep -Eq 'Disk quota exceeded|No space left on device'; then
    pass "another 50 MiB is refused: $(printf '%s\n' "$out" | grep -Eo 'Disk quota exceeded|No space left on device' | head -1)"
  else fail "another 50 MiB failed, but not with EDQUOT/ENOSPC"; fi
  echo "\$ du -sh $merged/a $merged/b"
  du -sh "$merged/a" "$merged/b" 2>&1 | sed 's/^/  /'
  if command -v xfs_quota >/dev/null; then
    echo "\$ xfs_quota -x -c 'report -p' /mnt/x"
    xfs_quota -x -c 'report -p' /mnt/x 2>&1 | sed 's/^/  /'
    echo "\$ xfs_quota -x -c 'report -p -h' /mnt/x"
    xfs_quota -x -c 'report -p -h' /mnt/x 2>&1 | sed 's/^/  /'
  fi
  strata layer unmount c && pass "layer unmount c" || fail "layer unmount c"
else
  fail "layer mount c"
fi
if strata layer rm c; then pass "layer rm c"; else fail "layer rm c"; fi
if [ ! -e /mnt/x/store/overlay/c ]; then pass "overlay/c is gone"; else fail "overlay/c is still there"; fi
if command -v xfs_quota >/dev/null; then
  echo "\$ xfs_quota -x -c 'report -p' /mnt/x   (after rm: the project's limit is lifted)"
  xfs_quota -x -c 'report -p' /mnt/x 2>&1 | sed 's/^/  /'
fi

# --- a container layer without size: no limit
if strata layer create d --parent base --rw; then pass "layer create d --rw (no size)"; else fail "layer create d --rw (no size)"; fi
if strata layer mount d && merged=$(printf '%s\n' "$out" | tail -1) && [ -d "$merged" ]; then
  pass "layer mount d: $merged"
  if dd_write "$merged/big" 80; then pass "80 MiB written into the layer without size"
  else fail "80 MiB could not be written into the layer without size"; fi
  strata layer unmount d && pass "layer unmount d" || fail "layer unmount d"
else
  fail "layer mount d"
fi
strata layer rm d base && pass "layer rm d base" || fail "layer rm d base"
strata layer ls

# --- an xfs without prjquota: a clear refusal
mkdir -p /mnt/y
if truncate -s 320M /tmp/xfs2.img && mkfs.xfs -q /tmp/xfs2.img && mount -o loop /tmp/xfs2.img /mnt/y; then
  echo "\$ strata --root /mnt/y/store ... --storage-opt size=50M"
  "$cli" --root /mnt/y/store --driver overlay layer create base >/dev/null 2>&1
  out=$("$cli" --root /mnt/y/store layer create c --parent base --rw --storage-opt size=50M 2>&1)
  printf '%s\n' "$out" | sed 's/^/  /'
  if printf '%s\n' "$out" | grep -q '^strata: size= is not supported here: project quotas are not enabled on this xfs (mount it with -o prjquota'; then
    pass "without prjquota, size= is refused with a clear message"
  else fail "without prjquota, size= is not refused as expected"; fi
  umount /mnt/y
else fail "cannot make and mount a second xfs"; fi

# --- the thin driver through the kernel's nbd module: the pool server gives each device to /dev/nbdN
troot=/tmp/thin-store
thin() {
  local t0=$SECONDS
  echo "\$ strata --root $troot $*"
  out=$("$cli" --root "$troot" "$@" 2>&1)
  local rc=$?
  [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/  /'
  echo "  (exit $rc, $((SECONDS - t0))s)"
  return $rc
}
if [ -e /sys/block/nbd0/size ]; then pass "the nbd module is loaded"; else fail "no /sys/block/nbd0: the nbd module is not loaded"; fi
export STRATA_BIN="$cli"
if thin --driver thin --storage-opt thin.basesize=256M --storage-opt thin.datasize=2G layer create image; then pass "thin: layer create image"
else fail "thin: layer create image"; fi
if thin layer mount image && img=$(printf '%s\n' "$out" | tail -1) && [ -d "$img" ]; then
  dev=$(awk -v m="$img" '$2 == m { print $1 }' /proc/mounts)
  case "$dev" in /dev/nbd*) pass "thin: image mounted from $dev" ;; *) fail "thin: image mounted from '$dev', not an nbd device" ;; esac
  echo hello >"$img/hello" && sync -f "$img/hello"
  thin layer unmount image && pass "thin: layer unmount image" || fail "thin: layer unmount image"
  if [ ! -e "/sys/block/${dev#/dev/}/pid" ]; then pass "thin: $dev is disconnected after the unmount"; else fail "thin: $dev is still connected"; fi
else fail "thin: layer mount image"; fi
thin layer create c --parent image --rw && pass "thin: layer create c --rw" || fail "thin: layer create c --rw"
if thin layer mount c && c=$(printf '%s\n' "$out" | tail -1) && [ -d "$c" ]; then
  if [ "$(cat "$c/hello" 2>&1)" = hello ]; then pass "thin: the container sees the image's file"; else fail "thin: the container does not see the image's file"; fi
  if dd_write "$c/big" 64; then pass "thin: 64 MiB written in the container"; else fail "thin: 64 MiB could not be written in the container"; fi
  thin info && printf '%s\n' "$out" | grep -q '^ Attached Devices: 1$' && pass "thin: info shows 1 attached device" || fail "thin: info does not show 1 attached device"
  thin layer unmount c && pass "thin: layer unmount c" || fail "thin: layer unmount c"
else fail "thin: layer mount c"; fi
# the pool server killed (SIGKILL) under a mounted container: the next command cleans up, the layer mounts again
if thin layer mount c && c=$(printf '%s\n' "$out" | tail -1); then
  echo synced >"$c/synced" && sync -f "$c/synced"
  pid=$(cat "$troot/thin/server.pid")
  echo "\$ kill -KILL $pid (the pool server)"; kill -KILL "$pid"
  for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  # a command that writes (init) sweeps what the dead server left; listings change nothing
  thin init && pass "thin: a command runs after the pool server was killed" || fail "thin: no command runs after the pool server was killed"
  if awk -v p="$troot/thin/mnt/" 'index($2, p) == 1 { found = 1 } END { exit !found }' /proc/mounts; then fail "thin: the dead server's mounts are still there"
  else pass "thin: the dead server's mounts are gone"; fi
  if thin layer mount c && c=$(printf '%s\n' "$out" | tail -1) && [ "$(cat "$c/synced" 2>&1)" = synced ]; then pass "thin: the layer mounts again with what was synced"
  else fail "thin: the layer does not mount again with what was synced"; fi
  thin layer unmount c || fail "thin: layer unmount c after the restart"
else fail "thin: layer mount c (for the kill test)"; fi
thin layer rm c image && pass "thin: layer rm c image" || fail "thin: layer rm c image"
if thin pool check && printf '%s\n' "$out" | tail -1 | grep -qx clean; then pass "thin: pool check is clean"; else fail "thin: pool check is not clean"; fi
connected=$(ls /sys/block/nbd*/pid 2>/dev/null | wc -l)
if [ "$connected" = 0 ]; then pass "thin: no nbd device left connected"; else fail "thin: $connected nbd device(s) left connected"; fi
for _ in $(seq 50); do pgrep -f "pool serve --new-session --pool $troot" >/dev/null || break; sleep 0.1; done
if pgrep -f "pool serve --new-session --pool $troot" >/dev/null; then fail "thin: the pool server still runs with nothing attached"
else pass "thin: the pool server stopped with nothing attached"; fi
echo "\$ tail $troot/thin/server.log"; tail -5 "$troot/thin/server.log" 2>&1 | sed 's/^/  /'

# --- dm-thin: a pool of the kernel's own on two loop files, thin devices with ext4 and xfs, a snapshot;
# the files and each device's file hashes go to the writable share, where quota.sh opens the pool with
# `strata dm serve` on the host after the VM (no dm module there) and compares every file
run() {
  echo "\$ $*"
  out=$("$@" 2>&1)
  local rc=$?
  [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/  /'
  [ "$rc" = 0 ] || echo "  (exit $rc)"
  return $rc
}
dmout=/run/strata-out
dm=/tmp/dm
mkdir -p $dm /mnt/dm
dms() { run dmsetup --noudevsync "$@"; }
# thin_dev ID NAME SECTORS: a thin device of the pool, with its node in /dev/mapper
thin_dev() { dms create "$2" --table "0 $3 thin /dev/mapper/strata-pool $1" && dmsetup mknodes "$2"; }
# hashes NAME FSTYPE OPTS FILE: every file's sha256 of the device's filesystem, mounted read-only, into FILE
hashes() {
  mount -t "$2" -o "ro,$3" "/dev/mapper/$1" /mnt/dm || return 1
  (cd /mnt/dm && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$4"
  local rc=$?
  umount /mnt/dm && return $rc
}
if [ -d $dmout ] && run truncate -s 1G $dm/data && run truncate -s 16M $dm/metadata \
  && ld=$(losetup -f --show $dm/data) && lm=$(losetup -f --show $dm/metadata) \
  && dms create strata-pool --table "0 $((1024 * 2048)) thin-pool $lm $ld 128 0" && dmsetup mknodes strata-pool \
  && dms message strata-pool 0 "create_thin 1" && thin_dev 1 strata-thin1 $((128 * 2048)); then
  pass "dm-thin: a kernel pool (64 KiB blocks) on two loop files, with thin device 1"
  if run mkfs.ext4 -q /dev/mapper/strata-thin1 && mount /dev/mapper/strata-thin1 /mnt/dm \
    && mkdir -p /mnt/dm/etc /mnt/dm/data && echo "thin one" >/mnt/dm/etc/hostname \
    && head -c 6M /dev/urandom >/mnt/dm/data/random.bin && seq 1 200000 >/mnt/dm/data/numbers.txt \
    && echo gone >/mnt/dm/etc/deleted && sync && umount /mnt/dm; then pass "dm-thin: an ext4 with files on device 1"
  else fail "dm-thin: an ext4 with files on device 1"; fi
  # an internal snapshot of an active origin: suspend it, create_snap, resume
  if dms suspend strata-thin1 && dms message strata-pool 0 "create_snap 2 1" && dms resume strata-thin1 \
    && thin_dev 2 strata-thin2 $((128 * 2048)) && mount /dev/mapper/strata-thin2 /mnt/dm \
    && echo "the snapshot's own" >/mnt/dm/etc/snapshot && rm /mnt/dm/etc/deleted \
    && dd if=/dev/urandom of=/mnt/dm/data/random.bin bs=64k seek=10 count=3 conv=notrunc,fsync 2>/dev/null \
    && sync && umount /mnt/dm; then pass "dm-thin: device 2, a snapshot of 1, changed apart from it"
  else fail "dm-thin: device 2, a snapshot of 1"; fi
  if dms message strata-pool 0 "create_thin 3" && thin_dev 3 strata-thin3 $((320 * 2048)) && run mkfs.xfs -q /dev/mapper/strata-thin3 \
    && mount /dev/mapper/strata-thin3 /mnt/dm && head -c 3M /dev/urandom >/mnt/dm/xfs.bin && sync && umount /mnt/dm; then
    pass "dm-thin: an xfs with a file on device 3"
  else fail "dm-thin: an xfs on device 3"; fi
  hashes strata-thin1 ext4 noload $dmout/dm-hashes-1.txt && hashes strata-thin2 ext4 noload $dmout/dm-hashes-2.txt \
    && hashes strata-thin3 xfs norecovery $dmout/dm-hashes-3.txt && pass "dm-thin: every file's hash kept for the host" \
    || fail "dm-thin: hashing the devices' files"
  run dmsetup status strata-pool
  if dms remove strata-thin1 && dms remove strata-thin2 && dms remove strata-thin3 && dms remove strata-pool \
    && losetup -d "$ld" && losetup -d "$lm"; then pass "dm-thin: the pool and its devices removed"
  else fail "dm-thin: removing the pool"; fi
  # (thin_check opens with O_DIRECT, which tmpfs refuses: quota.sh runs it on the host)
  if run cp --sparse=always $dm/data $dm/metadata $dmout/; then pass "dm-thin: the pool's two files copied to the host"
  else fail "dm-thin: copying the pool's files to the host"; fi
else
  fail "dm-thin: cannot make a kernel pool (no $dmout, or losetup/dmsetup failed)"
fi
rm -rf $dm

# --- Docker's devicemapper driver (loop-lvm, as Debian's docker.io 20.10 sets it up), a loaded image and a container
# that wrote files; its root (the pool's loop files and Docker's bookkeeping) goes to the host as a sparse tar, with
# what `docker diff` and the container printed, for `strata dm` there
dk=/tmp/docker
dsock=/run/docker-dm.sock
dockerd_pid=""
dkr() { run docker -H "unix://$dsock" "$@"; }
mkdir -p /sys/fs/cgroup
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup
bb=/tmp/bb
mkdir -p $bb/bin $bb/etc
cp /bin/busybox $bb/bin/busybox
for t in sh ls cat echo rm mkdir head sha256sum; do ln -s busybox "$bb/bin/$t"; done
echo 'root:x:0:0:root:/root:/bin/sh' >$bb/etc/passwd
echo "hello from the image" >$bb/etc/motd
if tar -C $bb -cf /tmp/bb.tar . && "$cli" --root /tmp/bb-store image import /tmp/bb.tar --name demo:1 -q >/dev/null \
  && "$cli" --root /tmp/bb-store image export demo:1 --format docker-archive -o /tmp/demo.tar; then
  pass "docker: an image made with strata for docker load"
else fail "docker: making the image"; fi
echo "\$ dockerd --storage-driver devicemapper (loop-lvm) --data-root $dk"
# (/etc is the host's, read-only here: its identity key goes to /tmp, through the config file's deprecated-key-path)
echo '{"deprecated-key-path": "/tmp/docker-key.json"}' >/tmp/docker-daemon.json
dockerd --config-file /tmp/docker-daemon.json --data-root $dk --exec-root /run/docker-dm --host "unix://$dsock" --pidfile /run/docker-dm.pid \
  --storage-driver devicemapper --storage-opt dm.loopdatasize=4G --storage-opt dm.loopmetadatasize=128M \
  --storage-opt dm.basesize=1G --storage-opt dm.override_udev_sync_check=true \
  --bridge none --iptables=false --ip6tables=false --ip-masq=false >/tmp/dockerd.log 2>&1 &
dockerd_pid=$!
for _ in $(seq 240); do docker -H "unix://$dsock" version >/dev/null 2>&1 && break; kill -0 $dockerd_pid 2>/dev/null || break; sleep 0.5; done
if dkr info && printf '%s\n' "$out" | grep -q 'Storage Driver: devicemapper'; then
  pass "docker: dockerd runs with the devicemapper driver"
  dkr load -i /tmp/demo.tar && pass "docker: docker load" || fail "docker: docker load"
  if dkr run --name work --network none demo:1 sh -c 'echo 42 >/answer; rm /etc/motd; mkdir /data; head -c 1048576 /dev/urandom >/data/blob; sha256sum /data/blob /answer'; then
    printf '%s\n' "$out" >$dmout/docker-run.txt
    pass "docker: a container wrote files"
  else fail "docker: docker run"; fi
  dkr diff work && printf '%s\n' "$out" >$dmout/docker-diff.txt && pass "docker: docker diff" || fail "docker: docker diff"
  dkr images --no-trunc
  dkr ps -a --no-trunc
else
  fail "docker: dockerd with the devicemapper driver does not run"
  tail -30 /tmp/dockerd.log | sed 's/^/  dockerd: /'
fi
if [ -n "$dockerd_pid" ]; then
  kill $dockerd_pid 2>/dev/null
  for _ in $(seq 120); do kill -0 $dockerd_pid 2>/dev/null || break; sleep 0.5; done
  kill -0 $dockerd_pid 2>/dev/null && { fail "docker: dockerd did not stop"; kill -9 $dockerd_pid; }
fi
tail -5 /tmp/dockerd.log | sed 's/^/  dockerd: /'
run dmsetup ls
# what a dockerd that stopped (or failed) left: mounts under its root, its devices and pool, the pool's loop devices
awk -v r="$dk/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l
for n in $(dmsetup ls | awk '/^docker-/ && !/-pool/ { print $1 }') $(dmsetup ls | awk '/^docker-.*-pool/ { print $1 }'); do dmsetup --noudevsync remove "$n"; done
for f in $dk/devicemapper/devicemapper/data $dk/devicemapper/devicemapper/metadata; do
  for l in $(losetup -j "$f" -O NAME -n 2>/dev/null); do losetup -d "$l"; done
done
if [ -f $dk/devicemapper/devicemapper/data ] && run tar --sparse -cf $dmout/docker.tar -C /tmp docker; then
  pass "docker: its root copied to the host ($(du -sh $dmout/docker.tar | cut -f1))"
else fail "docker: no devicemapper root to copy"; fi
rm -rf $dk /tmp/bb /tmp/bb.tar /tmp/bb-store /tmp/demo.tar

echo "\$ dmesg | grep -Ei 'xfs|overlay|quota|nbd|ext4|device-mapper|thin|loop'"
dmesg | grep -Ei 'xfs|overlay|quota|nbd|ext4|device-mapper|thin|loop' | sed 's/^/  /'
umount /mnt/x && pass "umount /mnt/x" || fail "umount /mnt/x"
finish
