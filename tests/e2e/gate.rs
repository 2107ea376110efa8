//! The operator access gate as Duplicati meets it: the operator hands out one
//! oauth-url, `<broker>/k/<key>/refresh`, and every surface builds its URLs from
//! it exactly as its code does (duplicati/duplicati 66cfb242, duplicati/ngclient
//! e0e370f0). A page reached without the key asks for it.

use std::sync::{Arc, Mutex};

use base64::Engine;

use crate::harness::{extract_authid, extract_confirm, request, Broker, Jar, Options, Resp};
use crate::oauth_code::{enc, judge, param, query_of, through_login, LOOPBACK};

const KEY: &str = "gate-key-1";

/// The broker behind the gate that every test here uses (each start costs
/// seconds), started by the first one: `KEY` is among its keys.
static GATED: Mutex<Option<Arc<Broker>>> = Mutex::new(None);

/// The gated broker, started on first use.
fn gated(b: &Broker) -> Arc<Broker> {
    let mut shared = GATED.lock().unwrap_or_else(|e| e.into_inner());
    let g = shared.get_or_insert_with(|| {
        Arc::new(Broker::start_with(
            &b.mock,
            Options {
                extra_vars: vec![("ACCESS_KEYS".into(), format!("other-key, {KEY}"))],
                ..Options::default()
            },
        ))
    });
    Arc::clone(g)
}

/// Stops the gated broker (after the last test).
pub fn stop() {
    let g = GATED.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(g);
}

/// The oauth-url the operator hands out.
fn oauth_url(g: &Broker) -> String {
    g.url(&format!("/k/{KEY}/refresh"))
}

/// The provider's authorize URL never carries the key: the callback
/// (`redirect_uri`) is registered at the provider once, without a prefix.
fn assert_no_key_in(authorize: &str) {
    assert!(
        !authorize.contains(KEY) && !authorize.contains("%2Fk%2F"),
        "the key went to the provider: {authorize}"
    );
}

pub const TESTS: &[crate::Test] = &[
    (
        "gate_cli_oauth_url_with_a_key_prefix_refreshes_and_its_login_link_asks_for_the_key",
        gate_cli_oauth_url_with_a_key_prefix_refreshes_and_its_login_link_asks_for_the_key,
    ),
    (
        "gate_old_ui_builds_index_and_fetch_from_the_key_prefixed_oauth_url",
        gate_old_ui_builds_index_and_fetch_from_the_key_prefixed_oauth_url,
    ),
    (
        "gate_new_ui_type_link_on_the_key_prefixed_oauth_url_keeps_the_key",
        gate_new_ui_type_link_on_the_key_prefixed_oauth_url_keeps_the_key,
    ),
    (
        "gate_a_page_without_a_key_asks_for_it_and_an_api_answers_json",
        gate_a_page_without_a_key_asks_for_it_and_an_api_answers_json,
    ),
    (
        "a_gated_broker_serves_path_inserted_metadata_whose_endpoints_carry_the_key",
        a_gated_broker_serves_path_inserted_metadata_whose_endpoints_carry_the_key,
    ),
    (
        "a_gated_login_through_the_keyed_issuer_gets_that_issuer_as_iss",
        a_gated_login_through_the_keyed_issuer_gets_that_issuer_as_iss,
    ),
    (
        "device_authorization_takes_the_gate_key_as_client_secret",
        device_authorization_takes_the_gate_key_as_client_secret,
    ),
];

