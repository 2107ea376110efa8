//! The operator access gate as Duplicati meets it: the operator hands out one
//! oauth-url, `<broker>/k/<key>/refresh`, and every surface builds its URLs from
//! it exactly as its code does (duplicati/duplicati 66cfb242, duplicati/ngclient
//! e0e370f0). A page reached without the key asks for it.
//!
//! Every test of the gate is here: a key required on login and refresh, the
//! key as the client secret at the token endpoint (Basic with RFC 6749 §2.3.1's
//! encoding, or in the body) and at device authorization, the gated issuer's
//! metadata, and the typed key in a browser. Which routes are gated at all is
//! the route table's (`routes.rs`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::browser::Driver;
use crate::harness::{
    basic, basic_raw, discover, enc, extract_authid, extract_confirm, param, post, query_of,
    request, through_login, Broker, Jar, Resp, LOOPBACK,
};
use crate::oauth_code::{judge, CHALLENGE, VERIFIER};
use crate::oauth_token::assert_error;
use mock_provider::{Config, Rotation};

const KEY: &str = "gate-key-1";

/// A key with the characters a URL must encode (`openssl rand -base64` keys
/// have `/` and `+`): it can only travel as `key=`, never as a `/k/<key>/`
/// path segment (`access::split_key_prefix` refuses an encoded `/`).
const ODD_KEY: &str = "odd/k+e%y&=?";

/// The broker behind the gate that every test here uses (each start costs
/// seconds), started by the first one: `KEY` is among its keys.
static GATED: Mutex<Option<Arc<Broker>>> = Mutex::new(None);

