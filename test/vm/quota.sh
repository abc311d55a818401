#!/usr/bin/env bash
# Proves `layer create --rw --storage-opt size=50M` (overlay driver, xfs project quotas) for real on
# a kernel that has CONFIG_XFS_QUOTA: boots Debian 12's stock 6.1 kernel under qemu (KVM when it
# works here, else TCG software emulation) with the host's root shared read-only over virtio-9p and
# a small busybox initramfs (test/vm/init.sh), and runs test/vm/guest.sh in it with the real strata
# CLI built on the host. The same guest makes a dm-thin pool with the kernel's own dm-thin-pool on two
# loop files (thin devices with ext4 and xfs, a snapshot) and leaves the files and every file's hash in
# a writable share; after the VM, the host (which has no dm module) serves that pool with `strata dm
# serve` and mounts each device from its FUSE file to compare. Exit status 0 only if every expectation
# held in the guest and on the host.
#
# Environment: STRATA_VM_CACHE (default /var/cache/strata-vm: the kernel package, kept),
# STRATA_VM_KERNEL (e.g. 6.1.0-56-amd64; default the newest linux-image-6.1.0-*-amd64 apt knows),
# STRATA_VM_ACCEL (auto, kvm or tcg), STRATA_VM_TIMEOUT (seconds the VM may run, default 1800),
# STRATA_VM_CLI (a directory holding a built strata, instead of building with ./strata).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${STRATA_VM_CACHE:-/var/cache/strata-vm}"
limit="${STRATA_VM_TIMEOUT:-1800}"
accel="${STRATA_VM_ACCEL:-auto}"
t0=$SECONDS

say() { echo "quota.sh: $*"; }
die() {
  echo "quota.sh: FAIL: $*"
  exit 1
}
[ "$(id -u)" = 0 ] || die "run as root (qemu shares / over 9p with security_model=passthrough)"
[ "$(uname -m)" = x86_64 ] || die "x86_64 hosts only"

work=""
qemu_pid=""
dm_pid=""
cleanup() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$qemu_pid" 2>/dev/null || true
  fi
  if [ -n "$dm_pid" ] && kill -0 "$dm_pid" 2>/dev/null; then kill "$dm_pid" 2>/dev/null || true; wait "$dm_pid" 2>/dev/null || true; fi
  if [ -n "$work" ]; then
    if mountpoint -q "$work/dm-mnt" 2>/dev/null; then umount "$work/dm-mnt" || umount -l "$work/dm-mnt" || true; fi
    if mountpoint -q "$work/dm-fuse" 2>/dev/null; then umount -l "$work/dm-fuse" || true; fi
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# --- host tools (apt-get retried: another process may hold the dpkg lock)
apt_retry() {
  local i
  for i in $(seq 20); do
    if DEBIAN_FRONTEND=noninteractive apt-get "$@" >"$work/apt.log" 2>&1; then return 0; fi
    if ! grep -qi 'lock' "$work/apt.log"; then break; fi
    sleep 15
  done
  cat "$work/apt.log"
  return 1
}
work="$(mktemp -d /var/tmp/strata-vm.XXXXXX)"
missing=()
for p in qemu-system-x86 busybox-static cpio; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt_retry install -y -q "${missing[@]}" || { apt_retry update -q && apt_retry install -y -q "${missing[@]}"; } || die "cannot install ${missing[*]}"
fi
busybox=/bin/busybox
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not static (install busybox-static)"; fi

# --- the kernel: Debian 12's linux-image-6.1.0-N-amd64, cached
mkdir -p "$cache"
kver="${STRATA_VM_KERNEL:-}"
if [ -z "$kver" ]; then
  kver="$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null | awk '{ print $1 }' | sed 's/^linux-image-//' | sort -V | tail -1)"
