//! The mock provider over real HTTP on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use mock_provider::{Config, MockProvider, Rotation};
use serde_json::Value;
use sha2::{Digest, Sha256};

const ID: &str = "cid";
const SECRET: &str = "csecret";
const REDIRECT: &str = "http://127.0.0.1:1/callback/demo";

struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("json body")
    }
    fn location(&self) -> String {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix("Location: "))
            .expect("Location")
            .to_string()
    }
}

fn raw(m: &MockProvider, request: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", m.port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    Resp {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn get(m: &MockProvider, path: &str) -> Resp {
    raw(m, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
}

fn post(m: &MockProvider, path: &str, body: &str, extra: &str) -> Resp {
    raw(
        m,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn start() -> MockProvider {
    MockProvider::start("127.0.0.1:0", ID, SECRET).expect("start")
}

/// authorize → code (with an S256 challenge for `verifier`).
fn code(m: &MockProvider, verifier: Option<&str>) -> String {
    let mut path = format!(
        "/authorize?response_type=code&client_id={ID}&redirect_uri={}&state=st8&scope=files",
        enc(REDIRECT)
    );
    if let Some(v) = verifier {
        let ch = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(v));
        path.push_str(&format!("&code_challenge={ch}&code_challenge_method=S256"));
    }
    let r = get(m, &path);
    assert_eq!(r.status, 302);
    let loc = r.location();
    assert!(loc.starts_with(REDIRECT) && loc.contains("state=st8"));
    loc.split("code=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("code")
        .to_string()
}

fn exchange(m: &MockProvider, code: &str, verifier: Option<&str>) -> Resp {
    let mut body = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&client_id={ID}&client_secret={SECRET}",
        enc(REDIRECT)
    );
    if let Some(v) = verifier {
        body.push_str(&format!("&code_verifier={v}"));
    }
    post(m, "/token", &body, "")
}

fn refresh(m: &MockProvider, rt: &str) -> Resp {
    post(
        m,
        "/token",
        &format!(
            "grant_type=refresh_token&refresh_token={rt}&client_id={ID}&client_secret={SECRET}"
        ),
        "",
    )
}

fn login(m: &MockProvider) -> String {
    let c = code(m, None);
    let r = exchange(m, &c, None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["refresh_token"].as_str().expect("rt").to_string()
}

#[test]
fn pkce_right_verifier_works_wrong_verifier_fails() {
    let m = start();
    let c = code(&m, Some("right-verifier"));
    assert_eq!(exchange(&m, &c, Some("wrong-verifier")).status, 400);
    let c = code(&m, Some("right-verifier"));
    let r = exchange(&m, &c, Some("right-verifier"));
    assert_eq!(r.status, 200);
    let v = r.json();
    assert!(v["access_token"].as_str().unwrap().starts_with("mockAT_"));
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(m.stats().code_exchanges, 1);
}

#[test]
fn a_reused_code_is_refused_and_counted() {
    let m = start();
    let c = code(&m, None);
    assert_eq!(exchange(&m, &c, None).status, 200);
    let again = exchange(&m, &c, None);
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"], "invalid_grant");
    assert_eq!(m.stats().code_reuse, 1);
}

#[test]
fn single_use_rotation_spends_the_old_token_and_flags_reuse() {
    let m = start();
    let rt = login(&m);
    let r = refresh(&m, &rt);
    assert_eq!(r.status, 200);
    let next = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(next, rt);
    let reuse = refresh(&m, &rt);
    assert_eq!(reuse.status, 400);
    assert_eq!(m.stats().spent_refresh_reuse, 1);
    // Like Box: the whole grant is dead after a spent token was presented.
    assert_eq!(refresh(&m, &next).status, 400);
}

#[test]
fn keep_old_rotation_leaves_both_tokens_valid() {
    let m = start();
    m.set_config(Config {
        rotation: Rotation::KeepOld,
        ..Config::default()
    });
    let rt = login(&m);
    let next = refresh(&m, &rt).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(next, rt);
    assert_eq!(refresh(&m, &rt).status, 200);
    assert_eq!(refresh(&m, &next).status, 200);
    assert_eq!(m.stats().spent_refresh_reuse, 0);
}

#[test]
fn no_rotation_omits_the_refresh_token() {
    let m = start();
    m.set_config(Config {
        rotation: Rotation::Never,
        ..Config::default()
    });
    let rt = login(&m);
    for _ in 0..3 {
        let r = refresh(&m, &rt);
        assert_eq!(r.status, 200);
        assert!(r.json().get("refresh_token").is_none());
    }
}

#[test]
fn failure_switches() {
    let m = start();
    let rt = login(&m);
    m.set_config(Config {
        fail_status: Some(503),
        ..Config::default()
    });
    assert_eq!(refresh(&m, &rt).status, 503);
    m.set_config(Config {
        invalid_grant: true,
        ..Config::default()
    });
    let r = refresh(&m, &rt);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, "invalid_grant".into())
    );
    m.set_config(Config {
        malformed_json: true,
        ..Config::default()
    });
    let r = refresh(&m, &rt);
    assert_eq!(r.status, 200);
    assert!(serde_json::from_str::<Value>(&r.body).is_err());
    m.set_config(Config {
        delay_ms: 300,
        ..Config::default()
    });
    let t = Instant::now();
    assert_eq!(
        refresh(&m, &rt).status,
        200,
        "token still valid after failures"
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(m.stats().refresh_calls, 4);
}

#[test]
fn bad_client_credentials_are_refused_in_form_and_basic() {
    let m = start();
    let rt = login(&m);
    let bad_form = post(
        &m,
        "/token",
        &format!("grant_type=refresh_token&refresh_token={rt}&client_id={ID}&client_secret=nope"),
        "",
    );
    assert_eq!(bad_form.status, 401);
    let basic = |cred: &str| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(cred)
        )
    };
    let body = format!("grant_type=refresh_token&refresh_token={rt}");
    assert_eq!(post(&m, "/token", &body, &basic("cid:nope")).status, 401);
    assert_eq!(post(&m, "/token", &body, &basic("cid:csecret")).status, 200);
    assert_eq!(m.stats().bad_client_auth, 2);
}

