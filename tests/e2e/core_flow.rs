//! The broker core end to end: login, sealed grants, refresh, revoke, and every
//! way a request can be wrong.

use std::time::{Duration, Instant};

use mock_provider::Config;
use oauth_broker::authid::{parse_authid, ParsedAuthId};
use oauth_broker::digest::sha256_hex;
use oauth_broker::seal::ServerKeys;

use crate::harness::{extract_authid, request, Broker, SEALING_SECRET};

pub const TESTS: &[crate::Test] = tests![
    refresh_answers_the_spec_shape_with_no_store,
    refresh_within_validity_is_served_from_cache_and_after_expiry_exactly_one_upstream_call,
    rotated_refresh_token_is_persisted_before_answering,
    authid_is_accepted_from_form_and_query_too,
    bad_authids_get_4xx_with_x_reason_never_5xx,
    tampered_ciphertext_fails_closed_and_grant_survives,
    row_copied_under_another_key_fails_closed,
    login_state_is_single_use,
    callback_without_or_with_another_browsers_cookie_is_refused,
    a_state_with_a_foreign_cookie_consumes_nothing,
    expired_login_state_is_refused,
    provider_access_denied_gives_a_4xx_page,
    callback_for_another_provider_is_refused,
    unknown_provider_login_is_a_404_page_not_a_redirect,
    invalid_grant_upstream_asks_the_user_to_reauthorize,
    revoke_deletes_the_grant_and_revokes_upstream,
];

pub fn key_hash(authid: &str) -> String {
    let keys = ServerKeys::parse(SEALING_SECRET, None).expect("keys");
    match parse_authid(authid).expect("authid") {
        ParsedAuthId::V1(a) => keys.key_hash(&a).to_string(),
        ParsedAuthId::V2 { .. } => panic!("v1 expected"),
    }
}

fn assert_error(r: &crate::harness::Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.body);
    assert_eq!(r.json()["error"], code);
    assert!(
        r.header("X-Reason").is_some_and(|x| !x.is_empty()),
        "X-Reason missing"
    );
}

fn refresh_answers_the_spec_shape_with_no_store(b: &Broker) {
    let authid = b.login();
    let r = b.refresh(&authid);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let v = r.json();
    assert!(v["access_token"]
        .as_str()
        .is_some_and(|t| t.starts_with("mockAT_")));
    let expires = v["expires"].as_i64().expect("integer expires");
    assert!((3500..=3600).contains(&expires), "{expires}");
    assert_eq!(v["type"], "demo");
    assert!(v.get("v2_authid").is_none());
}

fn refresh_within_validity_is_served_from_cache_and_after_expiry_exactly_one_upstream_call(
    b: &Broker,
) {
    // The broker serves a cached token while more than 60 s of it remain. A 75 s
    // token leaves about 14 s for the two cached reads right after the login (two
    // local requests: ample even on a loaded machine); then we wait until fewer
    // than 60 s remain.
    b.mock.set_config(Config {
        access_token_ttl: 75,
        ..Config::default()
    });
    let authid = b.login();
    // Taken after the login, so no earlier than when the worker stamped the
    // token's expiry: waiting from here can only overshoot (harmless).
    let logged_in = Instant::now();
    b.mock.reset_stats();
    let first = b.refresh(&authid).json();
    let second = b.refresh(&authid).json();
    assert_eq!(b.mock.stats().refresh_calls, 0, "cached token served");
    assert_eq!(first["access_token"], second["access_token"]);
    // Wait until fewer than 60 s remain on the cached token.
    let wait = Duration::from_secs(17).saturating_sub(logged_in.elapsed());
    std::thread::sleep(wait);
    b.mock.set_config(Config::default());
    let third = b.refresh(&authid);
    assert_eq!(third.status, 200);
    assert_eq!(b.mock.stats().refresh_calls, 1, "exactly one upstream call");
    assert_ne!(third.json()["access_token"], first["access_token"]);
    let fourth = b.refresh(&authid).json();
    assert_eq!(fourth["access_token"], third.json()["access_token"]);
    assert_eq!(b.mock.stats().refresh_calls, 1, "new token cached again");
}

