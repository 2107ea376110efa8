//! Akeeba Backup's "Custom" OAuth2 helper door (`oauth_broker::akeeba`), met
//! the way Akeeba Engine's connectors meet it. Each refresh below is the
//! connector's request replayed byte for byte over a raw socket, as PHP's cURL
//! sends it (`GET <target> HTTP/1.1`, `Host`, `Accept: */*`, then the
//! connector's headers), from the public copies of
//! `Postproc/Connector/{Dropbox2,Box,GoogleDrive,OneDrive,OneDriveBusiness}.php`:
//! - the URL: `OneDriveBusiness.php` `getRefreshUrl()`:
//!   `$this->refreshUrl . (strpos($this->refreshUrl, '?') === false ? '?' : '&')
//!   . 'refresh_token=' . urlencode($this->refreshToken)`;
//! - Box's `fetch()`: `$url = $baseUrl . ltrim($relativeUrl, '/')`, the refresh
//!   URL doubled into the request target (issue 14);
//! - headers: `'Authorization: Bearer ' . $this->accessToken` (Dropbox2,
//!   GoogleDrive, Box), `'Authorization: bearer '` (OneDrive, OneDriveBusiness's
//!   parent), and Dropbox2's `'Dropbox-API-Path-Root: ' . '{".tag": "home"}'`.
//!
//! [`akeeba_reads`] is what the connectors do with the answer (see its comment).

use std::net::SocketAddr;
use std::time::Duration;

use mock_provider::{Config, Rotation};
use serde_json::{json, Value};

use crate::browser::Driver;
use crate::harness::{
    mock_account, raw_exchange, Broker, Jar, Options, Resp, CLIENT_ID, CLIENT_SECRET,
};

pub const TESTS: &[crate::Test] = tests![
    akeeba_every_engine_logs_in_shows_both_tokens_and_each_connector_refreshes,
    akeeba_box_twenty_refreshes_in_a_row_and_twenty_at_once_never_reuse_a_spent_token,
    akeeba_failures_are_errors_to_every_connector,
    akeeba_raw_provider_token_is_passed_through_and_the_rotated_one_returned,
];

const KEY: &str = "akeeba-key-1";

/// The four engines, as Akeeba names them.
const ENGINES: [&str; 4] = ["dropbox", "box", "googledrive", "onedrivebusiness"];

/// PHP's `urlencode()`: `[A-Za-z0-9_.-]` as is, space as `+`, the rest `%XX`.
fn php_urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The connector's refresh request for `engine`, as bytes on the wire, when
/// the profile's Refresh URL is `http://<host><refresh_path>` and it holds
/// `refresh_token` and `access_token`.
pub(crate) fn connector_request(
    engine: &str,
    host: &str,
    refresh_path: &str,
    refresh_token: &str,
    access_token: &str,
) -> Vec<u8> {
    let refresh_url = format!("http://{host}{refresh_path}");
    let glue = if refresh_url.contains('?') { '&' } else { '?' };
    let full = format!(
        "{refresh_url}{glue}refresh_token={}",
        php_urlencode(refresh_token)
    );
    let target = match engine {
        // Box.php fetch(): `$baseUrl . ltrim($relativeUrl, '/')` — the path of
        // the refresh URL, then the whole refresh URL with its query.
        "box" => format!("{}{full}", refresh_path.split('?').next().unwrap_or("")),
        _ => full[format!("http://{host}").len()..].to_string(),
    };
    let headers = match engine {
        "dropbox" => format!(
            "Authorization: Bearer {access_token}\r\nDropbox-API-Path-Root: {{\".tag\": \"home\"}}\r\n"
        ),
        "onedrivebusiness" => format!("Authorization: bearer {access_token}\r\n"),
        _ => format!("Authorization: Bearer {access_token}\r\n"),
    };
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n{headers}\r\n").into_bytes()
}

/// What the connector makes of the answer: `Ok((access, refresh))` where it
/// goes on with those tokens, `Err(message)` where it throws.
/// - Box.php `fetch()` throws `UnexpectedHTTPStatus` on `$lastHttpCode >= 400`,
///   then `InvalidJSON` on `!$response`, then wraps a non-empty body at a status
///   above 201 as an error, and throws on an `error` array.
/// - Dropbox2/GoogleDrive/OneDrive `fetch()` ignore the status, throw on
///   `!$response`, on an `error` array (`code`, `message`) and on
///   `isset($response['error'])` (PHP: set and not null).
/// - Then `refreshToken()`: `$refreshResponse['refresh_token'] ?? $this->refreshToken`,
///   the same for the access token.
pub(crate) fn akeeba_reads(
    engine: &str,
    r: &Resp,
    old: (&str, &str),
) -> Result<(String, String), String> {
    if engine == "box" && r.status >= 400 {
        return Err(format!("Unexpected HTTP status {}", r.status));
    }
    let v: Value = serde_json::from_str(&r.body).map_err(|_| "Invalid JSON".to_string())?;
    if v.as_object().is_none_or(|o| o.is_empty()) {
        return Err("Invalid JSON".into());
    }
    if engine == "box" && r.status > 201 {
        return Err(format!("APIError {}", r.body));
    }
    if v["error"].is_object() || (engine != "box" && !v["error"].is_null()) {
        return Err(format!(
            "Error {}: {}",
            v["error"],
            v["error_description"]
                .as_str()
                .unwrap_or("No error description provided")
        ));
    }
    let pick = |k: &str, old: &str| v[k].as_str().unwrap_or(old).to_string();
    Ok((pick("access_token", old.0), pick("refresh_token", old.1)))
}

