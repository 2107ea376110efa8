#!/usr/bin/env bash
# Fuzzes the pure parsers with cargo-fuzz (libFuzzer, nightly toolchain).
#   bash scripts/fuzz.sh [seconds per target, default 60] [target ...]
# Targets: authid params provider_config callback sealed_blob. Bounded by -max_total_time.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"; shift || true
targets=("$@"); [ "${#targets[@]}" -gt 0 ] || targets=(authid params provider_config callback sealed_blob)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install -q cargo-fuzz --version 0.13.2 --locked
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== fuzz $t for ${secs}s"
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 \
    | grep -E "^#[0-9]+.*(DONE|pulse)|Done [0-9]+ runs|ERROR|panicked|crash" | tail -3
done
