#!/usr/bin/env bash
# Idempotent, cached set-up for a fresh machine: Debian packages, the wasm target,
# worker-build, wasm-bindgen-cli (exactly Cargo.lock's version) and the npm lockfile.
# Nothing is downloaded from outside crates.io / npm / Debian.
#   scripts/setup.sh          what building and running the broker needs
#   scripts/setup.sh --test   also headless Chromium + ChromeDriver for the browser test,
#                             and Debian's rclone for tests/e2e/rclone.rs
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
want_browser=0
[ "${1:-}" = "--test" ] && want_browser=1

say() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pkgs=()
command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || pkgs+=(libssl-dev)
if [ "$want_browser" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || pkgs+=(chromium-driver)
  command -v rclone >/dev/null 2>&1 || pkgs+=(rclone)
fi
if [ "${#pkgs[@]}" -gt 0 ]; then
  say "apt-get install ${pkgs[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

if [ "$(worker-build --version 2>/dev/null || true)" != "$WORKER_BUILD_VERSION" ]; then
  say "cargo install worker-build $WORKER_BUILD_VERSION (cold: ~7 min)"
  cargo install -q worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

# The CLI must match the wasm-bindgen crate in Cargo.lock exactly. Not --locked:
# its own lock file wants a crate version crates.io's index here lacks.
wb=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb" ]; then
  say "cargo install wasm-bindgen-cli $wb (cold: ~4 min)"
  cargo install -q wasm-bindgen-cli --version "$wb"
fi

# npm: reinstall only when the lockfile changed since the last install.
stamp=node_modules/.setup-stamp
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > "$stamp"
fi
