//! A mock OAuth2 provider: a real HTTP server on a loopback address.
//!
//! It is the local demo provider (`scripts/dev.sh` runs the binary next to
//! `wrangler dev`) and the end-to-end test double (tests start it in process and
//! flip its switches). It implements RFC 6749 authorization_code (auto-consent,
//! PKCE S256 per RFC 7636) and refresh_token grants, the RFC 6749 §4.3 password
//! grant for a public client (Jottacloud's `jottacli` with a CLI token's
//! username and `auth_token`), and RFC 7009 revocation, and
//! emulates provider quirks: single-use rotating refresh tokens (Box), rotation
//! with the old token still valid (Microsoft), no rotation (Google), 5xx,
//! `invalid_grant`, malformed JSON and slow answers. It counts every call and
//! flags any reuse of a spent refresh token.
//!
//! Control endpoints: `GET /_mock/stats`, `GET|POST /_mock/config`, `POST /_mock/reset`.
//! No token, code or secret is ever printed; with `MOCK_PROVIDER_LOG` set, each
//! request is logged to stderr as method, path (no query) and status.

#![warn(missing_docs)]

mod http;
pub mod oauth_handler;

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use http::{parse_form, Request, Response};

/// How refresh_token grants treat the presented refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Box-like: a new refresh token every time; the presented one becomes spent,
    /// and presenting a spent one revokes the whole grant.
    SingleUse,
    /// Microsoft-like: a new refresh token every time; the old one stays valid.
    KeepOld,
    /// Google-like: no `refresh_token` in the answer; the same one stays valid.
    Never,
}

impl Rotation {
    fn as_str(self) -> &'static str {
        match self {
            Rotation::SingleUse => "single_use",
            Rotation::KeepOld => "keep_old",
            Rotation::Never => "never",
        }
    }

    /// Parses `single_use` / `keep_old` / `never`.
    pub fn parse(s: &str) -> Option<Rotation> {
        match s {
            "single_use" => Some(Rotation::SingleUse),
            "keep_old" => Some(Rotation::KeepOld),
            "never" => Some(Rotation::Never),
            _ => None,
        }
    }
}

/// The switches tests flip.
#[derive(Clone, Debug)]
pub struct Config {
    /// How refresh tokens rotate (default `SingleUse`).
    pub rotation: Rotation,
    /// The token endpoint answers this status with `{"error":"server_error"}`.
    pub fail_status: Option<u16>,
    /// refresh_token grants answer 400 `invalid_grant`.
    pub invalid_grant: bool,
    /// The token endpoint refuses the broker's client credentials as a provider
    /// does for a wrong or expired client secret: 401 `invalid_client`
    /// (RFC 6749 §5.2), whatever the grant.
    pub client_rejected: bool,
    /// The token endpoint answers 200 with a body that is not JSON.
    pub malformed_json: bool,
    /// The token endpoint waits this long before answering.
    pub delay_ms: u64,
    /// `expires_in` of issued access tokens.
    pub access_token_ttl: u64,
    /// The authorize endpoint redirects back with `error=access_denied`.
    pub deny: bool,
    /// The authorize endpoint refuses requests without a PKCE challenge. (A challenge,
    /// when given, is always checked at the token endpoint.)
    pub require_pkce: bool,
    /// What issued refresh tokens start with (then 32 random hex digits). RFC 6749
    /// allows any visible ASCII and space in a token, and a JSON string carries
    /// anything: tests use spaces, `%`, `:` and non-ASCII here.
    pub refresh_token_prefix: String,
    /// The public client (no secret) allowed the password grant (Jottacloud's `jottacli`).
    pub public_client_id: String,
    /// The one username the password grant accepts.
    pub password_username: String,
    /// Its password (a Jottacloud CLI token's `auth_token`).
    pub password: String,
    /// Plays pCloud's regions: `Some(Region::Eu)` makes the authorize endpoint
    /// redirect back with `hostname=eapi.pcloud.com&locationid=2`, and the codes
    /// it issues are exchanged only at `/eu/token` (`Some(Region::Us)`:
    /// `api.pcloud.com`, `1`, `/token`), as pCloud's API hosts accept only
    /// their own accounts' codes. `None`: no region parameters, `/token`.
    pub region: Option<Region>,
    /// The account the next login (authorization or password grant) is made
    /// as: the mock serves any number of accounts, each with its own stable
    /// ids (see [`ACCOUNT_QUIRKS`]).
    pub account: String,
    /// Whether the mock names accounts at all (in token answers and on the
    /// account endpoints); off plays a provider that names none.
    pub account_ids: bool,
}

/// pCloud's two API regions as the mock plays them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// `api.pcloud.com`, location 1.
    Us,
    /// `eapi.pcloud.com`, location 2.
    Eu,
}

