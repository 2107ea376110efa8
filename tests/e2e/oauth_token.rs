//! The standard OAuth 2.0 front door's token and revocation endpoints, as any
//! RFC 6749 client sees them: endpoints discovered from the RFC 8414 metadata,
//! the refresh token being the authid, client authentication by HTTP Basic
//! (RFC 6749 §2.3.1) or in the body, §5.1/§5.2 answers, RFC 7009 revocation.

use mock_provider::{Config, Rotation};

use crate::harness::{basic, discover, enc, post, Broker, Resp};

pub const TESTS: &[crate::Test] = tests![
    oauth_metadata_names_every_front_door_endpoint,
    oauth_refresh_grant_serves_a_v1_authid_as_rfc_6749_5_1_with_real_expires_in,
    oauth_token_errors_follow_rfc_6749_5_2,
    oauth_refresh_token_is_answered_only_when_a_v2_authid_changes,
    oauth_fifty_concurrent_refreshes_of_one_authid_make_one_upstream_call,
    oauth_x_oauth2_basic_then_body_probe_gets_one_answer_from_one_upstream_call,
    oauth_revocation_is_200_for_unknown_and_revoked_authids_then_invalid_grant,
];

/// A refresh_token grant for `authid` with the client id in the body.
fn refresh_body(authid: &str) -> String {
    format!(
        "grant_type=refresh_token&refresh_token={}&client_id=demo",
        enc(authid)
    )
}

