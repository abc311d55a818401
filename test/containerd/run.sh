#!/usr/bin/env bash
# Runs containerd's snapshotter conformance suite (snapshotter_test.go) against strata for each driver named
# on the command line (default: overlay thin), built offline from Debian's packages in GOPATH mode.
# Usage: test/containerd/run.sh [DRIVER...]     env: STRATA_BIN (default: the repository's ./strata build),
#        STRATA_STORAGE_OPTS, TMPDIR (the suite's roots go there: a btrfs mount for btrfs), GOFLAGS, TESTFLAGS
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
command -v go >/dev/null || { echo "run.sh: go is missing (apt-get install golang-go)" >&2; exit 1; }
[ -d /usr/share/gocode/src/github.com/containerd/containerd/snapshots/testsuite ] ||
  { echo "run.sh: containerd's Go sources are missing (apt-get install golang-github-containerd-containerd-dev)" >&2; exit 1; }
if [ -z "${STRATA_BIN:-}" ]; then
  "$repo/strata" --version >/dev/null # builds .build/strata when it is missing or stale
  STRATA_BIN="$repo/.build/strata/strata"
fi
export STRATA_BIN
work="$(mktemp -d /tmp/strata-containerd-suite.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="${GOCACHE:-$work/gocache}" GOFLAGS="${GOFLAGS:-}"
(cd "$here" && go test -c -o "$work/suite.test" .)
drivers=("$@")
[ ${#drivers[@]} -gt 0 ] || drivers=(overlay thin)
status=0
for d in "${drivers[@]}"; do
  echo "== containerd snapshotter suite: strata, driver $d" >&2
  STRATA_DRIVER="$d" "$work/suite.test" -test.v -test.root -test.timeout 30m ${TESTFLAGS:-} || status=1
done
exit $status