impl Region {
    /// `(hostname, locationid, token path)` of the region.
    pub fn callback(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Region::Us => ("api.pcloud.com", "1", "/token"),
            Region::Eu => ("eapi.pcloud.com", "2", "/eu/token"),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Region::Us => "us",
            Region::Eu => "eu",
        }
    }

    /// `us` or `eu`.
    pub fn parse(s: &str) -> Option<Region> {
        match s {
            "us" => Some(Region::Us),
            "eu" => Some(Region::Eu),
            _ => None,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            rotation: Rotation::SingleUse,
            fail_status: None,
            invalid_grant: false,
            client_rejected: false,
            malformed_json: false,
            delay_ms: 0,
            access_token_ttl: 3600,
            deny: false,
            require_pkce: false,
            refresh_token_prefix: "mockRT_".to_string(),
            public_client_id: "jottacli".to_string(),
            password_username: "mock-user@example.com".to_string(),
            password: "mock-cli-auth-token".to_string(),
            region: None,
            account: "alice".to_string(),
            account_ids: true,
        }
    }
}

impl Config {
    /// The config as JSON (`rotation` as `single_use` / `keep_old` / `never`).
    pub fn to_json(&self) -> Value {
        json!({
            "rotation": self.rotation.as_str(),
            "fail_status": self.fail_status,
            "invalid_grant": self.invalid_grant,
            "client_rejected": self.client_rejected,
            "malformed_json": self.malformed_json,
            "delay_ms": self.delay_ms,
            "access_token_ttl": self.access_token_ttl,
            "deny": self.deny,
            "require_pkce": self.require_pkce,
            "refresh_token_prefix": self.refresh_token_prefix,
            "public_client_id": self.public_client_id,
            "password_username": self.password_username,
            "password": self.password,
            "region": self.region.map(Region::as_str),
            "account": self.account,
            "account_ids": self.account_ids,
        })
    }

    /// The defaults with the fields present in `v` applied.
    pub fn from_json(v: &Value) -> Result<Config, String> {
        let mut cfg = Config::default();
        cfg.apply_json(v)?;
        Ok(cfg)
    }

    /// Applies the fields present in `v`; unknown or mistyped fields are an error
    /// (and then `self` may be partly changed: apply to a copy).
    pub fn apply_json(&mut self, v: &Value) -> Result<(), String> {
        let obj = v.as_object().ok_or("config must be a JSON object")?;
        for (k, val) in obj {
            let bad = || format!("bad value for {k}");
            match k.as_str() {
                "rotation" => {
                    self.rotation = val.as_str().and_then(Rotation::parse).ok_or_else(bad)?
                }
                "fail_status" => {
                    self.fail_status = match val {
                        Value::Null => None,
                        v => Some(
                            v.as_u64()
                                .and_then(|n| u16::try_from(n).ok())
                                .ok_or_else(bad)?,
                        ),
                    }
                }
                "invalid_grant" => self.invalid_grant = val.as_bool().ok_or_else(bad)?,
                "client_rejected" => self.client_rejected = val.as_bool().ok_or_else(bad)?,
                "malformed_json" => self.malformed_json = val.as_bool().ok_or_else(bad)?,
                "delay_ms" => self.delay_ms = val.as_u64().ok_or_else(bad)?,
                "access_token_ttl" => self.access_token_ttl = val.as_u64().ok_or_else(bad)?,
                "deny" => self.deny = val.as_bool().ok_or_else(bad)?,
                "require_pkce" => self.require_pkce = val.as_bool().ok_or_else(bad)?,
                "refresh_token_prefix" => {
                    self.refresh_token_prefix = val.as_str().ok_or_else(bad)?.to_string()
                }
                "public_client_id" => {
                    self.public_client_id = val.as_str().ok_or_else(bad)?.to_string()
                }
                "password_username" => {
                    self.password_username = val.as_str().ok_or_else(bad)?.to_string()
                }
                "password" => self.password = val.as_str().ok_or_else(bad)?.to_string(),
                "account" => self.account = val.as_str().ok_or_else(bad)?.to_string(),
                "account_ids" => self.account_ids = val.as_bool().ok_or_else(bad)?,
                "region" => {
                    self.region = match val {
                        Value::Null => None,
                        v => Some(v.as_str().and_then(Region::parse).ok_or_else(bad)?),
                    }
                }
                _ => return Err(format!("unknown field {k}")),
            }
        }
        Ok(())
    }
}

/// Call counters and every value issued (tests grep storage and logs for them).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Every GET /authorize, valid or not.
    pub authorize_calls: u64,
    /// Every POST /token, whatever the grant.
    pub token_calls: u64,
    /// Successful authorization_code grants.
    pub code_exchanges: u64,
    /// Successful password grants (the public client's CLI-token logins).
    pub password_grants: u64,
    /// Every refresh_token grant request, successful or not.
    pub refresh_calls: u64,
    /// Successful refresh_token grants.
    pub refresh_successes: u64,
    /// Refresh grants that presented a spent (rotated-away) refresh token.
    pub spent_refresh_reuse: u64,
    /// Authorization codes presented a second time.
    pub code_reuse: u64,
    /// Codes presented at another region's token path (`Config::region`).
    pub wrong_region_exchanges: u64,
    /// Every POST /revoke.
    pub revoke_calls: u64,
    /// Token and revoke calls with wrong or missing client credentials.
    pub bad_client_auth: u64,
    /// Most refresh_token grants in flight at once.
    pub max_concurrent_refresh: u64,
    /// Every access token ever issued.
    pub issued_access_tokens: Vec<String>,
    /// Every refresh token ever issued.
    pub issued_refresh_tokens: Vec<String>,
    /// Every authorization code ever issued.
    pub issued_codes: Vec<String>,
    /// Every call to the fake oauth-handler's `/export`.
    pub handler_exports: u64,
}