/// RFC 6749 §5.1/§5.2: every answer is JSON, `no-store` and `Pragma: no-cache`.
fn assert_rfc_headers(r: &Resp, what: &str) {
    assert!(
        r.header("Content-Type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}: Content-Type {:?}",
        r.header("Content-Type")
    );
    assert_eq!(r.header("Cache-Control"), Some("no-store"), "{what}");
    assert_eq!(r.header("Pragma"), Some("no-cache"), "{what}");
}

/// Asserts an RFC 6749 §5.2 error answer.
pub(crate) fn assert_error(r: &Resp, status: u16, error: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    assert_rfc_headers(r, what);
    let v = r.json();
    assert_eq!(v["error"], error, "{what}: {}", r.body);
    assert!(
        v["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}: error_description"
    );
}

fn oauth_metadata_names_every_front_door_endpoint(b: &Broker) {
    let r = b.get("/.well-known/oauth-authorization-server");
    assert_eq!(r.status, 200);
    assert_rfc_headers(&r, "metadata");
    let v = r.json();
    println!("    metadata: {v}");
    assert_eq!(v["issuer"], b.base);
    for (k, path) in [
        ("token_endpoint", "/oauth/token"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("authorization_endpoint", "/oauth/authorize"),
        (
            "device_authorization_endpoint",
            "/oauth/device_authorization",
        ),
    ] {
        assert_eq!(v[k], format!("{}{path}", b.base), "{k}");
    }
    assert_eq!(v["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        v["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let grants = v["grant_types_supported"].to_string();
    for g in [
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        assert!(grants.contains(g), "{g} in {grants}");
    }
    let auth = v["token_endpoint_auth_methods_supported"].to_string();
    for m in ["none", "client_secret_basic", "client_secret_post"] {
        assert!(auth.contains(m), "{m} in {auth}");
    }
    // The endpoint it names answers (a bad request, not a 404).
    let e = discover(b);
    assert_eq!(post(&e.token, &[], "").status, 400);
    // rclone users try <broker>/token first (issue 12): the same endpoint.
    let alias = post(&b.url("/token"), &[], "grant_type=password");
    assert_error(&alias, 400, "unsupported_grant_type", "/token alias");
}

fn oauth_refresh_grant_serves_a_v1_authid_as_rfc_6749_5_1_with_real_expires_in(b: &Broker) {
    let e = discover(b);
    let authid = b.login();
    let first = post(&e.token, &[], &refresh_body(&authid));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_rfc_headers(&first, "refresh");
    let v = first.json();
    println!(
        "    answer keys: {:?}",
        v.as_object().map(|o| o.keys().collect::<Vec<_>>())
    );
    assert_eq!(v["token_type"], "Bearer");
    let token = v["access_token"].as_str().expect("access_token");
    assert!(b.provider_issued(token));
    assert!(
        v.get("refresh_token").is_none(),
        "a v1 authid never changes"
    );
    let left = v["expires_in"].as_i64().expect("expires_in");
    assert!((3000..=3600).contains(&left), "expires_in {left}");
    // The same token, cached: its real remaining lifetime shrinks.
    std::thread::sleep(std::time::Duration::from_secs(3));
    // Basic with an empty secret, as golang.org/x/oauth2 sends a public client.
    let again = post(
        &e.token,
        &[("Authorization", &basic("demo", ""))],
        &format!("grant_type=refresh_token&refresh_token={}", enc(&authid)),
    );
    assert_eq!(again.status, 200, "{}", again.body);
    let v2 = again.json();
    assert_eq!(v2["access_token"], token, "cached token served");
    let later = v2["expires_in"].as_i64().expect("expires_in");
    assert!(later <= left - 2, "expires_in is real: {left} then {later}");
    // Surrounding whitespace in a pasted authid is forgiven.
    let pasted = post(&e.token, &[], &refresh_body(&format!(" {authid}\n")));
    assert_eq!(pasted.status, 200, "{}", pasted.body);
}

fn oauth_token_errors_follow_rfc_6749_5_2(b: &Broker) {
    let e = discover(b);
    let unknown = format!("{}:{}", "a".repeat(32), "k".repeat(43));
    for (body, status, error) in [
        (
            "grant_type=password&username=u&password=p",
            400,
            "unsupported_grant_type",
        ),
        (
            "grant_type=client_credentials",
            400,
            "unsupported_grant_type",
        ),
        ("refresh_token=x", 400, "invalid_request"),
        ("grant_type=refresh_token", 400, "invalid_request"),
        (
            "grant_type=refresh_token&refresh_token=a&refresh_token=b",
            400,
            "invalid_request",
        ),
        (
            "grant_type=authorization_code&redirect_uri=http%3A%2F%2F127.0.0.1%2F",
            400,
            "invalid_request",
        ),
        (
            "grant_type=refresh_token&refresh_token=not-an-authid",
            400,
            "invalid_grant",
        ),
        (
            "grant_type=authorization_code&code=nope&redirect_uri=http%3A%2F%2F127.0.0.1%2F",
            400,
            "invalid_grant",
        ),
        (
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=nope",
            400,
            "invalid_grant",
        ),
    ] {
        let r = post(&e.token, &[], body);
        assert_error(&r, status, error, body);
    }
    // An unknown (well-formed) authid is permanent: 400 invalid_grant, no
    // X-AuthID challenge (that is /refresh's 401), no upstream call.
    let before = b.mock.stats().refresh_calls;
    let r = post(&e.token, &[], &refresh_body(&unknown));
    assert_error(&r, 400, "invalid_grant", "unknown authid");
    assert!(r.header("WWW-Authenticate").is_none());
    assert!(r.header("Retry-After").is_none());
    assert_eq!(b.mock.stats().refresh_calls, before);
    // A malformed Basic header is invalid_client with a Basic challenge.
    let r = post(
        &e.token,
        &[("Authorization", "Basic !!!")],
        &refresh_body(&unknown),
    );
    assert_error(&r, 401, "invalid_client", "bad Basic");
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some(r#"Basic realm="oauth-broker""#)
    );
    // Credentials by Basic and body that differ are refused.
    let r = post(
        &e.token,
        &[("Authorization", &basic("demo", "a"))],
        &format!("{}&client_secret=b", refresh_body(&unknown)),
    );
    assert_error(&r, 400, "invalid_request", "two different secrets");
    // Re-authorization needed is permanent too: 400 invalid_grant, not /refresh's 503.
    let authid = b.login_then_provider_refuses();
    let r = post(&e.token, &[], &refresh_body(&authid));
    assert_error(&r, 400, "invalid_grant", "provider said invalid_grant");
    // A provider failure is transient: 5xx temporarily_unavailable + Retry-After.
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    let authid = b.login();
    b.mock.set_config(Config {
        fail_status: Some(500),
        ..Config::default()
    });
    let r = post(&e.token, &[], &refresh_body(&authid));
    assert!(r.status >= 500, "{} {}", r.status, r.body);
    assert_error(&r, r.status, "temporarily_unavailable", "provider 500");
    assert!(r
        .header("Retry-After")
        .and_then(|s| s.parse::<u32>().ok())
        .is_some_and(|s| s > 0));
    b.mock.set_config(Config::default());
}

fn oauth_refresh_token_is_answered_only_when_a_v2_authid_changes(b: &Broker) {
    let e = discover(b);
    // Single-use rotation: every refresh rotates, so the answer names the next authid.
    let v2 = b.login_at("/login?id=demo&tokenversion=2");
    assert!(v2.starts_with("v2:"));
    let r = post(&e.token, &[], &refresh_body(&v2));
    assert_eq!(r.status, 200, "{}", r.body);
    let next = r.json()["refresh_token"]
        .as_str()
        .expect("a rotated v2 authid is answered")
        .to_string();
    b.remember(&next);
    assert!(next.starts_with("v2:") && next != v2);
    // The next one works; the spent one is permanent invalid_grant.
    let r = post(&e.token, &[], &refresh_body(&next));
    assert_eq!(r.status, 200, "{}", r.body);
    if let Some(n) = r.json()["refresh_token"].as_str() {
        b.remember(n);
    }
    let spent = post(&e.token, &[], &refresh_body(&v2));
    assert_error(&spent, 400, "invalid_grant", "spent v2 authid");
    // A provider that never rotates: the authid does not change, none is answered.
    b.mock.set_config(Config {
        rotation: Rotation::Never,
        ..Config::default()
    });
    let stable = b.login_at("/login?id=demo&tokenversion=2");
    let r = post(&e.token, &[], &refresh_body(&stable));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json().get("refresh_token").is_none(), "{}", r.body);
    b.mock.set_config(Config::default());
}

/// Like `grant_safety.rs`'s proof for /refresh, through the token endpoint, on
/// Box's grant (single-use refresh tokens).
fn oauth_fifty_concurrent_refreshes_of_one_authid_make_one_upstream_call(b: &Broker) {
    let e = discover(b);
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    let authid = b.login_at("/login?id=box.com");
    b.mock.set_config(Config {
        rotation: Rotation::SingleUse,
        ..Config::default()
    });
    b.mock.reset_stats();
    // Box's own client_id: a client configured for one provider gets only
    // that provider's tokens (tests/e2e/promise.rs).
    let body = format!(
        "grant_type=refresh_token&refresh_token={}&client_id=box.com",
        enc(&authid)
    );
    let results: Vec<Resp> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| s.spawn(|| post(&e.token, &[], &body)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    for r in results.iter().filter(|r| r.status == 200) {
        assert!(r.json().get("refresh_token").is_none());
    }
    crate::grant_safety::assert_single_flight(b, &results, "temporarily_unavailable", "");
}

/// golang.org/x/oauth2 (`internal/token.go`, `RetrieveToken`): with no auth
/// style configured it tries HTTP Basic, and on any error the same request
/// with the credentials in the body. The second attempt gets the first's
/// answer without a second provider call.
fn oauth_x_oauth2_basic_then_body_probe_gets_one_answer_from_one_upstream_call(b: &Broker) {
    let e = discover(b);
    let probe = |authid: &str| -> (Resp, Resp) {
        let form = format!("grant_type=refresh_token&refresh_token={}", enc(authid));
        let first = post(&e.token, &[("Authorization", &basic("demo", ""))], &form);
        let second = post(&e.token, &[], &format!("{form}&client_id=demo"));
        (first, second)
    };
    // A v2 authid the provider refuses: nothing stored remembers that.
    let v2 = b.login_at("/login?id=demo&tokenversion=2");
    b.mock.set_config(Config {
        invalid_grant: true,
        ..Config::default()
    });
    b.mock.reset_stats();
    let (first, second) = probe(&v2);
    assert_error(&first, 400, "invalid_grant", "Basic attempt");
    assert_error(&second, 400, "invalid_grant", "body attempt");
    assert_eq!(
        b.mock.stats().refresh_calls,
        1,
        "one failure, one upstream call"
    );
    // A v1 grant whose provider fails (5xx): the same.
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    let v1 = b.login();
    b.mock.set_config(Config {
        fail_status: Some(503),
        ..Config::default()
    });
    b.mock.reset_stats();
    let (first, second) = probe(&v1);
    assert_error(
        &first,
        first.status,
        "temporarily_unavailable",
        "Basic attempt",
    );
    assert_eq!((first.status, &first.body), (second.status, &second.body));
    assert_eq!(
        b.mock.stats().refresh_calls,
        1,
        "one failure, one upstream call"
    );
    // Once the client waits as told (Retry-After), the provider is asked again.
    b.mock.set_config(Config::default());
    let wait: u64 = first
        .header("Retry-After")
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    std::thread::sleep(std::time::Duration::from_secs(wait));
    let r = post(&e.token, &[], &refresh_body(&v1));
    assert_eq!(r.status, 200, "{}", r.body);
}

fn oauth_revocation_is_200_for_unknown_and_revoked_authids_then_invalid_grant(b: &Broker) {
    let e = discover(b);
    let authid = b.login();
    assert_eq!(post(&e.token, &[], &refresh_body(&authid)).status, 200);
    let revokes = b.mock.stats().revoke_calls;
    let r = post(
        &e.revocation,
        &[],
        &format!("token={}&token_type_hint=refresh_token", enc(&authid)),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_rfc_headers(&r, "revocation");
    assert_eq!(
        b.mock.stats().revoke_calls,
        revokes + 1,
        "revoked at the provider too"
    );
    let after = post(&e.token, &[], &refresh_body(&authid));
    assert_error(&after, 400, "invalid_grant", "revoked authid");
    // Revoked again, unknown, malformed, v2: 200 (RFC 7009 §2.2).
    let unknown = format!("{}:{}", "b".repeat(32), "k".repeat(43));
    let v2 = format!("v2:demo:{}", "r".repeat(40));
    for token in [authid.as_str(), unknown.as_str(), "garbage", v2.as_str()] {
        let r = post(&e.revocation, &[], &format!("token={}", enc(token)));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_error(
        &post(&e.revocation, &[], "token_type_hint=refresh_token"),
        400,
        "invalid_request",
        "no token",
    );
}
