#!/usr/bin/env bash
# Bundle size: the worker's wasm raw and gzipped, with wasm-opt (the shipped build)
# and without (baseline), from the same source in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh
report() { printf '%-12s %8d bytes raw %8d bytes gzip -9\n' "$1" "$(wc -c < build/index_bg.wasm)" "$(gzip -9c build/index_bg.wasm | wc -c)"; }
BROKER_NO_OPT=1 bash scripts/build.sh > /dev/null 2>&1; report "no wasm-opt"
bash scripts/build.sh > /dev/null 2>&1; report "wasm-opt"
