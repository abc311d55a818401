# Shared by the bench/ scripts (sourced, not run).

bench_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

bench_need_root() {
  if [ "$(id -u)" != 0 ]; then echo "$0: run as root" >&2; exit 1; fi
}

# bench_apt CMD PKG: installs Debian package PKG when command CMD is missing (apt-get update once per run).
bench_apt_updated=""
bench_apt() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2" >&2
  if [ -z "$bench_apt_updated" ]; then DEBIAN_FRONTEND=noninteractive apt-get update -qq; bench_apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

# bench_strata_snapshot DIR: builds the CLI through ./strata if its sources changed, then copies the
# build into DIR so that a rebuild started by someone else mid-run cannot change what is measured.
# Prints the path of the copied executable. STRATA_BIN=path skips all this and uses that executable.
bench_strata_snapshot() {
  local dir="$1"
  if [ -n "${STRATA_BIN:-}" ]; then echo "$STRATA_BIN"; return; fi
  if ! "$bench_repo/strata" --version >/dev/null; then
    if [ -x "$bench_repo/.build/strata/strata" ]; then
      echo "$0: warning: ./strata could not build the current sources; measuring the existing .build/strata" >&2
    else
      echo "$0: ./strata failed to build" >&2; exit 1
    fi
  fi
  mkdir -p "$dir"
  cp -a "$bench_repo/.build/strata/." "$dir/"
  echo "$dir/strata"
}

# bench_build_dotnet NAME DIR: builds bench/NAME/NAME.csproj (Release) and copies the build into DIR, so that a rebuild
# by someone else mid-run cannot change what is measured; exits with the build log when the build fails.
bench_build_dotnet() {
  local proj="$bench_repo/bench/$1/$1.csproj" log
  if ! log=$(dotnet build "$proj" -c Release -nologo -v quiet 2>&1); then
    echo "$log" >&2
    echo "$0: building $proj failed" >&2
    exit 1
  fi
  cp -a "$bench_repo/bench/$1/bin/Release/net10.0/." "$2/"
}

# bench_machine: one line describing the machine and the source revision measured.
bench_machine() {
  local mem rev dirty
  mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  rev=$(git -C "$bench_repo" rev-parse --short HEAD 2>/dev/null || echo "?")
  dirty=$(git --no-optional-locks -C "$bench_repo" status --porcelain -- src 2>/dev/null | wc -l)
  echo "machine: $(nproc) cpus ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $mem RAM, kernel $(uname -r); strata at $rev ($dirty uncommitted file(s) under src/)"
}

# bench_stats FILE: FILE has lines "NAME SECONDS [USER SYS]"; prints "NAME n median min max mean_user mean_sys".
bench_stats() {
  sort -k1,1 -k2,2g "$1" | awk '
    function flush() {
      if (name == "") return
      med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      printf "%s %d %.3f %.3f %.3f %.2f %.2f\n", name, n, med, v[1], v[n], us / n, ss / n
    }
    $1 != name { flush(); name = $1; n = 0; us = 0; ss = 0 }
    { v[++n] = $2; us += $3; ss += $4 }
    END { flush() }'
}

# bench_cpu_busy: busy jiffies of all CPUs so far (user+nice+system+irq+softirq+steal).
bench_cpu_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# bench_cpu_user: user-mode jiffies of all CPUs so far (user+nice). Kernel threads never run in user
# mode, so what a command did not use of this was used by other processes.
bench_cpu_user() { awk '/^cpu / { print $2 + $3 }' /proc/stat; }

# bench_ext4_nojournal PATH: true when PATH is on an ext4 filesystem without a journal. There, when
# ext4 allocates an inode it skips inodes freed in the last 60 s (6 min when their inode table block
# is dirty, which new allocations next to them make it), reading the inode table for each
# (recently_deleted() in fs/ext4/ialloc.c): creating a tree soon after a tree was deleted costs
# several times more (perf: find_inode_bit, recently_deleted, find_get_block_common).
bench_ext4_nojournal() {
  local fstype src
  read -r fstype src < <(findmnt -n -o FSTYPE,SOURCE -T "$1")
  [ "$fstype" = ext4 ] || return 1
  ! compgen -G "/proc/fs/jbd2/$(basename "$src")-*" >/dev/null
}

# bench_wait_quiet MAX: waits until a 1-second window shows the machine idle (at most 3 busy jiffies
# over all CPUs), for at most MAX seconds (0: do not wait).
bench_wait_quiet() {
  local max="$1" deadline a b
  [ "$max" -gt 0 ] || return 0
  deadline=$((SECONDS + max))
  while :; do
    a=$(bench_cpu_busy); sleep 1; b=$(bench_cpu_busy)
    [ $((b - a)) -le 3 ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then echo "   (machine still busy after ${max}s; measuring anyway)" >&2; return 0; fi
  done
}

# bench_stop_pid PID GRACE: SIGTERM, wait up to GRACE seconds, then SIGKILL; only for processes the script started.
bench_stop_pid() {
  local pid="$1" grace="$2" i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then echo "   (pid $pid did not stop in ${grace}s; SIGKILL)" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

# bench_oci_layout LAYOUT ROOTFS_TAR REF_NAME CREATED_BY: makes LAYOUT an OCI image layout of one image, ref name REF_NAME,
# with ROOTFS_TAR as its one gzip layer (gzip -n, so the same tar gives the same digests). Sets diffid, layer_digest,
# layer_size, config_digest, config_size, manifest_digest and manifest_size.
bench_oci_layout() {
  local layout="$1" rootfs="$2" refname="$3" by="$4" arch
  mkdir -p "$layout/blobs/sha256"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  _bench_put_blob() { # FILE: moves FILE into the layout's blobs by its digest; prints "sha256:HEX SIZE"
    local hex size
    hex=$(sha256sum "$1" | cut -d' ' -f1); size=$(stat -c %s "$1")
    mv "$1" "$layout/blobs/sha256/$hex"
    echo "sha256:$hex $size"
  }
  diffid="sha256:$(sha256sum "$rootfs" | cut -d' ' -f1)"
  gzip -c -n "$rootfs" >"$layout/layer.tmp"
  read -r layer_digest layer_size < <(_bench_put_blob "$layout/layer.tmp")
  arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
  printf '{"created":"2026-11-21T00:00:00Z","architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/bash"]},"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created":"2026-11-21T00:00:00Z","created_by":"%s"}]}' \
    "$arch" "$diffid" "$by" >"$layout/config.tmp"
  read -r config_digest config_size < <(_bench_put_blob "$layout/config.tmp")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$layout/manifest.tmp"
  read -r manifest_digest manifest_size < <(_bench_put_blob "$layout/manifest.tmp")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$manifest_size" "$refname" >"$layout/index.json"
}
