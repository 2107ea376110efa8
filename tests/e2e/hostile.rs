//! Hostile requests, one table: malformed, oversized, injected and
//! cross-wired requests on every route. Each row names the status (always a
//! 4xx) and the error code it must get; no answer echoes the raw input or a
//! secret, injects a header or redirects off-site, a 401 carries a challenge,
//! and every real grant still refreshes afterwards.

use oauth_broker::authid::AuthId;
use oauth_broker::ids::Shard;

use crate::harness::{enc, request, Broker};

pub const TESTS: &[crate::Test] = tests![hostile_requests_get_stable_4xx_and_grants_survive];

/// One hostile request and the answer it must get.
struct Hostile {
    /// What the row tries (named in every failure).
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    /// The status it must get.
    status: u16,
    /// The `X-Error-Code` (and JSON `error`) it must carry, with an `X-Reason`;
    /// empty where the answer is not one of the broker's errors.
    error: &'static str,
}

/// What the rows aim at: real grants (a v1 authid in its two halves and a v2
/// one), a login's `state`, and values that look like real ones.
struct Targets {
    victim: String,
    v2: String,
    keyid: String,
    secret: String,
    /// Raw markup no answer may echo.
    marker: &'static str,
    state: String,
    /// A v1 authid that looks as random as a real one (never minted).
    fresh: String,
    /// A v2 refresh token that looks as random as a real one.
    token: String,
}

fn hostile_requests_get_stable_4xx_and_grants_survive(b: &Broker) {
    let victim = b.login();
    let v2 = b.login_at("/login?id=demo&tokenversion=2");
    let (keyid, secret) = victim.split_once(':').expect("v1");
    let (cb_state_url, _) = b.start_login_to_callback();
    let state = url::Url::parse(&cb_state_url)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let targets = Targets {
        keyid: keyid.to_string(),
        secret: secret.to_string(),
        victim: victim.clone(),
        v2: v2.clone(),
        marker: "<script>alert(1)</script>",
        state,
        fresh: AuthId::generate(Shard::FIRST).expect("CSPRNG").expose(),
        token: oauth_broker::random::token_b64url(32).expect("CSPRNG"),
    };
    let (marker, secret) = (targets.marker, targets.secret.as_str());
    let rows = rows(&targets);
    assert!(rows.len() >= 60, "{} rows", rows.len());
    for Hostile {
        what,
        method,
        path,
        headers,
        body,
        status,
        error: code,
    } in &rows
    {
        let hdrs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = request(method, &b.url(path), &hdrs, body.as_deref());
        assert!(r.status < 500, "{what}: {} {}", r.status, r.body);
        assert_eq!(r.status, *status, "{what}: {}", r.body);
        if !code.is_empty() {
            assert_eq!(r.header("X-Error-Code"), Some(*code), "{what}");
            assert!(
                r.header("X-Reason").is_some_and(|x| !x.is_empty()),
                "{what}"
            );
            if r.header("Content-Type") == Some("application/json") {
                assert_eq!(r.json()["error"], *code, "{what}");
            }
        }
        // RFC 9110 §15.5.2: a 401 carries a challenge.
        assert_eq!(
            r.header("WWW-Authenticate").is_some(),
            r.status == 401,
            "{what}"
        );
        assert!(!r.body.contains(marker), "{what}: raw input echoed");
        assert!(!r.body.contains(secret), "{what}: secret echoed");
        for (k, v) in &r.headers {
            assert!(
                !k.eq_ignore_ascii_case("X-Injected") && !v.contains("evil=1"),
                "{what}: header injection"
            );
        }
        if let Some(loc) = r.header("Location") {
            let ok = loc.starts_with(&b.base) || loc.starts_with(&b.mock.base_url());
            assert!(ok, "{what}: redirect off-site to {loc}");
        }
    }
    // Every real grant still works.
    assert_eq!(b.refresh(&victim).status, 200);
    let r = b.refresh(&v2);
    assert_eq!(r.status, 200, "{}", r.body);
    if let Some(next) = r.json()["v2_authid"].as_str() {
        b.remember(next);
    }
}

