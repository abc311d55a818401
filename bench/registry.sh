#!/usr/bin/env bash
# Registries (issue 20): `strata pull` and `strata push` against the tools users have, side by side in one run, with a
# private registry (Debian's docker-registry 2.8, own config and storage, plain HTTP on 127.0.0.1) as the far end.
# The images, made once per run from the Debian rootfs of bench/rootfs.sh (or --tar FILE):
#   1      one gzip layer: bench_oci_layout (lib.sh; `gzip -n`), pushed with skopeo copy as SRC/bench/debian:1
#   5      the same tree as 5 gzip layers of about equal uncompressed size, cut in path order (with the files laid end
#          to end in path order, a file goes to the fifth of the total in which its middle byte falls; every directory
#          is in layer 1, each upper layer repeats the directories above its files, as `docker build` layers do; the
#          names of one inode stay in one layer). For the Debian rootfs: 43, 44, 46, 25 and 54 MB (one 50 MB file,
#          apt's Packages list, is in the last). Pushed as SRC/bench/debian-5layers:1
#   zstd   image 1 recompressed by `skopeo copy --format oci --dest-compress-format zstd --dest-compress` in its push,
#          as ZSRC/bench/debian:zstd. ZSRC is a registry of its own: skopeo 1.9 remembers which blobs a registry has
#          (/var/lib/containers/cache) and mounts the gzip blob of the same diff id instead of recompressing when one
#          is there; the script checks that the layer it got is zstd
# The registries: SRC holds images 1 and 5, ZSRC image zstd; DST receives the pushes and is restarted on empty storage
# before each push.
# A freshly made, journalled ext4 loop filesystem (direct I/O; mkfs.ext4 -E lazy_itable_init=0,lazy_journal_init=0)
# holds both registries' storage, the layouts, strata's stores, dockerd's data root, containerd's root and umoci's
# bundles; exec roots, state dirs and sockets are on tmpfs. The sides:
#   strata  `strata --root STORE --driver overlay pull REF` (a snapshot of ./strata's build, STRATA_CONFIG pointing at a
#           file with dockerd's defaults: max-concurrent-downloads 3, max-concurrent-uploads 5); between pulls
#           `strata image rm REF`, then `strata layer ls` and `image ls` must be empty and images/blobs/ hold nothing
#   docker  `docker pull REF` into a private dockerd (Debian's docker.io 20.10, -s overlay2, own data root, exec root,
#           socket and pid file, --insecure-registry for both registries, --iptables=false --bridge=none; defaults of
#           3 concurrent downloads, 5 uploads); between pulls `docker rmi REF`, then `docker images -aq` must be empty
#   ctr     `ctr images pull --plain-http --snapshotter overlayfs REF` into a private containerd (Debian's 1.6, own
#           root, state, sockets and config.toml, CRI disabled); between pulls `ctr images rm --sync REF`, then
#           `ctr content ls` and the overlayfs snapshots must be empty
#   umoci   `skopeo copy docker://REF oci:DIR:t` + `umoci unpack --image DIR:t BUNDLE`; both removed between pulls
# Parts (positional; default all three, run in this order):
#   pull  images 1 and 5, PULLS timed pulls per side and image, each from a clean state (so every pull downloads and
#         unpacks everything), after one untimed warm-up pull per side and image. Goal: strata at most 0.5x docker at
#         p50, and faster than ctr and umoci.
#   zstd  image zstd by every side, as pull does; the table puts each side's p50 beside its p50 for image 1 (measured
#         here too when the pull part is not in the run). A peer that cannot pull zstd gets a skipped row.
#   push  images 1 and 5, PUSHES timed pushes per side and image, each into DST freshly emptied (so every blob is
#         uploaded) under a new repository name DST/push/N:1, after one untimed warm-up push each:
#           strata  `strata --root STORE2 push bench/debian:1 DST/push/N:1`, STORE2 holding the layouts imported
#                   beforehand (`strata image import LAYOUT --name ...`; it keeps the gzip blobs)
#           docker  `docker push DST/push/N:1` of the image docker pulled from SRC beforehand, tagged (untimed) for DST;
#                   docker compresses its layers again on each push, and after the warm-up it first tries to mount
#                   them from the last repository it pushed to (which fails: DST is empty), then uploads
#           skopeo  `skopeo copy oci:LAYOUT:1 docker://DST/push/N:1` (the layout's gzip blobs as they are)
#         Each push is checked (untimed): DST serves the manifest, and DST's storage size is recorded. Goal: strata at
#         most the fastest peer at p50.
# After strata's warm-up pull of each image, a container of it is mounted and compared with the rootfs (diff -r).
# Before each timed command: sync and a wait for an idle machine (at most QUIET_MAX seconds). Sides take turns in an
# order that rotates by round. Wall time of the whole command as a user runs it (dockerd and containerd do the work in
# the daemon, so the clients' CPU time means nothing and is not reported). strata ends a pull with syncfs(2); the peers
# do not sync what they unpack. A strata command that fails in its warm-up (e.g. "unknown command" before `strata pull`
# exists) gives "skipped: REASON" rows for that image instead of numbers; a peer that fails stops the run, except in the
# zstd part. Prints the machine, versions, the images' layers, every raw sample, n/p50/min/max per side and image, and
# strata's ratio to each peer against the goals. Everything printed also goes to a results file,
# bench/results/DATE/registry.txt (registry-2.txt ... when taken; -o FILE to choose).
#
# Usage: bench/registry.sh [-n PULLS] [--push PUSHES] [--tar FILE] [-o FILE] [pull] [zstd] [push]
#   -n PULLS       timed pulls per side and image (default 5)
#   --push PUSHES  timed pushes per side and image (default 5)
#   --tar FILE     the rootfs tar to make the images of (default: bench/rootfs.sh's Debian rootfs)
#   -o FILE        the results file (default bench/results/DATE/registry.txt, numbered when it exists)
# Env: QUIET_MAX (default 10) seconds to wait for an idle machine; STRATA_BIN=path measures that executable.
# Everything is cleaned up on exit, also on failure: dockerd (and the containerd it started), containerd and both
# registries are stopped by pid, mounts under the filesystem and the tmpfs dir are unmounted, the loop device detached,
# the image file and temp dirs removed.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pulls=5
pushes=5
tarfile=""
resfile=""
quiet_max="${QUIET_MAX:-10}"
declare -A want=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n) pulls="$2"; shift 2 ;;
    --push) pushes="$2"; shift 2 ;;
    --tar) tarfile="$(realpath "$2")"; shift 2 ;;
    -o) resfile="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    pull|zstd|push) want[$1]=1; shift ;;
    *) echo "$0: unknown argument $1 (parts: pull zstd push)" >&2; exit 2 ;;
  esac
