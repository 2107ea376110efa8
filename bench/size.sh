#!/usr/bin/env bash
# Bundle size: the worker's wasm raw and gzipped, with wasm-opt (the shipped build)
# and without (baseline), from the same source in the same run.
#   bash bench/size.sh            this tree only
#   bash bench/size.sh <rev>      also <rev>, built in a temporary git worktree (like
#                                 bench/compare.sh), then this tree, and the ratios
# Each tree is built by its own scripts/build.sh, so a rev's "wasm-opt" row is what
# that rev ships.
set -euo pipefail
cd "$(dirname "$0")/.."
base="${1:-}"
source scripts/env.sh
bash scripts/setup.sh
row() { # label wasm -> "label raw gzip"
  printf '%-28s %9d bytes raw %9d bytes gzip -9\n' "$1" "$(wc -c < "$2")" "$(gzip -9c "$2" | wc -c)"
}
measure() { # dir label -> two rows; leaves the opt build in dir/build
  ( cd "$1" && mkdir -p target \
      && BROKER_NO_OPT=1 bash scripts/build.sh > target/size-build.log 2>&1 \
      && row "$2, no wasm-opt" build/index_bg.wasm \
      && bash scripts/build.sh >> target/size-build.log 2>&1 \
      && row "$2, wasm-opt" build/index_bg.wasm ) \
    || { echo "build failed in $1 (see $1/target/size-build.log)" >&2; exit 1; }
}
if [ -z "$base" ]; then
  measure "$PWD" "this tree"
  exit 0
fi
wt="$(mktemp -d)/base"
git worktree add -q --detach "$wt" "$base"
trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
ln -s "$PWD/node_modules" "$wt/node_modules"
label="base $(git rev-parse --short "$base")"
# The base builds into a target directory kept under this tree's target/, so a rerun
# against the same base is incremental rather than cold.
out_base=$(CARGO_TARGET_DIR="$PWD/target/size-base" measure "$wt" "$label")
out_this=$(measure "$PWD" "this tree")
echo "$out_base"
echo "$out_this"
# ratios this tree / base, per row (raw is field 2, gzip field 5 after the label)
paste <(echo "$out_base") <(echo "$out_this") | awk -F'\t' '{
  # each row ends "N bytes raw N bytes gzip -9"
  nb = split($1, b, /[ ]+/); nt = split($2, t, /[ ]+/)
  br = b[nb-6]; bg = b[nb-3]; tr = t[nt-6]; tg = t[nt-3]
  kind = ($1 ~ /no wasm-opt/) ? "no wasm-opt" : "wasm-opt"
  printf "%-28s raw %.3f  gzip %.3f  (gzip %+d bytes)\n", "ratio this/base, " kind, tr/br, tg/bg, tg-bg
}'