#[test]
fn revoked_tokens_stop_working() {
    let m = start();
    let rt = login(&m);
    let r = post(
        &m,
        "/revoke",
        &format!("token={rt}&client_id={ID}&client_secret={SECRET}"),
        "",
    );
    assert_eq!(r.status, 200);
    assert_eq!(refresh(&m, &rt).status, 400);
    assert_eq!(m.stats().revoke_calls, 1);
}

#[test]
fn userinfo_checks_the_access_token() {
    let m = start();
    let c = code(&m, None);
    let at = exchange(&m, &c, None).json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let ok = raw(
        &m,
        &format!("GET /userinfo HTTP/1.1\r\nAuthorization: Bearer {at}\r\n\r\n"),
    );
    assert_eq!(ok.status, 200);
    assert!(ok.json()["id"].as_str().unwrap().starts_with("mock-user-"));
    let bad = raw(
        &m,
        "GET /userinfo HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n",
    );
    assert_eq!(bad.status, 401);
}

#[test]
fn control_endpoints_and_deny() {
    let m = start();
    let r = raw(
        &m,
        "POST /_mock/config HTTP/1.1\r\nContent-Length: 39\r\n\r\n{\"rotation\":\"never\",\"delay_ms\":5,\"x\":1}",
    );
    assert_eq!(r.status, 400, "unknown field refused");
    let body = r#"{"rotation":"never","deny":true}"#;
    let r = raw(
        &m,
        &format!(
            "POST /_mock/config HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 200);
    assert_eq!(m.config().rotation, Rotation::Never);
    let denied = get(
        &m,
        &format!(
            "/authorize?response_type=code&client_id={ID}&redirect_uri={}&state=s",
            enc(REDIRECT)
        ),
    );
    assert!(denied.location().contains("error=access_denied"));
    assert_eq!(get(&m, "/_mock/stats").json()["authorize_calls"], 1);
    assert_eq!(get(&m, "/nope").status, 404);
}

#[test]
fn concurrent_slow_refreshes_are_counted_in_flight() {
    let m = start();
    m.set_config(Config {
        rotation: Rotation::KeepOld,
        delay_ms: 400,
        ..Config::default()
    });
    let rt = login(&m);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| assert_eq!(refresh(&m, &rt).status, 200));
        }
    });
    assert_eq!(m.stats().max_concurrent_refresh, 8);
}

#[test]
fn garbage_requests_get_400_and_the_server_lives_on() {
    let m = start();
    assert_eq!(raw(&m, "NONSENSE\r\n\r\n").status, 400);
    assert_eq!(
        raw(&m, "POST /token HTTP/1.1\r\nContent-Length: abc\r\n\r\n").status,
        400
    );
    assert_eq!(
        raw(
            &m,
            "POST /token HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"
        )
        .status,
        413
    );
    assert_eq!(get(&m, "/_mock/stats").status, 200);
}

#[test]
fn only_loopback_addresses_can_be_bound() {
    assert!(MockProvider::start("0.0.0.0:0", ID, SECRET).is_err());
    assert!(
        MockProvider::start("[::1]:0", ID, SECRET).is_ok()
            || std::net::TcpListener::bind("[::1]:0").is_err()
    );
}