done
[ "${#want[@]}" -gt 0 ] || want=([pull]=1 [zstd]=1 [push]=1)
if ! [ "$pulls" -ge 1 ] 2>/dev/null || ! [ "$pushes" -ge 1 ] 2>/dev/null; then echo "$0: -n and --push take a count of at least 1" >&2; exit 2; fi
bench_need_root
bench_apt mkfs.ext4 e2fsprogs
bench_apt docker-registry docker-registry
bench_apt skopeo skopeo
bench_apt umoci umoci
bench_apt curl curl
for f in /usr/sbin/dockerd /usr/bin/docker /usr/bin/containerd /usr/bin/ctr; do
  [ -x "$f" ] || { echo "$0: $f is missing (apt-get install docker.io containerd)" >&2; exit 1; }
done

if [ -z "$resfile" ]; then
  d="$bench_repo/bench/results/$(date +%F)"
  mkdir -p "$d"
  resfile="$d/registry.txt"
  for ((i = 2; ; i++)); do [ -e "$resfile" ] || break; resfile="$d/registry-$i.txt"; done
fi
: >"$resfile"
exec 3>&1
# (tee ignores ^C, so that the cleanup's lines still reach the terminal and the file)
exec > >(trap '' INT TERM; exec tee -a "$resfile")
pid_tee=$!

