#!/usr/bin/env bash
# Build the worker (Rust → wasm → build/worker/shim.mjs) with worker-build.
# This is wrangler.toml's [build] command, so `wrangler dev` and `wrangler deploy` run it.
#
# A test variant with cargo features goes to its own directory and cargo target dir,
# never to build/ (what is deployed), and skips wasm-opt (speed):
#   BROKER_FEATURES=fault-injection BROKER_OUT=build-faults bash scripts/build.sh
# (the e2e door × fault table's worker: src/shell/faults.rs). worker-build 0.8.7 passes
# everything after `--` to `cargo build` and reads `--target-dir` from there.
#
# Offline-capable: worker-build would download wasm-bindgen, esbuild and wasm-opt from
# GitHub; when the repo's setup has installed them (scripts/setup.sh), point it at those.
# On an operator's normal machine with none of them, worker-build fetches them itself.
set -euo pipefail
cd "$(dirname "$0")/.."

wb_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)
if [ -z "${WASM_BINDGEN_BIN:-}" ] && command -v wasm-bindgen >/dev/null 2>&1 \
   && [ "$(wasm-bindgen --version | awk '{print $2}')" = "$wb_version" ]; then
  export WASM_BINDGEN_BIN
  WASM_BINDGEN_BIN=$(command -v wasm-bindgen)
fi
if [ -z "${ESBUILD_BIN:-}" ] && [ -x node_modules/@esbuild/linux-x64/bin/esbuild ]; then
  export ESBUILD_BIN="$PWD/node_modules/@esbuild/linux-x64/bin/esbuild"
fi
# wasm-opt: run here rather than inside worker-build, because worker-build always passes
# `--debuginfo` (keeps the ~300 KB "function names" section: ~43 KB of the gzipped wasm)
# and only `-O`. Size (docs/develop.md, "Size"): names stripped, producers stripped.
# BROKER_WASM_NAMES=1 keeps the names (readable wasm stack traces while debugging);
# BROKER_NO_OPT=1 skips wasm-opt (the baseline bench/size.sh compares against).
# `-ocimfs 10` (--one-caller-inline-max-function-size): a function with one caller is
# inlined only when it is tiny. Inlining the big ones (route handlers' async state
# machines, their helpers) makes the module a little smaller raw but ~12 KB larger
# gzipped: one huge function with hundreds of locals encodes worse than several
# small ones (measured on one no-opt build, -Os alone: 0 → 252.4 KB, 10 → 251.7,
# 50 → 253.7, unlimited, binaryen's default → 263.7). Behaviour is unchanged; it
# costs a call.
# `--reorder-functions-by-name` (before the names are stripped): functions of one
# crate and one generic sit next to each other, so gzip's 32 KB window finds their
# repeats (−4.1 KB gzipped; the order of functions has no effect on behaviour).
# Then a better order than by name: scripts/wasm-order.mjs picks, after each function,
# the one sharing the most byte sequences with it (−5.2 KB more), written as names
# that a second `-Os` run with `--reorder-functions-by-name` applies. Skipped with
# BROKER_WASM_NAMES=1 (it replaces the names).
wasm_opt_flags=(-Os -ocimfs 10 --reorder-functions-by-name --strip-debug --strip-producers)
# The feature set worker-build enables (worker-build 0.8.7 src/build/mod.rs
# step_run_wasm_opt): never emit encodings workerd does not support yet.
wasm_opt_features=(--enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int
  --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling)
if [ "${BROKER_WASM_NAMES:-}" = 1 ]; then wasm_opt_flags+=(--debuginfo); fi
if [ -z "${WASM_OPT_BIN:-}" ] && [ -x node_modules/.bin/wasm-opt ]; then
  WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
fi
# An operator's machine may not have worker-build yet (scripts/setup.sh installs it here).
if [ "$(worker-build --version 2>/dev/null || true)" != "0.8.7" ]; then
  cargo install -q worker-build --version 0.8.7 --locked
fi
if [ -n "${BROKER_FEATURES:-}" ]; then
  out="${BROKER_OUT:-build-${BROKER_FEATURES//[^a-z0-9]/-}}"
  if [ "$out" = build ]; then
    echo "build.sh: a BROKER_FEATURES build never goes to build/ (the deployed worker)" >&2
    exit 1
  fi
  exec worker-build --release --no-opt --out-dir "$out" -- \
    --features "$BROKER_FEATURES" --target-dir "target/$out"
fi
if [ -n "${BROKER_OUT:-}" ] && [ "$BROKER_OUT" != build ]; then
  echo "build.sh: BROKER_OUT is for BROKER_FEATURES builds; the release build goes to build/" >&2
  exit 1
fi
if [ "${BROKER_NO_OPT:-}" = 1 ]; then
  exec worker-build --release --no-opt
elif [ -z "${WASM_OPT_BIN:-}" ]; then
  # No local binaryen (npm `binaryen`, see package.json): let worker-build fetch
  # wasm-opt and run its default `-O` (a larger wasm, names kept).
  exec worker-build --release
fi
worker-build --release --no-opt
wasm="build/index_bg.wasm"
if [ "${BROKER_WASM_NAMES:-}" = 1 ]; then
  "$WASM_OPT_BIN" "$wasm" "${wasm_opt_flags[@]}" "${wasm_opt_features[@]}" -o "$wasm.opt"
else
  "$WASM_OPT_BIN" "$wasm" -Os -ocimfs 10 --debuginfo "${wasm_opt_features[@]}" -o "$wasm.named"
  node scripts/wasm-order.mjs "$wasm.named" "$wasm.ordered"
  "$WASM_OPT_BIN" "$wasm.ordered" "${wasm_opt_flags[@]}" "${wasm_opt_features[@]}" -o "$wasm.opt"
  rm -f "$wasm.named" "$wasm.ordered"
fi
mv "$wasm.opt" "$wasm"