impl Stats {
    /// The stats as JSON, field names as in the struct.
    pub fn to_json(&self) -> Value {
        json!({
            "authorize_calls": self.authorize_calls,
            "token_calls": self.token_calls,
            "code_exchanges": self.code_exchanges,
            "password_grants": self.password_grants,
            "refresh_calls": self.refresh_calls,
            "refresh_successes": self.refresh_successes,
            "spent_refresh_reuse": self.spent_refresh_reuse,
            "code_reuse": self.code_reuse,
            "wrong_region_exchanges": self.wrong_region_exchanges,
            "revoke_calls": self.revoke_calls,
            "bad_client_auth": self.bad_client_auth,
            "max_concurrent_refresh": self.max_concurrent_refresh,
            "issued_access_tokens": self.issued_access_tokens,
            "issued_refresh_tokens": self.issued_refresh_tokens,
            "issued_codes": self.issued_codes,
            "handler_exports": self.handler_exports,
        })
    }
}

struct Code {
    client_id: String,
    redirect_uri: String,
    scope: String,
    challenge: Option<String>,
    issued: Instant,
    used: bool,
    family: u64,
    /// The only token path that accepts this code.
    token_path: &'static str,
    /// The account that logged in.
    account: String,
}

#[derive(PartialEq)]
enum RtState {
    Active,
    Spent,
    Revoked,
}

struct Rt {
    state: RtState,
    /// One family per authorization code: everything issued from it.
    family: u64,
    scope: String,
}

struct At {
    expires: Instant,
    family: u64,
}

#[derive(Default)]
struct State {
    config: Option<Config>,
    stats: Stats,
    codes: HashMap<String, Code>,
    refresh_tokens: HashMap<String, Rt>,
    access_tokens: HashMap<String, At>,
    /// Families revoked (by revocation or by spent-token reuse).
    dead_families: Vec<u64>,
    /// Families issued to the public client: only it may refresh them, and it
    /// may refresh no other (RFC 6749 §6: the client the token was issued to).
    public_families: Vec<u64>,
    next_family: u64,
    in_flight_refresh: u64,
    /// The fake oauth-handler's entries, by keyid (`oauth_handler`).
    handler_entries: HashMap<String, oauth_handler::Entry>,
    /// The account each family (grant) was made by.
    family_accounts: HashMap<u64, String>,
}

struct Shared {
    state: Mutex<State>,
    client_id: String,
    client_secret: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn config(&self) -> Config {
        self.lock().config.clone().unwrap_or_default()
    }

    /// Zeroes the counters; issued values stay valid and listed.
    fn reset_stats(&self) {
        let mut st = self.lock();
        let old = std::mem::take(&mut st.stats);
        st.stats = Stats {
            issued_access_tokens: old.issued_access_tokens,
            issued_refresh_tokens: old.issued_refresh_tokens,
            issued_codes: old.issued_codes,
            ..Stats::default()
        };
    }
}

/// A running mock provider. Dropping it stops accepting connections.
pub struct MockProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        // Fall back to time-seeded bytes: still unique per call for a test double.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        buf = Sha256::digest(format!("{t}{:p}", &buf).as_bytes())[..n.min(32)].to_vec();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

