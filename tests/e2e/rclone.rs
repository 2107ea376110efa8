//! Debian's rclone, unchanged, refreshing through the broker's token endpoint
//! with an authid pasted as its refresh token (issue 12, "Use with rclone").
//!
//! How rclone refreshes (rclone/rclone v1.60.1, `lib/oauthutil/oauthutil.go`):
//! its `TokenSource.Token` (:212-262) asks golang.org/x/oauth2's token source
//! for a token once the saved one has expired, up to 5 tries one second apart
//! (:220, :223-247), and when the token changed saves it in the config file
//! with `PutToken` (:258). rclone ≥ 1.62 stops at once on a 400 or 401
//! (`maybeWrapOAuthError`, v1.62.0 :219-222), which is why the broker's
//! permanent failures are 400 `invalid_grant`. The drive backend keeps
//! Google's endpoint style (`backend/drive/drive.go:86`, `google.Endpoint`:
//! credentials in the body) and takes `token_url` from the config
//! (`OverrideCredentials`). Observed from rclone 1.60.1 (`lsjson` on such a
//! remote, recorded by a listener in place of the broker):
//! `POST <token_url>` `Content-Type: application/x-www-form-urlencoded`,
//! `client_id=googledrive&client_secret=<rclone's own Drive secret>&grant_type=refresh_token&refresh_token=<authid>`
//! — 1.60 keeps its built-in secret when only `client_id` is overridden
//! (v1.60.1 `lib/oauthutil/oauthutil.go:332-341`), so with an access gate the
//! key must win however else the request carries it (`/k/<key>/` in
//! `token_url`, or `client_secret=<key>`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{discover, free_port, Broker};

pub const TESTS: &[crate::Test] = tests![
    rclone_refreshes_a_pasted_authid_through_the_token_endpoint_and_saves_the_access_token,
    rclone_behind_an_access_gate_refreshes_with_the_key_in_token_url_or_as_client_secret,
];

/// Runs rclone with `args` and `env`, killing it after `limit`; its output.
fn rclone(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (Option<i32>, String) {
    let mut cmd = without_proxy("rclone");
    cmd.args(args).envs(env.iter().copied());
    run_bounded(&mut cmd, limit)
}

/// `program` without the proxy and CA settings of the caller's environment.
pub(crate) fn without_proxy(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for k in [
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "https_proxy",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(k);
    }
    cmd
}

/// Runs `cmd` (stdin closed), killing it after `limit`: its exit code
/// (`None` if killed) and its output, stdout and stderr together.
pub(crate) fn run_bounded(cmd: &mut Command, limit: Duration) -> (Option<i32>, String) {
    let out_path = std::env::temp_dir().join(format!(
        "e2e-run-{}-{}.log",
        std::process::id(),
        crate::harness::free_port()
    ));
    let out = std::fs::File::create(&out_path).expect("log file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("fd"))
        .stderr(out)
        .spawn()
        .expect("run (scripts/setup.sh --test installs rclone)");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    (status, text)
}

/// `rclone lsjson <remote>` with config file `conf` (and `extra` flags),
/// offline: a refresh is a loopback request, which Go never sends through a
/// proxy, so it reaches the broker; the provider's API call then goes to a
/// closed local "proxy" and fails at once (one try, short timeouts). Its exit
/// code (`None` if killed after two minutes) and its output.
pub(crate) fn lsjson_offline(
    conf: &std::path::Path,
    remote: &str,
    extra: &[&str],
) -> (Option<i32>, String) {
    let dead_proxy = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = without_proxy("rclone");
    cmd.arg("--config")
        .arg(conf)
        .args(["lsjson", remote])
        .args(extra)
        .args([
            "--retries",
            "1",
            "--low-level-retries",
            "1",
            "--contimeout",
            "5s",
            "--timeout",
            "10s",
        ])
        .env("HTTPS_PROXY", &dead_proxy)
        .env("HTTP_PROXY", &dead_proxy);
    run_bounded(&mut cmd, Duration::from_secs(120))
}

/// The `token = …` JSON of remote `name` in an rclone config file (also
/// read by `rclone_login.rs`).
pub(crate) fn saved_token(config: &str, name: &str) -> Option<serde_json::Value> {
    let mut in_section = false;
    for line in config.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == format!("[{name}]");
        } else if in_section {
            if let Some(v) = line.strip_prefix("token = ") {
                return serde_json::from_str(v).ok();
            }
        }
    }
    None
}

