//! The OAuth 2.0 authorization endpoint for native apps (RFC 6749 §4.1,
//! RFC 8252) against the real worker: loopback redirects with a code and the
//! client's state, error pages (never a redirect) for a bad client or
//! redirect URI, `error=` redirects after validation, and codes redeemed at
//! the token endpoint (discovered through RFC 8414 metadata): single use,
//! short-lived, bound to client, redirect_uri and PKCE challenge.

use std::io::Write;
use std::process::{Command, Stdio};

use oauth_broker::digest::sha256_hex;
use serde_json::{json, Value};

use crate::harness::{
    enc, metadata, param, query_of, refresh_at_token_endpoint, request, through_login, token_post,
    Broker, Jar, Resp, LOOPBACK,
};

pub const TESTS: &[crate::Test] = tests![
    authorize_redirects_to_the_loopback_client_with_a_code_and_its_state_verbatim,
    authorize_with_a_bad_client_or_redirect_uri_is_an_error_page_never_a_redirect,
    authorize_errors_after_validation_go_back_to_the_client_with_its_state,
    code_grant_redeems_once_for_an_authid_that_refreshes,
    code_grant_refuses_wrong_redirect_uri_client_id_and_a_replayed_code,
    code_grant_enforces_the_pkce_challenge_the_client_sent,
    code_grant_refuses_an_expired_code,
    authorization_responses_carry_the_issuer_and_the_metadata_says_so,
];

/// RFC 7636 Appendix B (as in `src/pkce.rs`'s test).
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// `/oauth/authorize` for `demo` with `extra` query, through the login: the
/// callback's answer (a 302 to the client).
pub fn authorize(b: &Broker, extra: &str) -> Resp {
    let mut jar = Jar::default();
    through_login(
        b,
        &mut jar,
        &format!(
            "/oauth/authorize?response_type=code&client_id=demo&redirect_uri={}{extra}",
            enc(LOOPBACK)
        ),
    )
}

/// A fresh code for `demo` (with `extra` query); remembered for the leak scans.
fn code_for(b: &Broker, extra: &str) -> String {
    let r = authorize(b, extra);
    assert_eq!(r.status, 302, "callback: {}", r.body);
    let to = r.header("Location").expect("Location").to_string();
    assert!(to.starts_with("http://127.0.0.1:53682/cb?x=1&"), "{to}");
    let code = param(&query_of(&to), "code").expect("code").to_string();
    b.remember(&code);
    code
}

fn redeem(b: &Broker, code: &str, extra: &str) -> Resp {
    token_post(
        b,
        &format!(
            "grant_type=authorization_code&code={}&client_id=demo&redirect_uri={}{extra}",
            enc(code),
            enc(LOOPBACK)
        ),
    )
}

fn assert_invalid_grant(r: &Resp, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant", "{what}");
    assert!(r.header("Location").is_none());
}