impl MockProvider {
    /// Binds `addr` (loopback only: 127.0.0.0/8 or `[::1]`, e.g. `127.0.0.1:0`; also
    /// `localhost:<port>`), serves from a background thread (one thread per
    /// connection) and returns at once. A non-loopback address is refused with
    /// `PermissionDenied`, an unparsable one with `InvalidInput`.
    pub fn start(
        addr: &str,
        client_id: &str,
        client_secret: &str,
    ) -> std::io::Result<MockProvider> {
        // `localhost` is the one name accepted; no resolver is consulted.
        let parsed: SocketAddr = match addr.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}").parse(),
            None => addr.parse(),
        }
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "expected ip:port, e.g. 127.0.0.1:0",
            )
        })?;
        if !is_loopback(&parsed) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the mock provider binds loopback addresses only",
            ));
        }
        let listener = TcpListener::bind(parsed)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                match conn {
                    Ok(stream) => {
                        let s = Arc::clone(&s2);
                        std::thread::spawn(move || serve(&s, stream));
                    }
                    // E.g. out of file descriptors: don't spin.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(MockProvider { shared, addr, stop })
    }

    /// The bound port (useful after binding port 0).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>` (`http://[::1]:<port>` when bound to IPv6).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces all switches; takes effect for the next request.
    pub fn set_config(&self, cfg: Config) {
        self.shared.lock().config = Some(cfg);
    }

    /// The current switches.
    pub fn config(&self) -> Config {
        self.shared.config()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Zeroes the counters; issued tokens stay valid and listed.
    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }

    /// A new grant, as a code exchange would have issued it (its token JSON,
    /// with a refresh token that rotates per the current switches): what
    /// another service stored when its user logged in.
    pub fn issue_grant(&self) -> Value {
        let cfg = self.config();
        let mut st = self.shared.lock();
        st.next_family += 1;
        let family = st.next_family;
        st.family_accounts.insert(family, cfg.account.clone());
        issue(&mut st, family, &cfg, true, "files.readwrite")
    }

    /// The fake oauth-handler's base URL (`OAUTH_HANDLER_URL`); its API key
    /// is [`oauth_handler::API_KEY`].
    pub fn oauth_handler_url(&self) -> String {
        format!("{}/_oauth-handler", self.base_url())
    }

    /// Stores `token` (a provider token JSON) for `service` in the fake
    /// oauth-handler under `authid` (`<keyid>:<password>`).
    pub fn oauth_handler_store(&self, authid: &str, service: &str, token: Value) {
        let (keyid, password) = authid.split_once(':').unwrap_or((authid, ""));
        self.shared.lock().handler_entries.insert(
            keyid.to_string(),
            oauth_handler::Entry {
                password: password.to_string(),
                service: service.to_string(),
                token,
            },
        );
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(shared: &Shared, stream: TcpStream) {
    let resp = match http::read_request(&stream) {
        Ok(req) => {
            let resp = route(shared, &req);
            // Method and path only: queries and bodies carry codes and tokens.
            if std::env::var_os("MOCK_PROVIDER_LOG").is_some() {
                eprintln!("mock-provider: {} {} {}", req.method, req.path, resp.status);
            }
            resp
        }
        Err(http::BadRequest(http::NO_REQUEST)) => return,
        Err(http::BadRequest(status)) => {
            Response::json(status, &json!({"error": "invalid_request"}))
        }
    };
    http::write_response(&stream, &resp);
}

fn error(status: u16, code: &str) -> Response {
    Response::json(status, &json!({ "error": code }))
}

fn route(shared: &Shared, req: &Request) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/authorize") => authorize(shared, req),
        ("POST", "/token") | ("POST", "/eu/token") => token(shared, req),
        ("POST", "/revoke") => revoke(shared, req),
        ("GET", "/userinfo") => userinfo(shared, req),
        ("GET", path) if ACCOUNT_QUIRKS.iter().any(|q| q.path == Some(path)) => {
            account_endpoint(shared, req)
        }
        ("GET", "/_mock/opener") => opener_page(req),
        ("GET", "/_oauth-handler/export") => {
            let mut st = shared.lock();
            st.stats.handler_exports += 1;
            oauth_handler::export(req, |keyid| {
                st.handler_entries
                    .get(keyid)
                    .map(|e| (e.password.clone(), oauth_handler::exported(e)))
            })
        }
        ("GET", "/_mock/stats") => Response::json(200, &shared.lock().stats.to_json()),
        ("GET", "/_mock/config") => Response::json(200, &shared.config().to_json()),
        ("POST", "/_mock/config") => {
            let mut cfg = shared.config();
            let parsed: Result<Value, _> = serde_json::from_slice(&req.body);
            match parsed
                .map_err(|e| e.to_string())
                .and_then(|v| cfg.apply_json(&v))
            {
                Ok(()) => {
                    shared.lock().config = Some(cfg.clone());
                    Response::json(200, &cfg.to_json())
                }
                Err(e) => Response::json(
                    400,
                    &json!({"error": "invalid_request", "error_description": e}),
                ),
            }
        }
        ("POST", "/_mock/reset") => {
            shared.reset_stats();
            Response::json(200, &json!({"reset": true}))
        }
        _ => error(404, "not_found"),
    }
}

fn get<'a>(params: &'a [(String, String)], k: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(kk, _)| kk == k)
        .map(|(_, v)| v.as_str())
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", http::encode(v)))
        .collect();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", q.join("&"))
}

