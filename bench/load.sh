#!/usr/bin/env bash
# Load benchmark: concurrent clients through /refresh (cache hit, cache miss, a
# midnight storm) vs. the no-op /healthz on the same worker in workerd, same run.
# Loopback only, bounded in time.
#   bash bench/load.sh [--seconds 10] [--connections 16] [--storm-grants 20] [--storm-clients 8] [--shards 3]
# Phases: /healthz, the one-D1-read floor (/token-state), cache-hit refresh, cache-miss
# refresh, midnight storm (bench/load.rs);
# then "1 shard vs N shards": cache-miss refresh and the storm again on a worker with
# N local D1 grant shards (--shards 1 skips it).
# BENCH_SETUP=0 skips scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export CI=true
[ "${BENCH_SETUP:-1}" = 0 ] || bash scripts/setup.sh
bash scripts/build.sh > target/worker-build.log 2>&1 || { tail -30 target/worker-build.log; exit 1; }
cargo run -q --release --example load -- "$@"
