# Sourced by the scripts: keep wrangler/miniflare off the network and quiet.
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
export WRANGLER_LOG_PATH="${WRANGLER_LOG_PATH:-$PWD/.wrangler/logs}"
export PATH="$PWD/node_modules/.bin:$PATH"
