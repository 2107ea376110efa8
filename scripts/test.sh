#!/usr/bin/env bash
# Runs every check and test: format, clippy (native + wasm32), the native unit tests,
# the mock provider's tests, and the end-to-end suite against the real worker in
# workerd (wrangler dev) with a local D1, the mock provider and headless Chromium.
# Installs whatever is missing first (scripts/setup.sh --test); reruns are cached.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=true
source scripts/env.sh
t0=$(date +%s)
bash scripts/setup.sh --test

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== clippy (native)"
cargo clippy -q --workspace --all-targets -- -D warnings
echo "== clippy (wasm32)"
cargo clippy -q --lib --target wasm32-unknown-unknown -- -D warnings
echo "== clippy (wasm32, fault-injection)"
cargo clippy -q --lib --target wasm32-unknown-unknown --features fault-injection -- -D warnings

echo "== build worker (wasm)"
b0=$(date +%s)
bash scripts/build.sh > target/worker-build.log 2>&1 || { tail -50 target/worker-build.log; exit 1; }
echo "   built in $(( $(date +%s) - b0 )) s"
echo "== wasm size guard"
bash scripts/size-check.sh

echo "== build the fault-injection worker (tests/e2e/doors.rs)"
b0=$(date +%s)
BROKER_FEATURES=fault-injection BROKER_OUT=build-faults bash scripts/build.sh \
  > target/worker-build-faults.log 2>&1 || { tail -50 target/worker-build-faults.log; exit 1; }
echo "   built in $(( $(date +%s) - b0 )) s"

echo "== cargo test (unit, mock provider, end-to-end)"
cargo test --workspace -- "$@"
echo "== all checks passed in $(( $(date +%s) - t0 )) s"