fn rotated_refresh_token_is_persisted_before_answering(b: &Broker) {
    // Tokens that are already "expired" for the broker (<= 60 s) force upstream calls.
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    let authid = b.login();
    b.mock.reset_stats();
    for _ in 0..3 {
        let r = b.refresh(&authid);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let s = b.mock.stats();
    assert_eq!(s.refresh_calls, 3);
    assert_eq!(s.refresh_successes, 3);
    assert_eq!(
        s.spent_refresh_reuse, 0,
        "never a spent refresh token upstream"
    );
}

fn authid_is_accepted_from_form_and_query_too(b: &Broker) {
    let authid = b.login();
    let enc: String = url::form_urlencoded::byte_serialize(authid.as_bytes()).collect();
    let form = b.post_form("/refresh", &format!("authid={enc}"));
    assert_eq!(form.status, 200, "{}", form.body);
    let query = b.get(&format!("/refresh?authid={enc}"));
    assert_eq!(query.status, 200, "{}", query.body);
    assert_eq!(form.json()["access_token"], query.json()["access_token"]);
}

fn bad_authids_get_4xx_with_x_reason_never_5xx(b: &Broker) {
    let authid = b.login();
    let (keyid, secret) = authid.split_once(':').expect("v1");
    assert_error(&b.get("/refresh"), 400, "missing_authid");
    assert_error(&b.refresh("no-colon-here"), 400, "malformed_authid");
    assert_error(
        &b.refresh(&format!("{keyid}:short")),
        400,
        "malformed_authid",
    );
    // Right keyid, wrong secret: indistinguishable from unknown.
    let mut wrong = secret.to_string();
    let last = wrong.pop().expect("char");
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    assert_error(
        &b.refresh(&format!("{keyid}:{wrong}")),
        401,
        "unknown_authid",
    );
    let unknown = format!("{}:{}", "0".repeat(32), secret);
    let r = b.refresh(&unknown);
    assert_error(&r, 401, "unknown_authid");
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some(r#"X-AuthID realm="oauth-broker""#)
    );
    // The real grant still works.
    assert_eq!(b.refresh(&authid).status, 200);
}

fn tampered_ciphertext_fails_closed_and_grant_survives(b: &Broker) {
    let authid = b.login();
    let kh = key_hash(&authid);
    let row = &b.d1(&format!(
        "SELECT ciphertext FROM grants WHERE key_hash = '{kh}'"
    ))[0];
    let original = row["ciphertext"].as_str().expect("ciphertext").to_string();
    let first = original.chars().next().expect("non-empty");
    let flipped = format!("{}{}", if first == 'A' { 'B' } else { 'A' }, &original[1..]);
    b.d1(&format!(
        "UPDATE grants SET ciphertext = '{flipped}' WHERE key_hash = '{kh}'"
    ));
    assert_error(&b.refresh(&authid), 401, "unknown_authid");
    b.d1(&format!(
        "UPDATE grants SET ciphertext = substr(ciphertext, 1, 10) WHERE key_hash = '{kh}'"
    ));
    assert_error(&b.refresh(&authid), 401, "unknown_authid");
    b.d1(&format!(
        "UPDATE grants SET ciphertext = '{original}' WHERE key_hash = '{kh}'"
    ));
    assert_eq!(b.refresh(&authid).status, 200, "restored row opens again");
}

fn row_copied_under_another_key_fails_closed(b: &Broker) {
    let victim = b.login();
    let attacker = b.login();
    let (kv, ka) = (key_hash(&victim), key_hash(&attacker));
    let saved = &b.d1(&format!(
        "SELECT nonce, ciphertext FROM grants WHERE key_hash = '{ka}'"
    ))[0];
    let (nonce, ct) = (
        saved["nonce"].as_str().expect("nonce").to_string(),
        saved["ciphertext"].as_str().expect("ct").to_string(),
    );
    b.d1(&format!(
        "UPDATE grants SET (nonce, ciphertext) = (SELECT nonce, ciphertext FROM grants WHERE key_hash = '{kv}') WHERE key_hash = '{ka}'"
    ));
    assert_error(&b.refresh(&attacker), 401, "unknown_authid");
    b.d1(&format!(
        "UPDATE grants SET nonce = '{nonce}', ciphertext = '{ct}' WHERE key_hash = '{ka}'"
    ));
    assert_eq!(b.refresh(&attacker).status, 200);
    assert_eq!(b.refresh(&victim).status, 200);
}

fn login_state_is_single_use(b: &Broker) {
    let (callback, cookie) = b.start_login_to_callback();
    let first = request("GET", &callback, &[("Cookie", &cookie)], None);
    assert_eq!(first.status, 200);
    b.remember(&extract_authid(&first.body).expect("authid"));
    let replay = request("GET", &callback, &[("Cookie", &cookie)], None);
    assert_eq!(replay.status, 400);
    assert!(replay
        .header("Content-Type")
        .unwrap_or("")
        .starts_with("text/html"));
    assert!(extract_authid(&replay.body).is_none());
    assert_eq!(
        b.mock.stats().code_reuse,
        0,
        "a replayed code never reaches the provider"
    );
}

fn callback_without_or_with_another_browsers_cookie_is_refused(b: &Broker) {
    let (callback, _) = b.start_login_to_callback();
    let none = request("GET", &callback, &[], None);
    assert_eq!(none.status, 400);
    assert_eq!(none.header("X-Error-Code"), Some("invalid_state"));
    let (callback, _) = b.start_login_to_callback();
    let (_, other_cookie) = b.start_login_to_callback();
    let wrong = request("GET", &callback, &[("Cookie", &other_cookie)], None);
    assert_eq!(wrong.status, 400);
    assert!(extract_authid(&wrong.body).is_none());
}

/// Issue 7: a callback carrying the right state but not the browser's own
/// cookie (none, or another browser's) is refused *and consumes nothing*, so
/// whoever learned a state cannot cancel the user's login; the user's own
/// callback then still succeeds, once.
fn a_state_with_a_foreign_cookie_consumes_nothing(b: &Broker) {
    let (callback, cookie) = b.start_login_to_callback();
    let (_, other_cookie) = b.start_login_to_callback();
    let exchanges = b.mock.stats().code_exchanges;
    for (what, headers) in [
        (
            "another browser's cookie",
            vec![("Cookie", other_cookie.as_str())],
        ),
        ("no cookie", vec![]),
    ] {
        let r = request("GET", &callback, &headers, None);
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(r.header("X-Error-Code"), Some("invalid_state"), "{what}");
        assert!(extract_authid(&r.body).is_none());
    }
    assert_eq!(
        b.mock.stats().code_exchanges,
        exchanges,
        "no code was spent"
    );
    let h = sha256_hex(&state_of(&callback));
    let rows = b.d1(&format!(
        "SELECT COUNT(*) AS n FROM login_states WHERE state_hash = '{h}'"
    ));
    assert_eq!(rows[0]["n"].as_i64(), Some(1), "the login is still pending");
    let mine = request("GET", &callback, &[("Cookie", &cookie)], None);
    assert_eq!(mine.status, 200, "{}", mine.body);
    b.remember(&extract_authid(&mine.body).expect("authid"));
    let replay = request("GET", &callback, &[("Cookie", &cookie)], None);
    assert_eq!(replay.status, 400, "and it is consumed now");
}

fn state_of(callback: &str) -> String {
    url::Url::parse(callback)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state")
}

fn expired_login_state_is_refused(b: &Broker) {
    let (callback, cookie) = b.start_login_to_callback();
    let h = sha256_hex(&state_of(&callback));
    b.d1(&format!(
        "UPDATE login_states SET expires_at = 1 WHERE state_hash = '{h}'"
    ));
    let r = request("GET", &callback, &[("Cookie", &cookie)], None);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("X-Error-Code"), Some("invalid_state"));
}

