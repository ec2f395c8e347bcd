#!/usr/bin/env bash
# The reliability figures at the scale docs/reliability.md quotes, outside CI:
# real power cuts per {ext4, XFS} x {IoUring, Blocking} x {buffered, direct},
# kill -9 cycles per substrate x {buffered, direct}, and the crash-state
# enumeration (both controls must still fail). Needs root, losetup, mkfs.ext4
# and mkfs.xfs (apt-get install xfsprogs); TIDELOG_REQUIRE=all makes a missing
# one a failure, not a skip. Each step prints its figures; the log is the record.
#
#   scripts/soak.sh 2>&1 | tee soak.log
#
# Scale with TIDELOG_POWER_CUTS (default 100), TIDELOG_KILL_CYCLES (100) and
# TIDELOG_CRASH_RECORDS (600 records per task).
set -euo pipefail
cd "$(dirname "$0")/.."
export TIDELOG_REQUIRE=all
export TIDELOG_POWER_CUTS="${TIDELOG_POWER_CUTS:-100}"
export TIDELOG_KILL_CYCLES="${TIDELOG_KILL_CYCLES:-100}"
export TIDELOG_CRASH_RECORDS="${TIDELOG_CRASH_RECORDS:-600}"
started=$(date +%s)
step() {
    echo "== $* (at $(($(date +%s) - started)) s)"
    "$@"
}
step cargo test --release -p tidelog-cli --test power_cut -- --nocapture --test-threads 2
step cargo test --release -p tidelog-cli --test kill9 -- --nocapture --test-threads 2
step cargo test --release -p tidelog --test crash_states -- --nocapture --test-threads 2
echo "== soak done in $(($(date +%s) - started)) s at $(git rev-parse --short HEAD)"