fn authorize(shared: &Shared, req: &Request) -> Response {
    let q = parse_form(&req.query);
    let cfg = shared.config();
    shared.lock().stats.authorize_calls += 1;
    let Some(redirect_uri) = get(&q, "redirect_uri") else {
        return Response::new(400, "text/plain", "missing redirect_uri");
    };
    let redirect_ok = redirect_uri_allowed(redirect_uri);
    if !redirect_ok || get(&q, "client_id") != Some(shared.client_id.as_str()) {
        return Response::new(400, "text/plain", "unknown client or bad redirect_uri");
    }
    if get(&q, "response_type") != Some("code") {
        return Response::new(400, "text/plain", "response_type must be code");
    }
    let challenge = get(&q, "code_challenge").map(str::to_string);
    if challenge.is_some() && get(&q, "code_challenge_method") != Some("S256") {
        return Response::new(400, "text/plain", "only S256 is supported");
    }
    if cfg.require_pkce && challenge.is_none() {
        return Response::new(400, "text/plain", "PKCE required");
    }
    let state = get(&q, "state").unwrap_or("");
    if cfg.deny {
        return Response::redirect(&with_query(
            redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "The user denied access"),
                ("state", state),
            ],
        ));
    }
    let code = format!("mockCODE_{}", random_hex(16));
    let mut st = shared.lock();
    st.next_family += 1;
    let family = st.next_family;
    st.codes.insert(
        code.clone(),
        Code {
            client_id: shared.client_id.clone(),
            redirect_uri: redirect_uri.to_string(),
            scope: get(&q, "scope").unwrap_or("").to_string(),
            challenge,
            issued: Instant::now(),
            used: false,
            family,
            token_path: cfg.region.map_or("/token", |r| r.callback().2),
            account: cfg.account.clone(),
        },
    );
    st.stats.issued_codes.push(code.clone());
    drop(st);
    let mut back = vec![("code", code.as_str()), ("state", state)];
    if let Some((hostname, locationid, _)) = cfg.region.map(Region::callback) {
        back.extend([("hostname", hostname), ("locationid", locationid)]);
    }
    Response::redirect(&with_query(redirect_uri, &back))
}

/// Client credentials from the form or HTTP Basic (RFC 6749 §2.3.1).
fn client_ok(shared: &Shared, req: &Request, form: &[(String, String)]) -> bool {
    let (id, secret) = match req
        .header("Authorization")
        .and_then(|h| h.strip_prefix("Basic "))
    {
        Some(b64) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            match decoded.split_once(':') {
                Some((i, s)) => (i.to_string(), s.to_string()),
                None => return false,
            }
        }
        None => (
            get(form, "client_id").unwrap_or("").to_string(),
            get(form, "client_secret").unwrap_or("").to_string(),
        ),
    };
    ct_eq(id.as_bytes(), shared.client_id.as_bytes())
        & ct_eq(secret.as_bytes(), shared.client_secret.as_bytes())
}

/// Equality without an early exit on the first differing byte.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The RFC 7636 S256 challenge for `verifier`: base64url-nopad(SHA-256(verifier)).
fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Loopback http or any https: `http://127.0.0.1`, `http://localhost`, `http://[::1]`,
/// each followed by nothing, a port, a path or a query (so not `http://localhost.evil`).
fn redirect_uri_allowed(uri: &str) -> bool {
    if uri.starts_with("https://") && uri.len() > "https://".len() {
        return true;
    }
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            uri.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/', '?']))
        })
}

struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_flight_refresh = st.in_flight_refresh.saturating_sub(1);
    }
}

fn token(shared: &Shared, req: &Request) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&req.body));
    let cfg = shared.config();
    let grant = get(&form, "grant_type").unwrap_or("");
    let _in_flight = {
        let mut st = shared.lock();
        st.stats.token_calls += 1;
        if grant == "refresh_token" {
            st.stats.refresh_calls += 1;
            st.in_flight_refresh += 1;
            st.stats.max_concurrent_refresh =
                st.stats.max_concurrent_refresh.max(st.in_flight_refresh);
            Some(InFlight(shared))
        } else {
            None
        }
    };
    if cfg.delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(cfg.delay_ms));
    }
    if let Some(status) = cfg.fail_status {
        return error(status, "server_error");
    }
    if cfg.malformed_json {
        return Response::new(200, "application/json", "<html>this is not JSON</html>");
    }
    let public = public_client(req, &form, &cfg);
    if cfg.client_rejected || (!public && !client_ok(shared, req, &form)) {
        shared.lock().stats.bad_client_auth += 1;
        return error(401, "invalid_client");
    }
    match grant {
        "authorization_code" if !public => code_grant(shared, &form, &cfg, &req.path),
        "refresh_token" => refresh_grant(shared, &form, &cfg, public),
        "password" if public => password_grant(shared, &form, &cfg),
        "authorization_code" => error(400, "unauthorized_client"),
        _ => error(400, "unsupported_grant_type"),
    }
}

/// The public client identifies itself by `client_id` alone: no secret in the
/// form, no Basic header (RFC 6749 §2.1, §3.2.1). A public client id sent with
/// a secret is judged as a confidential client (and fails).
fn public_client(req: &Request, form: &[(String, String)], cfg: &Config) -> bool {
    !cfg.public_client_id.is_empty()
        && get(form, "client_id") == Some(cfg.public_client_id.as_str())
        && get(form, "client_secret").is_none()
        && req.header("Authorization").is_none()
}