/// The command line sends `--oauth-url` verbatim (with `X-AuthID`), and derives
/// the login link it prints by dropping the path and keeping the query:
/// `AuthIdOptionsHelper.BuildOAuthLoginUrl`
/// (Duplicati/Library/Utility/Options/AuthIdOptionsHelper.cs L84-99, the link
/// at L98: `$"{u.Scheme}://{userinfo}{u.Authority}?{query}type={modulename}"`).
/// Dropping the path drops the prefix, so that link lands on the (open) index
/// without the key, and the login page asks for it.
fn gate_cli_oauth_url_with_a_key_prefix_refreshes_and_its_login_link_asks_for_the_key(b: &Broker) {
    let g = gated(b);
    let mut browser = Jar::default();
    let (page, authorize) = g.login_in(&mut browser, &format!("/k/{KEY}/login?id=demo"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_no_key_in(&authorize);
    let authid = extract_authid(&page.body).expect("the authid on the result page");
    b.remember(&authid);
    let r = request("GET", &oauth_url(&g), &[("X-AuthID", &authid)], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["access_token"].is_string());
    let r = request("POST", &oauth_url(&g), &[("X-AuthID", &authid)], None);
    assert_eq!(r.status, 200, "{}", r.body);
    // Without the prefix the same request is stopped at the gate.
    let r = request("GET", &g.url("/refresh"), &[("X-AuthID", &authid)], None);
    assert_eq!(r.status, 403);
    // L98 with the oauth-url's (empty) query: scheme, authority, `?type=`.
    let login_link = format!("{}?type=demo", g.base);
    let index = request("GET", &login_link, &[], None);
    assert_eq!(index.status, 200, "{}", index.body);
    assert!(index.body.contains("href=\"/login?id=demo\""));
    let ask = g.get("/login?id=demo");
    assert_eq!(ask.status, 403);
    assert!(ask.body.contains("<form method=\"get\" action=\"/login\">"));
    // The form sends the same request again with the key the user typed.
    let mut browser = Jar::default();
    let (page, _) = g.login_in(&mut browser, &format!("/login?id=demo&key={KEY}"));
    assert_eq!(page.status, 200, "{}", page.body);
    b.remember(&extract_authid(&page.body).expect("authid"));
}

/// The old UI (Duplicati/Server/webroot/ngax/scripts/services/EditUriBuiltins.js):
/// L238-244 take an `--oauth-url` override and (L241-242) strip a trailing
/// `refresh` (7 characters, leaving the `/`), L246-247 end it with `/`; L249 opens
/// `servicelink + '?type=' + key + '&token=' + token`; L260 polls
/// `servicelink + 'fetch?callback=JSON_CALLBACK'` with `params: {token}`.
fn gate_old_ui_builds_index_and_fetch_from_the_key_prefixed_oauth_url(b: &Broker) {
    let g = gated(b);
    let mut servicelink = oauth_url(&g);
    if servicelink.ends_with("/refresh") {
        servicelink.truncate(servicelink.len() - 7);
    }
    if !servicelink.ends_with('/') {
        servicelink.push('/');
    }
    assert_eq!(servicelink, g.url(&format!("/k/{KEY}/")));
    let token = crate::harness::duplicati_token();
    let start_link = format!("{servicelink}?type=demo&token={token}");
    let fetch_link = format!("{servicelink}fetch?callback=JSON_CALLBACK&token={token}");
    let mut popup = Jar::default();
    let index = request("GET", &start_link, &[], None);
    popup.keep(&index);
    assert_eq!(index.status, 200, "{}", index.body);
    let button = format!("/k/{KEY}/login?id=demo&amp;token={token}");
    assert!(index.body.contains(&button), "{}", index.body);
    let waiting = request("GET", &fetch_link, &[], None);
    assert_eq!(waiting.status, 200, "{}", waiting.body);
    assert!(waiting.body.contains("Not ready"), "{}", waiting.body);
    let (page, authorize) =
        g.login_in(&mut popup, &format!("/k/{KEY}/login?id=demo&token={token}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_no_key_in(&authorize);
    let authid = extract_authid(&page.body).expect("the authid on the result page");
    b.remember(&authid);
    let confirm = extract_confirm(&page.body).expect("the confirmation form");
    let sent = g.post_form_in(&mut popup, "/handoff", &format!("confirm={confirm}"));
    assert_eq!(sent.status, 200, "{}", sent.body);
    let got = request("GET", &fetch_link, &[], None);
    assert_eq!(got.status, 200);
    assert!(got.body.contains(&authid), "the poll gets the authid");
    let r = request("GET", &oauth_url(&g), &[("X-AuthID", &authid)], None);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The new UI (projects/ngclient/src/app/backup/destination/single-destination/
/// single-destination.component.ts): L494-505 pick the overridden oauth-url,
/// L507 opens `` `${oauthUrl}?type=${backendKey}` ``.
fn gate_new_ui_type_link_on_the_key_prefixed_oauth_url_keeps_the_key(b: &Broker) {
    let g = gated(b);
    let startlink = format!("{}?type=demo", oauth_url(&g));
    let r = request("GET", &startlink, &[], None);
    assert_eq!(r.status, 302, "{}", r.body);
    let index_url = g.url(&format!("/k/{KEY}/?type=demo"));
    assert_eq!(r.header("Location"), Some(index_url.as_str()));
    let index = request("GET", &index_url, &[], None);
    assert_eq!(index.status, 200);
    assert!(index
        .body
        .contains(&format!("href=\"/k/{KEY}/login?id=demo\"")));
    let mut browser = Jar::default();
    let (page, authorize) = g.login_in(&mut browser, &format!("/k/{KEY}/login?id=demo"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_no_key_in(&authorize);
    b.remember(&extract_authid(&page.body).expect("authid"));
}

/// A browser route reached without a (valid) key answers 403 with a form that
/// asks for it and repeats the request; API routes keep their JSON 403. Paths
/// that only look like a key prefix match no route.
fn gate_a_page_without_a_key_asks_for_it_and_an_api_answers_json(b: &Broker) {
    let g = gated(b);
    for path in [
        "/login?id=demo&tokenversion=2",
        "/k/wrong/login?id=demo&tokenversion=2",
    ] {
        let r = g.get(path);
        assert_eq!(r.status, 403, "{path}");
        assert!(r
            .header("Content-Type")
            .unwrap_or("")
            .starts_with("text/html"));
        assert_eq!(r.header("X-Error-Code"), Some("access_key_required"));
        assert!(
            r.body.contains("<form method=\"get\" action=\"/login\">"),
            "{}",
            r.body
        );
        assert!(r
            .body
            .contains("<input type=\"hidden\" name=\"id\" value=\"demo\">"));
        assert!(r.body.contains("name=\"tokenversion\" value=\"2\""));
        assert!(r.body.contains("name=\"key\""));
    }
    let wrong = g.get("/login?id=demo&key=nope");
    assert_eq!(wrong.status, 403);
    assert!(!wrong.body.contains("nope"), "a wrong key is not echoed");
    let api = g.get(&format!("/k/wrong/refresh?type=demo&key={KEY}"));
    assert_eq!(api.status, 403, "the path's key is the one presented");
    assert_eq!(api.json()["error"], "access_key_required");
    for path in [
        format!("/k/{KEY}"),
        "/k//refresh".to_string(),
        format!("/k/{KEY}%2Frefresh"),
        format!("/k/a%2F{KEY}/refresh"),
    ] {
        assert_eq!(g.get(&path).status, 404, "{path}");
    }
    assert_eq!(g.get(&format!("/k/{KEY}/healthz")).status, 200);
}

/// The issuer a client of the gated broker is given: the key is its path.
fn keyed_issuer(g: &Broker) -> String {
    g.url(&format!("/k/{KEY}"))
}

fn assert_gate_refuses(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.body);
    assert_eq!(r.json()["error"], "invalid_client", "{what}");
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some(r#"Basic realm="oauth-broker""#),
        "{what}"
    );
}

/// RFC 8414 §3.1: the metadata of the issuer `<origin>/k/<key>` is at
/// `/.well-known/oauth-authorization-server/k/<key>`, and (§3.3) names that
/// issuer; its endpoints carry the key. The other spelling,
/// `/k/<key>/.well-known/oauth-authorization-server`, serves the same
/// document. A wrong key gets the gate's front-door answer at either; the
/// plain document stays public and names the origin.
fn a_gated_broker_serves_path_inserted_metadata_whose_endpoints_carry_the_key(b: &Broker) {
    let g = gated(b);
    let issuer = keyed_issuer(&g);
    let r = g.get(&format!("/.well-known/oauth-authorization-server/k/{KEY}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    let m = r.json();
    assert_eq!(m["issuer"], issuer.as_str());
    for (endpoint, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        (
            "device_authorization_endpoint",
            "/oauth/device_authorization",
        ),
        ("revocation_endpoint", "/oauth/revoke"),
    ] {
        assert_eq!(m[endpoint], format!("{issuer}{path}"), "{endpoint}");
    }
    let appended = g.get(&format!("/k/{KEY}/.well-known/oauth-authorization-server"));
    assert_eq!(appended.status, 200, "{}", appended.body);
    assert_eq!(appended.json(), m, "both spellings answer alike");
    // The endpoints it names work with the key they carry.
    let token = m["token_endpoint"].as_str().expect("token_endpoint");
    let authid = g.login_at(&format!("/k/{KEY}/login?id=demo"));
    b.remember(&authid);
    let refreshed = request(
        "POST",
        token,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&format!(
            "grant_type=refresh_token&refresh_token={}",
            enc(&authid)
        )),
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    // A wrong key: the gate's answer on the front door, at either spelling.
    for path in [
        "/.well-known/oauth-authorization-server/k/wrong".to_string(),
        "/k/wrong/.well-known/oauth-authorization-server".to_string(),
        format!("/.well-known/oauth-authorization-server/k/{KEY}x"),
    ] {
        let r = g.get(&path);
        assert_gate_refuses(&r, &path);
        assert!(!r.body.contains("wrong"), "{path}: the key is not echoed");
    }
    // No key, or not a key: no issuer lives there (as `/k//…` everywhere).
    for path in [
        "/.well-known/oauth-authorization-server/k/".to_string(),
        format!("/.well-known/oauth-authorization-server/k/{KEY}/"),
        format!("/.well-known/oauth-authorization-server/k/a%2F{KEY}"),
        format!("/k/{KEY}/.well-known/oauth-authorization-server/k/{KEY}"),
    ] {
        assert_eq!(g.get(&path).status, 404, "{path}");
    }
    // The plain document stays public and names the origin.
    let plain = g.get("/.well-known/oauth-authorization-server");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.json()["issuer"], g.base.as_str());
    // A strict client discovers the keyed issuer at RFC 8414 §3.1's location.
    let v = judge(&issuer, &[]);
    assert!(v["discovery_error"].is_null(), "{v}");
    assert_eq!(v["metadata"]["issuer"], issuer.as_str());
}

/// A client that discovered the keyed issuer and logs in through the
/// authorization endpoint it names gets that issuer back as `iss` (RFC 9207),
/// on success and on error, though the provider's callback came without the
/// key; a client of the plain issuer (key as `key=`) gets the plain one. The
/// login row never holds the key in the clear.
fn a_gated_login_through_the_keyed_issuer_gets_that_issuer_as_iss(b: &Broker) {
    let g = gated(b);
    let issuer = keyed_issuer(&g);
    let m = g
        .get(&format!("/.well-known/oauth-authorization-server/k/{KEY}"))
        .json();
    let endpoint = m["authorization_endpoint"].as_str().expect("endpoint");
    let path = endpoint.strip_prefix(&g.base).expect("on the broker");
    let query = format!(
        "response_type=code&client_id=demo&redirect_uri={}",
        enc(LOOPBACK)
    );
    let mut jar = Jar::default();
    let start = g.get_in(&mut jar, &format!("{path}?{query}&state=k1"));
    assert_eq!(start.status, 302, "{}", start.body);
    let rows = g.d1("SELECT ending FROM login_states WHERE ending LIKE '%authorize%'");
    let endings = rows.to_string();
    assert!(endings.contains("gate_base"), "{endings}");
    assert!(!endings.contains(KEY), "the key in a login row: {endings}");
    let authorize = start.header("Location").expect("Location");
    let consent = request("GET", authorize, &[], None);
    let callback = consent.header("Location").expect("callback").to_string();
    assert!(!callback.contains(KEY), "the callback carries no key");
    let done = g.get_in(&mut jar, callback.strip_prefix(&g.base).expect("broker"));
    assert_eq!(done.status, 302, "{}", done.body);
    let to = done.header("Location").expect("Location").to_string();
    let code = param(&query_of(&to), "code").expect("code").to_string();
    b.remember(&code);
    assert_eq!(
        to,
        format!(
            "http://127.0.0.1:53682/cb?x=1&code={code}&state=k1&iss={}",
            enc(&issuer)
        )
    );
    // An error before the login, through the same endpoint.
    let early = g.get(&format!(
        "{path}?{}",
        query.replace("response_type=code", "response_type=token")
    ));
    assert_eq!(early.status, 302, "{}", early.body);
    let early_to = early.header("Location").expect("Location").to_string();
    assert_eq!(param(&query_of(&early_to), "iss"), Some(issuer.as_str()));
    // The provider refuses: the error after the login names it too.
    b.mock.set_config(mock_provider::Config {
        deny: true,
        ..mock_provider::Config::default()
    });
    let denied = through_login(&g, &mut Jar::default(), &format!("{path}?{query}&state=k2"));
    b.reset_mock();
    assert_eq!(denied.status, 302, "{}", denied.body);
    let denied_to = denied.header("Location").expect("Location").to_string();
    let q = query_of(&denied_to);
    assert_eq!(param(&q, "error"), Some("access_denied"));
    assert_eq!(param(&q, "iss"), Some(issuer.as_str()));
    // A strict client that discovered the keyed issuer accepts all three.
    let v = judge(
        &issuer,
        &[
            (&to, Some("k1")),
            (&early_to, None),
            (&denied_to, Some("k2")),
        ],
    );
    assert!(v["discovery_error"].is_null(), "{v}");
    assert_eq!(v["responses"][0]["ok"], true, "{v}");
    assert_eq!(
        v["responses"][1]["error"], "unsupported_response_type",
        "{v}"
    );
    assert_eq!(v["responses"][2]["error"], "access_denied", "{v}");
    // The key as `key=` on the plain endpoint: the plain issuer.
    let plain = through_login(
        &g,
        &mut Jar::default(),
        &format!("/oauth/authorize?{query}&key={KEY}"),
    );
    assert_eq!(plain.status, 302, "{}", plain.body);
    let plain_to = plain.header("Location").expect("Location").to_string();
    b.remember(param(&query_of(&plain_to), "code").expect("code"));
    assert_eq!(param(&query_of(&plain_to), "iss"), Some(g.base.as_str()));
}

/// RFC 8628 §3.1: the device authorization request authenticates the client
/// as the token endpoint does (RFC 6749 §2.3.1), so the gate key is accepted
/// as `client_secret` by HTTP Basic or in the body; a wrong one (with no
/// other key) is 401 `invalid_client`, and a `client_secret` that is not a
/// key does not hide a key given in the URL.
fn device_authorization_takes_the_gate_key_as_client_secret(b: &Broker) {
    let g = gated(b);
    let url = g.url("/oauth/device_authorization");
    let post = |headers: &[(&str, &str)], body: &str| {
        let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
        h.extend_from_slice(headers);
        request("POST", &url, &h, Some(body))
    };
    let basic = |id: &str, secret: &str| {
        let pair = format!("{}:{}", enc(id), enc(secret));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let issued = |r: &Resp, what: &str| {
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        let v = r.json();
        assert!(v["device_code"].is_string(), "{what}");
        assert_eq!(v["verification_uri"], g.url("/device"), "{what}");
    };
    issued(
        &post(&[], &format!("client_id=demo&client_secret={}", enc(KEY))),
        "the key in the body",
    );
    issued(
        &post(&[("Authorization", &basic("demo", KEY))], ""),
        "the key by HTTP Basic, client_id in it",
    );
    issued(
        &post(&[("Authorization", &basic("", KEY))], "client_id=demo"),
        "the key by HTTP Basic, client_id in the body",
    );
    issued(
        &post(
            &[("X-Access-Key", KEY)],
            "client_id=demo&client_secret=not-a-key",
        ),
        "a client_secret that is not a key beside the key",
    );
    assert_gate_refuses(&post(&[], "client_id=demo"), "no key");
    assert_gate_refuses(
        &post(&[], "client_id=demo&client_secret=wrong"),
        "a wrong key in the body",
    );
    assert_gate_refuses(
        &post(&[("Authorization", &basic("demo", "wrong"))], ""),
        "a wrong key by Basic",
    );
}