work=""; mnt=""; dev=""; img=""; rundir=""; pid_docker=""; pid_containerd=""
declare -A pid_registry=() port_of=()
umount_under() {
  findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1' | sort -r | while read -r m; do umount -l "$m"; done
}
stop_dockerd() {
  local cpid
  [ -n "$pid_docker" ] || return 0
  bench_stop_pid "$pid_docker" 30
  pid_docker=""
  # dockerd stops the containerd it started; if it could not, stop that one too (by its pid file)
  if [ -r "$rundir/docker/containerd/containerd.pid" ]; then
    cpid=$(cat "$rundir/docker/containerd/containerd.pid")
    if [ -n "$cpid" ] && tr '\0' ' ' <"/proc/$cpid/cmdline" 2>/dev/null | grep -qF "$rundir/docker/"; then bench_stop_pid "$cpid" 10; fi
  fi
}
cleanup() {
  set +e # a trap must finish its work even when one step fails
  stop_dockerd
  bench_stop_pid "$pid_containerd" 30
  for r in "${!pid_registry[@]}"; do bench_stop_pid "${pid_registry[$r]}" 10; done
  if [ -n "$mnt" ]; then
    umount_under "$mnt"
    mountpoint -q "$mnt" && umount "$mnt"
    rmdir "$mnt"
  fi
  if [ -n "$dev" ] && losetup "$dev" >/dev/null 2>&1; then losetup -d "$dev"; fi
  [ -n "$img" ] && rm -f "$img"
  if [ -n "$rundir" ]; then
    umount_under "$rundir"
    rm -rf --one-file-system "$rundir"
  fi
  [ -n "$work" ] && rm -rf --one-file-system "$work"
  # the results file is complete once tee has read everything: it has when it exits, at the latest when this shell
  # exits (a trap that fires inside a redirected command keeps copies of the pipe open until then)
  exec 1>&3 3>&-
  for ((i = 0; i < 20; i++)); do kill -0 "$pid_tee" 2>/dev/null || break; sleep 0.1; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# failed MESSAGE: the message and the daemons' last log lines, on stderr and in the results file; exits
failed() {
  {
    echo "$0: $*"
    for f in dockerd containerd registry-src registry-dst registry-zstd; do
      [ -s "$work/$f.log" ] || continue
      echo "-- $f log, last lines:"; tail -n 10 "$work/$f.log"
    done
  } | tee -a "$resfile" >&2
  exit 1
}

if [ -n "$tarfile" ]; then rootfs="$tarfile"; else rootfs=$("$bench_repo/bench/rootfs.sh"); fi
work=$(mktemp -d /var/tmp/strata-bench-registry.XXXXXX)
strata=$(bench_strata_snapshot "$work/bin")
mkdir "$work/docker-config"
export DOCKER_CONFIG="$work/docker-config"
echo '{"max-concurrent-downloads": 3, "max-concurrent-uploads": 5}' >"$work/strata-config.json"
export STRATA_CONFIG="$work/strata-config.json"

# the filesystem: layouts (2 x the gzip blobs), the split (tree, kept as the reference, + tars, removed after), SRC (3 images), DST, strata's two
# stores, dockerd (pulled images for push + one pull), containerd, umoci's copy and bundle
gib=$(( $(stat -c %s "$rootfs") * 14 / 1073741824 + 2 ))
[ "$gib" -ge 8 ] || gib=8
img="$work.img"
truncate -s "${gib}G" "$img"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
dev=$(losetup --find --show --direct-io=on "$img")
mnt=$(mktemp -d /mnt/strata-bench-registry.XXXXXX)
mount "$dev" "$mnt"
rundir=$(mktemp -d /run/strata-bench-registry.XXXXXX)

# ---- the images ----
# split_rootfs TAR DIR: DIR/layer-1.tar .. DIR/layer-5.tar, the tree of TAR (left in DIR/tree) in 5 layers (see the header)
split_rootfs() {
  local tar="$1" dir="$2" b
  mkdir -p "$dir/tree"
  tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$tar" -C "$dir/tree"
  if find "$dir/tree" -name $'*\n*' | grep -q .; then echo "$0: $tar has names with newlines; cannot split it" >&2; return 1; fi
  (cd "$dir/tree" && find . -printf '%y %i %s %p\n') | sort -t' ' -k4 >"$dir/entries"
  awk -v dir="$dir" '
    NR == FNR { if ($1 != "d") total += $3; next }
    { p = substr($0, length($1) + length($2) + length($3) + 4) }
    $1 == "d" { print p > (dir "/list-1"); next }
    {
      if ($2 in layer_of) b = layer_of[$2]
      else { b = int((cum + $3 / 2) * 5 / total) + 1; if (b > 5) b = 5; layer_of[$2] = b; cum += $3 }
      a = p
      while (b > 1 && sub(/\/[^\/]*$/, "", a) && a != ".")
        if (!((b, a) in seen)) { seen[b, a] = 1; print a > (dir "/list-" b) }
      print p > (dir "/list-" b)
    }' "$dir/entries" "$dir/entries"
  for b in 1 2 3 4 5; do
    sort -u -o "$dir/list-$b" "$dir/list-$b"
    tar --numeric-owner --xattrs --xattrs-include='*' --no-recursion --verbatim-files-from -C "$dir/tree" \
      -cf "$dir/layer-$b.tar" -T "$dir/list-$b"
  done
}
# layers_layout LAYOUT REF_NAME CREATED_BY TAR...: an OCI layout of one image whose layers are the TARs (gzip -n), bottom
# first; prints one line per layer: "DIGEST SIZE"
layers_layout() {
  local layout="$1" refname="$2" by="$3" t hex size diffids="" history="" layers="" arch
  shift 3
  mkdir -p "$layout/blobs/sha256"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  put() { hex=$(sha256sum "$1" | cut -d' ' -f1); size=$(stat -c %s "$1"); mv "$1" "$layout/blobs/sha256/$hex"; }
  for t in "$@"; do
    diffids+="${diffids:+,}\"sha256:$(sha256sum "$t" | cut -d' ' -f1)\""
    history+="${history:+,}{\"created\":\"2026-11-21T00:00:00Z\",\"created_by\":\"$by\"}"
    gzip -c -n "$t" >"$layout/layer.tmp"
    put "$layout/layer.tmp"
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$hex\",\"size\":$size}"
    echo "sha256:$hex $size"
  done
  arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
  printf '{"created":"2026-11-21T00:00:00Z","architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/bash"]},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' \
    "$arch" "$diffids" "$history" >"$layout/config.tmp"
  put "$layout/config.tmp"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "$hex" "$size" "$layers" >"$layout/manifest.tmp"
  put "$layout/manifest.tmp"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$hex" "$size" "$refname" >"$layout/index.json"
}
declare -A layout=([1]="$mnt/layout-1" [5]="$mnt/layout-5")
bench_oci_layout "${layout[1]}" "$rootfs" 1 bench/registry.sh
layers_1="$layer_digest $layer_size"
echo "   splitting the rootfs into 5 layers" >&2
split_rootfs "$rootfs" "$mnt/split"
layers_5=$(layers_layout "${layout[5]}" 1 bench/registry.sh "$mnt/split"/layer-{1,2,3,4,5}.tar)
split_desc=""
for b in 1 2 3 4 5; do split_desc+=" $(stat -c %s "$mnt/split/layer-$b.tar")B/$(wc -l <"$mnt/split/list-$b")"; done
# the tree stays, as what strata's pulls are checked against
mv "$mnt/split/tree" "$mnt/reference"
rm -rf --one-file-system "$mnt/split"

# ---- the registries: SRC (the images) and DST (pushes; emptied before each) ----
# start_registry NAME: docker-registry on 127.0.0.1:${port_of[NAME]} (a free port picked on first start), storage
# $mnt/NAME; false when it does not answer
start_registry() {
  local name="$1" p i
  if [ -z "${port_of[$name]:-}" ]; then
    for p in $(seq 5200 5299); do
      [ -z "$(ss -Hltn "sport = :$p")" ] && [[ " ${port_of[*]} " != *" $p "* ]] && { port_of[$name]=$p; break; }
    done
    [ -n "${port_of[$name]:-}" ] || { echo "$0: no free port in 5200-5299 for a registry" >&2; return 1; }
  fi
  mkdir -p "$mnt/$name"
  cat >"$work/$name.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $mnt/$name
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port_of[$name]}
EOF
  docker-registry serve "$work/$name.yml" >>"$work/$name.log" 2>&1 &
  pid_registry[$name]=$!
  for ((i = 0; i < 100; i++)); do
    curl -fs "http://127.0.0.1:${port_of[$name]}/v2/" >/dev/null && return 0
    kill -0 "${pid_registry[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 5 "$work/$name.log" >&2; echo "$0: the registry $name did not start" >&2
  return 1
}
# empty_dst: DST restarted on empty storage
empty_dst() {
  bench_stop_pid "${pid_registry[registry-dst]}" 10
  rm -rf --one-file-system "$mnt/registry-dst"
  start_registry registry-dst
}
start_registry registry-src || exit 1
start_registry registry-dst || exit 1
[ -z "${want[zstd]:-}" ] || start_registry registry-zstd || exit 1
src="127.0.0.1:${port_of[registry-src]}"
dst="127.0.0.1:${port_of[registry-dst]}"
zsrc="127.0.0.1:${port_of[registry-zstd]:-}"
declare -A ref=([1]="$src/bench/debian:1" [5]="$src/bench/debian-5layers:1" [zstd]="$zsrc/bench/debian:zstd")
skopeo_to() { skopeo --insecure-policy copy -q --dest-tls-verify=false "$@" >/dev/null; }
skopeo_to "oci:${layout[1]}:1" "docker://${ref[1]}"
skopeo_to "oci:${layout[5]}:1" "docker://${ref[5]}"
layers_zstd="-"
if [ -n "${want[zstd]:-}" ]; then
  skopeo_to --format oci --dest-compress-format zstd --dest-compress "oci:${layout[1]}:1" "docker://${ref[zstd]}"
  layers_zstd=$(curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$zsrc/v2/bench/debian/manifests/zstd" |
    grep -oE '"mediaType":"[^"]*layer[^"]*","digest":"sha256:[0-9a-f]+","size":[0-9]+' | sed -E 's/.*"mediaType":"([^"]*)","digest":"([^"]*)","size":([0-9]+)/\2 \3 (\1)/')
  [[ "$layers_zstd" == *"tar+zstd)" ]] || failed "skopeo did not make a zstd layer for ${ref[zstd]}: ${layers_zstd:-no manifest}"
