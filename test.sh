#!/usr/bin/env bash
# Runs every test: installs what the tests use, restores, builds, runs all test projects, and ends
# with one line "tests: N passed, N failed, N skipped". Exit status is non-zero when any test fails.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. scripts/lib.sh
need_root
apt_install clang curl prometheus thin-provisioning-tools dmsetup libnbd-bin nbdkit qemu-utils fio fuse3 e2fsprogs tar xfsprogs btrfs-progs attr gcc libc6-dev fuse-overlayfs util-linux qemu-system-x86 busybox-static cpio docker.io runc umoci skopeo gzip golang-go golang-github-containerd-containerd-dev docker-registry apache2-utils zstd zsh
need_dotnet
set -e
dotnet restore Strata.slnx -v quiet >/dev/null
dotnet build Strata.slnx -c Release -nologo -v quiet -clp:ErrorsOnly
# the integration tests run the CLI as users get it: ./strata's native build
./strata --version >/dev/null
export STRATA_BIN="$PWD/.build/strata/strata"
set +e
log=$(mktemp)
dotnet test Strata.slnx -c Release --no-build --nologo --logger "console;verbosity=normal" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
read -r passed failed skipped < <(awk '
  /^ *Passed: [0-9]+ *$/ { p += $2 } /^ *Failed: [0-9]+ *$/ { f += $2 } /^ *Skipped: [0-9]+ *$/ { s += $2 }
  END { print p+0, f+0, s+0 }' "$log")
rm -f "$log"
echo "tests: $passed passed, $failed failed, $skipped skipped"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then exit 1; fi