fn provider_access_denied_gives_a_4xx_page(b: &Broker) {
    b.mock.set_config(Config {
        deny: true,
        ..Config::default()
    });
    let (callback, cookie) = b.start_login_to_callback();
    assert!(callback.contains("error=access_denied"));
    let r = request("GET", &callback, &[("Cookie", &cookie)], None);
    assert_eq!(r.status, 403);
    assert_eq!(r.header("X-Error-Code"), Some("access_denied"));
    assert!(r.body.contains("not granted"));
}

fn callback_for_another_provider_is_refused(b: &Broker) {
    let (callback, cookie) = b.start_login_to_callback();
    let moved = callback.replace("/callback/demo", "/callback/box.com");
    let r = request("GET", &moved, &[("Cookie", &cookie)], None);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("X-Error-Code"), Some("invalid_state"));
}

fn unknown_provider_login_is_a_404_page_not_a_redirect(b: &Broker) {
    for id in ["nope", "googledrive", "%3Cscript%3E"] {
        let r = b.get(&format!("/login?id={id}"));
        assert_eq!(r.status, 404, "{id}");
        assert!(r.header("Location").is_none());
        assert!(!r.body.contains("<script>"));
    }
}

fn invalid_grant_upstream_asks_the_user_to_reauthorize(b: &Broker) {
    let authid = b.login_then_provider_refuses();
    let r = b.refresh(&authid);
    assert_error(&r, 503, "reauthorization_required");
    assert!(r.header("X-Reason").unwrap_or("").contains(&b.base));
}

fn revoke_deletes_the_grant_and_revokes_upstream(b: &Broker) {
    let authid = b.login();
    assert_eq!(b.refresh(&authid).status, 200);
    let form = b.get("/revoke");
    assert_eq!(form.status, 200);
    assert!(form.body.contains("action=\"/revoked\""));
    b.mock.reset_stats();
    let enc: String = url::form_urlencoded::byte_serialize(authid.as_bytes()).collect();
    let r = b.post_form("/revoked", &format!("authid={enc}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("provider confirmed"));
    assert_eq!(b.mock.stats().revoke_calls, 1);
    assert_error(&b.refresh(&authid), 401, "unknown_authid");
    let again = b.post_form("/revoked", &format!("authid={enc}"));
    assert_eq!(again.status, 401);
}
