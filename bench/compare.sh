#!/usr/bin/env bash
# Before/after: the load benchmark (bench/load.sh) on a base revision and on the
# working tree, in one invocation, so the figures are comparable as ratios.
#   bash bench/compare.sh <base-rev> [--seconds 20] [--connections 32]
# The base is checked out into a temporary git worktree (its own build); loopback only.
# BENCH_BASE_DIR=<dir>: use (and keep) that checkout of the base instead, so a
# second comparison reuses its build. BENCH_SETUP=0 skips scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
base="${1:?usage: bench/compare.sh <base-rev> [load args]}"; shift
source scripts/env.sh
export CI=true
[ "${BENCH_SETUP:-1}" = 0 ] || bash scripts/setup.sh
if [ -n "${BENCH_BASE_DIR:-}" ]; then
  wt="$BENCH_BASE_DIR"
  [ -d "$wt" ] || git worktree add -q --detach "$wt" "$base"
  git -C "$wt" checkout -q --detach "$base"
else
  wt="$(mktemp -d)/base"
  git worktree add -q --detach "$wt" "$base"
  trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
fi
[ -e "$wt/node_modules" ] || ln -s "$PWD/node_modules" "$wt/node_modules"
run() { # dir label
  ( cd "$1" && mkdir -p target && bash scripts/build.sh > target/bench-build.log 2>&1 \
      && cargo run -q --release --example load -- "${@:3}" ) | sed "s/^/[$2] /"
}
run "$wt" "base $(git rev-parse --short "$base")" "$@"
run "$PWD" "this tree" "$@"
