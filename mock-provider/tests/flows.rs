//! The mock provider over real HTTP on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use mock_provider::{Config, MockProvider, Region, Rotation};
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
    let r = refresh(&m, &rt);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (503, "server_error".into())
    );
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
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(m.stats().refresh_calls, 4);
    assert_eq!(m.stats().refresh_successes, 1);
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
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| assert_eq!(refresh(&m, &rt).status, 200));
        }
    });
    // In parallel, not one after the other (8 × 400 ms).
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(m.stats().max_concurrent_refresh, 8);
    assert_eq!(m.stats().refresh_successes, 8);
    // Sequential refreshes never overlap.
    m.reset_stats();
    m.set_config(Config {
        rotation: Rotation::KeepOld,
        ..Config::default()
    });
    for _ in 0..3 {
        assert_eq!(refresh(&m, &rt).status, 200);
    }
    assert_eq!(m.stats().max_concurrent_refresh, 1);
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

fn token_of(r: &Resp, field: &str) -> String {
    r.json()[field].as_str().expect(field).to_string()
}

fn userinfo_status(m: &MockProvider, at: &str) -> u16 {
    raw(
        m,
        &format!("GET /userinfo HTTP/1.1\r\nAuthorization: Bearer {at}\r\n\r\n"),
    )
    .status
}

