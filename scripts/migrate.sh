#!/usr/bin/env bash
# Applies migrations/ to EVERY D1 database of a wrangler config: each grant shard
# (D1_SHARDS: `DB`, `DB_2`, `DB_3`, ...) has the full schema, and shard 1 also holds
# the login states, hand-offs, authorization and device codes (docs/scale.md).
#
#   bash scripts/migrate.sh [-c <config>] (--local [--persist-to <dir>] | --remote) [--env <name>]
#
# -c defaults to wrangler.toml. The databases are read from the config itself: every
# `[[d1_databases]]` entry (with --env <name>: the `[[env.<name>.d1_databases]]`
# entries, as wrangler does not inherit them into an environment), by `binding`.
# A wrangler.json/.jsonc config works too. Idempotent (wrangler records what it
# applied in each database's `d1_migrations` table); prints one line per database;
# a database that fails prints wrangler's output and the script exits 1 after
# trying the others. WRANGLER names the wrangler to run (default: the repository's
# node_modules/.bin/wrangler, else the one on PATH).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

config="$repo/wrangler.toml"
where=""
persist=()
envargs=()
envname=""
while [ $# -gt 0 ]; do
  case "$1" in
    -c|--config) config="${2:?-c needs a path}"; shift 2 ;;
    --local|--remote) [ -z "$where" ] || { echo "migrate: --local or --remote, not both" >&2; exit 2; }
                      where="$1"; shift ;;
    --persist-to) persist=(--persist-to "${2:?--persist-to needs a directory}"); shift 2 ;;
    -e|--env) envname="${2:?--env needs a name}"; envargs=(--env "$envname"); shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "migrate: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$where" ] || { echo "migrate: say --local or --remote" >&2; exit 2; }
[ "${#persist[@]}" -eq 0 ] || [ "$where" = --local ] || { echo "migrate: --persist-to needs --local" >&2; exit 2; }
[ -f "$config" ] || { echo "migrate: no config at $config" >&2; exit 2; }
# Paths are the caller's; wrangler runs from the repository (its node_modules).
config="$(realpath "$config")"
[ "${#persist[@]}" -eq 0 ] || persist=(--persist-to "$(realpath -m "${persist[1]}")")
cd "$repo"
source scripts/env.sh
export CI=true NO_COLOR=1

# "<binding> <database_name>" per [[d1_databases]] entry, in the config's order.
# A small line parser (no dependency): table headers, `key = "value"` lines,
# comments; for JSON configs, JSON.parse after removing comments.
databases=$(node - "$config" "$envname" <<'NODE'
const fs = require("fs");
const [file, env] = process.argv.slice(2);
const text = fs.readFileSync(file, "utf8");
let entries = [];
if (/\.jsonc?$/.test(file)) {
  // Drop // and /* */ comments outside strings, then trailing commas.
  let out = "", inStr = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inStr) { out += c; if (c === "\\") { out += text[++i] ?? ""; } else if (c === '"') inStr = false; continue; }
    if (c === '"') { inStr = true; out += c; continue; }
    if (c === "/" && text[i + 1] === "/") { while (i < text.length && text[i] !== "\n") i++; out += "\n"; continue; }
    if (c === "/" && text[i + 1] === "*") { i = text.indexOf("*/", i + 2); if (i < 0) break; i++; continue; }
    out += c;
  }
  const cfg = JSON.parse(out.replace(/,(\s*[\]}])/g, "$1"));
  const scope = env ? (cfg.env || {})[env] || {} : cfg;
  entries = (scope.d1_databases || []).map((d) => ({ binding: d.binding, database_name: d.database_name }));
} else {
  const want = env ? `env.${env}.d1_databases` : "d1_databases";
  let cur = null;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/^\s+/, "");
    if (line === "" || line.startsWith("#")) continue;
    let m;
    if ((m = line.match(/^\[\[\s*([^\]]+?)\s*\]\]/))) {
      cur = m[1].replace(/["']/g, "") === want ? {} : null;
      if (cur) entries.push(cur);
      continue;
    }
    if (line.startsWith("[")) { cur = null; continue; }
    if (cur && (m = line.match(/^(binding|database_name)\s*=\s*(?:"([^"]*)"|'([^']*)')/))) {
      cur[m[1]] = m[2] ?? m[3];
    }
  }
}
let bad = false;
const seen = new Set();
for (const e of entries) {
  if (!e.binding || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(e.binding)) {
    console.error(`migrate: a d1_databases entry in ${file} has no usable binding`);
    bad = true;
  } else if (seen.has(e.binding)) {
    console.error(`migrate: binding ${e.binding} appears twice in ${file}`);
    bad = true;
  }
  seen.add(e.binding);
}
if (entries.length === 0) {
  console.error(`migrate: no ${env ? `[[env.${env}.d1_databases]]` : "[[d1_databases]]"} entries in ${file}`);
  bad = true;
}
if (bad) process.exit(2);
for (const e of entries) console.log(`${e.binding} ${e.database_name || e.binding}`);
NODE
)

failed=()
while read -r binding name; do
  [ -n "$binding" ] || continue
  if out=$("${WRANGLER:-wrangler}" d1 migrations apply "$binding" "$where" "${persist[@]}" -c "$config" "${envargs[@]}" 2>&1); then
    if grep -q "No migrations to apply" <<<"$out"; then
      state="up to date"
    else
      state="applied $(grep -oE '[0-9]{4}_[A-Za-z0-9_]+\.sql' <<<"$out" | sort -u | paste -sd ' ' -)"
    fi
    echo "migrate: $binding ($name) ${where#--}: ${state:-applied}"
  else
    echo "migrate: $binding ($name) ${where#--}: FAILED" >&2
    sed 's/^/    /' <<<"$out" >&2
    failed+=("$binding")
  fi
done <<<"$databases"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "migrate: FAILED for ${failed[*]}" >&2
  exit 1
fi
