#!/usr/bin/env bash
# Build the worker (Rust → wasm → build/worker/shim.mjs) with worker-build.
# This is wrangler.toml's [build] command, so `wrangler dev` and `wrangler deploy` run it.
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
opt=()
if [ "${BROKER_NO_OPT:-}" = 1 ]; then
  opt=(--no-opt)
elif [ -z "${WASM_OPT_BIN:-}" ] && [ -x node_modules/.bin/wasm-opt ]; then
  export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
fi
# An operator's machine may not have worker-build yet (scripts/setup.sh installs it here).
if [ "$(worker-build --version 2>/dev/null || true)" != "0.8.7" ]; then
  cargo install -q worker-build --version 0.8.7 --locked
fi
exec worker-build --release "${opt[@]}"