fi
if [ -n "$kver" ] && [ ! -f "$cache/$kver/.complete" ]; then
  say "fetching linux-image-$kver into $cache"
  rm -rf "${cache:?}/$kver.part"
  mkdir -p "$cache/$kver.part/dl"
  chmod 777 "$cache/$kver.part/dl" # apt-get download runs as _apt where it can
  if (cd "$cache/$kver.part/dl" && apt_retry download "linux-image-$kver") \
    || { apt_retry update -q && (cd "$cache/$kver.part/dl" && apt_retry download "linux-image-$kver"); }; then
    dpkg-deb -x "$cache/$kver.part/dl"/linux-image-"$kver"_*.deb "$cache/$kver.part/root"
    mv "$cache/$kver.part/dl"/*.deb "$cache/$kver.part/"
    rmdir "$cache/$kver.part/dl"
    touch "$cache/$kver.part/.complete"
    rm -rf "${cache:?}/$kver"
    mv "$cache/$kver.part" "$cache/$kver"
  else
    rm -rf "${cache:?}/$kver.part"
    say "cannot download linux-image-$kver; trying a cached kernel"
    kver=""
  fi
fi
if [ -z "$kver" ] || [ ! -f "$cache/$kver/.complete" ]; then
  kver="$(find "$cache" -mindepth 2 -maxdepth 2 -name .complete -printf '%h\n' 2>/dev/null | xargs -r -n1 basename | sort -V | tail -1)"
  [ -n "$kver" ] || die "no Debian 6.1 kernel: apt-get download linux-image-6.1.0-N-amd64 failed and $cache has none"
fi
kroot="$cache/$kver/root"
kernel="$kroot/boot/vmlinuz-$kver"
mods="$kroot/lib/modules/$kver"
[ -f "$kernel" ] || die "$kernel missing"
grep -q '^CONFIG_XFS_QUOTA=y' "$kroot/boot/config-$kver" || die "$kver has no CONFIG_XFS_QUOTA"
say "kernel $kver (CONFIG_XFS_QUOTA=y), from $cache/$kver"

# --- initramfs: busybox, /init, the modules (dependencies first, from each module's depends=)
ird="$work/initramfs"
mkdir -p "$ird/bin" "$ird/dev" "$ird/proc" "$ird/sys" "$ird/newroot" "$ird/modules"
cp "$busybox" "$ird/bin/busybox"
cp "$here/init.sh" "$ird/init"
chmod 755 "$ird/init"
mknod -m 600 "$ird/dev/console" c 5 1
declare -A seen=()
order=()
add_module() {
  local name="${1//-/_}" pattern file deps dep # modinfo's depends= may say dm-mod for dm_mod
  [ -z "${seen[$name]:-}" ] || return 0
  seen[$name]=1
  pattern="$(printf '%s' "$name" | sed 's/[-_]/[-_]/g')"
  file="$(find "$mods/kernel" -regex ".*/$pattern\.ko\(\.xz\|\.zst\|\.gz\)?" | head -1)"
  if [ -z "$file" ]; then
    grep -Eq "/$pattern\.ko\$" "$mods/modules.builtin" && return 0
    die "module $name is not in $kver"
  fi
  case "$file" in # busybox insmod wants them uncompressed
    *.xz) xz -dc "$file" ;;
    *.zst) zstd -qdc "$file" ;;
    *.gz) gzip -dc "$file" ;;
    *) cat "$file" ;;
  esac >"$ird/modules/$name.ko"
  deps="$(tr '\0' '\n' <"$ird/modules/$name.ko" | sed -n 's/^depends=//p' | head -1)"
  for dep in ${deps//,/ }; do add_module "$dep"; done
  order+=("$name")
}
# crc32c_generic: libcrc32c's soft dependency (xfs needs the crc32c hash)
# nbd and ext4: the thin driver through the kernel's nbd module (the test machine has no nbd module)
for m in virtio_pci 9pnet_virtio 9p loop overlay crc32c_generic xfs nbd ext4 dm_mod dm_thin_pool; do add_module "$m"; done
printf '%s\n' "${order[@]}" >"$ird/modules.list"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"
say "initramfs: busybox + ${order[*]}"

# --- the strata CLI, built on the host and copied aside (others may rebuild .build/strata meanwhile)
share="$work/share"
mkdir -p "$share" "$work/out"
cp "$here/guest.sh" "$share/guest.sh"
dotnet_root="$(dirname "$(readlink -f "$(command -v dotnet)")")" || die "dotnet not found"
echo "DOTNET_ROOT=$dotnet_root" >"$share/vm.env"
if [ -n "${STRATA_VM_CLI:-}" ]; then
  cp -a "$STRATA_VM_CLI" "$share/strata"
  version="$("$share/strata/strata" --version)" || die "$STRATA_VM_CLI/strata does not run"
else
  for attempt in 1 2 3; do
    version="$("$repo/strata" --version)" || die "building strata failed (./strata --version)"
    rm -rf "$share/strata"
    cp -a "$repo/.build/strata" "$share/strata"
    if [ "$("$share/strata/strata" --version 2>/dev/null)" = "$version" ]; then break; fi
    [ "$attempt" -lt 3 ] || die "the copy of .build/strata does not run (rebuilt meanwhile?)"
    sleep 5
  done
fi
say "strata $version (copied to $share/strata)"

