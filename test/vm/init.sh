#!/bin/busybox sh
# /init of the initramfs that test/vm/quota.sh builds (busybox only). Loads the modules listed in
# /modules.list, mounts the host's root (9p tag "hostroot", read-only) at /newroot with fresh
# /proc, /sys, /dev and tmpfs on /tmp, /run and /mnt, mounts the run's own files (9p tag "strata")
# at /run/strata-vm and a writable directory of the host's (tag "out") at /run/strata-out, runs
# /run/strata-vm/guest.sh chrooted into the host root, then powers off.
/bin/busybox mkdir -p /bin /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

fatal() {
  echo "STRATA-VM: init: $*"
  echo "STRATA-VM-RESULT: FAIL"
  sync
  poweroff -f
  reboot -f
}

echo "STRATA-VM: init: kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ { print int($2 / 1024) " MiB" }' /proc/meminfo)"
for m in $(cat /modules.list); do
  insmod "/modules/$m.ko" || fatal "insmod $m failed"
done

opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts,ro,cache=loose" hostroot /newroot || fatal "cannot mount the host root over 9p"
r=/newroot
mount -t proc proc $r/proc
mount -t sysfs sysfs $r/sys
mount -t devtmpfs devtmpfs $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts devpts $r/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm
# the xfs image lives in /tmp: room for it (512 MiB) and the rest
mount -t tmpfs -o mode=1777,size=1400m tmpfs $r/tmp
mount -t tmpfs -o mode=0755 tmpfs $r/run
mount -t tmpfs -o mode=0755 tmpfs $r/mnt
mkdir -p $r/run/strata-vm $r/run/lock $r/run/mount
mount -t 9p -o "$opts,ro" strata $r/run/strata-vm || fatal "cannot mount the strata share over 9p"
# the one place the guest writes for the host to read after it: the dm-thin pool's files
mkdir -p $r/run/strata-out
mount -t 9p -o "$opts" out $r/run/strata-out || echo "STRATA-VM: init: no writable share (tag out)"

chroot $r /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp TMPDIR=/tmp TERM=dumb \
  /bin/bash /run/strata-vm/guest.sh
echo "STRATA-VM: init: guest script exited with status $?"
umount -l $r/mnt 2>/dev/null
sync
poweroff -f
# poweroff needs ACPI; qemu runs with -no-reboot, so a reboot ends it as well
reboot -f
