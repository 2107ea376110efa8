//! Debian's rclone, unchanged, logging in through the broker's authorization
//! endpoint with its own browser flow (issue 12, rclone (b)): the saved token
//! carries an authid as its refresh token, which refreshes.
//!
//! What rclone does (rclone/rclone v1.60.1, `lib/oauthutil/oauthutil.go`):
//! - `getAuthURL` (:595-611) builds the provider URL with x/oauth2's
//!   `AuthCodeURL(state, AccessTypeOffline)`: `response_type=code`,
//!   `client_id`, `redirect_uri`, `scope`, `state` (128 random bits,
//!   `random.Password(128)`, :599), `access_type=offline`, and no PKCE;
//! - `RedirectURL` is `http://127.0.0.1:53682/` (:33-40), the loopback URI the
//!   broker accepts on any port (RFC 8252 §7.3);
//! - `configSetup` (:631-677) serves 127.0.0.1:53682, prints
//!   "go to the following link: http://127.0.0.1:53682/auth?state=…" (:651-658),
//!   whose `/auth` 307-redirects the browser to the auth URL (:778-787);
//! - `handleAuth` (:711-770) takes `code` and checks `state` (:752) when the
//!   browser comes back to `/`;
//! - `configExchange` (:679-686) redeems the code at `token_url` with
//!   x/oauth2's `Exchange` and saves the token with `PutToken`.
//!
//! The test plays the browser: it follows the printed link through rclone's
//! server, the broker and the mock provider, and back to rclone.

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    metadata, refresh_at_token_endpoint, request, try_request_bytes, Broker, Jar, Options,
};
use crate::rclone::saved_token;

pub const TESTS: &[crate::Test] = &[(
    "rclone_config_create_logs_in_through_the_authorization_endpoint_and_saves_an_authid",
    rclone_config_create_logs_in_through_the_authorization_endpoint_and_saves_an_authid,
)];

/// rclone's fixed local redirect (v1.60.1 oauthutil.go:33-40).
const RCLONE_REDIRECT: &str = "http://127.0.0.1:53682/";

struct Rclone {
    child: Child,
    log: std::path::PathBuf,
}