fn addr(b: &Broker) -> (SocketAddr, String) {
    let host = b.base.trim_start_matches("http://").to_string();
    (host.parse().expect("broker address"), host)
}

/// Sends a connector's request; the broker must answer within a minute.
pub(crate) fn replay(b: &Broker, bytes: &[u8]) -> Resp {
    raw_exchange(addr(b).0, bytes, false, Duration::from_secs(60)).expect("an answer")
}

/// The value of the read-only field (a `<textarea>`) with `id` on a page.
pub(crate) fn input_value(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[start..];
    let v = rest.find('>')? + 1;
    let end = rest[v..].find("</textarea>")? + v;
    Some(
        rest[v..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

fn is_v1_authid(s: &str) -> bool {
    matches!(
        oauth_broker::authid::parse_authid(s),
        Ok(oauth_broker::authid::ParsedAuthId::V1(_))
    )
}

/// A broker behind the gate with every engine's provider pointed at the mock.
fn every_engine_broker(b: &Broker) -> Broker {
    let entry = |id: &str| {
        let account = match id {
            "dropbox" => String::new(),
            other => format!(",{}", mock_account(other)),
        };
        format!(
            r#"{{"id":"{id}","authorize_url":"{{m}}/authorize","token_url":"{{m}}/token","client_id":"{CLIENT_ID}"{account}}}"#
        )
    };
    Broker::start_with(
        &b.mock,
        Options {
            extra_providers: vec![entry("dropbox"), entry("googledrive"), entry("onedrivev2")],
            extra_vars: vec![
                ("ACCESS_KEYS".into(), KEY.into()),
                ("CLIENT_SECRET_DROPBOX".into(), CLIENT_SECRET.into()),
                ("CLIENT_SECRET_GOOGLEDRIVE".into(), CLIENT_SECRET.into()),
                ("CLIENT_SECRET_ONEDRIVEV2".into(), CLIENT_SECRET.into()),
            ],
            ..Options::default()
        },
    )
}

fn assert_no_store(r: &Resp, what: &str) {
    assert_eq!(r.header("Cache-Control"), Some("no-store"), "{what}");
}

fn akeeba_every_engine_logs_in_shows_both_tokens_and_each_connector_refreshes(b: &Broker) {
    let g = every_engine_broker(b);
    let (_, host) = addr(&g);
    let driver = Driver::start(&g.dir);
    for engine in ENGINES {
        // The Helper URL, in a real browser: both tokens shown, each copyable.
        driver.call(
            "POST",
            "/url",
            Some(json!({"url": g.url(&format!("/k/{KEY}/akeeba/{engine}"))})),
        );
        driver.wait_for_url("/callback/");
        let at = driver.value("#access-token");
        let rt = driver.value("#refresh-token");
        g.remember(&rt);
        assert!(
            g.provider_issued(&at),
            "{engine}: the access token is the provider's"
        );
        assert!(
            is_v1_authid(&rt),
            "{engine}: the refresh token is a stored authid"
        );
        driver.click("#copy-access-token");
        driver.click("#copy-refresh-token");
        for button in ["#copy-access-token", "#copy-refresh-token"] {
            let mut copied = false;
            for _ in 0..100 {
                if driver.text(button) == "Copied" {
                    copied = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(copied, "{engine}: {button} copies");
        }
        // The same page without a browser: its headers.
        let mut jar = Jar::default();
        let (page, _) = g.login_in(&mut jar, &format!("/k/{KEY}/akeeba/{engine}"));
        assert_eq!(page.status, 200, "{engine}: {}", page.body);
        assert_no_store(&page, engine);
        let at2 = input_value(&page.body, "access-token").expect("access token");
        let rt2 = input_value(&page.body, "refresh-token").expect("refresh token");
        g.remember(&rt2);
        assert!(is_v1_authid(&rt2) && rt2 != rt && at2 != at);
        assert!(page.body.contains(&format!("/akeeba/{engine}/refresh")));

        // The connector's refresh, with the key in the Refresh URL's path.
        let path = format!("/k/{KEY}/akeeba/{engine}/refresh");
        let r = replay(&g, &connector_request(engine, &host, &path, &rt, &at));
        assert_eq!(r.status, 200, "{engine}: {}", r.body);
        assert_no_store(&r, engine);
        let (cached_at, next_rt) = akeeba_reads(engine, &r, (&at, &rt)).expect("success");
        assert_eq!(
            cached_at, at,
            "{engine}: a fresh token is served from the cache"
        );
        assert!(
            is_v1_authid(&next_rt) && next_rt != rt,
            "{engine}: every answer hands the profile a new authid"
        );
        g.remember(&next_rt);
        let rt = next_rt;
        // Expired: a real refresh upstream (the mock rotates single-use tokens).
        g.expire_access_token(&rt);
        let r = replay(&g, &connector_request(engine, &host, &path, &rt, &at));
        let (new_at, new_rt) = akeeba_reads(engine, &r, (&at, &rt)).expect("success");
        assert_ne!(new_at, at, "{engine}: a new access token");
        assert!(g.provider_issued(&new_at));
        assert!(
            is_v1_authid(&new_rt) && new_rt != rt,
            "{engine}: and a new authid"
        );
        g.remember(&new_rt);
        let rt = new_rt;

        // `?key=` works for the connectors that append with `&` (not Box:
        // its doubled target would glue the URL onto the key's value).
        if engine != "box" {
            let path = format!("/akeeba/{engine}/refresh?key={KEY}");
            let r = replay(&g, &connector_request(engine, &host, &path, &rt, &at));
            assert_eq!(r.status, 200, "{engine} with ?key=: {}", r.body);
        }
        // No key: refused, and every connector sees an error.
        let path = format!("/akeeba/{engine}/refresh");
        let r = replay(&g, &connector_request(engine, &host, &path, &rt, &at));
        assert_eq!(r.status, 403, "{engine}: {}", r.body);
        assert!(akeeba_reads(engine, &r, (&at, &rt)).is_err());
    }
    assert_eq!(g.mock.stats().spent_refresh_reuse, 0);
    // Neither the refresh tokens in the query nor the old access tokens the
    // connectors sent as a bearer are anywhere in the worker's log.
    let log = g.log_text();
    assert!(
        log.contains("/akeeba/box/refresh"),
        "the log saw the requests"
    );
    let stats = g.mock.stats();
    let authids = g.authids.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for s in authids
        .iter()
        .chain(&stats.issued_access_tokens)
        .chain(&stats.issued_refresh_tokens)
    {
        assert!(!log.contains(s.as_str()), "the worker log holds a secret");
    }
}

/// A Box grant made through the helper, whose access tokens the broker always
/// considers expired (30 s), so every refresh goes upstream.
fn box_grant(b: &Broker) -> (String, String) {
    b.mock.set_config(Config {
        access_token_ttl: 30,
        rotation: Rotation::SingleUse,
        ..Config::default()
    });
    let mut jar = Jar::default();
    let (page, _) = b.login_in(&mut jar, "/akeeba/box");
    assert_eq!(page.status, 200, "{}", page.body);
    let at = input_value(&page.body, "access-token").expect("access token");
    let rt = input_value(&page.body, "refresh-token").expect("refresh token");
    b.remember(&rt);
    (at, rt)
}

fn akeeba_box_twenty_refreshes_in_a_row_and_twenty_at_once_never_reuse_a_spent_token(b: &Broker) {
    let (_, host) = addr(b);
    let (mut at, mut rt) = box_grant(b);
    b.mock.reset_stats();
    // As Akeeba's connector does: it keeps the refresh token each answer returns.
    for i in 0..20 {
        let r = replay(
            b,
            &connector_request("box", &host, "/akeeba/box/refresh", &rt, &at),
        );
        let (next_at, next_rt) =
            akeeba_reads("box", &r, (&at, &rt)).unwrap_or_else(|e| panic!("refresh {i}: {e}"));
        assert!(
            next_rt != rt && is_v1_authid(&next_rt),
            "refresh {i}: a successor"
        );
        assert_ne!(next_at, at, "refresh {i} went upstream");
        b.remember(&next_rt);
        at = next_at;
        rt = next_rt;
    }
    let s = b.mock.stats();
    assert_eq!(s.refresh_successes, 20, "one upstream refresh each");
    assert_eq!(s.spent_refresh_reuse, 0, "no spent token presented");

    b.mock.reset_stats();
    let answers: Vec<Resp> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let (rt, at) = (&rt, &at);
                let host = &host;
                scope.spawn(move || {
                    replay(
                        b,
                        &connector_request("box", host, "/akeeba/box/refresh", rt, at),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    for r in &answers {
        let (a, r2) = akeeba_reads("box", r, (&at, &rt)).expect("every one succeeds");
        assert!(is_v1_authid(&r2), "an authid to keep");
        b.remember(&r2);
        assert!(b.provider_issued(&a));
    }
    let s = b.mock.stats();
    assert!(s.refresh_successes >= 1, "went upstream");
    assert_eq!(
        s.spent_refresh_reuse, 0,
        "no spent token presented at once either"
    );
    // Still usable afterwards.
    let r = replay(
        b,
        &connector_request("box", &host, "/akeeba/box/refresh", &rt, &at),
    );
    assert!(akeeba_reads("box", &r, (&at, &rt)).is_ok(), "{}", r.body);
}

fn akeeba_failures_are_errors_to_every_connector(b: &Broker) {
    let (_, host) = addr(b);
    let (at, rt) = box_grant(b);
    let path = "/akeeba/box/refresh";
    let expect_error = |r: &Resp, code: &str, status: u16| {
        assert_eq!(r.status, status, "{code}: {}", r.body);
        assert_no_store(r, code);
        assert_eq!(r.json()["error"], code);
        assert!(r.json()["error_description"].is_string());
        for engine in ENGINES {
            let seen = akeeba_reads(engine, r, (&at, &rt));
            assert!(seen.is_err(), "{engine} reads {code} as an error: {seen:?}");
        }
    };
    // Provider down.
    b.mock.set_config(Config {
        access_token_ttl: 30,
        fail_status: Some(500),
        ..Config::default()
    });
    let r = replay(b, &connector_request("box", &host, path, &rt, &at));
    expect_error(&r, "provider_error", 502);
    // The grant survived: the provider back, the refresh works.
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    let r = replay(b, &connector_request("box", &host, path, &rt, &at));
    assert!(akeeba_reads("box", &r, (&at, &rt)).is_ok(), "{}", r.body);
    // Unknown authid (well-formed, never issued).
    let unknown = "0123456789abcdef0123456789abcdef:AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcde";
    let r = replay(
        b,
        &connector_request("dropbox", &host, "/akeeba/dropbox/refresh", unknown, &at),
    );
    expect_error(&r, "unknown_authid", 401);
    // A Box authid in a Dropbox profile.
    let r = replay(
        b,
        &connector_request("dropbox", &host, "/akeeba/dropbox/refresh", &rt, &at),
    );
    expect_error(&r, "engine_mismatch", 400);
    // No refresh token; an unknown engine.
    let r = replay(
        b,
        format!("GET /akeeba/box/refresh HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n")
            .as_bytes(),
    );
    expect_error(&r, "missing_refresh_token", 400);
    let r = replay(
        b,
        &connector_request("box", &host, "/akeeba/s3/refresh", &rt, &at),
    );
    expect_error(&r, "unknown_engine", 400);
    // invalid_grant: the user must log in again.
    b.mock.set_config(Config {
        access_token_ttl: 30,
        invalid_grant: true,
        ..Config::default()
    });
    let r = replay(
        b,
        &connector_request(
            "googledrive",
            &host,
            "/akeeba/googledrive/refresh",
            &rt,
            &at,
        ),
    );
    expect_error(&r, "reauthorization_required", 503);
}

fn akeeba_raw_provider_token_is_passed_through_and_the_rotated_one_returned(b: &Broker) {
    let (_, host) = addr(b);
    // A raw Box refresh token, as another helper would have handed it out.
    b.mock.reset_stats();
    let v2 = b.login_at("/login?id=box&tokenversion=2");
    assert!(v2.starts_with("v2:"));
    let mut raw = b
        .mock
        .stats()
        .issued_refresh_tokens
        .last()
        .cloned()
        .expect("a refresh token");
    let mut at = "old-access-token".to_string();
    b.mock.reset_stats();
    for i in 0..20 {
        let r = replay(
            b,
            &connector_request("box", &host, "/akeeba/box/refresh", &raw, &at),
        );
        let (next_at, next_rt) =
            akeeba_reads("box", &r, (&at, &raw)).unwrap_or_else(|e| panic!("refresh {i}: {e}"));
        assert_ne!(next_rt, raw, "refresh {i}: the rotated token comes back");
        assert_eq!(
            b.mock.stats().issued_refresh_tokens.last(),
            Some(&next_rt),
            "the newest one"
        );
        (at, raw) = (next_at, next_rt);
    }
    let s = b.mock.stats();
    assert_eq!(s.refresh_successes, 20);
    assert_eq!(s.spent_refresh_reuse, 0);
    // A token the provider refuses is an error to the connector.
    b.mock.set_config(Config {
        invalid_grant: true,
        ..Config::default()
    });
    let r = replay(
        b,
        &connector_request("box", &host, "/akeeba/box/refresh", &raw, &at),
    );
    assert!(r.status >= 400 && akeeba_reads("box", &r, (&at, &raw)).is_err());
    assert!(r.json()["error"].is_string());
}
