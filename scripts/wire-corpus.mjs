// The fixed request corpus of scripts/wire-diff.sh: every route of the route table
// (src/shell/routes/mod.rs) with its methods and a wrong one, bad inputs, a full demo
// login, refreshes through each door, status, the OAuth 2.0 routes, revoke.
//
//   node scripts/wire-corpus.mjs <broker-base-url> <mock-base-url> <out-dir>
//   node scripts/wire-corpus.mjs --renormalize <out-dir>   (masks <out-dir>/raw.json again)
//
// Writes <out-dir>/raw.json (every answer as received) and <out-dir>/NNN.txt, one
// normalized answer per request: status, headers sorted (per-run ones dropped), body,
// with per-run randomness masked into placeholders numbered by first appearance
// (`<authid#1>`), so "the same value twice" still compares. Same order, same inputs
// on every run; cookies are carried by hand; redirects are never followed.
// Loopback only: both URLs must be http://127.0.0.1:<port>.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";

const renormalize = process.argv[2] === "--renormalize";
const saved = renormalize ? JSON.parse(readFileSync(`${process.argv[3]}/raw.json`, "utf8")) : null;
const [base, mock, outDir] = renormalize ? [saved.base, saved.mock, process.argv[3]] : process.argv.slice(2);
if (!base || !mock || !outDir) {
  console.error("usage: node scripts/wire-corpus.mjs <broker-url> <mock-url> <out-dir>");
  process.exit(2);
}
for (const u of [base, mock]) {
  if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(u)) {
    console.error(`wire-corpus: ${u} is not http://127.0.0.1:<port>`);
    process.exit(2);
  }
}
mkdirSync(outDir, { recursive: true });

// ---- fixed inputs ---------------------------------------------------------------
const HEX32 = "0123456789abcdef0123456789abcdef";
const AUTHIDS = {
  v1_unknown: `${HEX32}:${"A".repeat(43)}`,
  shard2_unknown: `s2:${HEX32}:${"B".repeat(43)}`,
  handler_spelling: `${HEX32}:abcdefghijklmnopqrstu`,
  server_spelling: `${HEX32}:abcdefghijklmnopqrstuvwxyz012345`,
  v2_weak: "v2:demo:short",
  v2_unknown: "v2:demo:Zq8xK2mP4vR7tW9yB3nD6fH1jL5sA0cE",
  garbage: "not-an-authid",
  hex_only: HEX32,
};
const HANDOFF_TOKEN = "k3j4h5g6f7d8s9a0qwertyuiopzx"; // ≥ 64 bits, fixed
const FORM = "application/x-www-form-urlencoded";
const OVERSIZE = "authid=" + "x".repeat(17 * 1024);

// ---- recording --------------------------------------------------------------------
const records = [];
// Response headers that differ per run whatever the code: dropped.
const DROP = /^(date|cf-.*|report-to|nel|server-timing|x-request-id|alt-svc|age|connection|keep-alive|transfer-encoding)$/;