fi

# ---- the daemons ----
insecure=(--insecure-registry "$src" --insecure-registry "$dst")
[ -z "${want[zstd]:-}" ] || insecure+=(--insecure-registry "$zsrc")
/usr/sbin/dockerd --data-root "$mnt/docker" --exec-root "$rundir/docker" -H "unix://$rundir/docker.sock" \
  --pidfile "$rundir/docker.pid" --iptables=false --ip-masq=false --bridge=none -s overlay2 \
  "${insecure[@]}" >>"$work/dockerd.log" 2>&1 &
pid_docker=$!
dk() { /usr/bin/docker -H "unix://$rundir/docker.sock" "$@"; }
for ((i = 0; i < 600; i++)); do
  dk version >/dev/null 2>&1 && break
  kill -0 "$pid_docker" 2>/dev/null || break
  sleep 0.1
done
dk version >/dev/null 2>&1 || failed "dockerd did not start"
[ "$(dk info --format '{{.Driver}}')" = overlay2 ] || failed "dockerd is not using overlay2"
ns="strata-bench-$$"
cat >"$work/config.toml" <<EOF
version = 2
root = "$mnt/containerd"
state = "$rundir/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$rundir/containerd.sock"
[ttrpc]
  address = "$rundir/containerd.sock.ttrpc"
