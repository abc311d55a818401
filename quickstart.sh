#!/usr/bin/env bash
# Quick start: install what is missing, build, then show Strata at work on a throw-away store:
# a base layer from a small tree, a copy-on-write child, a change, its `changes`, its diff, and `info`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. scripts/lib.sh
need_root
apt_install tar coreutils
need_dotnet
dotnet restore Strata.slnx -v quiet >/dev/null

store=$(mktemp -d /tmp/strata-quickstart.XXXXXX)
trap 'rm -rf "$store"' EXIT
s() { echo "+ strata $*" >&2; ./strata --root "$store" "$@"; }

src=$(mktemp -d); mkdir -p "$src/etc" "$src/bin"; echo "hello" > "$src/etc/motd"; echo '#!/bin/sh' > "$src/bin/tool"; chmod 4755 "$src/bin/tool"; ln -s motd "$src/etc/motd.link"
tar -C "$src" -cf "$src.tar" . && rm -rf "$src"

s layer apply base -i "$src.tar"; rm -f "$src.tar"
s layer create app --parent base --rw
dir=$(s layer mount app)
echo "+ (edit the mounted tree $dir)" >&2
echo "goodbye" > "$dir/etc/motd"; rm "$dir/etc/motd.link"; mkdir "$dir/data"; echo 42 > "$dir/data/answer"
s layer unmount app
s layer changes app
s layer diff-size app
s layer diff app | tar -tv
s layer ls
s info