function cookieHeader(jar) {
  return [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
}
function keep(jar, res) {
  for (const sc of res.headers.getSetCookie()) {
    const first = sc.split(";")[0];
    const i = first.indexOf("=");
    if (i < 0) continue;
    const name = first.slice(0, i).trim();
    const value = first.slice(i + 1).trim();
    jar.delete(name);
    if (value !== "" && !/max-age=0/i.test(sc)) jar.set(name, value);
  }
}

/** One request to the broker; recorded. `opts`: headers, body, jar (cookies). */
async function req(label, method, path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (opts.jar && opts.jar.size) headers["Cookie"] = cookieHeader(opts.jar);
  const url = path.startsWith("http") ? path : base + path;
  let res, body, error;
  try {
    res = await fetch(url, { method, headers, body: opts.body, redirect: "manual", signal: AbortSignal.timeout(30000) });
    body = method === "HEAD" ? "" : await res.text();
  } catch (e) {
    // A connection-level failure (not an HTTP answer): recorded as such, never retried.
    error = String(e && e.cause ? e.cause.code || e.cause : e);
  }
  const rec = { n: records.length + 1, label, method, path, reqHeaders: Object.keys(headers).sort() };
  if (error) {
    Object.assign(rec, { status: "ERROR", headers: [], body: error });
  } else {
    const hs = [];
    res.headers.forEach((v, k) => { if (k !== "set-cookie" && !DROP.test(k)) hs.push([k, v]); });
    for (const sc of res.headers.getSetCookie()) hs.push(["set-cookie", sc]);
    hs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    Object.assign(rec, { status: res.status, headers: hs, body });
    if (opts.jar) keep(opts.jar, res);
  }
  records.push(rec);
  return { status: rec.status, body: rec.body, header: (k) => (res ? res.headers.get(k) : null) };
}

/** A request to the mock provider (the demo login's consent): not recorded. */
async function mockGet(url) {
  if (!url || !url.startsWith(mock + "/")) return null;
  const res = await fetch(url, { redirect: "manual", signal: AbortSignal.timeout(30000) });
  await res.text();
  return res.headers.get("location");
}
const form = (o) => new URLSearchParams(o).toString();
const post = (o, extra = {}) => ({ headers: { "Content-Type": FORM, ...extra }, body: form(o) });
const authidOf = (html) => (/data-authid="([^"]*)"/.exec(html || "") || [])[1] || "";
const after = (s, re) => (re.exec(s || "") || [])[1] || "";

/** The demo login end to end in `jar`: /login → the mock's consent → /callback. */
async function login(tag, jar, loginPath) {
  const start = await req(`${tag}: login`, "GET", loginPath, { jar });
  const cb = await mockGet(start.header("location"));
  if (!cb || !cb.startsWith(base + "/")) {
    records.push({ n: records.length + 1, label: `${tag}: no callback`, method: "-", path: "-",
      reqHeaders: [], status: "ERROR", headers: [], body: String(cb) });
    return "";
  }
  const page = await req(`${tag}: callback → result page`, "GET", cb.slice(base.length), { jar });
  return authidOf(page.body);
}