/// The gated broker, started on first use.
fn gated(b: &Broker) -> Arc<Broker> {
    let mut shared = GATED.lock().unwrap_or_else(|e| e.into_inner());
    let g = shared.get_or_insert_with(|| {
        Arc::new(Broker::start_gated(
            &b.mock,
            &format!("other-key, {KEY}, {ODD_KEY}"),
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

pub const TESTS: &[crate::Test] = tests![
    gate_cli_oauth_url_with_a_key_prefix_refreshes_and_its_login_link_asks_for_the_key,
    gate_old_ui_builds_index_and_fetch_from_the_key_prefixed_oauth_url,
    gate_new_ui_type_link_on_the_key_prefixed_oauth_url_keeps_the_key,
    gate_a_page_without_a_key_asks_for_it_and_an_api_answers_json,
    a_gated_broker_serves_path_inserted_metadata_whose_endpoints_carry_the_key,
    a_gated_login_through_the_keyed_issuer_gets_that_issuer_as_iss,
    device_authorization_takes_the_gate_key_as_client_secret,
    gate_the_key_forms_request_gets_a_continue_link_to_the_same_request_with_the_key,
    gate_browser_duplicatis_printed_login_link_takes_the_typed_key_through_to_an_authid,
    gate_browser_akeeba_helper_url_takes_the_typed_key_through_to_both_tokens,
    gate_browser_authorization_endpoint_takes_the_typed_key_through_to_a_loopback_code,
    gate_browser_device_and_cli_token_pages_take_the_typed_key_through_to_an_authid,
    gate_browser_a_wrong_typed_key_shows_the_form_again_and_is_never_echoed,
    access_gate_requires_a_key_on_login_and_refresh,
    oauth_gate_key_as_client_secret_by_basic_with_2_3_1_encoding_or_body_else_401,
    gate_browser_status_and_reauthorization_pages_work_on_a_gated_broker,
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
    // The key form's Continue link: the same request with the key as `key=`.
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

/// The key form's request (`key_entered=1&key=<typed>`) with a right key is
/// answered 200 on this origin, `no-store`, under the same CSP (`form-action
/// 'self'`), with a *Continue* link to the same request and the key as `key=`,
/// percent-encoded: a key with `/`, `+`, `%`, `&`, `=` or `?` (which no
/// `/k/<key>/` segment can carry) gets through. With a wrong key it is the
/// form again, saying so. Requests without the mark, and API routes, are
/// answered as before.
fn gate_the_key_forms_request_gets_a_continue_link_to_the_same_request_with_the_key(b: &Broker) {
    let g = gated(b);
    let r = g.get(&format!(
        "/login?id=demo&tokenversion=2&key_entered=1&key={}",
        enc(ODD_KEY)
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert_eq!(r.header("Referrer-Policy"), Some("no-referrer"));
    let csp = r.header("Content-Security-Policy").unwrap_or_default();
    assert!(csp.contains("form-action 'self'"), "{csp}");
    let href = "/login?id=demo&tokenversion=2&key=odd%2Fk%2Be%25y%26%3D%3F";
    assert!(
        r.body.contains(&format!(
            "<a class=\"button\" id=\"continue\" href=\"{}\">",
            href.replace('&', "&amp;")
        )),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<form"), "a link, not a form");
    let mut jar = Jar::default();
    let start = g.get_in(&mut jar, href);
    assert_eq!(start.status, 302, "{}", start.body);
    let to = start.header("Location").expect("Location");
    assert!(to.starts_with(&b.mock.base_url()), "to the provider: {to}");
    assert_no_key_in(to);
    // Every gated page route takes the form's request alike.
    for path in [
        "/akeeba/box?key_entered=1",
        "/cli-token?id=jottacloud&key_entered=1",
        "/device?user_code=BCDF-GHJK&key_entered=1",
        "/oauth/authorize?client_id=demo&response_type=code&key_entered=1",
    ] {
        let r = g.get(&format!("{path}&key={KEY}"));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let route = path.split('?').next().unwrap_or_default();
        assert!(
            r.body.contains(&format!("id=\"continue\" href=\"{route}?")),
            "{path}: {}",
            r.body
        );
        assert!(
            !r.body.contains("key_entered"),
            "{path}: the mark is dropped"
        );
    }
    // A wrong key: the form again, with the request's values and no key.
    let wrong = g.get("/login?id=demo&key_entered=1&key=not-a-key-31337");
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    assert_eq!(wrong.header("X-Error-Code"), Some("access_key_required"));
    assert!(wrong.body.contains("That access key is not right."));
    assert!(wrong.body.contains("name=\"id\" value=\"demo\""));
    assert!(!wrong.body.contains("not-a-key-31337"));
    // No mark: the route itself, as before; an API route is not a page.
    let direct = g.get(&format!("/login?id=demo&key={KEY}"));
    assert_eq!(direct.status, 302, "{}", direct.body);
    let api = g.get(&format!("/refresh?key_entered=1&key={KEY}"));
    assert_ne!(api.status, 200, "{}", api.body);
    assert!(api
        .header("Content-Type")
        .unwrap_or_default()
        .starts_with("application/json"));
}

/// The widths every browser login here runs at: a desktop window and a phone
/// (390 CSS px, an iPhone 12 to 15 held upright).
const WIDTHS: [(u32, u32); 2] = [(1280, 900), (390, 844)];

/// The page is laid out `width` CSS px wide.
fn assert_laid_out_at(driver: &Driver, width: u32) {
    assert_eq!(
        driver.inner_width(),
        u64::from(width),
        "the page is laid out {width} px wide"
    );
}

/// Polls `f` every 100 ms for up to 90 s; on timeout panics naming `what`
/// and where the browser is (a blocked navigation leaves it on the old page).
fn wait_in(driver: &Driver, what: &str, mut f: impl FnMut(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let source = driver.source();
        if f(&source) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting until {what}: the browser is at {} ({})",
                driver.current_url(),
                if source.contains("id=\"send-key\"") {
                    "still the key form"
                } else {
                    "another page"
                }
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A person at the gate's key form types `key`, sends it, and clicks on
/// through the page that takes it: a *Continue* link on this origin. (A form
/// whose answer redirects to the provider is blocked by CSP `form-action
/// 'self'`, which Chromium applies to every redirect of a form's navigation:
/// the page would never change.)
fn type_key_and_continue(driver: &Driver, key: &str) {
    assert!(
        driver.source().contains("id=\"send-key\""),
        "the gate asks for the key"
    );
    driver.type_into("#key", key);
    driver.click("#send-key");
    wait_in(driver, "the key was taken (a Continue link)", |s| {
        s.contains("id=\"continue\"")
    });
    driver.click("#continue");
}

/// (1) The login link Duplicati's command line prints drops the path, so the
/// key (AuthIdOptionsHelper L98, as in the first test above): the index,
/// whose button leads to `/login`, which asks for the key. Typed in, it takes
/// the browser to the provider and back to the authid, which refreshes at the
/// oauth-url the operator handed out.
fn gate_browser_duplicatis_printed_login_link_takes_the_typed_key_through_to_an_authid(b: &Broker) {
    let g = gated(b);
    let driver = Driver::start(&g.dir);
    for (width, height) in WIDTHS {
        driver.set_window_size(width, height);
        driver.goto(&format!("{}?type=demo", g.base));
        assert_laid_out_at(&driver, width);
        driver.click("#login-demo");
        driver.wait_for_url("/login?id=demo");
        type_key_and_continue(&driver, KEY);
        driver.wait_for_url("/callback/demo");
        let authid = driver.value("#authid");
        b.remember(&authid);
        assert!(authid.contains(':'), "{width} px: an authid");
        let r = request("GET", &oauth_url(&g), &[("X-AuthID", &authid)], None);
        assert_eq!(r.status, 200, "{width} px: {}", r.body);
    }
}

/// (2) Akeeba's *Helper URL* without the key: the page asks for it, and
/// typed in it ends on the helper's page with both tokens, whose Refresh
/// Token refreshes at the keyed Refresh URL.
fn gate_browser_akeeba_helper_url_takes_the_typed_key_through_to_both_tokens(b: &Broker) {
    let g = gated(b);
    let driver = Driver::start(&g.dir);
    for (width, height) in WIDTHS {
        driver.set_window_size(width, height);
        driver.goto(&g.url("/akeeba/box"));
        assert_laid_out_at(&driver, width);
        type_key_and_continue(&driver, KEY);
        driver.wait_for_url("/callback/box.com");
        let at = driver.value("#access-token");
        let rt = driver.value("#refresh-token");
        b.remember(&rt);
        assert!(
            g.provider_issued(&at),
            "{width} px: the provider's access token"
        );
        let r = g.get(&format!(
            "/k/{KEY}/akeeba/box/refresh?refresh_token={}",
            enc(&rt)
        ));
        assert_eq!(r.status, 200, "{width} px: {}", r.body);
        let v = r.json();
        assert!(v["access_token"].is_string(), "{width} px: {v}");
        if let Some(next) = v["refresh_token"].as_str() {
            b.remember(next);
        }
    }
}

/// A native app's loopback redirect URI (RFC 8252 §7.3): answers every
/// request with a short page and hands each request target over.
struct Loopback {
    port: u16,
    got: mpsc::Receiver<String>,
}

impl Loopback {
    fn start() -> Loopback {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let (tx, got) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => continue,
                });
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // The rest of the head, so that answering does not reset it.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let body = "<!doctype html><p id=\"app\">The app got the answer.</p>";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let target = line.split(' ').nth(1).unwrap_or_default().to_string();
                if target.starts_with("/cb") && tx.send(target).is_err() {
                    return;
                }
            }
        });
        Loopback { port, got }
    }

    /// The next request the app received at its redirect URI.
    fn next(&self) -> String {
        self.got
            .recv_timeout(Duration::from_secs(90))
            .expect("the browser reached the app's redirect URI")
    }
}

/// (3) An app that was not given the key sends the person to the
/// authorization endpoint: the page asks for the key, and typed in it leads
/// through the provider to the app's loopback redirect URI with a code (and,
/// RFC 9207, the issuer the app knows: the plain one, as it came to the plain
/// endpoint). The app redeems the code with the key either way the token
/// endpoint takes it: in its path, or as `client_secret`.
fn gate_browser_authorization_endpoint_takes_the_typed_key_through_to_a_loopback_code(b: &Broker) {
    let g = gated(b);
    let app = Loopback::start();
    let redirect_uri = format!("http://127.0.0.1:{}/cb", app.port);
    let driver = Driver::start(&g.dir);
    for (i, (width, height)) in WIDTHS.into_iter().enumerate() {
        driver.set_window_size(width, height);
        let state = format!("app-state-{width}");
        driver.goto(&g.url(&format!(
            "/oauth/authorize?client_id=demo&redirect_uri={}&response_type=code&state={state}\
             &code_challenge={CHALLENGE}&code_challenge_method=S256",
            enc(&redirect_uri)
        )));
        assert_laid_out_at(&driver, width);
        type_key_and_continue(&driver, KEY);
        let target = app.next();
        let q = query_of(&format!("http://127.0.0.1{target}"));
        let code = param(&q, "code").expect("a code").to_string();
        b.remember(&code);
        assert_eq!(param(&q, "state"), Some(state.as_str()), "{width} px");
        assert_eq!(param(&q, "iss"), Some(g.base.as_str()), "{width} px");
        let body = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&client_id=demo\
             &code_verifier={VERIFIER}",
            enc(&code),
            enc(&redirect_uri)
        );
        let (endpoint, body) = match i {
            0 => (g.url(&format!("/k/{KEY}/oauth/token")), body),
            _ => (
                g.url("/oauth/token"),
                format!("{body}&client_secret={}", enc(KEY)),
            ),
        };
        let r = request(
            "POST",
            &endpoint,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(&body),
        );
        assert_eq!(r.status, 200, "{width} px: {}", r.body);
        let authid = b.remember_refresh_token(&r.json());
        let again = request("GET", &oauth_url(&g), &[("X-AuthID", &authid)], None);
        assert_eq!(again.status, 200, "{width} px: {}", again.body);
    }
}

/// The other gated pages a browser opens: the device verification URI (the
/// device was given the key, as `client_secret`; the person was not) and
/// Jottacloud's CLI-token page (from the index the printed link opens). Both
/// ask for the key and, typed in, keep it through their own forms (a POST to
/// this origin) and, for the device, the *Continue* link to the provider.
fn gate_browser_device_and_cli_token_pages_take_the_typed_key_through_to_an_authid(b: &Broker) {
    let g = gated(b);
    let driver = Driver::start(&g.dir);
    let client = format!("client_id=demo&client_secret={}", enc(KEY));
    for (width, height) in WIDTHS {
        driver.set_window_size(width, height);
        let started = request(
            "POST",
            &g.url("/oauth/device_authorization"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(&client),
        );
        assert_eq!(started.status, 200, "{}", started.body);
        let v = started.json();
        let device_code = v["device_code"].as_str().expect("device_code").to_string();
        b.remember(&device_code);
        let uri = v["verification_uri_complete"].as_str().expect("uri");
        driver.goto(uri);
        assert_laid_out_at(&driver, width);
        type_key_and_continue(&driver, KEY);
        wait_in(&driver, "the device form", |s| s.contains("XXXX-XXXX"));
        driver.click("button[type=submit]");
        wait_in(&driver, "the device's provider and Continue", |s| {
            s.contains("id=\"approve\"")
        });
        let polled = crate::browser::approve_device_and_poll(
            &driver,
            &g.url("/oauth/token"),
            &client,
            &device_code,
        );
        assert_eq!(polled.status, 200, "{width} px: {}", polled.body);
        b.remember_refresh_token(&polled.json());

        driver.goto(&format!("{}?type=jottacloud", g.base));
        driver.click("#login-jottacloud");
        driver.wait_for_url("/cli-token?id=jottacloud");
        type_key_and_continue(&driver, KEY);
        wait_in(&driver, "the CLI-token form", |s| {
            s.contains("id=\"cli-login\"")
        });
        driver.type_into("#token", &crate::jottacloud::good_token());
        driver.click("#cli-login");
        wait_in(&driver, "the result page", |s| s.contains("data-authid="));
        let authid = driver.value("#authid");
        b.remember(&authid);
        let r = request("GET", &oauth_url(&g), &[("X-AuthID", &authid)], None);
        assert_eq!(r.status, 200, "{width} px: {}", r.body);
    }
}

/// A wrong key typed into the form: the form again, saying the key is not
/// right, with the request's own values kept and the typed key nowhere in the
/// page, its headers or the worker's log lines; the right key typed into that
/// form then goes through.
fn gate_browser_a_wrong_typed_key_shows_the_form_again_and_is_never_echoed(b: &Broker) {
    const TYPED: &str = "typed-wrong-key-5150";
    let g = gated(b);
    let driver = Driver::start(&g.dir);
    let (width, height) = WIDTHS[1];
    driver.set_window_size(width, height);
    driver.goto(&g.url("/login?id=demo"));
    driver.type_into("#key", TYPED);
    driver.click("#send-key");
    wait_in(&driver, "the form says the key is wrong", |s| {
        s.contains("not right")
    });
    let source = driver.source();
    assert!(!source.contains(TYPED), "the typed key is echoed: {source}");
    assert!(source.contains("id=\"send-key\""), "the form again");
    assert!(source.contains("name=\"id\" value=\"demo\""), "{source}");
    assert_eq!(driver.value("#key"), "", "the key field is empty");
    // The same request without the browser: its status and headers.
    let again = request("GET", &driver.current_url(), &[], None);
    assert_eq!(again.status, 403, "{}", again.body);
    assert_eq!(again.header("X-Error-Code"), Some("access_key_required"));
    assert_eq!(again.header("Cache-Control"), Some("no-store"));
    for (name, value) in &again.headers {
        assert!(!value.contains(TYPED), "{name}: {value}");
    }
    assert!(!again.body.contains(TYPED));
    // The right key into that form goes through.
    type_key_and_continue(&driver, KEY);
    driver.wait_for_url("/callback/demo");
    b.remember(&driver.value("#authid"));
    // Never in the worker's console, in either log.
    assert!(!g.log_text().contains(TYPED), "the typed key was logged");
    for e in g.tail_events() {
        assert!(!e["logs"].to_string().contains(TYPED), "logged: {e}");
    }
}

fn access_gate_requires_a_key_on_login_and_refresh(b: &Broker) {
    let gated = Broker::start_gated(&b.mock, "key-one, key-two");
    let r = gated.get("/refresh");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "access_key_required");
    assert!(r.header("X-Reason").is_some());
    assert_eq!(gated.get("/refresh?key=wrong").status, 403);
    assert_eq!(
        gated.get("/refresh?key=key-one").status,
        400,
        "past the gate"
    );
    // An empty X-Access-Key header counts as absent: it does not hide `key=`.
    let empty = [("X-Access-Key", "")];
    let r = request("GET", &gated.url("/refresh?key=key-one"), &empty, None);
    assert_eq!(r.status, 400, "an empty header hid key=: {}", r.body);
    let r = request("GET", &gated.url("/refresh"), &empty, None);
    assert_eq!(r.json()["error"], "access_key_required");
    let page = gated.get("/login?id=demo");
    assert_eq!(page.status, 403);
    assert!(page
        .header("Content-Type")
        .unwrap_or("")
        .starts_with("text/html"));
    // The index passes the key on; Duplicati's `…/refresh?key=K` works unchanged.
    let index = gated.get("/?key=key-two");
    assert!(index.body.contains("login?id=demo&amp;key=key-two"));
    let authid = gated.login_at("/login?id=demo&key=key-two");
    let r = request(
        "GET",
        &gated.url("/refresh?key=key-one"),
        &[("X-AuthID", &authid)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = request(
        "GET",
        &gated.url("/refresh"),
        &[("X-AuthID", &authid), ("X-Access-Key", "key-two")],
        None,
    );
    assert_eq!(r.status, 200);
    let r = request(
        "GET",
        &gated.url("/refresh"),
        &[("X-AuthID", &authid)],
        None,
    );
    assert_eq!(r.status, 403);
    let redirect = gated.get("/refresh?type=demo&key=key-one");
    assert_eq!(
        redirect.header("Location"),
        Some(format!("{}/?type=demo&key=key-one", gated.base).as_str())
    );
    b.remember(&authid);
}

fn oauth_gate_key_as_client_secret_by_basic_with_2_3_1_encoding_or_body_else_401(b: &Broker) {
    // Characters that RFC 6749 §2.3.1's form-urlencoding changes: ':' '+' '%' '/'.
    const KEY: &str = "gate:k+y%41/z";
    let w = Broker::start_gated(&b.mock, KEY);
    let e = discover(&w);
    let authid = w.login_at(&format!("/login?id=demo&key={}", enc(KEY)));
    let form = format!("grant_type=refresh_token&refresh_token={}", enc(&authid));
    let ok = |r: &Resp, what: &str| {
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert!(r.json()["access_token"].is_string(), "{what}");
    };
    // Accepted: Basic (encoded as §2.3.1 says), body, and the usual header.
    ok(
        &post(&e.token, &[("Authorization", &basic("demo", KEY))], &form),
        "Basic",
    );
    ok(
        &post(
            &e.token,
            &[],
            &format!("{form}&client_id=demo&client_secret={}", enc(KEY)),
        ),
        "body",
    );
    ok(
        &post(&e.token, &[("X-Access-Key", KEY)], &form),
        "X-Access-Key",
    );
    // Refused with 401 invalid_client and a Basic challenge: no key, a wrong
    // one, and the key sent by Basic without the form-urlencoding ('+' is then
    // a space and "%41" an 'A').
    for (what, headers, body) in [
        ("no key", vec![], form.clone()),
        (
            "wrong key in the body",
            vec![],
            format!("{form}&client_secret=wrong"),
        ),
        (
            "wrong key by Basic",
            vec![("Authorization", basic("demo", "wrong"))],
            form.clone(),
        ),
        (
            "key by Basic not form-urlencoded",
            vec![("Authorization", basic_raw(&format!("demo:{KEY}")))],
            form.clone(),
        ),
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = post(&e.token, &h, &body);
        assert_error(&r, 401, "invalid_client", what);
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some(r#"Basic realm="oauth-broker""#),
            "{what}"
        );
    }
    // The metadata is public; the key is never echoed or logged.
    assert_eq!(w.get("/.well-known/oauth-authorization-server").status, 200);
    let log = w.log_text();
    drop(w);
    assert!(!log.contains(KEY), "the access key is in the worker log");
    assert!(!log.contains(&authid), "the authid is in the worker log");
}

/// `/status` and `/reauthorize` are not gated (only an authid's holder learns
/// or changes anything), so on a gated broker the holder re-authorizes as on an
/// open one: in Chromium at both widths, the status page, its button, the
/// provider and back, then the same authid refreshes (with the key, as every
/// refresh there needs).
fn gate_browser_status_and_reauthorization_pages_work_on_a_gated_broker(b: &Broker) {
    use crate::grant_life::{
        assert_fits, remove_access_at_provider, status_json, wait_for, WIDTHS,
    };
    let g = gated(b);
    let refresh =
        |authid: &str| g.get_with("/refresh", &[("X-AuthID", authid), ("X-Access-Key", KEY)]);
    let driver = Driver::start(&g.dir);
    for (width, height) in WIDTHS {
        b.mock.set_config(Config {
            rotation: Rotation::SingleUse,
            ..Config::default()
        });
        let authid = g.login_at(&format!("/k/{KEY}/login?id=box.com"));
        g.expire_access_token(&authid);
        assert_eq!(refresh(&authid).status, 200);
        remove_access_at_provider(&g);
        g.expire_access_token(&authid);
        assert_eq!(
            refresh(&authid).status,
            503,
            "the provider refuses the grant"
        );
        let (_, s) = status_json(&g, &authid);
        assert_eq!(s["state"], "reauthorization_required", "{s}");

        driver.set_window_size(width, height);
        driver.goto(&g.url("/status"));
        driver.type_into("#authid", &authid);
        driver.click("button[type=submit]");
        wait_for(&driver, "the status page", |s| s.contains("id=\"state\""));
        assert!(
            driver.text("#state").contains("Needs re-authorization"),
            "{width} px: {}",
            driver.text("#state")
        );
        assert_fits(&driver, width);
        driver.click("#reauthorize");
        wait_for(&driver, "the continue link", |s| {
            s.contains("id=\"continue\"")
        });
        driver.click("#continue");
        wait_for(&driver, "re-authorized", |s| {
            s.contains("id=\"reauthorized\"") || s.contains("class=\"error\"")
        });
        assert!(
            driver.source().contains("id=\"reauthorized\""),
            "{width} px: {}",
            driver.source()
        );
        assert_fits(&driver, width);
        let (_, s) = status_json(&g, &authid);
        assert_eq!(s["state"], "active", "{width} px: {s}");
        g.expire_access_token(&authid);
        let r = refresh(&authid);
        assert_eq!(
            r.status, 200,
            "{width} px: the same authid refreshes: {}",
            r.body
        );
    }
    assert_eq!(b.mock.stats().spent_refresh_reuse, 0);
}
