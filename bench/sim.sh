#!/usr/bin/env bash
# The refresh-core simulator (tests/sim/) over more schedules than the suite's
# 100 000, optimised, then the three protocol mutations against the same count.
#   bash bench/sim.sh                      1 000 000 schedules from seed 0
#   bash bench/sim.sh <count> [first-seed]
# Replay one schedule with its trace: SIM_SEED=<seed> cargo test --test sim
# Own target dir and opt-level 3 without LTO: the shipped release profile (size,
# LTO) is for the wasm, not for this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export SIM_SCHEDULES="${1:-1000000}" SIM_FIRST_SEED="${2:-0}"
CARGO_TARGET_DIR=target/sim CARGO_PROFILE_RELEASE_LTO=false \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=3 \
  cargo test -q --release --test sim
