#!/usr/bin/env bash
# Runs the broker locally: real workerd (wrangler dev) on http://127.0.0.1:8787 with a
# local D1 (schema applied) and a demo OAuth2 provider (the mock provider on 127.0.0.1:9999),
# so you can log in end to end with no real credentials. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh

PORT="${PORT:-8787}"
MOCK_PORT="${MOCK_PORT:-9999}"
if [ ! -f .dev.vars ]; then
  # Local-only secrets: a random sealing secret and the demo provider's credentials.
  secret=$(head -c 36 /dev/urandom | base64 | tr '+/' '-_')
  cat > .dev.vars <<VARS
SEALING_SECRET="1:${secret}"
CLIENT_SECRET_DEMO="demo-secret"
OAUTH_PROVIDERS='[{"id":"demo","name":"Demo provider (local mock)","authorize_url":"http://127.0.0.1:${MOCK_PORT}/authorize","token_url":"http://127.0.0.1:${MOCK_PORT}/token","revoke_url":"http://127.0.0.1:${MOCK_PORT}/revoke","scopes":"files.readwrite","client_id":"demo-client","pkce":true,"account":{"from":"endpoint","url":"http://127.0.0.1:${MOCK_PORT}/2.0/users/me?fields=id","field":"id"}}]'
VARS
  echo "[dev] wrote .dev.vars (local secrets for the demo provider)"
fi

cargo build -q --release -p mock-provider
setsid target/release/mock-provider --port "$MOCK_PORT" &
mock_pid=$!
trap 'kill -- -"$mock_pid" 2>/dev/null || true' EXIT INT TERM

# Every D1 database in wrangler.toml (each grant shard), one line each.
bash scripts/migrate.sh --local
echo "[dev] broker on http://127.0.0.1:${PORT}/ — demo provider on http://127.0.0.1:${MOCK_PORT}/"
wrangler dev --ip 127.0.0.1 --port "$PORT"
