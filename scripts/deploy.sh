#!/usr/bin/env bash
# A guided first deployment to Cloudflare, safe to run again: every step checks
# first and only does what is missing, and prints one line (done, already done,
# or what to do).
#
#   bash scripts/deploy.sh [--yes] [--url <https://your broker>] [--no-deploy]
#
#   1. toolchain       rustup + wasm32-unknown-unknown, node >= 20, npm; `npm ci`
#                      when node_modules is missing
#   2. login           `wrangler whoami`; else run `npx wrangler login` (or set
#                      CLOUDFLARE_API_TOKEN) and start again
#   3. database        the D1 database named by wrangler.toml's DB entry: created
#                      if missing; its id replaces the all-zero database_id (an id
#                      already set is never changed)
#   4. migrations      bash scripts/migrate.sh --remote (every [[d1_databases]])
#   5. SEALING_SECRET  generated and put once, shown once: store it offline
#   6. providers       client id into wrangler.toml [vars], client secret with
#                      `wrangler secret put`; asks per provider
#   7. deploy          wrangler deploy (on every run; --no-deploy skips it)
#   8. check           bash scripts/doctor.sh <url>, then what remains to do
#
# --yes        ask nothing. Providers are configured from the environment:
#              CLIENT_ID_<ID> and CLIENT_SECRET_<ID> (<ID>: the provider id
#              upper-cased, other characters as `_`, e.g. CLIENT_ID_BOX_COM);
#              the others are skipped.
# --url        the broker's URL (e.g. a custom domain); default: the workers.dev
#              URL `wrangler deploy` prints.
# --no-deploy  skip step 7.
# WRANGLER     the wrangler to run (default: the one on PATH, else
#              node_modules/.bin/wrangler).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
config="$repo/wrangler.toml"

yes=0
url=""
deploy=1
while [ $# -gt 0 ]; do
  case "$1" in
    -y|--yes) yes=1; shift ;;
    --url) url="${2:?--url needs a URL}"; shift 2 ;;
    --no-deploy) deploy=0; shift ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deploy: unknown argument: $1 (--help)" >&2; exit 2 ;;
  esac
