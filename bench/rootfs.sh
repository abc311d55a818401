#!/usr/bin/env bash
# Makes a real Debian rootfs tar for the benchmarks: `debootstrap --variant=minbase bookworm`, then
# `tar --numeric-owner --xattrs -cf`. Cached under /var/cache/strata-bench/ (override with
# STRATA_BENCH_CACHE) and reused when present; prints the tar's path, size and entry count.
# Usage: bench/rootfs.sh            (build or reuse; last line of stdout is the tar's path)
#        bench/rootfs.sh --rebuild  (throw the cached tar away first)
# Env: MIRROR (a Debian mirror URL; unset: debootstrap's own default mirror), SUITE (default bookworm).
set -euo pipefail

cache="${STRATA_BENCH_CACHE:-/var/cache/strata-bench}"
suite="${SUITE:-bookworm}"
mirror=("${MIRROR:-}") # passed to debootstrap only when set
[ -n "${mirror[0]}" ] || mirror=()
out="$cache/rootfs-$suite-minbase.tar"

if [ "$(id -u)" != 0 ]; then echo "$0: run as root (debootstrap, device nodes, owners)" >&2; exit 1; fi
if [ "${1:-}" = "--rebuild" ]; then rm -f "$out"; fi
mkdir -p "$cache"

work=""
cleanup() {
  set +e # a trap must finish its work even when one step fails
  if [ -n "$work" ] && [ -d "$work" ]; then
    # debootstrap mounts proc/sys inside the chroot while it runs; a failed run can leave them behind
    findmnt -rn -o TARGET | grep -F "$work/" | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$work"
  fi
  rm -f "$out.tmp.$$"
}
trap cleanup EXIT

if [ ! -s "$out" ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing debootstrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  work=$(mktemp -d "$cache/build.XXXXXX")
  echo "debootstrap --variant=minbase $suite $work/root${mirror[*]:+ ${mirror[*]}} ..." >&2
  debootstrap --variant=minbase "$suite" "$work/root" "${mirror[@]}" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    echo "$0: debootstrap failed" >&2
    exit 1
  }
  tar --numeric-owner --xattrs -C "$work/root" -cf "$out.tmp.$$" .
  mv "$out.tmp.$$" "$out"
fi

bytes=$(stat -c %s "$out")
entries=$(tar -tf "$out" | wc -l)
files=$(tar -tvf "$out" | grep -c '^-' || true)
echo "rootfs: $out" >&2
echo "rootfs: $bytes bytes ($(numfmt --to=iec-i --suffix=B "$bytes")), $entries entries ($files regular files)" >&2
echo "$out"
