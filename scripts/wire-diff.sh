#!/usr/bin/env bash
# Proves a refactor left the wire bytes of every route unchanged: builds the worker
# (scripts/build.sh, the release build) for a base revision and for a head (default:
# this working tree), runs each in workerd (`wrangler dev`) with a fresh local D1 and
# the same fixed configuration against a fresh mock provider, sends both the same
# fixed request corpus (scripts/wire-corpus.mjs), masks per-run randomness and diffs
# the normalized answers.
#
#   bash scripts/wire-diff.sh <base-rev> [<head-rev>]
#
# Prints `wire-diff: N requests, M identical, K differ` and the unified diff of each
# differing answer; exits 1 if any differ (2 on a usage or setup error). Transcripts
# (base and head, raw and normalized) go to target/wire/; each side has its own
# cargo target dir, target/wire/cargo-base and target/wire/cargo-head, kept so repeat
# runs build incrementally. Never one for both: cargo fingerprints a workspace crate by
# its path relative to the workspace and by mtimes, so the second checkout, older than
# the first one's build, would pass for fresh and the head would be the base's wasm.
# A revision is checked out into a temporary git worktree (this checkout's
# node_modules by symlink), removed on exit. Loopback only. Needs the toolchain that
# scripts/setup.sh installs (run it once first).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
base_rev="${1:?usage: scripts/wire-diff.sh <base-rev> [<head-rev>]}"
head_rev="${2:-}"
# shellcheck disable=SC1091 # (env.sh: PATH and wrangler settings)
source scripts/env.sh
export CI=true NO_COLOR=1

for rev in "$base_rev" ${head_rev:+"$head_rev"}; do
  git rev-parse -q --verify "$rev^{commit}" >/dev/null || { echo "wire-diff: no such revision: $rev" >&2; exit 2; }
done

out="$repo/target/wire"
tmp="$(mktemp -d)"
worktrees=()
groups=()
cleanup() {
  local g wt
  for g in "${groups[@]}"; do stop_group "$g"; done
  for wt in "${worktrees[@]}"; do
    git -C "$repo" worktree remove --force "$wt" >/dev/null 2>&1 || true
  done
  rm -rf "$tmp"
}
# Ends a process group this script started (setsid: its leader's pid), TERM then,
# after up to 10 s, KILL.
stop_group() { # pgid
  kill -TERM -- "-$1" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 -- "-$1" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL -- "-$1" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "[wire-diff] $*" >&2; }

# A revision checked out in a temporary worktree ($tmp/<name>), with this
# checkout's node_modules.
checkout() { # name rev
  local wt="$tmp/$1"
  git -C "$repo" worktree add -q --detach "$wt" "$2"
  worktrees+=("$wt")
  ln -s "$repo/node_modules" "$wt/node_modules"
}