done
url="${url%/}"
if [ -n "$url" ] && ! [[ "$url" =~ ^https://[A-Za-z0-9.-]+(:[0-9]+)?$ ]]; then
  echo "deploy: --url wants https://<host>, without a path: $url" >&2; exit 2
fi
if [ "$yes" = 0 ] && ! [ -t 0 ]; then
  echo "deploy: no terminal to ask on: run with --yes (providers from CLIENT_ID_<ID> / CLIENT_SECRET_<ID>)" >&2
  exit 2
fi

# The built-in providers an operator registers an app for (docs/providers/README.md;
# jottacloud needs none), their names and guides.
ids=(googledrive gcs onedrivev2 sharepoint msgroup box.com dropbox pcloud)
names=("Google Drive" "Google Cloud Storage" "OneDrive" "SharePoint" "Microsoft Groups" "Box" "Dropbox" "pCloud")
guides=(googledrive googledrive onedrivev2 onedrivev2 onedrivev2 box dropbox pcloud)
# CLIENT_ID_BOX_COM for box.com (src/providers.rs, binding_name).
binding() { printf '%s' "$1" | tr '[:lower:]' '[:upper:]' | tr -c 'A-Z0-9' '_'; }

# Read the providers' values from the environment once, then drop them from it, so
# no secret is handed down to wrangler or the build.
env_id=()
env_secret=()
for i in "${!ids[@]}"; do
  b=$(binding "${ids[$i]}")
  n="CLIENT_ID_$b"; env_id[i]="${!n:-}"
  n="CLIENT_SECRET_$b"; env_secret[i]="${!n:-}"
  unset "CLIENT_ID_$b" "CLIENT_SECRET_$b"
done

step=""
say() { printf '[%s] %s\n' "$step" "$*"; }
stop() { printf '[%s] TO DO: %s\n' "$step" "$*"; exit 1; }
indent() { sed 's/^/    /'; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
changed_toml=0

# wrangler.toml, read and edited line by line (no TOML dependency; the same reading
# as scripts/migrate.sh): `name`; `db <binding>` prints "<database_name> <database_id>";
# `vars` prints [vars] as KEY=value lines; `set-db-id <binding> <id>` replaces an
# all-zero database_id only; `set-var <KEY> <value>` adds KEY to [vars] after its
# last entry (or fills an empty one). Every other byte of the file stays as it was.
toml() {
  node - "$config" "$@" <<'NODE'
const fs = require("fs");
const [file, op, a, b] = process.argv.slice(2);
const lines = fs.readFileSync(file, "utf8").split("\n");
const tables = [];
let cur = { name: "", array: false, start: 0 };
lines.forEach((raw, i) => {
  const m = raw.trim().match(/^(\[\[?)\s*([^\]]+?)\s*\]/);
  if (!m) return;
  cur.end = i;
  tables.push(cur);
  cur = { name: m[2].replace(/["']/g, ""), array: m[1] === "[[", start: i + 1 };
});
cur.end = lines.length;
tables.push(cur);
const keyRe = /^\s*([A-Za-z0-9_-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/;
const entries = (t) => {
  const out = [];
  for (let i = t.start; i < t.end; i++) {
    const m = lines[i].match(keyRe);
    if (m) out.push({ i, key: m[1], value: m[2] ?? m[3] });
  }
  return out;
};
const get = (t, key) => entries(t).find((e) => e.key === key);
const db = (binding) => {
  const t = tables.find((t) => t.array && t.name === "d1_databases" && get(t, "binding")?.value === binding);
  if (!t) { console.error(`no [[d1_databases]] entry with binding = "${binding}" in ${file}`); process.exit(3); }
  return t;
};
const vars = tables.find((t) => !t.array && t.name === "vars");
const write = () => fs.writeFileSync(file, lines.join("\n"));
switch (op) {
  case "name":
    console.log(get(tables[0], "name")?.value ?? "");
    break;
  case "db": {
    const t = db(a);
    console.log(`${get(t, "database_name")?.value ?? ""} ${get(t, "database_id")?.value ?? ""}`);
    break;
  }
  case "vars":
    for (const e of vars ? entries(vars) : []) console.log(`${e.key}=${e.value}`);
    break;
  case "set-db-id": {
    const e = get(db(a), "database_id");
    if (!e) { console.error(`the ${a} entry has no database_id line`); process.exit(4); }
    if (!/^[0-]*$/.test(e.value)) { console.error(`the ${a} entry's database_id is already set`); process.exit(5); }
    lines[e.i] = lines[e.i].replace(/=\s*(?:"[^"]*"|'[^']*')/, `= "${b}"`);
    write();
    break;
  }
  case "set-var": {
    const line = `${a} = ${JSON.stringify(b)}`;
    if (!vars) {
      const at = lines[lines.length - 1] === "" ? lines.length - 1 : lines.length;
      lines.splice(at, 0, "", "[vars]", line);
    } else {
      const all = entries(vars);
      const e = all.find((e) => e.key === a);
      if (e && e.value !== "") { console.error(`${a} is already set in [vars]`); process.exit(5); }
      if (e) lines[e.i] = line;
      else lines.splice(all.length ? all[all.length - 1].i + 1 : vars.start, 0, line);
    }
    write();
    break;
  }
  default:
    console.error(`toml: unknown operation ${op}`);
    process.exit(2);
}
NODE
}

# Names from JSON on stdin: `uuid-of <name>` (d1 list), `names` (secret list).
json() {
  node -e '
    let s = require("fs").readFileSync(0, "utf8");
    const v = JSON.parse(s.slice(Math.max(0, s.search(/[\[{]/))));
    const [op, name] = process.argv.slice(1);
    if (op === "uuid-of") { const d = v.find((d) => d.name === name); if (d) console.log(d.uuid); }
    else for (const x of v) console.log(x.name);
  ' "$@"
}

# ---------------------------------------------------------------------------------
step="1/8 toolchain"
missing=()
if ! command -v rustup >/dev/null 2>&1 || ! command -v cargo >/dev/null 2>&1; then
  missing+=("rustup and cargo: install rustup from https://rustup.rs, then: rustup target add wasm32-unknown-unknown")
elif ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  missing+=("the wasm target: rustup target add wasm32-unknown-unknown")
fi
if ! command -v node >/dev/null 2>&1; then
  missing+=("Node.js 20 or later (with npm): https://nodejs.org/")
elif [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  missing+=("Node.js 20 or later (this is $(node --version)): https://nodejs.org/")
fi
if ! command -v npm >/dev/null 2>&1; then
  missing+=("npm (it comes with Node.js: https://nodejs.org/)")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  for m in "${missing[@]}"; do say "missing: $m"; done
  stop "install what is missing above, then run this script again"
fi
versions="rustup + wasm32-unknown-unknown, cargo, node $(node --version), npm"
if [ -d node_modules ]; then
  say "already done: $versions, node_modules"
else
  npm ci --no-audit --no-fund --loglevel=error 2>&1 | indent || stop "npm ci failed (above)"
  say "done: $versions; npm ci (node_modules was missing)"
fi
if [ -n "${WRANGLER:-}" ]; then
  wrangler="$WRANGLER"
elif command -v wrangler >/dev/null 2>&1; then
  wrangler=$(command -v wrangler)
elif [ -x node_modules/.bin/wrangler ]; then
  wrangler="$repo/node_modules/.bin/wrangler"
else
  stop "no wrangler: npm ci (it is in package.json), or set WRANGLER"
fi
export WRANGLER="$wrangler" # scripts/migrate.sh runs the same one

# ---------------------------------------------------------------------------------
step="2/8 login"
if ! out=$("$wrangler" whoami 2>&1); then
  indent <<<"$out"
  stop "\`wrangler whoami\` failed (above)"
fi
who=$(grep -o 'You are logged in with .*' <<<"$out" | sed 's/\x1b\[[0-9;]*m//g' | head -n1 || true)
if [ -z "$who" ]; then
  stop "not logged in to Cloudflare: run \`npx wrangler login\` (or set CLOUDFLARE_API_TOKEN: Workers Scripts Edit, D1 Edit), then run this script again"
fi
say "already done: ${who#You are }"

# ---------------------------------------------------------------------------------
step="3/8 database"
worker=$(toml name)
dbline=$(toml db DB 2>&1) || stop "$dbline"
read -r db_name db_id <<<"$dbline"
[ -n "$db_name" ] || stop "wrangler.toml's DB entry has no database_name"
placeholder=0
[[ "$db_id" =~ ^[0-]*$ ]] && placeholder=1
"$wrangler" d1 list --json >"$tmp/d1.json" 2>"$tmp/d1.err" || { indent <"$tmp/d1.err"; stop "\`wrangler d1 list\` failed (above)"; }
listed=$(json uuid-of "$db_name" <"$tmp/d1.json") || stop "could not read the answer of \`wrangler d1 list --json\`"
if [ -n "$listed" ] && [ "$placeholder" = 0 ]; then
  [ "$listed" = "$db_id" ] || stop "wrangler.toml's DB database_id is $db_id, but this account's $db_name is $listed: correct database_id by hand (this script never changes an id already set)"
  say "already done: $db_name ($db_id) is wrangler.toml's DB"
elif [ -n "$listed" ]; then
  toml set-db-id DB "$listed"
  changed_toml=1
  say "done: found $db_name ($listed) in the account; wrote its id into wrangler.toml (DB database_id)"
elif [ "$placeholder" = 0 ]; then
  stop "wrangler.toml's DB database_id is $db_id, but this account has no database named $db_name: wrong account (\`npx wrangler whoami\`), or a wrong database_name"
else
  out=$("$wrangler" d1 create "$db_name" 2>&1) || { indent <<<"$out"; stop "\`wrangler d1 create $db_name\` failed (above)"; }
  id=$(grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' <<<"$out" | head -n1 || true)
  [ -n "$id" ] || { indent <<<"$out"; stop "created $db_name, but found no id in wrangler's answer (above): put it into wrangler.toml's DB database_id"; }
  toml set-db-id DB "$id"
  changed_toml=1
  say "done: created $db_name ($id); wrote its id into wrangler.toml (DB database_id)"
fi

# ---------------------------------------------------------------------------------
step="4/8 migrations"
if ! out=$(bash scripts/migrate.sh --remote 2>&1); then
  indent <<<"$out"
  stop "migrations failed (above): fix, then run this script again"
fi
if grep -qv ': up to date$' <<<"$out"; then
  say "done: bash scripts/migrate.sh --remote"
else
  say "already done: every database up to date"
fi
indent <<<"$out"

# ---------------------------------------------------------------------------------
step="5/8 SEALING_SECRET"
# A Worker that does not exist yet has no secrets (`secret put` creates it).
if "$wrangler" secret list >"$tmp/secrets.json" 2>"$tmp/secrets.err"; then
  secrets=$(json names <"$tmp/secrets.json") || stop "could not read the answer of \`wrangler secret list\`"
elif grep -qi 'not found' "$tmp/secrets.err" "$tmp/secrets.json"; then
  secrets=""
else
  indent <"$tmp/secrets.err"
  stop "\`wrangler secret list\` failed (above)"
fi
has_secret() { grep -qx "$1" <<<"$secrets"; }
# NAME, the value on stdin: given as `< <(printf ...)`, never a pipe (a subshell would
# lose the update below) nor a here-string or here-document (older bash writes those
# to a temporary file).
put_secret() {
  "$wrangler" secret put "$1" >"$tmp/put.log" 2>&1 || { indent <"$tmp/put.log"; stop "\`wrangler secret put $1\` failed (above)"; }
  secrets+=$'\n'"$1"
}
sealing_new=0
if has_secret SEALING_SECRET; then
  say "already done: SEALING_SECRET is set (it cannot be read back: keep your offline copy)"
else
  if command -v openssl >/dev/null 2>&1; then
    sealing="1:$(openssl rand -base64 48)"
  else
    sealing="1:$(node -p 'require("crypto").randomBytes(48).toString("base64")')"
  fi
  rule="  =============================================================================="
  printf '\n%s\n  SEALING_SECRET, shown this once:\n\n      %s\n\n' "$rule" "$sealing"
  echo "  STORE A COPY OFFLINE NOW (a password manager, a printed sheet in a safe)."
  echo "  It cannot be read back from Cloudflare, and without it every stored grant is"
  echo "  lost: every user would have to log in again (docs/operate.md, \"What you must"
  echo "  never lose\")."
  printf '%s\n\n' "$rule"
  if [ "$yes" = 0 ]; then read -r -p "Press Enter once the copy is stored offline: " _ || true; fi
  put_secret SEALING_SECRET < <(printf '%s' "$sealing")
  unset sealing
  sealing_new=1
  say "done: generated SEALING_SECRET and put it (wrangler secret put)"
fi

# ---------------------------------------------------------------------------------
step="6/8 providers"
host_hint="${url:-https://$worker.<your workers.dev subdomain>.workers.dev}"
vars=$(toml vars)
var_value() { sed -n "s/^$1=//p" <<<"$vars" | head -n1; }
configured=() # this run
skipped=()
for i in "${!ids[@]}"; do
  id="${ids[$i]}"
  b=$(binding "$id")
  have_id=$(var_value "CLIENT_ID_$b")
  have_secret=0
  has_secret "CLIENT_SECRET_$b" && have_secret=1
  if [ -n "$have_id" ] && [ "$have_secret" = 1 ]; then
    say "already done: $id (CLIENT_ID_$b in wrangler.toml, CLIENT_SECRET_$b set)"
    continue
  fi
  new_id="" new_secret=""
  [ -n "$have_id" ] || new_id="${env_id[$i]}"
  [ "$have_secret" = 1 ] || new_secret="${env_secret[$i]}"
  if [ -z "$new_id$new_secret" ] && [ "$yes" = 0 ]; then
    read -r -p "[$step] Set up ${names[$i]} ($id) now? [y/N] " answer || answer=""
    if [[ "$answer" =~ ^[Yy] ]]; then
      echo "    Register the app as docs/providers/${guides[$i]}.md says, with the redirect URI"
      echo "      $host_hint/callback/$id"
      [ -n "$url" ] || echo "    (the exact host: see \"What remains\" at the end, after the deploy)"
      [ -n "$have_id" ] || read -r -p "    Client id (empty: later): " new_id || new_id=""
      [ "$have_secret" = 1 ] || { read -r -s -p "    Client secret (not shown; empty: later): " new_secret || new_secret=""; echo; }
    fi
  fi
  if [ -z "$new_id$new_secret" ]; then
    skipped+=("$id")
    continue
  fi
  done_parts=()
  if [ -n "$new_id" ]; then
    [[ "$new_id" =~ ^[A-Za-z0-9._~@:/+=-]+$ ]] || stop "$id: that client id has characters no provider uses (quotes, spaces?): not written"
    toml set-var "CLIENT_ID_$b" "$new_id"
    have_id="$new_id"
    changed_toml=1
    done_parts+=("CLIENT_ID_$b written to wrangler.toml [vars]")
  fi
  if [ -n "$new_secret" ]; then
    put_secret "CLIENT_SECRET_$b" < <(printf '%s' "$new_secret")
    have_secret=1
    done_parts+=("CLIENT_SECRET_$b put")
  fi
  new_secret=""
  line="done: $id: $(printf '%s; ' "${done_parts[@]}")"
  line="${line%; }"
  [ -n "$have_id" ] || line+="; CLIENT_ID_$b still missing (rerun this script)"
  [ "$have_secret" = 1 ] || line+="; CLIENT_SECRET_$b still missing (rerun this script)"
  say "$line"
  configured+=("$id")
done
env_secret=()
if [ "${#skipped[@]}" -gt 0 ]; then
  if [ "$yes" = 1 ]; then
    say "skipped: ${skipped[*]} (not in the environment: CLIENT_ID_<ID>, CLIENT_SECRET_<ID>)"
  else
    say "skipped: ${skipped[*]}"
  fi
fi

# ---------------------------------------------------------------------------------
step="7/8 deploy"
if [ "$deploy" = 0 ]; then
  say "skipped (--no-deploy)"
else
  if [ "$changed_toml" = 0 ] && [ "${#configured[@]}" = 0 ] && [ "$sealing_new" = 0 ]; then
    say "deploying again (nothing above changed; --no-deploy skips this): wrangler deploy"
  else
    say "deploying: wrangler deploy (the first build takes several minutes)"
  fi
  "$wrangler" deploy 2>&1 | tee "$tmp/deploy.log" | indent || stop "\`wrangler deploy\` failed (above)"
  deployed=$(grep -oE 'https://[A-Za-z0-9.-]+\.workers\.dev' "$tmp/deploy.log" | head -n1 || true)
  say "done: deployed${deployed:+ to $deployed}"
  [ -n "$url" ] || url="$deployed"
fi

# ---------------------------------------------------------------------------------
step="8/8 check"
doctor_failed=0
if [ -z "$url" ]; then
  say "no URL to check: run again with --url https://<your broker>"
else
  say "bash scripts/doctor.sh $url"
  bash scripts/doctor.sh "$url" 2>&1 | indent || doctor_failed=1
  [ "$doctor_failed" = 0 ] || say "TO DO: the doctor found problems (above)"
fi

host="${url:-$host_hint}"
remains=()
if [ "$sealing_new" = 1 ]; then
  remains+=("Store the SEALING_SECRET printed above offline, if not done yet: it is never shown again.")
else
  remains+=("Keep your offline copy of SEALING_SECRET (docs/operate.md, \"What you must never lose\").")
fi
for id in ${configured[@]+"${configured[@]}"}; do
  remains+=("$id: register the redirect URI $host/callback/$id at the provider, then log in once: $host/login?id=$id (docs/providers/README.md, \"Check it\")")
done
missing_providers=()
vars=$(toml vars)
for i in "${!ids[@]}"; do
  b=$(binding "${ids[$i]}")
  if [ -z "$(var_value "CLIENT_ID_$b")" ] || ! has_secret "CLIENT_SECRET_$b"; then missing_providers+=("${ids[$i]}"); fi
done
if [ "${#missing_providers[@]}" -gt 0 ]; then
  remains+=("Providers not set up: ${missing_providers[*]} (run this script again, or docs/providers/README.md).")
fi
has_secret ADMIN_API_KEY || remains+=("ADMIN_API_KEY is not set: only /export and /import need it (moving grants between brokers): npx wrangler secret put ADMIN_API_KEY")
has_secret ACCESS_KEYS || remains+=("ACCESS_KEYS is not set: the broker is open to anyone; for a private one, npx wrangler secret put ACCESS_KEYS (docs/operate.md, \"The access gate\")")
if [ "$changed_toml" = 1 ]; then
  remains+=("Commit wrangler.toml (database_id, CLIENT_ID_* vars): later deploys, and .github/workflows/deploy.yml, read it.")
  [ "$deploy" = 1 ] || remains+=("Deploy, so the new [vars] take effect: npx wrangler deploy")
fi
remains+=("Later upgrades: docs/operate.md, \"Upgrading\" (migrate, then deploy).")
echo
echo "What remains:"
for r in "${remains[@]}"; do echo "  - $r"; done
exit "$doctor_failed"
