#!/usr/bin/env bash
# The doctor in a terminal: what `GET /admin/status` says about a deployed broker
# (src/doctor.rs): every configuration problem with its fix, each provider (offered or
# why not, and the redirect URI to register), each shard's migration level, the rate
# limits, the gate. Exits 1 if there is a problem.
#
#   ADMIN_API_KEY=<key> bash scripts/doctor.sh https://<your broker>
#
# The key is read from ADMIN_API_KEY, else asked for (not echoed). It goes in the
# X-APIKey header, never in the URL.
set -euo pipefail
url="${1:-}"
case "$url" in
  -h|--help|"") sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; [ -n "$url" ]; exit $? ;;
esac
key="${ADMIN_API_KEY:-}"
if [ -z "$key" ]; then
  if [ ! -t 0 ]; then
    echo "doctor: set ADMIN_API_KEY to the broker's admin key (wrangler secret put ADMIN_API_KEY sets one)" >&2
    exit 2
  fi
  read -r -s -p "ADMIN_API_KEY: " key; echo >&2
fi
export DOCTOR_URL="${url%/}/admin/status" DOCTOR_KEY="$key"
# shellcheck disable=SC2016 # JavaScript, not shell: its ${…} are template literals.
node -e '
(async () => {
  let r;
  try {
    r = await fetch(process.env.DOCTOR_URL, {
      headers: { "X-APIKey": process.env.DOCTOR_KEY },
      signal: AbortSignal.timeout(20000),
    });
  } catch (e) {
    console.error(`doctor: ${process.env.DOCTOR_URL}: ${e.cause ? e.cause.message : e.message}`);
    process.exit(2);
  }
  const s = await r.text();
  if (r.status !== 200) {
    console.error(`doctor: ${process.env.DOCTOR_URL} answered ${r.status}: ${s}`);
    if (r.status === 401) console.error("doctor: the X-APIKey is not the broker'"'"'s ADMIN_API_KEY (or none is set there)");
    process.exit(2);
  }
  const v = JSON.parse(s);
  const out = (t) => process.stdout.write(t + "\n");
  out(v.ok ? "OK: no problem found" : `${v.problems.length} problem(s):`);
  for (const p of v.problems) out(`  - [${p.area}] ${p.what}\n      fix: ${p.fix}`);
  for (const w of v.warnings) out(`  ! [${w.area}] ${w.what}\n      ${w.fix}`);
  out(`sealing secret: ${v.sealing_secret.set ? "set, version " + v.sealing_secret.current_version : "NOT SET"}`);
  out("providers:");
  for (const p of v.providers)
    out(`  ${p.offered ? "offered    " : "not offered"} ${p.id.padEnd(11)} ${p.redirect_uri}` +
        (p.offered ? "" : `  (${p.why_not.join("; ")})`));
  out("shards:");
  for (const s of v.shards)
    out(`  ${s.shard} ${s.binding}: ${!s.reachable ? "UNREACHABLE" : s.up_to_date ? "up to date" : "behind"} (${s.migration || "no migration"})`);
  const off = Object.entries(v.rate_limits).filter(([, on]) => !on).map(([n]) => n);
  out(`rate limits: ${off.length ? "off: " + off.join(", ") : "all bound"}`);
  out(`access gate: ${v.gate.enabled ? v.gate.keys + " key(s)" : "open"}`);
  process.exitCode = v.ok ? 0 : 1;
})();'