fn json_post(m: &MockProvider, path: &str, body: &str) -> Resp {
    raw(
        m,
        &format!(
            "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn pkce_verifier_is_required_when_a_challenge_was_given() {
    let m = start();
    let c = code(&m, Some("v-123"));
    let r = exchange(&m, &c, None);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");
    // Without a challenge no verifier is needed, unless PKCE is required.
    let c = code(&m, None);
    assert_eq!(exchange(&m, &c, None).status, 200);
    m.set_config(Config {
        require_pkce: true,
        ..Config::default()
    });
    let no_challenge = get(
        &m,
        &format!(
            "/authorize?response_type=code&client_id={ID}&redirect_uri={}&state=s",
            enc(REDIRECT)
        ),
    );
    assert_eq!(no_challenge.status, 400);
    assert!(!no_challenge.head.contains("Location:"));
    let c = code(&m, Some("v-456"));
    assert_eq!(exchange(&m, &c, Some("v-456")).status, 200);
    assert_eq!(m.stats().code_exchanges, 2);
}

#[test]
fn code_exchange_checks_redirect_uri_and_client() {
    let m = start();
    let c = code(&m, None);
    let wrong_redirect = post(
        &m,
        "/token",
        &format!(
            "grant_type=authorization_code&code={c}&redirect_uri={}&client_id={ID}&client_secret={SECRET}",
            enc("http://127.0.0.1:1/other")
        ),
        "",
    );
    assert_eq!(wrong_redirect.status, 400);
    assert_eq!(wrong_redirect.json()["error"], "invalid_grant");
    let unknown = exchange(&m, "mockCODE_unknown", None);
    assert_eq!(unknown.status, 400);
    let c = code(&m, None);
    let no_client = post(
        &m,
        "/token",
        &format!(
            "grant_type=authorization_code&code={c}&redirect_uri={}",
            enc(REDIRECT)
        ),
        "",
    );
    assert_eq!(no_client.status, 401);
    assert_eq!(no_client.json()["error"], "invalid_client");
    assert_eq!(m.stats().code_exchanges, 0);
    assert_eq!(m.stats().bad_client_auth, 1);
}

#[test]
fn token_response_has_the_documented_shape() {
    let m = start();
    let c = code(&m, None);
    let v = exchange(&m, &c, None).json();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "files");
    assert!(v["user_id"].as_str().unwrap().starts_with("mock-user-"));
    let rt = v["refresh_token"].as_str().unwrap();
    assert!(rt.starts_with("mockRT_") && rt.len() == "mockRT_".len() + 32);
    assert!(c.starts_with("mockCODE_"));
    let s = m.stats();
    assert_eq!(s.issued_codes, vec![c]);
    assert_eq!(s.issued_refresh_tokens, vec![rt.to_string()]);
    assert_eq!(s.issued_access_tokens.len(), 1);
    // A refresh keeps the granted scope and the user.
    let r = refresh(&m, rt).json();
    assert_eq!(r["scope"], "files");
    assert_eq!(r["user_id"], v["user_id"]);
    assert_eq!(m.stats().token_calls, 2);
}

#[test]
fn authorize_refuses_bad_clients_and_redirects_without_redirecting() {
    let m = start();
    for (client, redirect) in [
        ("other", Some(REDIRECT)),
        (ID, Some("http://evil.example/cb")),
        (ID, Some("http://localhost.evil.example/cb")),
        (ID, None),
    ] {
        let mut path = format!("/authorize?response_type=code&client_id={client}&state=s");
        if let Some(r) = redirect {
            path.push_str(&format!("&redirect_uri={}", enc(r)));
        }
        let r = get(&m, &path);
        assert_eq!(r.status, 400, "{path}");
        assert!(!r.head.contains("Location:"), "{path}");
    }
    assert!(m.stats().issued_codes.is_empty());
    // An existing query is extended with `&`, and values are percent-encoded.
    let r = get(
        &m,
        &format!(
            "/authorize?response_type=code&client_id={ID}&redirect_uri={}&state={}",
            enc("http://localhost:9/cb?x=1"),
            enc("a b&c")
        ),
    );
    assert_eq!(r.status, 302);
    let loc = r.location();
    assert!(
        loc.starts_with("http://localhost:9/cb?x=1&code=mockCODE_"),
        "{loc}"
    );
    assert!(loc.ends_with("&state=a%20b%26c"), "{loc}");
}

#[test]
fn a_reused_code_revokes_what_it_issued() {
    let m = start();
    let c = code(&m, None);
    let first = exchange(&m, &c, None);
    let (at, rt) = (
        token_of(&first, "access_token"),
        token_of(&first, "refresh_token"),
    );
    assert_eq!(userinfo_status(&m, &at), 200);
    assert_eq!(exchange(&m, &c, None).status, 400);
    assert_eq!(refresh(&m, &rt).status, 400);
    assert_eq!(userinfo_status(&m, &at), 401);
    assert_eq!(m.stats().code_reuse, 1);
    assert_eq!(m.stats().spent_refresh_reuse, 0);
}

#[test]
fn unsupported_grant_types_are_refused() {
    let m = start();
    let r = post(
        &m,
        "/token",
        &format!("grant_type=password&username=u&password=p&client_id={ID}&client_secret={SECRET}"),
        "",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    assert_eq!(m.stats().token_calls, 1);
}

#[test]
fn revocation_details() {
    let m = start();
    let c = code(&m, None);
    let r = exchange(&m, &c, None);
    let (at, rt) = (token_of(&r, "access_token"), token_of(&r, "refresh_token"));
    let creds = format!("client_id={ID}&client_secret={SECRET}");
    // A bad client is refused and nothing is revoked.
    let bad = post(
        &m,
        "/revoke",
        &format!("token={rt}&client_id={ID}&client_secret=x"),
        "",
    );
    assert_eq!(bad.status, 401);
    // Unknown tokens are fine (RFC 7009 §2.2), with an empty body.
    let unknown = post(&m, "/revoke", &format!("token=nope&{creds}"), "");
    assert_eq!((unknown.status, unknown.body.as_str()), (200, ""));
    // Revoking the access token kills only that token.
    assert_eq!(
        post(
            &m,
            "/revoke",
            &format!("token={at}&token_type_hint=access_token&{creds}"),
            ""
        )
        .status,
        200
    );
    assert_eq!(userinfo_status(&m, &at), 401);
    let r = refresh(&m, &rt);
    assert_eq!(r.status, 200);
    let (at2, rt2) = (token_of(&r, "access_token"), token_of(&r, "refresh_token"));
    assert_eq!(userinfo_status(&m, &at2), 200);
    // Revoking the refresh token kills the whole family.
    assert_eq!(
        post(&m, "/revoke", &format!("token={rt2}&{creds}"), "").status,
        200
    );
    assert_eq!(userinfo_status(&m, &at2), 401);
    assert_eq!(refresh(&m, &rt2).status, 400);
    let s = m.stats();
    assert_eq!((s.revoke_calls, s.bad_client_auth), (4, 1));
    assert_eq!(s.spent_refresh_reuse, 0, "revoked is not spent");
}

#[test]
fn control_endpoints_config_and_reset() {
    let m = start();
    let v = get(&m, "/_mock/config").json();
    assert_eq!(v["rotation"], "single_use");
    assert_eq!(v["access_token_ttl"], 3600);
    assert_eq!(v["fail_status"], Value::Null);
    let v = json_post(
        &m,
        "/_mock/config",
        r#"{"access_token_ttl":60,"fail_status":502}"#,
    )
    .json();
    assert_eq!(
        (v["access_token_ttl"].clone(), v["rotation"].clone()),
        (60.into(), "single_use".into())
    );
    assert_eq!(m.config().fail_status, Some(502));
    assert_eq!(json_post(&m, "/_mock/config", "{not json").status, 400);
    assert_eq!(
        json_post(&m, "/_mock/config", r#"{"delay_ms":"slow"}"#).status,
        400
    );
    assert_eq!(
        m.config().fail_status,
        Some(502),
        "a refused update changes nothing"
    );
    json_post(&m, "/_mock/config", r#"{"fail_status":null}"#);
    let c = code(&m, None);
    let r = exchange(&m, &c, None);
    assert_eq!(r.json()["expires_in"], 60);
    let at = token_of(&r, "access_token");
    let stats = get(&m, "/_mock/stats").json();
    assert_eq!(stats["code_exchanges"], 1);
    assert_eq!(stats["issued_access_tokens"][0], at.as_str());
    let reset = raw(
        &m,
        "POST /_mock/reset HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(reset.status, 200);
    let s = m.stats();
    assert_eq!(
        (s.code_exchanges, s.token_calls, s.authorize_calls),
        (0, 0, 0)
    );
    assert_eq!(
        s.issued_access_tokens,
        vec![at.clone()],
        "issued values stay listed"
    );
    assert_eq!(userinfo_status(&m, &at), 200, "and valid");
    assert_eq!(raw(&m, "GET /token HTTP/1.1\r\n\r\n").status, 404);
}

#[test]
fn a_chunked_token_request_works() {
    let m = start();
    let rt = login(&m);
    let body = format!(
        "grant_type=refresh_token&refresh_token={rt}&client_id={ID}&client_secret={SECRET}"
    );
    let (a, b) = body.split_at(10);
    let r = raw(
        &m,
        &format!(
            "POST /token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\nX-Trailer: 1\r\n\r\n",
            a.len(),
            b.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(token_of(&r, "refresh_token").starts_with("mockRT_"));
}

#[test]
fn malformed_framing_is_refused_and_the_server_lives_on() {
    let m = start();
    let huge_chunk =
        "POST /token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\n";
    assert_eq!(raw(&m, huge_chunk).status, 413);
    let bad_chunk = "POST /token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert_eq!(raw(&m, bad_chunk).status, 400);
    let gzip = "POST /token HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(raw(&m, gzip).status, 400);
    let big_header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024));
    assert_eq!(raw(&m, &big_header).status, 431);
    assert_eq!(raw(&m, "GET / HTTP/1.1\r\nno colon\r\n\r\n").status, 400);
    assert_eq!(raw(&m, "\u{ff}\u{fe} / HTTP/1.1\r\n\r\n").status, 404);
    // A client that hangs up mid-request costs nothing.
    drop(TcpStream::connect(("127.0.0.1", m.port())).expect("connect"));
    let mut half = TcpStream::connect(("127.0.0.1", m.port())).expect("connect");
    half.write_all(b"POST /token HTTP/1.1\r\nContent-Length: 10\r\n\r\nab")
        .expect("write");
    drop(half);
    assert_eq!(get(&m, "/_mock/stats").status, 200);
    assert_eq!(
        m.stats().token_calls,
        0,
        "no framing error reached the handler"
    );
}

#[test]
fn dropping_the_provider_stops_accepting() {
    let m = start();
    let port = m.port();
    assert_eq!(get(&m, "/_mock/stats").status, 200);
    drop(m);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after drop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_binary_prints_its_url_and_refuses_non_loopback_hosts() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_mock-provider");
    for args in [
        &["--host", "0.0.0.0", "--port", "0"][..],
        &["--bogus", "1"],
        &["--rotation", "sometimes"],
        &["--port"],
    ] {
        let out = Command::new(bin).args(args).output().expect("run");
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    let mut child = Command::new(bin)
        .args(["--port", "0", "--rotation", "never", "--client-id", "c1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    let read = std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    let port: Option<u16> = line
        .trim_end()
        .strip_prefix("mock-provider listening on http://127.0.0.1:")
        .and_then(|p| p.parse().ok());
    let config = port.map(|p| {
        let mut s = TcpStream::connect(("127.0.0.1", p)).expect("connect");
        s.write_all(b"GET /_mock/config HTTP/1.1\r\n\r\n")
            .expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(read.is_ok() && port.is_some(), "{line:?}");
    assert!(config.unwrap_or_default().contains(r#""rotation":"never""#));
}

fn password(m: &MockProvider, body: &str) -> Resp {
    post(m, "/token", body, "")
}

const PASSWORD_LOGIN: &str = "grant_type=password&client_id=jottacli&scope=openid%20offline_access&username=mock-user%40example.com&password=mock-cli-auth-token";

fn public_refresh(m: &MockProvider, rt: &str) -> Resp {
    post(
        m,
        "/token",
        &format!(
            "grant_type=refresh_token&refresh_token={}&client_id=jottacli",
            enc(rt)
        ),
        "",
    )
}

#[test]
fn the_public_client_logs_in_with_a_password_and_its_tokens_rotate() {
    let m = start();
    let r = password(&m, PASSWORD_LOGIN);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"], "openid offline_access");
    let mut rt = token_of(&r, "refresh_token");
    let first = rt.clone();
    for _ in 0..3 {
        let r = public_refresh(&m, &rt);
        assert_eq!(r.status, 200, "{}", r.body);
        let next = token_of(&r, "refresh_token");
        assert_ne!(next, rt, "every refresh rotates");
        rt = next;
    }
    let s = m.stats();
    assert_eq!((s.password_grants, s.refresh_successes), (1, 3));
    assert_eq!(s.spent_refresh_reuse, 0);
    // Single use: a spent token is flagged and kills the grant.
    assert_eq!(public_refresh(&m, &first).status, 400);
    assert_eq!(m.stats().spent_refresh_reuse, 1);
    assert_eq!(public_refresh(&m, &rt).status, 400);
}

#[test]
fn the_password_grant_needs_the_public_client_and_the_configured_credentials() {
    let m = start();
    let wrong_password = PASSWORD_LOGIN.replace("mock-cli-auth-token", "nope");
    let wrong_user = PASSWORD_LOGIN.replace("mock-user", "other-user");
    for body in [wrong_password, wrong_user] {
        let r = password(&m, &body);
        assert_eq!(r.status, 401, "{body}");
        assert_eq!(r.json()["error"], "invalid_grant");
    }
    // The public client id with a secret is not the public client.
    let r = password(&m, &format!("{PASSWORD_LOGIN}&client_secret=x"));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");
    // Another client id without a secret is an unauthenticated client.
    let r = password(&m, &PASSWORD_LOGIN.replace("jottacli", "someone"));
    assert_eq!(r.json()["error"], "invalid_client");
    // The public client may not exchange codes, nor refresh a confidential grant.
    let r = password(
        &m,
        "grant_type=authorization_code&code=x&client_id=jottacli",
    );
    assert_eq!(r.json()["error"], "unauthorized_client");
    let confidential = login(&m);
    assert_eq!(public_refresh(&m, &confidential).status, 400);
    // And the confidential client may not refresh the public client's grant.
    let rt = token_of(&password(&m, PASSWORD_LOGIN), "refresh_token");
    assert_eq!(refresh(&m, &enc(&rt)).status, 400);
    assert_eq!(m.stats().password_grants, 1);
    // Switches: other credentials.
    m.set_config(Config {
        password_username: "a".into(),
        password: "b".into(),
        ..Config::default()
    });
    let r = password(
        &m,
        "grant_type=password&client_id=jottacli&scope=s&username=a&password=b",
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_regional_login_names_its_host_and_its_code_works_only_at_that_hosts_path() {
    let m = start();
    m.set_config(Config {
        region: Some(Region::Eu),
        ..Config::default()
    });
    let r = get(
        &m,
        &format!(
            "/authorize?response_type=code&client_id={ID}&redirect_uri={}&state=st8",
            enc(REDIRECT)
        ),
    );
    assert_eq!(r.status, 302);
    let loc = r.location();
    assert!(
        loc.contains("&hostname=eapi.pcloud.com&locationid=2"),
        "{loc}"
    );
    let c = loc
        .split("code=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("code")
        .to_string();
    let body = format!(
        "grant_type=authorization_code&code={c}&redirect_uri={}&client_id={ID}&client_secret={SECRET}",
        enc(REDIRECT)
    );
    let wrong = post(&m, "/token", &body, "");
    assert_eq!(wrong.status, 400, "the US host does not know an EU code");
    assert_eq!(m.stats().wrong_region_exchanges, 1);
    let right = post(&m, "/eu/token", &body, "");
    assert_eq!(right.status, 200, "{}", right.body);
    // Without a region: no parameters, and /token as before.
    m.set_config(Config::default());
    let plain = get(
        &m,
        &format!(
            "/authorize?response_type=code&client_id={ID}&redirect_uri={}&state=st8",
            enc(REDIRECT)
        ),
    );
    assert!(!plain.location().contains("hostname="));
}

/// The fake oauth-handler answers `/export` as main.py `export` does.
#[test]
fn fake_oauth_handler_export_answers_like_main_py() {
    let m = start();
    let authid = "0123456789abcdef0123456789abcd:a1A!b2B-c3C_d4D.e5E!f";
    m.oauth_handler_store(authid, "box.com", m.issue_grant());
    let export = |key: &str, id: Option<&str>| {
        let id = id.map(|a| format!("X-AuthID: {a}\r\n")).unwrap_or_default();
        raw(
            &m,
            &format!(
                "GET /_oauth-handler/export HTTP/1.1\r\nHost: x\r\nX-APIKey: {key}\r\n{id}\r\n"
            ),
        )
    };
    let key = mock_provider::oauth_handler::API_KEY;
    let ok = export(key, Some(authid));
    assert_eq!(ok.status, 200, "{}", ok.body);
    let v = ok.json();
    assert_eq!(v["service"], "box.com");
    assert!(v["refresh_token"].is_string() && v["expires_in"].is_number());
    for (k, id, status, reason) in [
        ("wrong-key-0123", Some(authid), 403, "Invalid API key"),
        (key, None, 400, "No authid in query"),
        (key, Some(":x"), 400, "Invalid authid in query"),
        (key, Some("v2:box.com:rt"), 400, "No v2 export possible"),
        (key, Some("ffff:a1A!b2B-c3C_d4D.e5E!f"), 404, "No such key"),
        (
            key,
            Some("0123456789abcdef0123456789abcd:a1A!b2B-c3C_d4D.e5E!g"),
            400,
            "Invalid authid password",
        ),
    ] {
        let r = export(k, id);
        assert_eq!(r.status, status, "{id:?}");
        assert_eq!(r.json()["error"], reason);
        assert!(r.head.contains(&format!("X-Reason: {reason}")));
    }
    assert_eq!(m.stats().handler_exports, 7);
}

#[test]
fn each_account_has_its_own_stable_ids_where_each_provider_names_them() {
    let m = start();
    let login_as = |account: &str| {
        let mut cfg = m.config();
        cfg.account = account.to_string();
        m.set_config(cfg);
        let c = code(&m, None);
        exchange(&m, &c, None).json()
    };
    let ask = |path: &str, at: &str| {
        raw(
            &m,
            &format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {at}\r\n\r\n"),
        )
    };
    let (a1, a2, b) = (login_as("alice"), login_as("alice"), login_as("bob"));
    // Dropbox's `account_id` in the token answer.
    assert!(a1["account_id"].as_str().unwrap().starts_with("dbid:"));
    assert_eq!(a1["account_id"], a2["account_id"]);
    assert_ne!(a1["account_id"], b["account_id"]);
    // The endpoints: Google's about, Graph's drive owner, Box's users/me.
    for (path, field) in [
        ("/drive/v3/about?fields=user", "/user/permissionId"),
        ("/v1.0/me/drive?$select=owner", "/owner/user/id"),
        ("/2.0/users/me?fields=id", "/id"),
    ] {
        let id = |t: &Value| {
            let r = ask(path, t["access_token"].as_str().unwrap());
            assert_eq!(r.status, 200, "{path}");
            r.json()
                .pointer(field)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(id(&a1), id(&a2), "{path}");
        assert_ne!(id(&a1), id(&b), "{path}");
        assert_eq!(ask(path, "nope").status, 401, "{path}");
    }
    // Off: a provider that names no account.
    let mut cfg = m.config();
    cfg.account_ids = false;
    m.set_config(cfg);
    let c = code(&m, None);
    let none = exchange(&m, &c, None).json();
    assert!(none.get("account_id").is_none());
    let at = none["access_token"].as_str().unwrap().to_string();
    assert_eq!(ask("/2.0/users/me", &at).status, 403);
}