/// Writes remote `gd` (rclone's Drive backend with `client_id=demo`, the
/// provider of the authids these tests mint: a `client_id` must name the
/// authid's provider; `extra` settings) with `authid` as its refresh token and an expired token, runs a listing, and
/// returns the token rclone saved and its log.
fn refresh_with_rclone(
    b: &Broker,
    token_url: &str,
    extra: &str,
    authid: &str,
) -> (serde_json::Value, String) {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = b.dir.join(format!("rclone-{n}"));
    std::fs::create_dir_all(&dir).expect("rclone dir");
    let conf = dir.join("rclone.conf");
    // The way README "Use with rclone" tells a user: the authid as the refresh
    // token, an expiry in the past, the broker's token endpoint as token_url.
    let token = serde_json::json!({
        "access_token": "stale-access-token",
        "token_type": "Bearer",
        "refresh_token": authid,
        "expiry": "2020-01-01T00:00:00Z",
    });
    std::fs::write(
        &conf,
        format!(
            "[gd]\ntype = drive\nclient_id = demo\nscope = drive\n{extra}\
             token_url = {token_url}\ntoken = {token}\n"
        ),
    )
    .expect("write rclone.conf");
    // A listing: rclone refreshes the expired token, saves it, then fails
    // offline (see [`lsjson_offline`]).
    let (status, log) = lsjson_offline(&conf, "gd:", &["-vv"]);
    let interesting: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("oken") || l.contains("ERROR"))
        .take(8)
        .collect();
    println!(
        "    rclone exit {status:?}; {}",
        interesting.join("\n      ")
    );
    let saved = saved_token(
        &std::fs::read_to_string(&conf).expect("read rclone.conf"),
        "gd",
    )
    .unwrap_or_else(|| panic!("no token for [gd] in the config"));
    (saved, log)
}

/// rclone saved a fresh token from the broker: an access token the provider
/// issued, the authid still the refresh token, an expiry in the future.
fn assert_saved_fresh(b: &Broker, saved: &serde_json::Value, log: &str, authid: &str) {
    let access = saved["access_token"].as_str().unwrap_or("");
    assert_ne!(
        access, "stale-access-token",
        "rclone saved no new token:\n{log}"
    );
    assert!(
        b.provider_issued(access),
        "the saved access token is one the provider issued for this grant"
    );
    assert_eq!(
        saved["refresh_token"], authid,
        "the authid stays the refresh token"
    );
    let expiry = saved["expiry"].as_str().unwrap_or("");
    assert!(
        expiry > "2026" && !expiry.starts_with("2020"),
        "expiry saved from expires_in: {expiry}"
    );
}

fn rclone_refreshes_a_pasted_authid_through_the_token_endpoint_and_saves_the_access_token(
    b: &Broker,
) {
    let (_, version) = rclone(&["version"], &[], Duration::from_secs(60));
    println!(
        "    {}",
        version.lines().next().unwrap_or("rclone: no version")
    );
    let e = discover(b);
    let authid = b.login();
    let issued_before = b.mock.stats().issued_access_tokens.len();
    let (saved, log) = refresh_with_rclone(b, &e.token, "", &authid);
    assert_saved_fresh(b, &saved, &log, &authid);
    // The broker served the grant's cached token (from the login): no new one.
    assert_eq!(b.mock.stats().issued_access_tokens.len(), issued_before);
    // Revoked (RFC 7009, as a user would with curl): rclone is told
    // invalid_grant (permanent), keeps its old token and fails.
    let r = crate::harness::post(
        &e.revocation,
        &[],
        &format!("token={}", crate::harness::enc(&authid)),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (saved, log) = refresh_with_rclone(b, &e.token, "", &authid);
    assert_eq!(saved["access_token"], "stale-access-token", "{log}");
    assert!(
        log.contains("invalid_grant"),
        "rclone shows invalid_grant:\n{log}"
    );
}

fn rclone_behind_an_access_gate_refreshes_with_the_key_in_token_url_or_as_client_secret(
    b: &Broker,
) {
    const KEY: &str = "rclone-gate-key";
    let w = Broker::start_gated(&b.mock, KEY);
    let e = discover(&w);
    let authid = w.login_at(&format!("/login?id=demo&key={KEY}"));
    // The key in the path; rclone 1.60 still sends its own Drive secret.
    let keyed = e
        .token
        .replacen("/oauth/token", &format!("/k/{KEY}/oauth/token"), 1);
    let (saved, log) = refresh_with_rclone(&w, &keyed, "", &authid);
    assert_saved_fresh(&w, &saved, &log, &authid);
    // The key as client_secret.
    let (saved, log) =
        refresh_with_rclone(&w, &e.token, &format!("client_secret = {KEY}\n"), &authid);
    assert_saved_fresh(&w, &saved, &log, &authid);
    // Neither: rclone gets 401 invalid_client and saves nothing.
    let (saved, log) = refresh_with_rclone(&w, &e.token, "", &authid);
    assert_eq!(saved["access_token"], "stale-access-token", "{log}");
    assert!(
        log.contains("invalid_client"),
        "rclone shows the error:\n{log}"
    );
    drop(w);
}