// ---- the corpus -------------------------------------------------------------------
async function corpus() {
  // health, index, not found
  await req("healthz", "GET", "/healthz");
  await req("healthz HEAD", "HEAD", "/healthz");
  await req("healthz wrong method", "POST", "/healthz", post({}));
  await req("index", "GET", "/");
  await req("index HEAD", "HEAD", "/");
  await req("index wrong method", "DELETE", "/");
  await req("index one provider", "GET", "/?type=demo");
  await req("index unknown provider type", "GET", "/?type=nope");
  await req("index pass-through", "GET", "/?tokenversion=2");
  await req("index weak hand-off token", "GET", "/?token=weak");
  await req("unknown path", "GET", "/nope");
  await req("gate prefix, no gate set", "GET", "/k/somekey/healthz");
  await req("privacy", "GET", "/privacy");
  await req("privacy wrong method", "POST", "/privacy", post({}));

  // login and callback, bad inputs
  await req("login without id", "GET", "/login");
  await req("login unknown provider", "GET", "/login?id=nope");
  await req("login duplicate id", "GET", "/login?id=demo&id=demo");
  await req("login unregistered hand-off token", "GET", `/login?id=demo&token=${HANDOFF_TOKEN}x`);
  await req("login wrong method", "POST", "/login?id=demo", post({}));
  await req("callback without state", "GET", "/callback/demo");
  await req("callback garbage code and state", "GET", "/callback/demo?code=x&state=y");
  await req("callback provider error", "GET", "/callback/demo?error=access_denied&state=y");
  await req("callback unknown provider", "GET", "/callback/nope?code=x&state=y");
  await req("callback extra segment", "GET", "/callback/demo/x?code=x&state=y");
  await req("callback wrong method", "POST", "/callback/demo", post({ code: "x" }));

  // the full demo login (a fresh browser)
  const browser = new Map();
  await req("index (browser)", "GET", "/", { jar: browser });
  const authid = await login("demo login", browser, "/login?id=demo");
  await req("callback replayed (state spent)", "GET", "/callback/demo?code=x&state=y", { jar: browser });

  // refresh: the doors, then bad inputs
  await req("refresh X-AuthID", "GET", "/refresh", { headers: { "X-AuthID": authid } });
  await req("refresh legacy query", "GET", `/refresh?authid=${encodeURIComponent(authid)}`);
  await req("refresh POST form", "POST", "/refresh", post({ authid }));
  await req("refresh missing authid", "GET", "/refresh");
  await req("refresh ?type= redirect", "GET", "/refresh?type=demo");
  for (const [kind, a] of Object.entries(AUTHIDS)) {
    await req(`refresh X-AuthID ${kind}`, "GET", "/refresh", { headers: { "X-AuthID": a } });
  }
  await req("refresh X-AuthID empty", "GET", "/refresh", { headers: { "X-AuthID": "" } });
  await req("refresh query garbage", "GET", "/refresh?authid=%00%ff");
  await req("refresh duplicate authid", "GET", `/refresh?authid=${AUTHIDS.garbage}&authid=${AUTHIDS.garbage}`);
  await req("refresh POST wrong content type", "POST", "/refresh",
    { headers: { "Content-Type": "application/json" }, body: JSON.stringify({ authid }) });
  await req("refresh POST oversize body", "POST", "/refresh", { headers: { "Content-Type": FORM }, body: OVERSIZE });
  await req("refresh wrong method", "PUT", "/refresh", post({ authid }));

  // status: JSON and page
  await req("status form", "GET", "/status");
  await req("status JSON", "GET", "/status", { headers: { "X-AuthID": authid } });
  await req("status JSON unknown", "GET", "/status", { headers: { "X-AuthID": AUTHIDS.v1_unknown } });
  await req("status JSON malformed", "GET", "/status", { headers: { "X-AuthID": AUTHIDS.garbage } });
  const statusJar = new Map();
  const statusPage = await req("status page", "POST", "/status", { ...post({ authid }), jar: statusJar });
  await req("status page unknown", "POST", "/status", post({ authid: AUTHIDS.v1_unknown }));
  await req("status page missing authid", "POST", "/status", post({}));
  await req("status wrong method", "PUT", "/status", post({}));

  // re-authorize
  await req("reauthorize form", "GET", "/reauthorize");
  await req("reauthorize missing authid", "POST", "/reauthorize", post({}));
  await req("reauthorize unknown authid", "POST", "/reauthorize", post({ authid: AUTHIDS.v1_unknown }));
  await req("reauthorize pass-through authid", "POST", "/reauthorize", post({ authid: AUTHIDS.v2_unknown }));
  await req("reauthorize garbage ticket", "POST", "/reauthorize", post({ ticket: "garbage" }));
  const ticket = after(statusPage.body, /name="ticket" value="([^"]*)"/);
  await req("reauthorize with the status page's ticket", "POST", "/reauthorize",
    { ...post({ ticket }), jar: new Map(statusJar) });
  await req("reauthorize wrong method", "DELETE", "/reauthorize");

  // revoke (bad inputs; the real revoke comes last)
  await req("revoke form", "GET", "/revoke");
  await req("revoke form wrong method", "POST", "/revoke", post({}));
  await req("revoked missing authid", "POST", "/revoked", post({}));
  await req("revoked garbage authid", "POST", "/revoked", post({ authid: AUTHIDS.garbage }));
  await req("revoked ticket without confirm", "POST", "/revoked", { ...post({ ticket }), jar: new Map(statusJar) });
  await req("revoked wrong method", "GET", "/revoked");

  // Duplicati's old-UI hand-off
  const handoffJar = new Map();
  await req("index registers hand-off", "GET", `/?token=${HANDOFF_TOKEN}`, { jar: handoffJar });
  await req("index hand-off token from another browser", "GET", `/?token=${HANDOFF_TOKEN}`);
  await req("token-state before", "GET", `/token-state?token=${HANDOFF_TOKEN}`);
  await req("token-state missing token", "GET", "/token-state");
  await req("token-state wrong method", "POST", "/token-state", post({}));
  await req("fetch before", "GET", `/fetch?token=${HANDOFF_TOKEN}`);
  await req("fetch missing token", "GET", "/fetch");
  await req("fetch bad callback", "GET", `/fetch?token=${HANDOFF_TOKEN}&callback=bad-cb!`);
  await req("fetch JSONP", "GET", `/fetch?token=${HANDOFF_TOKEN}&callback=cb_1`);
  await req("fetch wrong method", "POST", "/fetch", post({}));
  await req("handoff no confirmation", "POST", "/handoff", post({}));
  await req("handoff garbage confirmation", "POST", "/handoff", post({ confirm: "x" }));
  await req("handoff wrong method", "GET", "/handoff");

  // Jottacloud's CLI token
  await req("cli-token without id", "GET", "/cli-token");
  await req("cli-token demo (not a CLI-token provider)", "GET", "/cli-token?id=demo");
  await req("cli-token jottacloud form", "GET", "/cli-token?id=jottacloud");
  await req("cli-token wrong method", "POST", "/cli-token", post({}));
  await req("cli-token-login without cookie", "POST", "/cli-token-login", post({ token: "x" }));
  await req("cli-token-login wrong method", "GET", "/cli-token-login");

  // device flow
  await req("device authorization without client_id", "POST", "/oauth/device_authorization", post({}));
  await req("device authorization unknown client", "POST", "/oauth/device_authorization", post({ client_id: "nope" }));
  await req("device authorization demo", "POST", "/oauth/device_authorization", post({ client_id: "demo" }));
  await req("device authorization wrong method", "GET", "/oauth/device_authorization");
  await req("device page", "GET", "/device");
  await req("device page prefilled", "GET", "/device?user_code=BCDF-GHJK");
  await req("device malformed user code", "POST", "/device", post({ user_code: "1" }));
  await req("device unknown user code", "POST", "/device", post({ user_code: "BCDF-GHJK" }));
  await req("device wrong method", "PUT", "/device", post({}));

  // the OAuth 2.0 front door
  await req("metadata", "GET", "/.well-known/oauth-authorization-server");
  await req("metadata HEAD", "HEAD", "/.well-known/oauth-authorization-server");
  await req("metadata wrong method", "POST", "/.well-known/oauth-authorization-server", post({}));
  await req("metadata path-inserted key", "GET", "/.well-known/oauth-authorization-server/k/somekey");
  await req("authorize without parameters", "GET", "/oauth/authorize");
  await req("authorize bad redirect_uri", "GET",
    "/oauth/authorize?response_type=code&client_id=demo&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&state=s1");
  await req("authorize unknown client", "GET",
    "/oauth/authorize?response_type=code&client_id=nope&redirect_uri=http%3A%2F%2F127.0.0.1%3A53682%2F&state=s1");
  await req("authorize loopback client", "GET",
    "/oauth/authorize?response_type=code&client_id=demo&redirect_uri=http%3A%2F%2F127.0.0.1%3A53682%2F&state=s1" +
    "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256");
  await req("authorize wrong method", "POST", "/oauth/authorize", post({}));
  await req("token endpoint refresh", "POST", "/oauth/token",
    post({ grant_type: "refresh_token", refresh_token: authid, client_id: "demo" }));
  await req("token alias refresh", "POST", "/token", post({ grant_type: "refresh_token", refresh_token: authid }));
  await req("token endpoint empty", "POST", "/oauth/token", post({}));
  await req("token endpoint bad grant type", "POST", "/oauth/token", post({ grant_type: "bogus" }));
  await req("token endpoint garbage refresh token", "POST", "/oauth/token",
    post({ grant_type: "refresh_token", refresh_token: AUTHIDS.garbage }));
  await req("token endpoint unknown refresh token", "POST", "/oauth/token",
    post({ grant_type: "refresh_token", refresh_token: AUTHIDS.v1_unknown }));
  await req("token endpoint bad code", "POST", "/oauth/token",
    post({ grant_type: "authorization_code", code: "x", redirect_uri: "http://127.0.0.1:53682/", client_id: "demo" }));
  await req("token endpoint wrong content type", "POST", "/oauth/token",
    { headers: { "Content-Type": "text/plain" }, body: "grant_type=refresh_token" });
  await req("token endpoint oversize body", "POST", "/oauth/token", { headers: { "Content-Type": FORM }, body: OVERSIZE });
  await req("token endpoint wrong method", "GET", "/oauth/token");
  await req("revocation endpoint empty", "POST", "/oauth/revoke", post({}));
  await req("revocation endpoint garbage", "POST", "/oauth/revoke", post({ token: AUTHIDS.garbage }));
  await req("revocation endpoint wrong method", "GET", "/oauth/revoke");

  // operator routes without (or with a wrong) key
  await req("admin page", "GET", "/admin");
  await req("admin page wrong key", "POST", "/admin", post({ key: "wrong" }));
  await req("admin wrong method", "PUT", "/admin", post({}));
  await req("admin status without key", "GET", "/admin/status");
  await req("admin status wrong key", "GET", "/admin/status", { headers: { "X-APIKey": "wrong" } });
  await req("export without key", "GET", "/export", { headers: { "X-AuthID": authid } });
  await req("import without key", "POST", "/import", { headers: { "Content-Type": "application/json" }, body: "{}" });
  await req("import wrong method", "GET", "/import");

  // Akeeba
  await req("akeeba unknown engine", "GET", "/akeeba/nope");
  await req("akeeba box helper", "GET", "/akeeba/box");
  await req("akeeba refresh missing token", "GET", "/akeeba/box/refresh");
  await req("akeeba refresh garbage token", "GET", `/akeeba/box/refresh?refresh_token=${AUTHIDS.garbage}`);
  await req("akeeba refresh unknown engine", "GET", "/akeeba/nope/refresh?refresh_token=x");
  await req("akeeba wrong method", "POST", "/akeeba/box", post({}));

  // a pass-through login and a Box login (the mock as box.com: its account quirk)
  const v2 = await login("pass-through login", new Map(), "/login?id=demo&tokenversion=2");
  await req("refresh pass-through authid", "GET", "/refresh", { headers: { "X-AuthID": v2 } });
  await req("status pass-through authid", "GET", "/status", { headers: { "X-AuthID": v2 } });
  const boxAuthid = await login("box login", new Map(), "/login?id=box.com");
  await req("refresh box authid", "GET", "/refresh", { headers: { "X-AuthID": boxAuthid } });
  await req("akeeba refresh with box authid", "GET", `/akeeba/box/refresh?refresh_token=${encodeURIComponent(boxAuthid)}`);
  await req("revocation endpoint box authid", "POST", "/oauth/revoke", post({ token: boxAuthid }));
  await req("refresh revoked box authid", "GET", "/refresh", { headers: { "X-AuthID": boxAuthid } });

  // the end of the demo authid: status again, revoke, then it is gone
  await req("status JSON after refreshes", "GET", "/status", { headers: { "X-AuthID": authid } });
  await req("revoked demo authid", "POST", "/revoked", post({ authid }));
  await req("refresh revoked authid", "GET", "/refresh", { headers: { "X-AuthID": authid } });
  await req("status revoked authid", "GET", "/status", { headers: { "X-AuthID": authid } });
  await req("token endpoint revoked authid", "POST", "/oauth/token",
    post({ grant_type: "refresh_token", refresh_token: authid }));
  await req("healthz at the end", "GET", "/healthz");

}