# --- accelerator: KVM only if a kernel really boots with it (nested KVM can hang)
qemu=(qemu-system-x86_64 -display none -monitor none -no-reboot -nic none)
if [ "$accel" = auto ]; then
  accel=tcg
  if [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    (timeout -k 5 30 "${qemu[@]}" -accel kvm -cpu host -m 256 -serial "file:$work/kvm-probe.log" \
      -kernel "$kernel" -append "console=ttyS0 panic=-1" </dev/null >"$work/kvm-probe.err" 2>&1 || true) 2>/dev/null
    if grep -q 'Kernel panic' "$work/kvm-probe.log" 2>/dev/null; then accel=kvm
    else say "/dev/kvm is present but a kernel does not boot with it ($(head -c 200 "$work/kvm-probe.err" | tr '\n' ' ')); using TCG"; fi
  fi
fi
case "$accel" in
  kvm) cpu=host ;;
  tcg) cpu=max ;;
  *) die "STRATA_VM_ACCEL=$accel: use auto, kvm or tcg" ;;
esac

# --- boot
console="$work/console.log"
: >"$console"
say "booting: $accel, 2 vCPUs, 2 GiB, timeout ${limit}s (setup took $((SECONDS - t0))s)"
boot0=$SECONDS
"${qemu[@]}" -name strata-vm-quota -accel "$accel" -cpu "$cpu" -smp 2 -m 2048 \
  -serial "file:$console" \
  -kernel "$kernel" -initrd "$work/initrd.gz" -append "console=ttyS0 panic=-1 quiet loglevel=4" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
  -virtfs "local,path=$share,mount_tag=strata,security_model=passthrough,readonly=on" \
  -virtfs "local,path=$work/out,mount_tag=out,security_model=passthrough" \
  </dev/null >"$work/qemu.err" 2>&1 &
qemu_pid=$!
# the console, live (tail ends by itself once qemu is gone); this shell only polls, so a signal's trap runs at once
tail --pid="$qemu_pid" -s 0.5 -n +1 -f "$console" | sed -u 's/\r$//' &
show_pid=$!
timed_out=0
while kill -0 "$qemu_pid" 2>/dev/null; do
  if [ $((SECONDS - boot0)) -ge "$limit" ]; then
    timed_out=1
    kill "$qemu_pid" 2>/dev/null || true
    break
  fi
  sleep 1
done
set +e
wait "$qemu_pid"
qemu_rc=$?
qemu_pid=""
wait "$show_pid"
set -e
if [ -s "$work/qemu.err" ]; then sed 's/^/qemu: /' "$work/qemu.err"; fi
say "VM ran $((SECONDS - boot0))s ($accel); qemu exit status $qemu_rc; total $((SECONDS - t0))s"