build() { # label dir
  local log="$out/$1/build.log" t0=$SECONDS
  say "$1: building ($2, log $log)"
  if ! (cd "$2" && CARGO_TARGET_DIR="$out/cargo-$1" bash scripts/build.sh) >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    say "$1: build failed"
    exit 2
  fi
  say "$1: built in $((SECONDS - t0)) s, wasm sha256 $(sha256sum "$2/build/index_bg.wasm" | cut -c1-16)"
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

wait_http() { # url seconds
  local _i
  for _i in $(seq 1 "$(($2 * 4))"); do
    if curl -s -o /dev/null --noproxy '*' -m 5 "$1"; then return 0; fi
    sleep 0.25
  done
  return 1
}

# The fixed configuration both sides get (tests/e2e/harness.rs's, with fixed secrets).
write_config() { # side-dir checkout mock-url
  local d="$1" src="$2" m="$3"
  # The side's own wrangler.toml without [build] (wrangler dev would rebuild in the
  # checkout) and [triggers] (no cron mid-corpus), main and migrations made absolute.
  awk -v main="$src/build/worker/shim.mjs" -v mig="$src/migrations" '
    /^\[/ { skip = ($0 == "[build]" || $0 == "[triggers]") }
    skip { next }
    /^main *=/ { print "main = \"" main "\""; next }
    /^migrations_dir *=/ { print "migrations_dir = \"" mig "\""; next }
    { print }' "$src/wrangler.toml" >"$d/wrangler.toml"
  cat >"$d/vars.env" <<VARS
SEALING_SECRET="1:wire-diff-sealing-secret-0123456789abcdefgh"
CLIENT_SECRET_DEMO="demo-secret"
CLIENT_SECRET_BOX_COM="demo-secret"
CLIENT_SECRET_PCLOUD="demo-secret"
ADMIN_API_KEY="wire-diff-admin-api-key-0123456789"
PRIVACY_CONTACT="operator@example.org"
UPSTREAM_TIMEOUT_MS="3000"
OAUTH_HANDLER_URL="$m/_oauth-handler"
OAUTH_HANDLER_API_KEY="mock-oauth-handler-api-key"
OAUTH_PROVIDERS='[{"id":"demo","name":"Demo provider (local mock)","authorize_url":"$m/authorize","token_url":"$m/token","revoke_url":"$m/revoke","scopes":"files.readwrite","client_id":"demo-client","pkce":true,"account":{"from":"endpoint","url":"$m/2.0/users/me?fields=id","field":"id"}},{"id":"box.com","authorize_url":"$m/authorize","token_url":"$m/token","revoke_url":"$m/revoke","client_id":"demo-client","account":{"from":"endpoint","url":"$m/2.0/users/me?fields=id","field":"id"}},{"id":"pcloud","authorize_url":"$m/authorize","token_url":"$m/token","client_id":"demo-client","token_hosts":[{"hostname":"api.pcloud.com","region":"US","token_url":"$m/token"},{"hostname":"eapi.pcloud.com","region":"EU","token_url":"$m/eu/token"}]},{"id":"jottacloud","token_url":"$m/token"}]'
VARS
}

# One side: a fresh mock provider and a fresh local D1, the worker, the corpus.
run_side() { # label checkout
  local label="$1" src="$2" d="$out/$1" t0=$SECONDS
  rm -rf "$d/answers" "$d/state" "$d/.wrangler"
  mkdir -p "$d/answers"
  setsid "$repo/target/release/mock-provider" --port "$mock_port" >"$d/mock.log" 2>&1 &
  local mock_pid=$!
  groups+=("$mock_pid")
  wait_http "http://127.0.0.1:$mock_port/_mock/stats" 30 || { say "$label: mock provider did not start"; exit 2; }
  write_config "$d" "$src" "http://127.0.0.1:$mock_port"
  (cd "$src" && bash scripts/migrate.sh -c "$d/wrangler.toml" --local --persist-to "$d/state") >"$d/migrate.log" 2>&1 \
    || { cat "$d/migrate.log" >&2; exit 2; }
  (cd "$d" && exec setsid wrangler dev --ip 127.0.0.1 --port "$broker_port" -c "$d/wrangler.toml" \
      --persist-to "$d/state" --env-file "$d/vars.env" --show-interactive-dev-session=false \
      --log-level log </dev/null >"$d/worker.log" 2>&1) &
  local worker_pid=$!
  groups+=("$worker_pid")
  if ! wait_http "http://127.0.0.1:$broker_port/healthz" 180; then
    tail -n 30 "$d/worker.log" >&2
    say "$label: the worker did not answer /healthz within 180 s"
    exit 2
  fi
  node "$repo/scripts/wire-corpus.mjs" "http://127.0.0.1:$broker_port" "http://127.0.0.1:$mock_port" "$d/answers" >&2
  stop_group "$worker_pid"
  stop_group "$mock_pid"
  groups=()
  say "$label: corpus run in $((SECONDS - t0)) s"
}

started=$SECONDS
mkdir -p "$out/base" "$out/head"
checkout base "$base_rev"
base_dir="$tmp/base"
head_dir="$repo"
if [ -n "$head_rev" ]; then checkout head "$head_rev"; head_dir="$tmp/head"; fi
base_name="$(git rev-parse --short "$base_rev")"
head_name="${head_rev:+$(git rev-parse --short "$head_rev")}"
head_name="${head_name:-working tree}"

build base "$base_dir"
build head "$head_dir"
say "mock provider (this checkout's)"
cargo build -q --release -p mock-provider --target-dir "$repo/target" 2>"$out/mock-build.log" \
  || { cat "$out/mock-build.log" >&2; exit 2; }
# The same ports for both sides (run one after the other), so even unmasked
# origins compare.
broker_port="$(free_port)"
mock_port="$(free_port)"
while [ "$mock_port" = "$broker_port" ]; do mock_port="$(free_port)"; done
run_side base "$base_dir"
run_side head "$head_dir"

# Compare the normalized answers one request at a time.
total=0 same=0 differ=0
report="$out/diff.txt"
: >"$report"
for f in "$out/base/answers"/[0-9]*.txt "$out/head/answers"/[0-9]*.txt; do
  basename "$f"
done | sort -u >"$tmp/names"
while read -r name; do
  total=$((total + 1))
  a="$out/base/answers/$name" b="$out/head/answers/$name"
  [ -f "$a" ] || a=/dev/null
  [ -f "$b" ] || b=/dev/null
  if cmp -s "$a" "$b"; then
    same=$((same + 1))
  else
    differ=$((differ + 1))
    diff -u --label "base $base_name/$name" --label "head $head_name/$name" "$a" "$b" >>"$report" || true
  fi
done <"$tmp/names"

echo "wire-diff: base $base_name vs head $head_name, wall time $((SECONDS - started)) s"
echo "wire-diff: $total requests, $same identical, $differ differ"
if [ "$differ" -gt 0 ]; then
  cat "$report"
  exit 1
fi