if (renormalize) records.push(...saved.records);
else await corpus();

// ---- normalization ------------------------------------------------------------------
// Per-run randomness, masked into placeholders numbered by first appearance over the
// whole transcript, one numbering per kind. Order matters: longer shapes first.
const maps = new Map();
function numbered(kind) {
  return (value) => {
    if (!maps.has(kind)) maps.set(kind, new Map());
    const m = maps.get(kind);
    if (!m.has(value)) m.set(value, m.size + 1);
    return `<${kind}#${m.get(value)}>`;
  };
}
const brokerPort = new URL(base).port, mockPort = new URL(mock).port;
const MASKS = [
  // Ports of this run's broker and mock provider.
  [new RegExp(`127\\.0\\.0\\.1(:|%3A)${brokerPort}\\b`, "gi"), (_, c) => `127.0.0.1${c}<broker-port>`],
  [new RegExp(`127\\.0\\.0\\.1(:|%3A)${mockPort}\\b`, "gi"), (_, c) => `127.0.0.1${c}<mock-port>`],
  // The mock's codes and tokens (mockCODE_<hex>, mockAT_<hex>, mockRT_<hex>).
  [/mock([A-Z]+)_[0-9a-f]+/g, (v, k) => numbered(`mock-${k.toLowerCase()}`)(v)],
  // Stored authids (v1, optionally on shard k); a pass-through one is v2:<id>:<mock-rt#n>.
  [/\b(?:s\d+(?::|%3A))?[0-9a-f]{32}(?::|%3A)[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g, (v) => numbered("authid")(v)],
];
// Values the broker (or the mock) draws at random per run, by where they stand:
// query/form parameters (also `&amp;`-escaped in pages), JSON fields, hidden
// inputs. Only these names: `state` or `code` as JSON fields are words
// ("active", an error code) and must compare.
const QUERY_FIELDS = "state|code|code_challenge|ticket|confirm|device_code|user_code|token|csrf";
const JSON_FIELDS = "device_code|user_code|access_token|refresh_token|v2_authid|ticket|csrf";
const INPUT_FIELDS = "ticket|csrf|state|code|device_code|user_code|confirmation";
// A value already holding a placeholder is left alone (its parts compare).
const once = (kind, v) => (v.includes("<") ? v : numbered(kind)(v));
function mask(text) {
  let s = String(text);
  for (const [re, f] of MASKS) s = s.replace(re, f);
  // Set-Cookie and Cookie values: name=value → name=<cookie-name#n>.
  s = s.replace(/(__Host-[A-Za-z0-9_-]+)=([^;\s"]+)/g, (_, name, v) => `${name}=${once(`cookie-${name}`, v)}`);
  s = s.replace(new RegExp(`([?&;](?:amp;)?)(${QUERY_FIELDS})=([^&"'\\s<]+)`, "g"),
    (_, sep, k, v) => `${sep}${k}=${once(k, v)}`);
  s = s.replace(new RegExp(`"(${JSON_FIELDS})"(\\s*:\\s*)"([^"]*)"`, "g"),
    (_, k, colon, v) => `"${k}"${colon}"${once(k, v)}"`);
  s = s.replace(new RegExp(`(name="(${INPUT_FIELDS})"[^>]*?value=")([^"]*)(")`, "g"),
    (_, a, k, v, c) => `${a}${once(k, v)}${c}`);
  s = s.replace(/(nonce=")([^"]+)(")/g, (_, a, v, c) => `${a}${numbered("nonce")(v)}${c}`);
  s = s.replace(/('nonce-)([^']+)(')/g, (_, a, v, c) => `${a}${numbered("nonce")(v)}${c}`);
  // Times: HTTP dates, unix seconds, dates as shown on pages (the minute turns
  // between two runs), seconds-left rounded to a minute (3599 and 3600 compare).
  s = s.replace(/\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\b/g, "<http-date>");
  s = s.replace(/\b(1[6-9]\d{8}|20\d{8})\b/g, "<unix-time>");
  s = s.replace(/\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?: ?UTC|Z)?/g, "<utc-time>");
  s = s.replace(/("(?:expires|expires_in)"\s*:\s*)(\d+)/g, (_, a, v) => `${a}<~${Math.round(Number(v) / 60) * 60}s>`);
  return s;
}

const pad = (n) => String(n).padStart(3, "0");
const lines = [];
for (const r of records) {
  const block = [
    `### ${pad(r.n)} ${r.label}`,
    `> ${r.method} ${mask(r.path)}${r.reqHeaders.length ? `  [${r.reqHeaders.join(", ")}]` : ""}`,
    `< ${r.status}`,
    ...r.headers.map(([k, v]) => `< ${k}: ${mask(v)}`),
    "",
    mask(r.body),
    "",
  ].join("\n");
  writeFileSync(`${outDir}/${pad(r.n)}.txt`, block);
  lines.push(block);
}
writeFileSync(`${outDir}/raw.json`, JSON.stringify({ base, mock, records }, null, 1));
writeFileSync(`${outDir}/transcript.txt`, lines.join("\n"));
console.log(`wire-corpus: ${records.length} requests → ${outDir}`);
