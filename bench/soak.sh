#!/usr/bin/env bash
# Fault soak of the real worker: the fault-injection build in
# workerd, many grants x concurrent clients through Duplicati's /refresh, the
# OAuth 2.0 token endpoint and Akeeba's Refresh URL, with the mock provider
# failing, delaying and rotating at random, clients hanging up, and D1 errors
# injected per request (X-Broker-Fault); then faults stop and every grant must
# refresh, with 0 spent-token reuse and 0 grants lost (exit 1 otherwise).
# Loopback only, bounded by time and by a request cap.
#   bash bench/soak.sh [--seconds 180] [--grants 12] [--clients 3]
#                      [--max-requests 40000] [--seed N] [--known-loss]
# --known-loss adds the one D1 fault known to lose a grant (write_refreshed
# refused on every try: tests/e2e/doors.rs's Broken cell).
# BENCH_SETUP=0 skips scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export CI=true
[ "${BENCH_SETUP:-1}" = 0 ] || bash scripts/setup.sh
BROKER_FEATURES=fault-injection BROKER_OUT=build-faults bash scripts/build.sh \
  > target/worker-build-faults.log 2>&1 || { tail -30 target/worker-build-faults.log; exit 1; }
# The seam is in this build (else the D1 faults would be silently ignored).
grep -aqi 'x-broker-fault' build-faults/index_bg.wasm 2>/dev/null \
  || grep -raqi 'x-broker-fault' build-faults/ \
  || { echo "soak: build-faults/ has no X-Broker-Fault seam" >&2; exit 1; }
# ...and never in the release build, when there is one (scripts/size-check.sh).
if [ -f build/index_bg.wasm ]; then
  bash scripts/size-check.sh | grep -i 'fault seam' || true
fi
cargo run -q --release --example soak -- "$@"
