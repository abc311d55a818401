#!/usr/bin/env bash
# Issue 23: `strata dm docker migrate` of a Docker devicemapper store holding SIZE (default 1G) of layers, against
# `cp -a` of the same trees, in one run.
# The store is made from Docker's documented layout (as test/Strata.Testing/DockerDevicemapperFixture.cs makes a small
# one; test/vm runs the real dockerd for correctness): one image of two layers, each SIZE/2 of files of 256 KiB of
# random bytes; each layer's device an ext4 (mkfs.ext4 -d) holding the whole tree up to it under rootfs/, as Docker's
# devices do; the devices' non-zero 64 KiB blocks in a dm-thin pool made by thin_restore; each layer's tar (PAX, by
# Python's tarfile) and its tar-split.json.gz (the tar's bytes but the files' contents, in tar-split's JSON lines),
# the diff ids the tars' sha256, and the layer and image stores' records.
# Timed, alternating by round, each ending with `sync` (both write what they wrote to the disk):
#   migrate   `strata --root FRESH dm docker ROOT migrate`: the layers written again from tar-split and the devices'
#             files (through FUSE and loop devices) and unpacked as they stream, checked against their diff ids (the
#             store keeps each layer's tar-split, not a copy of its tar)
#   cp        `cp -a` of the two layers' trees (the files each layer added) into a fresh directory
#   import    for reference: `strata image import` of the same image as an extracted docker-archive (the layers' tars
#             as files): each tar stored as a blob, then unpacked
# Goal: migrate at most 1.5x the time of cp. Usage: bench/dm-migrate.sh [-n ROUNDS] [--size SIZE]
# Env: STRATA_BIN (default: a snapshot of ./strata's build), BENCH_DIR (default /var/tmp). Everything is removed on exit.
set -euo pipefail
export LC_ALL=C
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=3
size=1G
while [ $# -gt 0 ]; do
  case "$1" in
    -n) rounds="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    *) echo "usage: $0 [-n ROUNDS] [--size SIZE]" >&2; exit 2 ;;
  esac
done
bench_need_root
bench_apt thin_restore thin-provisioning-tools
bench_apt mkfs.ext4 e2fsprogs
bench_apt python3 python3

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/strata-dm-migrate.XXXXXX")
cleanup() {
  local m
  for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$m" || true; done
  rm -rf "$work"
}
trap cleanup EXIT
strata=$(bench_strata_snapshot "$work/bin")
bytes=$(numfmt --from=iec "$size")
echo "$(bench_machine)" >&2
echo "thin-provisioning-tools $(thin_restore -V), $(mkfs.ext4 -V 2>&1 | head -1), $(python3 --version); $size of layers, $rounds round(s)" >&2