impl Rclone {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Rclone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rclone config create` for a Drive remote whose client_id is the broker's
/// `demo` provider and whose auth and token URLs are the broker's.
fn config_create(dir: &std::path::Path, conf: &str, auth_url: &str, token_url: &str) -> Rclone {
    let log = dir.join("rclone-login.log");
    let out = std::fs::File::create(&log).expect("rclone log");
    let mut cmd = crate::rclone::without_proxy("rclone");
    cmd.args([
        "--config",
        conf,
        "config",
        "create",
        "gd",
        "drive",
        "client_id=demo",
        "scope=drive",
        &format!("auth_url={auth_url}"),
        &format!("token_url={token_url}"),
        "config_is_local=true",
        "-vv",
    ])
    .stdin(Stdio::null())
    .stdout(out.try_clone().expect("fd"))
    .stderr(out);
    // No browser here: rclone's attempt to open one fails and it prints the link.
    cmd.env("BROWSER", "true").env_remove("DISPLAY");
    Rclone {
        child: cmd.spawn().expect("run rclone (apt-get install rclone)"),
        log,
    }
}

/// The link rclone prints for the user, once it is listening.
fn printed_link(r: &mut Rclone) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let log = r.log();
        if let Some(at) = log.find("http://127.0.0.1:53682/auth?state=") {
            let link: String = log[at..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            return Some(link);
        }
        if let Ok(Some(_)) = r.child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Holds rclone's port while a worker starts: 53682 lies in Linux's
/// ephemeral range (32768-60999), so workerd or any local client could
/// otherwise happen to take it (seen: "bind: address already in use").
fn reserve_rclone_port() -> Option<std::net::TcpListener> {
    // Held since the suite started (`main.rs`): no worker started meanwhile
    // (each binds ports the system picks) can have taken it.
    if let Some(held) = HELD_RCLONE_PORT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Some(held);
    }
    for _ in 0..30 {
        if let Ok(l) = std::net::TcpListener::bind("127.0.0.1:53682") {
            return Some(l);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    None
}

/// Port 53682 (rclone's fixed redirect port), bound before the suite starts
/// any worker and released to rclone by its test ([`hold_rclone_port`]).
static HELD_RCLONE_PORT: std::sync::Mutex<Option<std::net::TcpListener>> =
    std::sync::Mutex::new(None);

/// Binds rclone's port for the rest of the suite, if it is free now.
pub fn hold_rclone_port() {
    if let Ok(l) = std::net::TcpListener::bind("127.0.0.1:53682") {
        *HELD_RCLONE_PORT.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
    }
}

fn rclone_config_create_logs_in_through_the_authorization_endpoint_and_saves_an_authid(
    shared: &Broker,
) {
    // A worker of its own, started while this test holds rclone's port.
    let reserved = reserve_rclone_port();
    let own = Broker::start_with(&shared.mock, Options::default());
    drop(reserved);
    let b = &own;
    let m = metadata(b);
    let auth_url = m["authorization_endpoint"]
        .as_str()
        .expect("authorization_endpoint");
    let token_url = m["token_endpoint"].as_str().expect("token_endpoint");
    let dir = b.dir.join("rclone-login");
    std::fs::create_dir_all(&dir).expect("dir");
    let conf = dir.join("rclone.conf");
    let conf_arg = conf.to_string_lossy().to_string();
    // Port 53682 is rclone's and fixed: another rclone login on this machine
    // may hold it for a moment, so a failed start is tried again.
    let mut attempt = 0;
    let (mut rc, link) = loop {
        attempt += 1;
        let mut rc = config_create(&dir, &conf_arg, auth_url, token_url);
        match printed_link(&mut rc) {
            Some(link) => break (rc, link),
            None if attempt < 3 => {
                println!(
                    "    rclone did not start its login (try {attempt}):\n{}",
                    rc.log()
                );
                drop(rc);
                std::thread::sleep(Duration::from_secs(5));
            }
            None => panic!("rclone never printed its link:\n{}", rc.log()),
        }
    };
    // The browser: rclone's /auth sends it to the broker's authorization endpoint.
    let to_broker = request("GET", &link, &[], None);
    assert_eq!(to_broker.status, 307, "rclone /auth: {}", to_broker.body);
    let authorize = to_broker.header("Location").expect("Location").to_string();
    println!(
        "    rclone's authorization request: {}",
        redact(&authorize, &["state"])
    );
    let path = authorize
        .strip_prefix(&b.base)
        .expect("rclone sends the browser to the broker's authorization endpoint");
    let mut jar = Jar::default();
    let back = crate::harness::through_login(b, &mut jar, path);
    assert_eq!(back.status, 302, "callback: {}", back.body);
    let to_rclone = back.header("Location").expect("Location").to_string();
    assert!(to_rclone.starts_with(RCLONE_REDIRECT), "{to_rclone}");
    // Back at rclone with the code and its state. rclone may stop its local
    // server as soon as the code has arrived, before its page is written (seen
    // once: the connection closed without an answer); what counts is below —
    // that rclone redeems the code and saves the token.
    match try_request_bytes("GET", &to_rclone, &[], None, Duration::from_secs(60)) {
        Ok(done) => assert_eq!(done.status, 200, "rclone took the code: {}", done.body),
        Err(e) => println!("    rclone's page did not arrive ({e}); waiting for rclone"),
    }
    // rclone redeems the code at token_url and writes the config.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Ok(Some(s)) = rc.child.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = rc.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "rclone config create finished: {status:?}\n{log}"
    );
    let mut text = String::new();
    std::fs::File::open(&conf)
        .and_then(|mut f| f.read_to_string(&mut text))
        .expect("read rclone.conf");
    let token = saved_token(&text, "gd").unwrap_or_else(|| panic!("no token saved:\n{log}"));
    let authid = shared.remember_refresh_token(&token);
    assert!(
        authid.contains(':') && !authid.starts_with("v2:"),
        "rclone saved a stored (v1) authid as its refresh token"
    );
    let access = token["access_token"].as_str().unwrap_or_default();
    assert!(
        b.provider_issued(access),
        "the saved access token is one the provider issued"
    );
    assert!(token["expiry"].as_str().unwrap_or_default() > "2026");
    // The authid refreshes at the token endpoint (and on /refresh).
    let r = refresh_at_token_endpoint(b, &authid);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(b.refresh(&authid).status, 200);
}

/// `url` with the values of `keys` replaced, for the test log.
fn redact(url: &str, keys: &[&str]) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return String::from("(not a URL)");
    };
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if keys.contains(&k.as_ref()) {
                "…".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}