fn authorize_redirects_to_the_loopback_client_with_a_code_and_its_state_verbatim(b: &Broker) {
    let state = "st ate/&=é+%-x";
    let mut jar = Jar::default();
    let path = format!(
        "/oauth/authorize?response_type=code&client_id=demo&redirect_uri={}&state={}",
        enc(LOOPBACK),
        enc(state)
    );
    // While the login runs, D1 holds the state only sealed.
    let start = b.get_in(&mut jar, &path);
    assert_eq!(start.status, 302);
    let rows = b.d1("SELECT ending FROM login_states WHERE ending LIKE '%authorize%'");
    let endings = rows.to_string();
    assert!(endings.contains("127.0.0.1:53682"), "{endings}");
    assert!(!endings.contains("st ate") && !endings.contains(&enc(state)));
    let authorize = start.header("Location").expect("Location");
    let consent = request("GET", authorize, &[], None);
    let callback = consent.header("Location").expect("callback").to_string();
    let path = callback.strip_prefix(&b.base).expect("broker");
    // Another browser (without the binding cookie) gets nowhere...
    let r = b.get_in(&mut Jar::default(), path);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.header("Location").is_none());
    // ...the one that started it gets the code and the state back.
    let r = b.get_in(&mut jar, path);
    assert_eq!(r.status, 302, "{}", r.body);
    let to = r.header("Location").expect("Location");
    assert!(
        to.starts_with("http://127.0.0.1:53682/cb?x=1&code="),
        "{to}"
    );
    let q = query_of(to);
    assert_eq!(param(&q, "state"), Some(state));
    assert_eq!(param(&q, "x"), Some("1"), "the client's own query is kept");
    let code = param(&q, "code").expect("code");
    b.remember(code);
    b.remember(state);
    assert!(code.len() >= 43, "at least 256 bits");
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    // Stored only hashed, bound to client and redirect URI, ≤ 60 s.
    let h = sha256_hex(&format!("oauth-broker/v1/authorization-code|{code}"));
    let row = b.d1(&format!(
        "SELECT provider, redirect_uri, code_challenge, expires_at FROM authorization_codes \
         WHERE code_hash = '{h}'"
    ));
    assert_eq!(row[0]["provider"], "demo", "{row}");
    assert_eq!(row[0]["redirect_uri"], LOOPBACK);
    assert!(row[0]["code_challenge"].is_null());
    let left = row[0]["expires_at"].as_i64().expect("expiry") - unix_now();
    assert!((0..=60).contains(&left), "expires within 60 s ({left})");
    // Every loopback form is accepted: [::1] and localhost, any port.
    for uri in ["http://[::1]:1234/", "http://localhost:9/x"] {
        let r = b.get(&format!(
            "/oauth/authorize?response_type=code&client_id=demo&redirect_uri={}",
            enc(uri)
        ));
        assert_eq!(r.status, 302, "{uri}: {}", r.body);
        assert!(r
            .header("Location")
            .unwrap_or_default()
            .starts_with(&b.mock.base_url()));
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn authorize_with_a_bad_client_or_redirect_uri_is_an_error_page_never_a_redirect(b: &Broker) {
    let cases = [
        // Not loopback.
        (
            "client_id=demo&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
            400,
            "invalid_redirect_uri",
        ),
        (
            "client_id=demo&redirect_uri=http%3A%2F%2Fevil.example%3A53682%2F",
            400,
            "invalid_redirect_uri",
        ),
        (
            "client_id=demo&redirect_uri=http%3A%2F%2F127.0.0.1.evil.example%2F",
            400,
            "invalid_redirect_uri",
        ),
        (
            "client_id=demo&redirect_uri=http%3A%2F%2Flocalhost%40evil.example%2F",
            400,
            "invalid_redirect_uri",
        ),
        ("client_id=demo", 400, "invalid_request"),
        // Unknown client_id, with a valid redirect URI: still no redirect.
        (
            "client_id=nope&redirect_uri=http%3A%2F%2F127.0.0.1%3A53682%2F",
            404,
            "unknown_provider",
        ),
        (
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A53682%2F",
            400,
            "invalid_request",
        ),
    ];
    for (q, status, code) in cases {
        let r = b.get(&format!("/oauth/authorize?response_type=code&state=s&{q}"));
        assert_eq!(r.status, status, "{q}: {}", r.body);
        assert_eq!(r.header("X-Error-Code"), Some(code), "{q}");
        assert!(r.header("Location").is_none(), "{q}: never a redirect");
        assert!(r
            .header("Content-Type")
            .unwrap_or_default()
            .starts_with("text/html"));
        assert!(
            !r.body.contains("evil.example"),
            "{q}: the URI is not echoed"
        );
    }
}

fn authorize_errors_after_validation_go_back_to_the_client_with_its_state(b: &Broker) {
    let base = format!(
        "/oauth/authorize?client_id=demo&redirect_uri={}&state=abc",
        enc(LOOPBACK)
    );
    for (extra, error) in [
        ("&response_type=token", "unsupported_response_type"),
        ("", "invalid_request"),
        (
            &format!("&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=plain")
                [..],
            "invalid_request",
        ),
        (
            "&response_type=code&code_challenge=short&code_challenge_method=S256",
            "invalid_request",
        ),
        // Jottacloud has no browser login: not a client of this grant.
        ("&response_type=code&jotta", "unauthorized_client"),
    ] {
        let path = match extra.strip_suffix("&jotta") {
            Some(e) => base.replace("client_id=demo", "client_id=jottacloud") + e,
            None => format!("{base}{extra}"),
        };
        let r = b.get(&path);
        assert_eq!(r.status, 302, "{extra}: {}", r.body);
        let to = r.header("Location").expect("Location");
        assert!(to.starts_with("http://127.0.0.1:53682/cb?x=1&"), "{to}");
        let q = query_of(to);
        assert_eq!(param(&q, "error"), Some(error), "{extra}");
        assert_eq!(param(&q, "state"), Some("abc"));
        assert!(param(&q, "code").is_none());
    }
    // The provider refuses: access_denied at the client, with its state.
    b.mock.set_config(mock_provider::Config {
        deny: true,
        ..mock_provider::Config::default()
    });
    let r = authorize(b, "&state=xyz");
    assert_eq!(r.status, 302, "{}", r.body);
    let q = query_of(r.header("Location").expect("Location"));
    assert_eq!(param(&q, "error"), Some("access_denied"));
    assert_eq!(param(&q, "state"), Some("xyz"));
    assert!(param(&q, "code").is_none());
}

fn code_grant_redeems_once_for_an_authid_that_refreshes(b: &Broker) {
    let code = code_for(b, "&state=s1");
    let r = redeem(b, &code, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    let v = r.json();
    assert_eq!(
        v["token_type"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("bearer")
    );
    assert!(v["access_token"]
        .as_str()
        .is_some_and(|t| t.starts_with("mockAT_")));
    let expires_in = v["expires_in"].as_i64().expect("expires_in");
    assert!((3000..=3600).contains(&expires_in), "{expires_in}");
    let authid = b.remember_refresh_token(&v);
    assert!(
        authid.contains(':') && !authid.starts_with("v2:"),
        "a stored v1 authid"
    );
    // The authid works on the broker's own refresh and at the token endpoint.
    assert_eq!(b.refresh(&authid).status, 200);
    let again = refresh_at_token_endpoint(b, &authid);
    assert_eq!(again.status, 200, "{}", again.body);
    // Single use: a replay is refused, and what the code granted is revoked
    // (RFC 6749 §4.1.2), since someone else has seen the code.
    let replay = redeem(b, &code, "");
    assert_invalid_grant(&replay, "replayed code");
    assert!(replay.json()["error_description"]
        .as_str()
        .unwrap_or_default()
        .contains("revoked"));
    assert_eq!(
        refresh_at_token_endpoint(b, &authid).json()["error"],
        "invalid_grant",
        "the authid from the replayed code no longer refreshes"
    );
    assert_eq!(b.refresh(&authid).status, 401);
}

fn code_grant_refuses_wrong_redirect_uri_client_id_and_a_replayed_code(b: &Broker) {
    // A refused presentation spends nothing (RFC 6749 §4.1.2 counts a use):
    // the client that made the mistake can still redeem it (tests/e2e/promise.rs).
    let code = code_for(b, "");
    let other_uri = token_post(
        b,
        &format!(
            "grant_type=authorization_code&code={}&client_id=demo&redirect_uri={}",
            enc(&code),
            enc("http://127.0.0.1:53682/other")
        ),
    );
    assert_invalid_grant(&other_uri, "wrong redirect_uri");

    let code = code_for(b, "");
    let other_client = token_post(
        b,
        &format!(
            "grant_type=authorization_code&code={}&client_id=box.com&redirect_uri={}",
            enc(&code),
            enc(LOOPBACK)
        ),
    );
    assert_invalid_grant(&other_client, "another client_id");

    let code = code_for(b, "");
    let no_uri = token_post(
        b,
        &format!(
            "grant_type=authorization_code&code={}&client_id=demo",
            enc(&code)
        ),
    );
    assert_invalid_grant(&no_uri, "redirect_uri missing");

    assert_invalid_grant(&redeem(b, "not-a-code-we-issued", ""), "unknown code");
}

fn code_grant_enforces_the_pkce_challenge_the_client_sent(b: &Broker) {
    let pkce = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256");
    let code = code_for(b, &pkce);
    assert_invalid_grant(&redeem(b, &code, ""), "verifier missing");
    let code = code_for(b, &pkce);
    let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK";
    assert_invalid_grant(
        &redeem(b, &code, &format!("&code_verifier={wrong}")),
        "wrong verifier",
    );
    let code = code_for(b, &pkce);
    let ok = redeem(b, &code, &format!("&code_verifier={VERIFIER}"));
    assert_eq!(ok.status, 200, "{}", ok.body);
    b.remember(ok.json()["refresh_token"].as_str().expect("authid"));
    // A verifier for a code issued without a challenge is a downgrade attempt.
    let code = code_for(b, "");
    assert_invalid_grant(
        &redeem(b, &code, &format!("&code_verifier={VERIFIER}")),
        "verifier without challenge",
    );
}

fn code_grant_refuses_an_expired_code(b: &Broker) {
    let code = code_for(b, "");
    let h = sha256_hex(&format!("oauth-broker/v1/authorization-code|{code}"));
    b.d1(&format!(
        "UPDATE authorization_codes SET expires_at = {} WHERE code_hash = '{h}'",
        unix_now() - 1
    ));
    assert_invalid_grant(&redeem(b, &code, ""), "expired code");
}

/// A strict third-party client's verdict (`tests/e2e/judge/oauth4webapi.mjs`,
/// the npm package oauth4webapi): it discovers the metadata of `issuer` at
/// RFC 8414 §3.1's location and checks its `issuer` (§3.3), then validates
/// each authorization response (a redirect the broker sent, with the `state`
/// the client sent) as RFC 9207 says. The answer is the script's JSON.
pub fn judge(issuer: &str, responses: &[(&str, Option<&str>)]) -> Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/judge/oauth4webapi.mjs");
    let input = json!({
        "issuer": issuer,
        "client_id": "demo",
        "responses": responses
            .iter()
            .map(|(url, state)| json!({ "url": url, "state": state }))
            .collect::<Vec<_>>(),
    });
    let mut child = Command::new("node")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (scripts/setup.sh installs oauth4webapi)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write the judge's input");
    let out = child.wait_with_output().expect("the judge ends");
    assert!(
        out.status.success(),
        "the judge failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the judge answers JSON")
}

/// RFC 9207: every authorization response of `/oauth/authorize` (a code, an
/// error found before the login, an error from the provider's login) names
/// the issuer, exactly the metadata's `issuer`, and the metadata says it does
/// (`authorization_response_iss_parameter_supported`), so a client that
/// talks to several authorization servers can tell which one answered (the
/// mix-up defence of RFC 9700 §4.4). A strict client (oauth4webapi) agrees.
fn authorization_responses_carry_the_issuer_and_the_metadata_says_so(b: &Broker) {
    let m = metadata(b);
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    let issuer = m["issuer"].as_str().expect("issuer").to_string();
    assert_eq!(issuer, b.base);
    let iss = enc(&issuer);
    // Success: code, state, iss, after the client's own query.
    let ok = authorize(b, "&state=s1");
    assert_eq!(ok.status, 302, "{}", ok.body);
    let to = ok.header("Location").expect("Location").to_string();
    let code = param(&query_of(&to), "code").expect("code").to_string();
    b.remember(&code);
    assert_eq!(
        to,
        format!("http://127.0.0.1:53682/cb?x=1&code={code}&state=s1&iss={iss}")
    );
    // An error found before the login, without a state.
    let early = b.get(&format!(
        "/oauth/authorize?client_id=demo&redirect_uri={}&response_type=token",
        enc(LOOPBACK)
    ));
    assert_eq!(early.status, 302, "{}", early.body);
    let early_to = early.header("Location").expect("Location").to_string();
    assert_eq!(
        early_to,
        format!(
            "http://127.0.0.1:53682/cb?x=1&error=unsupported_response_type\
             &error_description=only+response_type%3Dcode+is+supported&iss={iss}"
        )
    );
    // The provider refuses: the error after the login names it too.
    b.mock.set_config(mock_provider::Config {
        deny: true,
        ..mock_provider::Config::default()
    });
    let denied = authorize(b, "&state=s2");
    assert_eq!(denied.status, 302, "{}", denied.body);
    let denied_to = denied.header("Location").expect("Location").to_string();
    let q = query_of(&denied_to);
    assert_eq!(param(&q, "error"), Some("access_denied"));
    assert_eq!(param(&q, "state"), Some("s2"));
    assert_eq!(param(&q, "iss"), Some(issuer.as_str()));
    assert!(
        denied_to.ends_with(&format!("&state=s2&iss={iss}")),
        "{denied_to}"
    );
    // The judge: discovery, then each response as a strict client checks it.
    let v = judge(
        &issuer,
        &[
            (&to, Some("s1")),
            (&early_to, None),
            (&denied_to, Some("s2")),
        ],
    );
    assert!(v["discovery_error"].is_null(), "{v}");
    let r = &v["responses"];
    assert_eq!(r[0]["ok"], true, "{v}");
    assert_eq!(r[0]["params"]["iss"], issuer.as_str());
    for (i, error) in [(1, "unsupported_response_type"), (2, "access_denied")] {
        // A valid error response (its iss checked first), not an iss problem.
        assert_eq!(r[i]["kind"], "AuthorizationResponseError", "{v}");
        assert_eq!(r[i]["error"], error, "{v}");
    }
    // A response from another server (or without iss) fails that client.
    let forged = to.replace(
        &format!("&iss={iss}"),
        &format!("&iss={}", enc("https://evil.example")),
    );
    let stripped = to.replace(&format!("&iss={iss}"), "");
    let v = judge(&issuer, &[(&forged, Some("s1")), (&stripped, Some("s1"))]);
    for i in 0..2 {
        assert_eq!(v["responses"][i]["ok"], false, "{v}");
        assert!(
            v["responses"][i]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("iss"),
            "{v}"
        );
    }
}