t0=$SECONDS
python3 - "$work" "$bytes" <<'PY'
import gzip, hashlib, json, os, subprocess, sys, tarfile, base64, shutil
work, total = sys.argv[1], int(sys.argv[2])
root = os.path.join(work, "docker")
file_size = 256 * 1024
per_layer = max(1, total // 2 // file_size)

def make_files(base, name, count):
    d = os.path.join(base, name)
    os.makedirs(d, exist_ok=True)
    for i in range(count):
        with open(os.path.join(d, "f%05d" % i), "wb") as f:
            f.write(os.urandom(file_size))

src = os.path.join(work, "src")
make_files(src, "a", per_layer)
make_files(src, "b", per_layer)

def layer_tar(dirs):
    """A PAX tar of the given trees under src, and its tar-split: returns (tar bytes path, tar-split gz bytes, sha256)."""
    path = os.path.join(work, "layer-" + "-".join(dirs) + ".tar")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for d in dirs:
            t.add(os.path.join(src, d), arcname=d)
    lines, pos, segment = [], 0, 0
    data = open(path, "rb").read()
    with tarfile.open(path, "r") as t:
        for m in t:
            # the bytes from the end of the last file's contents to this member's contents are one raw segment
            lines.append({"type": 2, "payload": base64.b64encode(data[segment:m.offset_data]).decode(), "position": len(lines)})
            size = m.size if m.isreg() else 0
            lines.append({"type": 1, "name": m.name, "size": size, "payload": None, "position": len(lines)})
            segment = m.offset_data + size
    lines.append({"type": 2, "payload": base64.b64encode(data[segment:]).decode(), "position": len(lines)})
    packed = gzip.compress(("\n".join(json.dumps(l) for l in lines) + "\n").encode())
    return path, packed, hashlib.sha256(data).hexdigest()

def ext4(name, dirs):
    """An ext4 image of rootfs/ holding dirs, as a Docker device of the layer."""
    t = os.path.join(work, "fs-" + name)
    os.makedirs(os.path.join(t, "rootfs"))
    for d in dirs:
        subprocess.run(["cp", "-a", os.path.join(src, d), os.path.join(t, "rootfs", d)], check=True)
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(t) for f in fs)
    img = os.path.join(work, name + ".img")
    with open(img, "wb") as f:
        f.truncate((size * 12 // 10 + (64 << 20)) // 4096 * 4096)
    subprocess.run(["mkfs.ext4", "-q", "-d", t, img], check=True)
    shutil.rmtree(t)
    return img

dm = os.path.join(root, "devicemapper", "devicemapper")
os.makedirs(dm)
os.makedirs(os.path.join(root, "devicemapper", "metadata"))
images = {2: ext4("layer1", ["a"]), 3: ext4("layer2", ["a", "b"])}
bs = 64 * 1024
maps, nxt = {}, 0
with open(os.path.join(dm, "data"), "wb") as out:
    for dev, img in images.items():
        m = maps[dev] = []
        with open(img, "rb") as f:
            v = 0
            while True:
                blk = f.read(bs)
                if not blk:
                    break
                if blk.count(0) != len(blk):
                    out.seek(nxt * bs)
                    out.write(blk.ljust(bs, b"\0"))
                    m.append((v, nxt))
                    nxt += 1
                v += 1
    out.truncate(nxt * bs)
sizes = {dev: os.path.getsize(img) for dev, img in images.items()}
for img in images.values():
    os.unlink(img)
xml = ['<superblock uuid="" time="0" transaction="1" data_block_size="128" nr_data_blocks="%d">' % nxt]
for dev, m in maps.items():
    xml.append('<device dev_id="%d" mapped_blocks="%d" transaction="0" creation_time="0" snap_time="0">' % (dev, len(m)))
    i = 0
    while i < len(m):
        j = i
        while j + 1 < len(m) and m[j + 1][0] == m[j][0] + 1 and m[j + 1][1] == m[j][1] + 1:
            j += 1
        xml.append('<range_mapping origin_begin="%d" data_begin="%d" length="%d" time="0"/>' % (m[i][0], m[i][1], j - i + 1))
        i = j + 1
    xml.append("</device>")
xml.append("</superblock>")
open(os.path.join(work, "pool.xml"), "w").write("\n".join(xml))
with open(os.path.join(dm, "metadata"), "wb") as f:
    f.truncate(256 << 20)
subprocess.run(["thin_restore", "-q", "-i", os.path.join(work, "pool.xml"), "-o", os.path.join(dm, "metadata")], check=True)

graph = os.path.join(root, "image", "devicemapper")
diff_ids, chain = [], None
archive = os.path.join(work, "archive")
os.makedirs(archive)
layer_files = []
for dev, dirs in ((2, ["a"]), (3, ["b"])):
    path, packed, diff = layer_tar(dirs)
    os.rename(path, os.path.join(archive, "layer%d.tar" % dev))
    layer_files.append("layer%d.tar" % dev)
    diff_ids.append("sha256:" + diff)
    chain = diff if chain is None else hashlib.sha256(("sha256:%s sha256:%s" % (chain, diff)).encode()).hexdigest()
    cache = hashlib.sha256(("layer%d" % dev).encode()).hexdigest()
    d = os.path.join(graph, "layerdb", "sha256", chain)
    os.makedirs(d)
    open(os.path.join(d, "diff"), "w").write("sha256:" + diff)
    open(os.path.join(d, "cache-id"), "w").write(cache)
    open(os.path.join(d, "tar-split.json.gz"), "wb").write(packed)
    json.dump({"device_id": dev, "size": sizes[dev], "transaction_id": dev, "initialized": False, "deleted": False},
              open(os.path.join(root, "devicemapper", "metadata", cache), "w"))
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
image_id = hashlib.sha256(config).hexdigest()
os.makedirs(os.path.join(graph, "imagedb", "content", "sha256"))
open(os.path.join(graph, "imagedb", "content", "sha256", image_id), "wb").write(config)
# the same image as an extracted docker-archive (docker save), for `strata image import` of the same tars
open(os.path.join(archive, image_id + ".json"), "wb").write(config)
json.dump([{"Config": image_id + ".json", "RepoTags": ["big:1"], "Layers": layer_files}], open(os.path.join(archive, "manifest.json"), "w"))
json.dump({"Repositories": {"big": {"big:1": "sha256:" + image_id}}}, open(os.path.join(graph, "repositories.json"), "w"))
json.dump({"next_device_id": 4, "BaseDeviceUUID": "", "BaseDeviceFilesystem": "ext4"}, open(os.path.join(root, "devicemapper", "metadata", "deviceset-metadata"), "w"))
PY
echo "store made in $((SECONDS - t0)) s: $(du -sh "$work/docker" | cut -f1) on disk" >&2
"$strata" dm docker "$work/docker" >&2
results="$work/results.txt"
: >"$results"
for round in $(seq "$rounds"); do
  case $((round % 3)) in
    1) order="migrate cp import" ;;
    2) order="cp import migrate" ;;
    0) order="import migrate cp" ;;
  esac
  for side in $order; do
    rm -rf "$work/dest" "$work/store"
    sync
    t0=$(date +%s.%N)
    case "$side" in
      migrate) "$strata" --root "$work/store" dm docker "$work/docker" migrate >/dev/null ;;
      import) "$strata" --root "$work/store" image import "$work/archive" -q >/dev/null ;;
      cp) mkdir "$work/dest" && cp -a "$work/src/a" "$work/src/b" "$work/dest/" ;;
    esac
    sync
    t1=$(date +%s.%N)
    if [ "$side" != cp ] && [ "$("$strata" --root "$work/store" image ls -q)" = "" ]; then echo "$0: $side left no image" >&2; exit 1; fi
    secs=$(echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }')
    echo "$side $secs" >>"$results"
    printf '  round %d %-8s %8s s\n' "$round" "$side" "$secs" >&2
  done
done
med() { awk -v s="$1" '$1 == s { print $2 }' "$results" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "medians of $rounds round(s): migrate $(med migrate) s, cp -a $(med cp) s, ratio $(echo "$(med migrate) $(med cp)" | awk '{ printf "%.2f", $1 / $2 }') (goal <= 1.5);"
echo "  for reference, strata image import of the same layers' tars (an extracted docker-archive): $(med import) s, $(echo "$(med import) $(med cp)" | awk '{ printf "%.2f", $1 / $2 }')x cp"
