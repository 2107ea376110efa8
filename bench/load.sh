#!/usr/bin/env bash
# Load benchmark: concurrent clients through /refresh (cache-hit path) vs. the no-op
# /healthz on the same worker in workerd, same run. Loopback only, bounded in time.
#   bash bench/load.sh [--seconds 30] [--connections 64]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export CI=true
bash scripts/setup.sh
bash scripts/build.sh > target/worker-build.log 2>&1 || { tail -30 target/worker-build.log; exit 1; }
cargo run -q --release --example load -- "$@"