/// The table.
fn rows(t: &Targets) -> Vec<Hostile> {
    let Targets {
        victim,
        v2,
        keyid,
        secret,
        state,
        fresh,
        token,
        ..
    } = t;
    let marker = t.marker;
    let h = |k: &'static str, v: String| vec![(k, v)];
    let authid_h = |v: String| vec![("X-AuthID", v)];
    let admin = |authid: &str| {
        vec![
            ("X-APIKey", crate::harness::ADMIN_API_KEY.to_string()),
            ("X-AuthID", authid.to_string()),
        ]
    };
    let from = |ip: &str| vec![("CF-Connecting-IP", ip.to_string())];
    let form = || {
        vec![(
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        )]
    };
    vec![
        Hostile {
            what: "empty X-AuthID",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(String::new()),
            body: None,
            status: 400,
            error: "missing_authid",
        },
        Hostile {
            what: "oversized authid",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h("a".repeat(5000) + ":x"),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "unicode authid",
            method: "GET",
            path: format!(
                "/refresh?authid={}",
                enc(&format!("{keyid}:{}é", &secret[..40]))
            ),
            headers: vec![],
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "NUL in authid (query)",
            method: "GET",
            path: format!("/refresh?authid={keyid}%3A{secret}%00"),
            headers: vec![],
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "uppercase keyid",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("{}:{secret}", keyid.to_uppercase())),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "short keyid",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("{}:{secret}", &keyid[2..])),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "truncated secret",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("{keyid}:{}", &secret[..20])),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "wrong secret",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("{keyid}:{}", "Z".repeat(43))),
            body: None,
            status: 401,
            error: "unknown_authid",
        },
        Hostile {
            what: "unknown keyid",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("{}:{secret}", "f".repeat(32))),
            body: None,
            status: 401,
            error: "unknown_authid",
        },
        Hostile {
            what: "SQL metachars in authid",
            method: "GET",
            path: format!(
                "/refresh?authid={}",
                enc("' OR 1=1; DROP TABLE grants;--:x")
            ),
            headers: vec![],
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "SQL metachars as secret",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("{keyid}:{}", "'--".repeat(12))),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "duplicate authid params",
            method: "GET",
            path: format!("/refresh?authid={}&authid=x", enc(victim)),
            headers: vec![],
            body: None,
            status: 400,
            error: "duplicate_parameter",
        },
        Hostile {
            what: "duplicate form authid",
            method: "POST",
            path: "/refresh".into(),
            headers: h("Content-Type", "application/x-www-form-urlencoded".into()),
            body: Some(format!("authid={}&authid={}", enc(victim), enc(victim))),
            status: 400,
            error: "duplicate_parameter",
        },
        Hostile {
            what: "oversized form body",
            method: "POST",
            path: "/refresh".into(),
            headers: h("Content-Type", "application/x-www-form-urlencoded".into()),
            body: Some(format!("authid={}", "a".repeat(20_000))),
            status: 400,
            error: "body_too_large",
        },
        Hostile {
            what: "non-UTF-8 form",
            method: "POST",
            path: "/refresh".into(),
            headers: h("Content-Type", "application/x-www-form-urlencoded".into()),
            body: Some("authid=%FF%FE".into()),
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "v2 unknown provider",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("v2:nope:{token}")),
            body: None,
            status: 401,
            error: "unknown_authid",
        },
        Hostile {
            what: "v2 bad provider id",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h("v2:Bad Id:tok".into()),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "v2 oversized refresh token",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("v2:demo:{}", token.repeat(200))),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "v2 with CRLF",
            method: "GET",
            path: format!("/refresh?authid={}", enc("v2:demo:a\r\nX-Injected: 1")),
            headers: vec![],
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "CRLF in type redirect",
            method: "GET",
            path: format!("/refresh?type={}", enc("demo\r\nSet-Cookie: evil=1")),
            headers: vec![],
            body: None,
            status: 302,
            error: "",
        },
        Hostile {
            what: "open redirect via type",
            method: "GET",
            path: format!("/refresh?type={}", enc("//evil.example/")),
            headers: vec![],
            body: None,
            status: 302,
            error: "",
        },
        Hostile {
            what: "login unknown provider",
            method: "GET",
            path: "/login?id=evil".into(),
            headers: vec![],
            body: None,
            status: 404,
            error: "unknown_provider",
        },
        Hostile {
            what: "login markup provider",
            method: "GET",
            path: format!("/login?id={}", enc(marker)),
            headers: vec![],
            body: None,
            status: 404,
            error: "unknown_provider",
        },
        Hostile {
            what: "login missing id",
            method: "GET",
            path: "/login".into(),
            headers: vec![],
            body: None,
            status: 400,
            error: "missing_provider",
        },
        Hostile {
            what: "login duplicate id",
            method: "GET",
            path: "/login?id=demo&id=box.com".into(),
            headers: vec![],
            body: None,
            status: 400,
            error: "duplicate_parameter",
        },
        Hostile {
            what: "login bad fetch token",
            method: "GET",
            path: format!("/login?id=demo&token={}", enc(marker)),
            headers: vec![],
            body: None,
            status: 400,
            error: "bad_token",
        },
        Hostile {
            what: "login open redirect param",
            method: "GET",
            path: format!(
                "/login?id=demo&redirect_uri={}",
                enc("https://evil.example/")
            ),
            headers: vec![],
            body: None,
            status: 302,
            error: "",
        },
        Hostile {
            what: "callback no state",
            method: "GET",
            path: "/callback/demo?code=abc".into(),
            headers: vec![],
            body: None,
            status: 400,
            error: "invalid_state",
        },
        Hostile {
            what: "callback forged state",
            method: "GET",
            path: "/callback/demo?code=abc&state=forged".into(),
            headers: vec![],
            body: None,
            status: 400,
            error: "invalid_state",
        },
        Hostile {
            what: "callback markup state",
            method: "GET",
            path: format!("/callback/demo?code=abc&state={}", enc(marker)),
            headers: vec![],
            body: None,
            status: 400,
            error: "invalid_state",
        },
        Hostile {
            what: "callback duplicate state",
            method: "GET",
            path: format!("/callback/demo?code=a&state={state}&state={state}"),
            headers: vec![],
            body: None,
            status: 400,
            error: "duplicate_parameter",
        },
        Hostile {
            what: "callback state without cookie",
            method: "GET",
            path: format!("/callback/demo?code=abc&state={state}"),
            headers: vec![],
            body: None,
            status: 400,
            error: "invalid_state",
        },
        Hostile {
            what: "callback unknown provider",
            method: "GET",
            path: "/callback/evil?code=a&state=b".into(),
            headers: vec![],
            body: None,
            status: 400,
            error: "invalid_state",
        },
        Hostile {
            what: "callback traversal",
            method: "GET",
            path: "/callback/..%2F..%2Fetc?code=a&state=b".into(),
            headers: vec![],
            body: None,
            status: 400,
            error: "invalid_state",
        },
        Hostile {
            what: "index type markup",
            method: "GET",
            path: format!("/?type={}", enc(marker)),
            headers: vec![],
            body: None,
            status: 200,
            error: "",
        },
        Hostile {
            what: "index bad token",
            method: "GET",
            path: format!("/?token={}", enc(marker)),
            headers: vec![],
            body: None,
            status: 400,
            error: "bad_token",
        },
        Hostile {
            what: "jsonp injection",
            method: "GET",
            path: format!(
                "/fetch?token=t&callback={}",
                enc("alert(document.cookie)//")
            ),
            headers: vec![],
            body: None,
            status: 400,
            error: "bad_callback",
        },
        Hostile {
            what: "jsonp markup",
            method: "GET",
            path: format!("/fetch?token=t&callback={}", enc(marker)),
            headers: vec![],
            body: None,
            status: 400,
            error: "bad_callback",
        },
        Hostile {
            what: "jsonp unicode separator",
            method: "GET",
            path: format!("/fetch?token=t&callback={}", enc("a\u{2028}b")),
            headers: vec![],
            body: None,
            status: 400,
            error: "bad_callback",
        },
        Hostile {
            what: "revoke without authid",
            method: "POST",
            path: "/revoked".into(),
            headers: h("Content-Type", "application/x-www-form-urlencoded".into()),
            body: Some(String::new()),
            status: 400,
            error: "missing_authid",
        },
        Hostile {
            what: "revoke wrong authid",
            method: "POST",
            path: "/revoked".into(),
            headers: h("Content-Type", "application/x-www-form-urlencoded".into()),
            body: Some(format!("authid={keyid}%3A{}", "Q".repeat(43))),
            status: 401,
            error: "unknown_authid",
        },
        Hostile {
            what: "revoke markup",
            method: "POST",
            path: "/revoked".into(),
            headers: h("Content-Type", "application/x-www-form-urlencoded".into()),
            body: Some(format!("authid={}", enc(marker))),
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "export without key",
            method: "GET",
            path: "/export".into(),
            headers: authid_h(victim.clone()),
            body: None,
            status: 403,
            error: "invalid_api_key",
        },
        Hostile {
            what: "export key injection",
            method: "GET",
            path: "/export".into(),
            headers: vec![
                ("X-APIKey", "' OR '1'='1".into()),
                ("X-AuthID", victim.clone()),
            ],
            body: None,
            status: 403,
            error: "invalid_api_key",
        },
        Hostile {
            what: "import garbage",
            method: "POST",
            path: "/import".into(),
            headers: vec![
                ("X-APIKey", crate::harness::ADMIN_API_KEY.into()),
                ("X-AuthID", fresh.clone()),
            ],
            body: Some("{not json".into()),
            status: 400,
            error: "bad_import",
        },
        Hostile {
            what: "import unknown service",
            method: "POST",
            path: "/import".into(),
            headers: vec![
                ("X-APIKey", crate::harness::ADMIN_API_KEY.into()),
                ("X-AuthID", fresh.clone()),
            ],
            body: Some(r#"{"service":"evil","refresh_token":"x"}"#.into()),
            status: 404,
            error: "unknown_provider",
        },
        Hostile {
            what: "wrong method on refresh",
            method: "PUT",
            path: "/refresh".into(),
            headers: vec![],
            body: Some(String::new()),
            status: 405,
            error: "method_not_allowed",
        },
        Hostile {
            what: "wrong method on callback",
            method: "POST",
            path: "/callback/demo".into(),
            headers: vec![],
            body: Some(String::new()),
            status: 405,
            error: "method_not_allowed",
        },
        Hostile {
            what: "unknown route",
            method: "GET",
            path: format!("/{}", enc(marker)),
            headers: vec![],
            body: None,
            status: 404,
            error: "not_found",
        },
        // Bodies: refused by their size on every route that reads one.
        Hostile {
            what: "oversized body on a page route",
            method: "POST",
            path: "/revoked".into(),
            headers: h("Content-Type", "application/x-www-form-urlencoded".into()),
            body: Some(format!("authid={}", "a".repeat(17 * 1024))),
            status: 400,
            error: "body_too_large",
        },
        Hostile {
            what: "oversized import body",
            method: "POST",
            path: "/import".into(),
            headers: admin(fresh),
            body: Some(format!(
                r#"{{"service":"demo","refresh_token":"{}"}}"#,
                "r".repeat(17 * 1024)
            )),
            status: 400,
            error: "body_too_large",
        },
        // The client address keys the per-IP limits: one that is not an address
        // is refused on a limited route, not lumped with every other one.
        Hostile {
            what: "client address not an IP (limited route)",
            method: "GET",
            path: "/fetch?token=x".into(),
            headers: from("not-an-ip"),
            body: None,
            status: 400,
            error: "missing_client_address",
        },
        Hostile {
            what: "client address with a port",
            method: "GET",
            path: "/refresh".into(),
            headers: vec![
                ("CF-Connecting-IP", "203.0.113.5:443".into()),
                ("X-AuthID", victim.clone()),
            ],
            body: None,
            status: 400,
            error: "missing_client_address",
        },
        Hostile {
            what: "client address markup",
            method: "POST",
            path: "/revoked".into(),
            headers: vec![
                ("CF-Connecting-IP", marker.into()),
                ("Content-Type", "application/x-www-form-urlencoded".into()),
            ],
            body: Some(String::new()),
            status: 400,
            error: "missing_client_address",
        },
        Hostile {
            what: "client address not needed where nothing is limited",
            method: "GET",
            path: "/revoke".into(),
            headers: from("not-an-ip"),
            body: None,
            status: 200,
            error: "",
        },
        // A prefix route's remainder is one path segment.
        Hostile {
            what: "callback path doubled",
            method: "GET",
            path: "/callback//callback/demo?code=a&state=b".into(),
            headers: vec![],
            body: None,
            status: 404,
            error: "not_found",
        },
        Hostile {
            what: "callback with a subpath",
            method: "GET",
            path: "/callback/demo/extra?code=a&state=b".into(),
            headers: vec![],
            body: None,
            status: 404,
            error: "not_found",
        },
        Hostile {
            what: "callback with a trailing slash",
            method: "GET",
            path: "/callback/demo/?code=a&state=b".into(),
            headers: vec![],
            body: None,
            status: 404,
            error: "not_found",
        },
        // Pass-through (v2) authids: garbage is answered here, never upstream.
        Hostile {
            what: "v2 implausible token",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h("v2:demo:sometoken".into()),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "v2 one repeated character",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("v2:demo:{}", "z".repeat(300))),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "v2 two alternating characters",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("v2:box.com:{}", "xy".repeat(60))),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "v2 broken escape",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("v2:demo:{token}%G1")),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "v2 escape of a plain character",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("v2:demo:{token}%41")),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "v2 lowercase escape",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("v2:demo:{token}%c3%a9")),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "v2 escape that is not UTF-8",
            method: "GET",
            path: "/refresh".into(),
            headers: authid_h(format!("v2:demo:{token}%FF")),
            body: None,
            status: 400,
            error: "malformed_authid",
        },
        Hostile {
            what: "v2 escaped markup",
            method: "GET",
            path: format!(
                "/refresh?authid={}",
                enc(&format!("v2:nope:{token}%20{marker}"))
            ),
            headers: vec![],
            body: None,
            status: 401,
            error: "unknown_authid",
        },
        // /import: an authid of the caller's choosing must look minted.
        Hostile {
            what: "import low-entropy authid",
            method: "POST",
            path: "/import".into(),
            headers: admin(&format!("{keyid}:{}", "k".repeat(43))),
            body: Some(r#"{"service":"demo","refresh_token":"x"}"#.into()),
            status: 400,
            error: "weak_authid",
        },
        Hostile {
            what: "import sequential authid",
            method: "POST",
            path: "/import".into(),
            headers: admin(&format!(
                "{keyid}:abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
            )),
            body: Some(r#"{"service":"demo","refresh_token":"x"}"#.into()),
            status: 400,
            error: "weak_authid",
        },
        Hostile {
            what: "import v2 authid",
            method: "POST",
            path: "/import".into(),
            headers: admin(v2),
            body: Some(r#"{"service":"demo","refresh_token":"x"}"#.into()),
            status: 400,
            error: "v2_not_stored",
        },
        Hostile {
            what: "import over an existing grant",
            method: "POST",
            path: "/import".into(),
            headers: admin(victim),
            body: Some(r#"{"service":"demo","refresh_token":"x"}"#.into()),
            status: 409,
            error: "grant_in_use",
        },
        Hostile {
            what: "index token too long",
            method: "GET",
            path: format!("/?token={}", "t".repeat(200)),
            headers: vec![],
            body: None,
            status: 400,
            error: "bad_token",
        },
        Hostile {
            what: "token-state markup",
            method: "GET",
            path: format!("/token-state?token={}", enc(marker)),
            headers: vec![],
            body: None,
            status: 200,
            error: "",
        },
        // Every door keeps the promise (tests/e2e/promise.rs): no grant to
        // the wrong client, nothing revoked that is not, nothing lost.
        Hostile {
            what: "token endpoint refresh with another provider's client_id",
            method: "POST",
            path: "/oauth/token".into(),
            headers: form(),
            body: Some(format!(
                "grant_type=refresh_token&refresh_token={}&client_id=box.com",
                enc(victim)
            )),
            status: 400,
            error: "invalid_grant",
        },
        Hostile {
            what: "authorization code nobody issued",
            method: "POST",
            path: "/oauth/token".into(),
            headers: form(),
            body: Some(format!(
                "grant_type=authorization_code&code={token}&client_id=demo\
                 &redirect_uri=http%3A%2F%2F127.0.0.1%3A53682%2F"
            )),
            status: 400,
            error: "invalid_grant",
        },
        Hostile {
            what: "revoking a pass-through token its provider cannot revoke",
            method: "POST",
            path: "/oauth/revoke".into(),
            headers: form(),
            body: Some(format!("token={}", enc(&format!("v2:jottacloud:{token}")))),
            status: 400,
            error: "unsupported_token_type",
        },
        Hostile {
            what: "Akeeba refresh URL of another engine",
            method: "GET",
            path: format!("/akeeba/box/refresh?refresh_token={}", enc(victim)),
            headers: vec![],
            body: None,
            status: 400,
            error: "engine_mismatch",
        },
    ]
}
