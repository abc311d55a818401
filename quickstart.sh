#!/usr/bin/env bash
# Quick start: install what is missing, build, then show Strata at work on a throw-away store: import a
# small busybox image, run a container that writes files, show its diff and that the image is unchanged,
# commit it as a new image, and show `info`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. scripts/lib.sh
need_root
apt_install clang tar coreutils busybox-static runc
need_dotnet
dotnet restore Strata.slnx -v quiet >/dev/null

store=$(mktemp -d /tmp/strata-quickstart.XXXXXX)
trap 'rm -rf "$store"' EXIT
s() { echo "+ strata $*" >&2; ./strata --root "$store" "$@"; }

# the seed's demo: an image, a container that changes it, the changes, the image untouched, a commit
src=$(mktemp -d); mkdir -p "$src/bin" "$src/etc" "$src/tmp"
cp /bin/busybox "$src/bin/busybox"
for t in sh ls cat echo rm mkdir; do ln -s busybox "$src/bin/$t"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$src/etc/passwd"; echo "hello from the image" > "$src/etc/motd"
tar -C "$src" -cf "$src.tar" . && rm -rf "$src"

s image import "$src.tar" --name demo:1 -q; rm -f "$src.tar"
s image ls
s run --name work demo:1 sh -c 'cat /etc/motd; echo 42 > /answer; rm /etc/motd; mkdir /data'
s container diff work
echo "+ (the image is unchanged: a new container still sees /etc/motd)" >&2
s run --rm demo:1 cat /etc/motd
s container commit work demo:2
s run --rm demo:2 sh -c 'cat /answer; ls /etc'
s image ls
s layer ls
s info
s container rm work
s image rm demo:2 demo:1
