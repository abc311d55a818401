#!/usr/bin/env bash
# The resilient pools' fault soak (issue 22): ResilientFaultTests with 1,000 random runs per case (simple, mirror,
# mirror3, parity, parity2 with checksums; mirror and parity2 without), each run a small pool of in-memory disks
# taking writes, reads, commits, scrubs, crashes and reopens while as many disks fail as its resiliency survives
# (rot, lost and torn writes, IO errors on a range, failing flushes, a disk gone) and rebuilds run. Not a timing:
# it belongs here because it takes ~15 minutes, too long for ./test.sh (which runs 150 per case).
# Usage: bench/soak-resilient.sh [RUNS]   (default 1000). A failure prints its seed; STRATA_SEED=N replays it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-1000}"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [RUNS]" >&2; exit 2; }
cd "$here"
dotnet build test/Strata.Thin.Tests -c Release -nologo -v quiet -clp:ErrorsOnly
start=$SECONDS
STRATA_FAULT_RUNS="$runs" dotnet test test/Strata.Thin.Tests -c Release --no-build --nologo \
  --filter "FullyQualifiedName~ResilientFaultTests" --logger "console;verbosity=normal" 2>&1 | grep -E "runs of|Passed|Failed|seed|Error" || true
echo "soak: $runs runs per case in $((SECONDS - start)) s"