[debug]
  address = "$rundir/containerd-debug.sock"
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$mnt/opt"
EOF
/usr/bin/containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
pid_containerd=$!
cr() { /usr/bin/ctr --address "$rundir/containerd.sock" --namespace "$ns" "$@"; }
for ((i = 0; i < 300; i++)); do
  cr version >/dev/null 2>&1 && break
  kill -0 "$pid_containerd" 2>/dev/null || break
  sleep 0.1
done
cr version >/dev/null 2>&1 || failed "containerd did not start"
st() { "$strata" --root "$mnt/store" --driver overlay "$@"; }
st2() { "$strata" --root "$mnt/store-push" --driver overlay "$@"; }

parts=""; for p in pull zstd push; do [ -z "${want[$p]:-}" ] || parts+="${parts:+ }$p"; done
echo "== registry benchmark (issue 20): strata pull/push vs docker, ctr, skopeo (+ umoci unpack)"
echo "== $(bench_machine)"
echo "== strata: $strata ($("$strata" --version 2>&1 | head -1)), --driver overlay, STRATA_CONFIG $(cat "$STRATA_CONFIG")"
echo "== $(/usr/sbin/dockerd --version) (overlay2); $(/usr/bin/containerd --version) (overlayfs); $(skopeo --version); $(umoci --version); docker-registry $(dpkg-query -W -f '${Version}' docker-registry)"
echo "== filesystem: fresh ${gib} GiB sparse image on $(findmnt -n -o FSTYPE -T "$work") $img, loop $dev (direct I/O), mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 (journalled), mounted at $mnt"
echo "==   registries' storage $mnt/registry-{src,zstd,dst}, strata stores $mnt/store (pull) and $mnt/store-push, dockerd data root $mnt/docker, containerd root $mnt/containerd, umoci $mnt/oci + $mnt/bundle; exec roots, state and sockets in $rundir (tmpfs)"
echo "== rootfs: $rootfs ($(stat -c %s "$rootfs") bytes, $(tar -tf "$rootfs" | wc -l) entries)"
echo "== image 1: ${ref[1]}: one layer $layers_1 (gzip -n)"
echo "== image 5: ${ref[5]}: 5 layers of about equal size, in path order (uncompressed bytes/entries:$split_desc):"
sed 's/^/==   /' <<<"$layers_5"
[ -z "${want[zstd]:-}" ] || echo "== image zstd: ${ref[zstd]}: $layers_zstd"
echo "== SRC registry $src, ZSRC registry $zsrc, DST registry $dst (restarted on empty storage before each push); containerd namespace $ns"
echo "== parts: $parts; $pulls timed pulls, $pushes timed pushes per side and image (after one warm-up each); before each: sync and wait for an idle machine (at most ${quiet_max}s)"
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the sides: OP_SIDE IMAGE runs the command measured; OP_SIDE_clean IMAGE restores the clean state after it ----
pull_strata() { st pull "${ref[$1]}"; }
# pull_strata_check IMAGE (after the warm-up pull): a container's mounted rootfs is the rootfs tree (diff -r: names, types,
# contents; device nodes only by kind)
checks=()
pull_strata_check() {
  local id m out
  id=$(st container create "${ref[$1]}") && m=$(st container mount "$id") || return 1
  out=$(diff -r --no-dereference -q "$m" "$mnt/reference" 2>&1 | grep -vE ' is a (.+) while file .* is a \1$' | head -n 5)
  st container unmount "$id" >/dev/null && st container rm "$id" >/dev/null || return 1
  [ -z "$out" ] || { echo "strata's pull of image $1 is not the rootfs: $out" >&2; return 1; }
  checks+=("check: strata's pull of image $1, mounted as a container, is the rootfs tree (diff -r)")
}
pull_strata_clean() { st image rm "${ref[$1]}" >/dev/null && strata_empty "$mnt/store" st; }
# strata_empty STORE CLI: no image, no layer, no blob left
strata_empty() {
  local store="$1" cli="$2" l i b
  l=$($cli layer ls --format json | tr -d ' \n') && i=$($cli image ls --format json | tr -d ' \n') || return 1
  b=$(ls -A "$store/images/blobs/sha256" 2>/dev/null | wc -l)
  [ "$l" = "[]" ] && [ "$i" = "[]" ] && [ "$b" = 0 ] && return 0
  echo "strata's store is not empty after image rm (layers: $l; images: $i; blobs: $b)" >&2
  return 1
}
pull_docker() { dk pull "${ref[$1]}"; }
pull_docker_clean() {
  dk rmi "${ref[$1]}" >/dev/null || return 1
  [ -z "$(dk images -aq)" ] || { echo "docker still has images after rmi: $(dk images -a --format '{{.Repository}}:{{.Tag}} {{.ID}}' | tr '\n' ' ')" >&2; return 1; }
}
pull_ctr() { cr images pull --plain-http --snapshotter overlayfs "${ref[$1]}"; }
pull_ctr_clean() {
  local c s
  cr images rm --sync "${ref[$1]}" >/dev/null || return 1
  c=$(cr content ls -q | wc -l); s=$(cr snapshots --snapshotter overlayfs ls | tail -n +2 | wc -l)
  [ "$c" = 0 ] && [ "$s" = 0 ] || { echo "containerd kept $c blob(s) and $s snapshot(s) after images rm --sync" >&2; return 1; }
}
pull_umoci() {
  skopeo --insecure-policy copy -q --src-tls-verify=false "docker://${ref[$1]}" "oci:$mnt/oci:t" && umoci unpack --image "$mnt/oci:t" "$mnt/bundle"
}
pull_umoci_clean() { rm -rf --one-file-system "$mnt/oci" "$mnt/bundle"; }