/// RFC 6749 §4.3.2, as Jottacloud's Keycloak answers it: wrong credentials are
/// 401 `invalid_grant` ("Invalid user credentials").
fn password_grant(shared: &Shared, form: &[(String, String)], cfg: &Config) -> Response {
    let user_ok = ct_eq(
        get(form, "username").unwrap_or("").as_bytes(),
        cfg.password_username.as_bytes(),
    );
    let pass_ok = ct_eq(
        get(form, "password").unwrap_or("").as_bytes(),
        cfg.password.as_bytes(),
    );
    if !(user_ok & pass_ok) || cfg.password.is_empty() {
        return error(401, "invalid_grant");
    }
    let mut st = shared.lock();
    st.next_family += 1;
    let family = st.next_family;
    st.public_families.push(family);
    st.stats.password_grants += 1;
    let scope = get(form, "scope").unwrap_or("").to_string();
    st.family_accounts.insert(family, cfg.account.clone());
    let mut v = issue(&mut st, family, cfg, true, &scope);
    name_account(&mut v, &cfg.account, &scope, cfg);
    Response::json(200, &v)
}

fn issue(st: &mut State, family: u64, cfg: &Config, with_refresh: bool, scope: &str) -> Value {
    let at = format!("mockAT_{}", random_hex(16));
    st.access_tokens.insert(
        at.clone(),
        At {
            expires: Instant::now() + Duration::from_secs(cfg.access_token_ttl),
            family,
        },
    );
    st.stats.issued_access_tokens.push(at.clone());
    let mut v = json!({
        "access_token": at,
        "token_type": "Bearer",
        "expires_in": cfg.access_token_ttl,
        "scope": scope,
        "user_id": format!("mock-user-{family}"),
    });
    if with_refresh {
        let rt = format!("{}{}", cfg.refresh_token_prefix, random_hex(16));
        st.refresh_tokens.insert(
            rt.clone(),
            Rt {
                state: RtState::Active,
                family,
                scope: scope.to_string(),
            },
        );
        st.stats.issued_refresh_tokens.push(rt.clone());
        v["refresh_token"] = json!(rt);
    }
    v
}

fn code_grant(shared: &Shared, form: &[(String, String)], cfg: &Config, path: &str) -> Response {
    let mut st = shared.lock();
    let Some(code) = get(form, "code").and_then(|c| st.codes.get_mut(c)) else {
        return error(400, "invalid_grant");
    };
    if code.token_path != path {
        // Another region's host does not know this code (and does not spend it).
        st.stats.wrong_region_exchanges += 1;
        return error(400, "invalid_grant");
    }
    if code.used {
        // RFC 6749 §4.1.2: a reused code should revoke what it issued.
        let family = code.family;
        st.stats.code_reuse += 1;
        st.dead_families.push(family);
        return error(400, "invalid_grant");
    }
    code.used = true;
    let fresh = code.issued.elapsed() < Duration::from_secs(600);
    let same_client = code.client_id == shared.client_id;
    let same_redirect = get(form, "redirect_uri") == Some(code.redirect_uri.as_str());
    let pkce_ok = match &code.challenge {
        None => true,
        Some(ch) => {
            get(form, "code_verifier").is_some_and(|v| ct_eq(s256(v).as_bytes(), ch.as_bytes()))
        }
    };
    if !(fresh && same_client && same_redirect && pkce_ok) {
        return error(400, "invalid_grant");
    }
    let (family, scope, account) = (code.family, code.scope.clone(), code.account.clone());
    st.stats.code_exchanges += 1;
    st.family_accounts.insert(family, account.clone());
    let mut v = issue(&mut st, family, cfg, true, &scope);
    name_account(&mut v, &account, &scope, cfg);
    Response::json(200, &v)
}

fn refresh_grant(
    shared: &Shared,
    form: &[(String, String)],
    cfg: &Config,
    public: bool,
) -> Response {
    if cfg.invalid_grant {
        return error(400, "invalid_grant");
    }
    let mut st = shared.lock();
    let presented = get(form, "refresh_token").unwrap_or("").to_string();
    let Some(rt) = st.refresh_tokens.get(&presented) else {
        return error(400, "invalid_grant");
    };
    let (family, scope) = (rt.family, rt.scope.clone());
    if public != st.public_families.contains(&family) {
        return error(400, "invalid_grant");
    }
    if rt.state == RtState::Spent {
        // The failure every broker must avoid: Box kills the grant for good.
        st.stats.spent_refresh_reuse += 1;
        st.dead_families.push(family);
        return error(400, "invalid_grant");
    }
    if rt.state == RtState::Revoked || st.dead_families.contains(&family) {
        return error(400, "invalid_grant");
    }
    let rotate = cfg.rotation != Rotation::Never;
    if cfg.rotation == Rotation::SingleUse {
        if let Some(rt) = st.refresh_tokens.get_mut(&presented) {
            rt.state = RtState::Spent;
        }
    }
    st.stats.refresh_successes += 1;
    let v = issue(&mut st, family, cfg, rotate, &scope);
    Response::json(200, &v)
}

