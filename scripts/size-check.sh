#!/usr/bin/env bash
# Size guard (docs/develop.md, "Size"): fail when the built worker's wasm, gzipped (-9), exceeds the
# limit. Cloudflare counts a Worker's size compressed; the limit below is the project's
# own budget, far under the platform's. It lives only here: to raise it, change
# SIZE_LIMIT_GZIP_BYTES and say why in the commit (docs/develop.md, "Size").
#   bash scripts/size-check.sh [wasm]   (default build/index_bg.wasm; run scripts/build.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
# 305000 with a grant's status page, re-authorization in place and account ids (about 298 KB);
# 290000 since the doctor's page, grant counts and /privacy (about 279 KB: docs/develop.md,
# "Size"); 280000 with the doctor's first part (about 270 KB); 270000 with claim ids,
# pointer successors, structured logs and the gate's Continue page (about 262 KB); 260000 when the doors' promise landed (about
# 256 KB); 250000 before, when the build was about 238 KB.
SIZE_LIMIT_GZIP_BYTES=305000
wasm="${1:-build/index_bg.wasm}"
[ -f "$wasm" ] || { echo "size-check: $wasm not built (run scripts/build.sh)" >&2; exit 1; }
raw=$(wc -c < "$wasm")
gz=$(gzip -9c "$wasm" | wc -c)
echo "   wasm: $raw bytes raw, $gz bytes gzip -9 (limit $SIZE_LIMIT_GZIP_BYTES)"
if [ "$gz" -gt "$SIZE_LIMIT_GZIP_BYTES" ]; then
  echo "size-check: FAIL: gzipped wasm is $gz bytes, over the $SIZE_LIMIT_GZIP_BYTES-byte budget" >&2
  echo "  (twiggy top -n 40 on a BROKER_NO_OPT=1 build shows what grew; docs/develop.md, \"Size\")" >&2
  exit 1
fi
# The release worker carries no test seam: the fault-injection build's header
# (src/shell/faults.rs, cargo feature `fault-injection`) must not be in it.
if grep -aqi 'x-broker-fault' "$wasm"; then
  echo "size-check: FAIL: $wasm contains the test-only X-Broker-Fault seam (built with fault-injection?)" >&2
  exit 1
fi
# Nor the storage contract's conformance hook (src/shell/conformance.rs).
if grep -aq '__conformance' "$wasm"; then
  echo "size-check: FAIL: $wasm contains the test-only /__conformance hook (built with fault-injection?)" >&2
  exit 1
fi
echo "   no test-only fault seam in it"
