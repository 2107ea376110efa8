//! The operator access gate as Duplicati meets it: the operator hands out one
//! oauth-url, `<broker>/k/<key>/refresh`, and every surface builds its URLs from
//! it exactly as its code does (duplicati/duplicati 66cfb242, duplicati/ngclient
//! e0e370f0). A page reached without the key asks for it.

use crate::harness::{extract_authid, extract_confirm, request, Broker, Jar, Options};

const KEY: &str = "gate-key-1";

/// A broker behind the gate, with `KEY` among its keys.
fn gated(b: &Broker) -> Broker {
    Broker::start_with(
        &b.mock,
        Options {
            extra_vars: vec![("ACCESS_KEYS".into(), format!("other-key, {KEY}"))],
            ..Options::default()
        },
    )
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