fn revoke(shared: &Shared, req: &Request) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&req.body));
    let mut st = shared.lock();
    st.stats.revoke_calls += 1;
    drop(st);
    if !client_ok(shared, req, &form) {
        shared.lock().stats.bad_client_auth += 1;
        return error(401, "invalid_client");
    }
    let token = get(&form, "token").unwrap_or("");
    let mut st = shared.lock();
    // RFC 7009 §2.1: revoking a refresh token revokes its whole grant (and the access
    // tokens issued from it); revoking an access token revokes just that one. §2.2:
    // unknown tokens are answered 200 too.
    if let Some(f) = st.refresh_tokens.get(token).map(|r| r.family) {
        st.dead_families.push(f);
        for rt in st.refresh_tokens.values_mut().filter(|r| r.family == f) {
            rt.state = RtState::Revoked;
        }
    } else {
        st.access_tokens.remove(token);
    }
    Response::new(200, "text/plain", "")
}

/// A stand-in for Duplicati's new UI: opens `target` in a popup and shows every
/// `postMessage` it receives (origin and data) in `#got`.
fn opener_page(req: &Request) -> Response {
    let q = parse_form(&req.query);
    let target = get(&q, "target").unwrap_or("");
    let target_js = serde_json::to_string(target).unwrap_or_else(|_| "\"\"".into());
    let html = format!(
        "<!doctype html><title>opener</title><button id=\"open\">open</button><pre id=\"got\"></pre>\
         <script>var t={target_js};document.getElementById('open').onclick=function(){{window.open(t,'broker');}};\
         window.addEventListener('message',function(e){{document.getElementById('got').textContent+=e.origin+' '+e.data+'\\n';}});</script>"
    );
    Response::new(200, "text/html; charset=utf-8", html)
}

/// How one provider names the account a login was made with, as the mock
/// plays it: where (a field of the token answer, or an endpoint asked with
/// the access token) and in which shape. Per-provider quirks as data.
pub struct AccountQuirk {
    /// Which provider this plays.
    pub provider: &'static str,
    /// The endpoint path the mock serves it on (`None`: in the token answer).
    pub path: Option<&'static str>,
    /// The provider's documentation for it.
    pub doc: &'static str,
    /// The answer (or the token answer's added fields) for an account's hex id.
    pub shape: fn(&str) -> Value,
}

/// The providers' account ids, each in its provider's own format and place.
pub const ACCOUNT_QUIRKS: &[AccountQuirk] = &[
    AccountQuirk {
        provider: "dropbox",
        path: None,
        doc: "https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token \
              (\"account_id String The account ID of the user\")",
        shape: |id| json!({ "account_id": format!("dbid:AA{}", &id[..38]) }),
    },
    AccountQuirk {
        provider: "pcloud",
        path: None,
        doc: "https://docs.pcloud.com/methods/oauth_2.0/oauth2_token.html (\"userid\")",
        shape: |id| json!({ "userid": u64::from_str_radix(&id[..8], 16).unwrap_or(1) }),
    },
    AccountQuirk {
        provider: "googledrive",
        path: Some("/drive/v3/about"),
        doc: "https://developers.google.com/drive/api/reference/rest/v3/about/get \
              (fields=user; User.permissionId)",
        shape: |id| {
            let digits: String = id
                .bytes()
                .take(20)
                .map(|b| char::from(b'0' + b % 10))
                .collect();
            json!({ "user": { "kind": "drive#user", "displayName": "Mock User",
                              "me": true, "permissionId": digits } })
        },
    },
    AccountQuirk {
        provider: "onedrivev2",
        path: Some("/v1.0/me/drive"),
        doc: "https://learn.microsoft.com/graph/api/drive-get (owner.user.id)",
        shape: |id| {
            json!({ "id": format!("b!{}", &id[..20]), "driveType": "personal",
                    "owner": { "user": { "displayName": "Mock User", "id": &id[..16] } } })
        },
    },
    AccountQuirk {
        provider: "box.com",
        path: Some("/2.0/users/me"),
        doc: "https://developer.box.com/reference/get-users-me/ (id)",
        shape: |id| {
            let n = u64::from_str_radix(&id[..10], 16).unwrap_or(1);
            json!({ "type": "user", "id": n.to_string() })
        },
    },
    AccountQuirk {
        provider: "jottacloud",
        path: None,
        doc: "OpenID Connect Core 1.0 §2 (id_token `sub`); Jottacloud's Keycloak answers \
              an id_token for the `openid` scope",
        shape: |id| {
            let b =
                |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            let sub = format!("{}-{}-{}", &id[..8], &id[8..12], &id[12..24]);
            let jwt = format!(
                "{}.{}.mock-signature",
                b(&json!({"alg": "RS256", "typ": "JWT"})),
                b(&json!({"sub": sub, "iss": "https://id.jottacloud.com/auth/realms/jottacloud"}))
            );
            json!({ "id_token": jwt })
        },
    },
];