tr -d '\r' <"$console" >"$work/console.txt"
console="$work/console.txt"
passes=$(grep -c '^PASS: ' "$console" || true)
fails=$(grep -c '^FAIL: ' "$console" || true)
if [ "$timed_out" = 1 ]; then die "the VM did not finish within ${limit}s ($passes passed, $fails failed so far)"; fi
# the kernel's dm-thin pool the guest left in the writable share, opened here without a dm module
host_fails=0
dm_host_check() {
  local cli="$share/strata/strata" o="$work/out" id fs opts line
  for f in data metadata dm-hashes-1.txt dm-hashes-2.txt dm-hashes-3.txt; do
    [ -s "$o/$f" ] || { echo "FAIL: host: the guest left no $f"; return 1; }
  done
  echo "\$ thin_check metadata"
  if thin_check "$o/metadata" 2>&1 | sed 's/^/  /' && [ "${PIPESTATUS[0]}" = 0 ]; then echo "PASS: host: thin_check passes the kernel's metadata"
  else echo "FAIL: host: thin_check fails the kernel's metadata"; fi
  echo "\$ strata dm ls --data data --metadata metadata"
  "$cli" dm ls --data "$o/data" --metadata "$o/metadata" 2>&1 | sed 's/^/  /'
  [ "${PIPESTATUS[0]}" = 0 ] || { echo "FAIL: host: strata dm ls"; return 1; }
  # the sharing of a kernel pool (snapshots share subtrees, not only blocks) counted as thin_ls counts it
  thin_ls --no-headers -o DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS "$o/metadata" | awk '{ $1 = $1; print }' >"$work/thin_ls.txt"
  "$cli" dm ls --data "$o/data" --metadata "$o/metadata" --format '{{.Id}} {{.MappedBlocks}} {{.ExclusiveBlocks}} {{.SharedBlocks}}' >"$work/dm_ls.txt"
  if [ -s "$work/thin_ls.txt" ] && cmp -s "$work/thin_ls.txt" "$work/dm_ls.txt"; then echo "PASS: host: strata dm ls counts the kernel pool's blocks as thin_ls does"
  else
    diff "$work/thin_ls.txt" "$work/dm_ls.txt" | sed 's/^/  /'
    echo "FAIL: host: strata dm ls and thin_ls count the kernel pool's blocks differently"
  fi
  mkdir -p "$work/dm-mnt"
  "$cli" dm serve --data "$o/data" --metadata "$o/metadata" --socket "$work/dm.sock" --fuse "$work/dm-fuse" >"$work/dm-serve.log" 2>&1 &
  dm_pid=$!
  for _ in $(seq 100); do grep -q '^serving ' "$work/dm-serve.log" && break; sleep 0.2; done
  grep -q '^serving ' "$work/dm-serve.log" || { sed 's/^/  /' "$work/dm-serve.log"; echo "FAIL: host: strata dm serve did not start"; return 1; }
  for id in 1 2 3; do
    fs=ext4 opts=noload
    [ "$id" = 3 ] && fs=xfs opts=norecovery
    if ! mount -t "$fs" -o "ro,$opts,loop" "$work/dm-fuse/$id" "$work/dm-mnt"; then
      echo "FAIL: host: thin device $id ($fs) does not mount from strata dm serve's file"
      continue
    fi
    (cd "$work/dm-mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/host-hashes-$id.txt"
    umount "$work/dm-mnt"
    if cmp -s "$o/dm-hashes-$id.txt" "$work/host-hashes-$id.txt"; then
      echo "PASS: host: thin device $id ($fs): all $(wc -l <"$work/host-hashes-$id.txt") files read as the kernel wrote them"
    else
      diff "$o/dm-hashes-$id.txt" "$work/host-hashes-$id.txt" | sed 's/^/  /'
      echo "FAIL: host: thin device $id ($fs): files differ from what the guest wrote"
    fi
  done
  kill "$dm_pid"
  wait "$dm_pid" || true
  dm_pid=""
  sed 's/^/  dm serve: /' "$work/dm-serve.log"
}
if ! grep -q '^STRATA-VM-RESULT: PASS' "$console" || [ "$fails" != 0 ] || [ "$passes" = 0 ]; then
  grep '^FAIL: ' "$console" | sed 's/^/quota.sh: /' || true
  die "the scenario did not pass in the VM ($passes passed, $fails failed)"
fi
# Docker's own devicemapper pool (loop-lvm) from the guest: every device Docker's records name is in the pool, and the
# container's device, served by strata dm serve and mounted from its FUSE file, holds what the container wrote
docker_host_check() {
  local cli="$share/strata/strata" o="$work/out" d="$work/docker-root" f id cid mount_id
  [ -s "$o/docker.tar" ] || { echo "FAIL: host: the guest left no docker.tar"; return 1; }
  mkdir -p "$d"
  tar --sparse -xf "$o/docker.tar" -C "$d" || { echo "FAIL: host: cannot unpack docker.tar"; return 1; }
  local dmd="$d/docker/devicemapper"
  echo "\$ strata dm ls --data docker/devicemapper/devicemapper/data --metadata .../metadata"
  "$cli" dm ls --data "$dmd/devicemapper/data" --metadata "$dmd/devicemapper/metadata" 2>&1 | sed 's/^/  /'
  "$cli" dm ls --data "$dmd/devicemapper/data" --metadata "$dmd/devicemapper/metadata" --format '{{.Id}}' | sort -n >"$work/dk-pool-ids.txt"
  for f in "$dmd"/metadata/*; do
    case "${f##*/}" in deviceset-metadata | transaction-metadata) continue ;; esac
    grep -q '"deleted":true' "$f" && continue
    grep -o '"device_id":[0-9]*' "$f" | cut -d: -f2
  done | sort -n >"$work/dk-record-ids.txt"
  if [ -s "$work/dk-record-ids.txt" ] && cmp -s "$work/dk-pool-ids.txt" "$work/dk-record-ids.txt"; then
    echo "PASS: host: strata dm ls lists the $(wc -l <"$work/dk-record-ids.txt") devices Docker's records name"
  else
    diff "$work/dk-record-ids.txt" "$work/dk-pool-ids.txt" | sed 's/^/  /'
    echo "FAIL: host: the devices in Docker's pool are not the ones its records name"
  fi
  cid=$(ls "$d/docker/containers" | head -1)
  mount_id=$(cat "$d/docker/image/devicemapper/layerdb/mounts/$cid/mount-id" 2>/dev/null)
  id=$(grep -o '"device_id":[0-9]*' "$dmd/metadata/$mount_id" 2>/dev/null | cut -d: -f2)
  [ -n "$id" ] || { echo "FAIL: host: no device for container $cid (mount-id '$mount_id')"; return 1; }
  echo "\$ strata dm docker docker"
  "$cli" dm docker "$d/docker" 2>&1 | sed 's/^/  /'
  if "$cli" dm docker "$d/docker" 2>/dev/null | awk -v c="${cid:0:12}" -v id="$id" '$1 == "work" && $2 == c && $3 == "demo:1" && $4 == id && $6 == "ok" { found = 1 } END { exit !found }'; then
    echo "PASS: host: strata dm docker lists container work (demo:1) on thin device $id"
  else echo "FAIL: host: strata dm docker does not list container work (demo:1) on thin device $id"; fi
  mkdir -p "$work/dm-mnt"
  "$cli" dm docker "$d/docker" mount work "$work/dm-mnt" >"$work/dk-mount.log" 2>&1 &
  dm_pid=$!
  for _ in $(seq 100); do grep -q '^mounted ' "$work/dk-mount.log" && break; kill -0 "$dm_pid" 2>/dev/null || break; sleep 0.2; done
  if grep -q '^mounted ' "$work/dk-mount.log"; then
    local answer blob expected motd=kept
    answer=$(cat "$work/dm-mnt/answer" 2>&1)
    blob=$(sha256sum "$work/dm-mnt/data/blob" 2>&1 | cut -d' ' -f1)
    expected=$(awk '$2 == "/data/blob" { print $1 }' "$o/docker-run.txt")
    [ -e "$work/dm-mnt/etc/motd" ] || motd=gone
    if [ "$answer" = 42 ] && [ -n "$expected" ] && [ "$blob" = "$expected" ] && [ "$motd" = gone ]; then
      echo "PASS: host: strata dm docker mount work shows what the container wrote (answer 42, the blob's sha256, /etc/motd gone)"
    else echo "FAIL: host: strata dm docker mount work: answer '$answer', blob $blob, expected $expected, /etc/motd $motd"; fi
  else echo "FAIL: host: strata dm docker mount work did not mount"; fi
  kill "$dm_pid" 2>/dev/null
  wait "$dm_pid" || true
  dm_pid=""
  if mountpoint -q "$work/dm-mnt"; then echo "FAIL: host: $work/dm-mnt is still mounted after strata dm docker mount stopped"; fi
  sed 's/^/  dm docker mount: /' "$work/dk-mount.log"
  # the image into a Strata store (each layer's tar written again from Docker's tar-split and checked against its
  # diff id), and run there
  echo "\$ strata --root strata-root dm docker docker migrate"
  if "$cli" --root "$work/strata-root" dm docker "$d/docker" migrate 2>&1 | sed 's/^/  /' && [ "${PIPESTATUS[0]}" = 0 ]; then
    local motd
    motd=$("$cli" --root "$work/strata-root" run --rm demo:1 cat /etc/motd 2>&1)
    if [ "$motd" = "hello from the image" ]; then echo "PASS: host: strata dm docker migrate imported demo:1, and strata run of it reads its files"
    else echo "FAIL: host: strata run of the migrated demo:1 printed '$motd'"; fi
    # the container: its changes, as docker diff showed them in the VM
    "$cli" --root "$work/strata-root" container diff work 2>&1 | sort >"$work/strata-diff.txt"
    sort "$o/docker-diff.txt" >"$work/docker-diff.txt"
    if [ -s "$work/docker-diff.txt" ] && cmp -s "$work/docker-diff.txt" "$work/strata-diff.txt"; then
      echo "PASS: host: the migrated container work has the changes docker diff showed ($(tr '\n' ' ' <"$work/docker-diff.txt"))"
    else
      diff "$work/docker-diff.txt" "$work/strata-diff.txt" | sed 's/^/  /'
      echo "FAIL: host: the migrated container work's changes are not docker diff's"
    fi
  else echo "FAIL: host: strata dm docker migrate"; fi
}
host_log="$work/host.log"
{ dm_host_check; docker_host_check; } >"$host_log" 2>&1 || true
cat "$host_log"
host_passes=$(grep -c '^PASS: host' "$host_log" || true)
host_fails=$(grep -c '^FAIL: host' "$host_log" || true)
if [ "$host_fails" != 0 ] || [ "$host_passes" != 10 ]; then
  die "the kernel's dm-thin pool did not read back on the host through strata dm ($host_passes passed, $host_fails failed)"
fi
say "PASS: size=50M held inside the VM, and the kernel's dm-thin pool read back on the host ($passes checks passed in the VM, $host_passes on the host, kernel $kver, $accel)"