push_seq=0
push_target=""
# push_prepare SIDE IMAGE: DST emptied, a new target name; docker's image tagged for it
push_prepare() {
  empty_dst || return 1
  push_seq=$((push_seq + 1))
  push_target="$dst/push/$push_seq:1"
  [ "$1" != docker ] || dk tag "${ref[$2]}" "$push_target"
}
push_strata() { st2 push "bench/debian-$1:1" "$push_target"; }
push_docker() { dk push "$push_target"; }
push_skopeo() { skopeo_to "oci:${layout[$1]}:1" "docker://$push_target"; }
# push_SIDE_clean IMAGE: the pushed manifest is served by DST; DST's storage size recorded; docker's tag removed
push_check() {
  local repo="${push_target#"$dst"/}"
  curl -fs -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
    "http://$dst/v2/${repo%:1}/manifests/1" || { echo "DST does not serve $push_target after the push" >&2; return 1; }
  echo "$1 $2 $(du -sb "$mnt/registry-dst" | cut -f1)" >>"$work/dst-bytes"
}
push_strata_clean() { push_check strata "$1"; }
push_docker_clean() { push_check docker "$1" && dk rmi "$push_target" >/dev/null; }
push_skopeo_clean() { push_check skopeo "$1"; }

samples="$work/samples"
: >"$samples"
: >"$work/dst-bytes"
declare -A skipped=()
# attempt OP IMAGE SIDE ROUND: OP_SIDE IMAGE after a sync and a wait for an idle machine, timed, then OP_SIDE_clean.
# ROUND 0 is the untimed warm-up: when it fails, the side gets skipped rows for OP and IMAGE if it may (strata always;
# every side for image zstd), and the run stops otherwise. A failure in a timed round stops the run.
attempt() {
  local op="$1" im="$2" side="$3" round="$4" t0 t1 why rc
  [ -z "${skipped[$op $im $side]:-}" ] || return 0
  [ "$op" != push ] || push_prepare "$side" "$im" >/dev/null 2>"$work/err" || failed "preparing a push: $(cat "$work/err")"
  sync -f "$mnt"; bench_wait_quiet "$quiet_max"
  t0=$EPOCHREALTIME
  if "${op}_$side" "$im" </dev/null >>"$work/$side.out" 2>"$work/err"; then rc=0; else rc=$?; fi
  if [ "$rc" != 0 ]; then
    why="$(grep -v '^\s*$' "$work/err" | tail -n 1 | sed -E 's/^[[:space:]]+//' | cut -c1-240)"
    if [ "$round" = 0 ] && { [ "$side" = strata ] || [ "$im" = zstd ]; }; then
      skipped[$op $im $side]="${why:-exit status $rc and no message}"
      echo "   $op $im by $side failed: skipped ($why)" >&2
      # what a failed strata pull may have left must not count for the next image
      [ "$side" != strata ] || [ "$op" != pull ] || { umount_under "$mnt/store"; rm -rf --one-file-system "$mnt/store"; }
      [ "$side" != umoci ] || pull_umoci_clean
      [ "$side" != docker ] || [ "$op" != pull ] || dk rmi "${ref[$im]}" >/dev/null 2>&1 || true
      [ "$side" != ctr ] || cr images rm --sync "${ref[$im]}" >/dev/null 2>&1 || true
      return 0
    fi
    failed "$op of image $im by $side (round $round) failed: $(tail -n 5 "$work/err")"
  fi
  t1=$EPOCHREALTIME
  [ "$round" = 0 ] || awk -v k="$op:$im:$side" -v a="$t0" -v b="$t1" 'BEGIN { printf "%s %.3f\n", k, b - a }' >>"$samples"
  if [ "$round" = 0 ] && declare -F "${op}_${side}_check" >/dev/null; then
    "${op}_${side}_check" "$im" </dev/null >/dev/null 2>"$work/err" || failed "checking $op of image $im by $side: $(tail -n 5 "$work/err")"
  fi
  "${op}_${side}_clean" "$im" </dev/null >/dev/null 2>"$work/err" || failed "after $op of image $im by $side (round $round): $(tail -n 5 "$work/err")"
}
# rounds OP ROUNDS "IMAGES" SIDES...: one warm-up each, then ROUNDS rounds; in round r side k goes (r + k) mod n-th
rounds() {
  local op="$1" n="$2" ims="$3" r k im
  shift 3
  local sides=("$@")
  for im in $ims; do for s in "${sides[@]}"; do attempt "$op" "$im" "$s" 0; done; done
  echo "   $op: warm-up done" >&2
  for ((r = 1; r <= n; r++)); do
    for im in $ims; do
      for ((k = 0; k < ${#sides[@]}; k++)); do attempt "$op" "$im" "${sides[$(( (r + k) % ${#sides[@]} ))]}" "$r"; done
    done
    echo "   $op: round $r of $n done" >&2
  done
}

pull_sides=(strata docker ctr umoci)
push_sides=(strata docker skopeo)
if [ -n "${want[pull]:-}" ]; then
  echo
  echo "######## pull: images 1 and 5 by ${pull_sides[*]}"
  rounds pull "$pulls" "1 5" "${pull_sides[@]}"
fi
if [ -n "${want[zstd]:-}" ]; then
  echo
  if [ -n "${want[pull]:-}" ]; then ims="zstd"; else ims="1 zstd"; fi
  echo "######## zstd: images $ims by ${pull_sides[*]}"
  rounds pull "$pulls" "$ims" "${pull_sides[@]}"
fi
if [ -n "${want[push]:-}" ]; then
  echo
  echo "######## push: images 1 and 5 by ${push_sides[*]}, each into an emptied DST"
  # the sources: strata's store imports the layouts, docker pulls from SRC (untimed)
  for im in 1 5; do
    if ! st2 image import "${layout[$im]}" --name "bench/debian-$im:1" -q >/dev/null 2>"$work/err"; then
      skipped[push $im strata]="strata image import failed: $(grep -v '^\s*$' "$work/err" | tail -n 1 | cut -c1-200)"
    fi
    dk pull -q "${ref[$im]}" >/dev/null 2>"$work/err" || failed "docker pull of the push source ${ref[$im]} failed: $(cat "$work/err")"
  done
  rounds push "$pushes" "1 5" "${push_sides[@]}"
fi
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "${#checks[@]}" = 0 ] || printf '== %s\n' "${checks[@]}"

# ---- results ----
echo
echo "######## raw samples (seconds, in the order taken; warm-ups not included)"
for key in $(cut -d' ' -f1 "$samples" | awk '!seen[$0]++'); do
  echo "$key: $(awk -v k="$key" '$1 == k { printf "%s ", $2 }' "$samples")" | fold -s -w 150 | sed '2,$s/^/  /'
done
if [ -s "$work/dst-bytes" ]; then
  echo "DST storage after each push (bytes; warm-ups included):"
  for key in $(awk '{ print $1 ":" $2 }' "$work/dst-bytes" | awk '!seen[$0]++'); do
    echo "  push:${key#*:}:${key%%:*}: $(awk -v s="${key%%:*}" -v i="${key#*:}" '$1 == s && $2 == i { printf "%s ", $3 }' "$work/dst-bytes")"
  done
fi
stats="$work/stats"
bench_stats "$samples" >"$stats"
# p50 KEY: the median of KEY's samples ("" when none)
p50() { awk -v k="$1" '$1 == k { print $3 }' "$stats"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "######## results (seconds; p50 = median)"
printf "%-6s %-6s %-7s %3s %8s %8s %8s  %s\n" op image side n p50 min max "strata/side at p50"
# row OP IMAGE SIDE GOAL_TEXT GOAL_MAX: one table row; GOAL_MAX is the largest strata/side ratio that meets the goal
# ("" none; "<1" strictly below 1)
row() {
  local op="$1" im="$2" side="$3" gtext="$4" gmax="$5" k="$1:$2:$3" n med min max r="" s
  if [ -n "${skipped[$op $im $side]:-}" ]; then
    printf "%-6s %-6s %-7s  skipped: %s\n" "$op" "$im" "$side" "${skipped[$op $im $side]}"; return
  fi
  read -r _ n med min max _ < <(awk -v k="$k" '$1 == k' "$stats"; echo)
  [ -n "${n:-}" ] || return 0
  if [ "$side" != strata ] && s=$(p50 "$op:$im:strata") && [ -n "$s" ]; then
    r="$(ratio "$s" "$med")x"
    if [ -n "$gmax" ]; then
      r+=" (goal $gtext: $(awk -v a="$s" -v b="$med" -v g="$gmax" 'BEGIN { x = a / b; ok = (g == "<1") ? x < 1 : x <= g; print ok ? "met" : "MISSED" }'))"
    fi
  fi
  printf "%-6s %-6s %-7s %3s %8s %8s %8s  %s\n" "$op" "$im" "$side" "$n" "$med" "$min" "$max" "$r"
}
summary=()
for im in 1 5 zstd; do
  for side in "${pull_sides[@]}"; do
    # the goals are the gzip images'; image zstd's ratios are for information
    case "$im:$side" in zstd:*|*:strata) row pull "$im" "$side" "" "" ;; *:docker) row pull "$im" "$side" "<= 0.5x" 0.5 ;; *) row pull "$im" "$side" "< 1x" "<1" ;; esac
  done
done
for im in 1 5; do
  for side in "${push_sides[@]}"; do row push "$im" "$side" "" ""; done
  # the push goal: strata at most the fastest peer
  s=$(p50 "push:$im:strata"); best=""; bside=""
  for side in "${push_sides[@]:1}"; do
    v=$(p50 "push:$im:$side"); [ -n "$v" ] || continue
    if [ -z "$best" ] || awk -v a="$v" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$v; bside=$side; fi
  done
  if [ -n "$s" ] && [ -n "$best" ]; then
    summary+=("push image $im: strata $s s, fastest peer $bside $best s: $(ratio "$s" "$best")x (goal <= 1x: $(awk -v a="$s" -v b="$best" 'BEGIN { print (a <= b) ? "met" : "MISSED" }'))")
  fi
done
if [ -n "${want[zstd]:-}" ]; then
  echo
  echo "zstd beside gzip (image zstd vs image 1, p50 seconds):"
  printf "  %-7s %8s %8s %10s\n" side gzip zstd zstd/gzip
  for side in "${pull_sides[@]}"; do
    if [ -n "${skipped[pull zstd $side]:-}" ]; then printf "  %-7s skipped: %s\n" "$side" "${skipped[pull zstd $side]}"; continue; fi
    g=$(p50 "pull:1:$side"); z=$(p50 "pull:zstd:$side")
    [ -n "$z" ] || continue
    printf "  %-7s %8s %8s %10s\n" "$side" "${g:--}" "$z" "$([ -n "$g" ] && echo "$(ratio "$z" "$g")x" || echo -)"
  done
fi
for im in 1 5; do
  s=$(p50 "pull:$im:strata"); d=$(p50 "pull:$im:docker")
  [ -n "$s" ] && [ -n "$d" ] && summary+=("pull image $im: strata $s s, docker $d s: $(ratio "$s" "$d")x (goal <= 0.5x: $(awk -v a="$s" -v b="$d" 'BEGIN { print (a / b <= 0.5) ? "met" : "MISSED" }'))")
done
for k in "${!skipped[@]}"; do [ "${k##* }" != strata ] || summary+=("$k: skipped (${skipped[$k]})"); done
echo
echo "######## summary"
if [ "${#summary[@]}" -gt 0 ]; then printf '%s\n' "${summary[@]}" | sort; fi
echo "results file: $resfile"