/// A stable hex id (64 digits) for `account` at `provider`.
fn account_hex(provider: &str, account: &str) -> String {
    Sha256::digest(format!("mock-account|{provider}|{account}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Adds the token-answer account fields (Dropbox's `account_id`, pCloud's
/// `userid`, and, for the `openid` scope, Jottacloud's `id_token`).
fn name_account(v: &mut Value, account: &str, scope: &str, cfg: &Config) {
    if !cfg.account_ids {
        return;
    }
    for q in ACCOUNT_QUIRKS.iter().filter(|q| q.path.is_none()) {
        if q.provider == "jottacloud" && !scope.split(' ').any(|s| s == "openid") {
            continue;
        }
        if let (Value::Object(fields), Some(obj)) = (
            (q.shape)(&account_hex(q.provider, account)),
            v.as_object_mut(),
        ) {
            obj.extend(fields);
        }
    }
}

/// An account endpoint ([`ACCOUNT_QUIRKS`]): the account of the bearer
/// access token's grant, in that provider's shape; 401 for a token that is
/// unknown, expired or revoked.
fn account_endpoint(shared: &Shared, req: &Request) -> Response {
    let cfg = shared.config();
    let st = shared.lock();
    let account = req
        .header("Authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(|t| st.access_tokens.get(t))
        .filter(|a| a.expires > Instant::now() && !st.dead_families.contains(&a.family))
        .and_then(|a| st.family_accounts.get(&a.family));
    let quirk = ACCOUNT_QUIRKS
        .iter()
        .find(|q| q.path == Some(req.path.as_str()));
    match (account, quirk) {
        (Some(account), Some(q)) if cfg.account_ids => {
            Response::json(200, &(q.shape)(&account_hex(q.provider, account)))
        }
        (Some(_), Some(_)) => error(403, "insufficient_scope"),
        _ => error(401, "invalid_token"),
    }
}

fn userinfo(shared: &Shared, req: &Request) -> Response {
    let st = shared.lock();
    let valid = req
        .header("Authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(|t| st.access_tokens.get(t))
        .filter(|a| a.expires > Instant::now() && !st.dead_families.contains(&a.family));
    match valid {
        Some(a) => Response::json(
            200,
            &json!({"id": format!("mock-user-{}", a.family), "name": format!("Mock User {}", a.family)}),
        ),
        None => error(401, "invalid_token"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn sha256_fips_180_4_vectors() {
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&Sha256::digest(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret2"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn redirect_uris() {
        for ok in [
            "http://127.0.0.1:8787/callback/demo",
            "http://127.0.0.1/cb?x=1",
            "http://localhost:8787/cb",
            "http://[::1]:1/cb",
            "https://broker.example/callback/demo",
        ] {
            assert!(redirect_uri_allowed(ok), "{ok}");
        }
        for bad in [
            "http://example.com/cb",
            "http://localhost.evil.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "https://",
            "javascript:alert(1)",
            "",
        ] {
            assert!(!redirect_uri_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn config_json_round_trip_and_partial_update() {
        let cfg = Config {
            rotation: Rotation::KeepOld,
            fail_status: Some(503),
            delay_ms: 7,
            ..Config::default()
        };
        let v = cfg.to_json();
        assert_eq!(v["rotation"], "keep_old");
        assert_eq!(v["fail_status"], 503);
        let back = Config::from_json(&v).expect("round trip");
        assert_eq!(back.to_json(), v);

        let mut c = back.clone();
        c.apply_json(&json!({"fail_status": null, "rotation": "never"}))
            .expect("partial");
        assert_eq!(
            (c.fail_status, c.rotation, c.delay_ms),
            (None, Rotation::Never, 7)
        );
        assert!(c
            .clone()
            .apply_json(&json!({"rotation": "sometimes"}))
            .is_err());
        assert!(c
            .clone()
            .apply_json(&json!({"fail_status": 70000}))
            .is_err());
        assert!(c.clone().apply_json(&json!({"nope": 1})).is_err());
        c.apply_json(&json!({"region": "eu"})).expect("region");
        assert_eq!(c.region, Some(Region::Eu));
        assert_eq!(c.to_json()["region"], "eu");
        assert!(c.clone().apply_json(&json!({"region": "mars"})).is_err());
        assert!(c.apply_json(&json!([1])).is_err());
    }

    #[test]
    fn stats_json_has_every_field() {
        let s = Stats {
            spent_refresh_reuse: 2,
            issued_codes: vec!["mockCODE_x".into()],
            ..Stats::default()
        };
        let v = s.to_json();
        assert_eq!(v.as_object().map(|o| o.len()), Some(16));
        assert_eq!(v["spent_refresh_reuse"], 2);
        assert_eq!(v["issued_codes"][0], "mockCODE_x");
    }

    #[test]
    fn random_values_are_hex_and_distinct() {
        let (a, b) = (random_hex(16), random_hex(16));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
