//! A grant's whole life for its holder: `/status` (page and JSON), and
//! re-authorization into the same authid (`oauth_broker::reauthorize`): the
//! same provider account only, nothing lost to a refresh running at the same
//! time, and every "re-authorize" answer naming the page.

use std::time::Duration;

use mock_provider::{Config, Rotation};
use serde_json::Value;

use crate::akeeba::{akeeba_reads, connector_request, replay};
use crate::browser::Driver;
use crate::harness::{enc, post, request, Broker, Jar, Options, Resp, CLIENT_ID, CLIENT_SECRET};

pub const TESTS: &[crate::Test] = tests![
    grant_life_a_refused_grant_shows_on_status_and_is_reauthorized_in_place_in_chromium => a_refused_grant_shows_on_status_and_is_reauthorized_in_place_in_chromium,
    grant_life_a_login_as_another_account_changes_nothing_and_says_why => a_login_as_another_account_changes_nothing_and_says_why,
    grant_life_a_refresh_during_reauthorization_loses_nothing => a_refresh_during_reauthorization_loses_nothing,
    grant_life_status_answers_only_the_holder_as_json_or_a_page => status_answers_only_the_holder_as_json_or_a_page,
    grant_life_a_status_answer_counts_against_the_grants_limit_like_a_refresh => a_status_answer_counts_against_the_grants_limit_like_a_refresh,
    grant_life_revoking_from_the_status_page_takes_its_ticket_and_a_confirmation => revoking_from_the_status_page_takes_its_ticket_and_a_confirmation,
    grant_life_grants_from_the_previous_schema_keep_working_and_say_they_cannot_be_reauthorized => grants_from_the_previous_schema_keep_working_and_say_they_cannot_be_reauthorized,
];

pub(crate) const WIDTHS: [(u32, u32); 2] = [(1280, 900), (390, 844)];

/// The user removes the broker's access in their provider account: the
/// grant's newest refresh token (and its whole family) is revoked at the
/// mock, so the next upstream refresh is `invalid_grant`.
pub(crate) fn remove_access_at_provider(b: &Broker) {
    let rt = b
        .mock
        .stats()
        .issued_refresh_tokens
        .last()
        .cloned()
        .expect("a refresh token was issued");
    let r = request(
        "POST",
        &format!("{}/revoke", b.mock.base_url()),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&format!(
            "token={}&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}",
            enc(&rt)
        )),
    );
    assert_eq!(r.status, 200, "revoked at the mock");
}

/// `GET /status` with `X-AuthID`.
pub(crate) fn status_json(b: &Broker, authid: &str) -> (Resp, Value) {
    let r = b.get_with("/status", &[("X-AuthID", authid)]);
    let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r, v)
}

/// A Box grant (single-use rotation) whose access token is due, so the next
/// use goes upstream.
fn box_grant(b: &Broker) -> String {
    b.mock.set_config(Config {
        rotation: Rotation::SingleUse,
        ..Config::default()
    });
    let authid = b.login_at("/login?id=box.com");
    b.expire_access_token(&authid);
    authid
}

/// A refresh of the Box grant `authid` at the OAuth 2.0 token endpoint.
fn token_endpoint(b: &Broker, authid: &str) -> Resp {
    post(
        &b.url("/oauth/token"),
        &[],
        &format!(
            "grant_type=refresh_token&refresh_token={}&client_id=box.com",
            enc(authid)
        ),
    )
}

/// A refresh of the Box grant `authid` at Akeeba's Refresh URL, as Akeeba's
/// Box connector sends it.
fn akeeba_refresh(b: &Broker, authid: &str) -> Resp {
    let host = b.base.trim_start_matches("http://").to_string();
    replay(
        b,
        &connector_request("box", &host, "/akeeba/box/refresh", authid, "old-at"),
    )
}

/// The grant refused at the provider and marked by a refresh: every door's
/// answer names the re-authorization page.
fn refused(b: &Broker, authid: &str) {
    remove_access_at_provider(b);
    b.expire_access_token(authid);
    let page = b.url("/reauthorize");
    let r = b.refresh(authid);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("X-Error-Code"), Some("reauthorization_required"));
    let reason = r.header("X-Reason").unwrap_or_default();
    assert!(
        reason.contains(&page),
        "Duplicati's 503 names {page}: {reason}"
    );
    // The OAuth 2.0 token endpoint: invalid_grant with error_uri.
    let t = token_endpoint(b, authid);
    assert_eq!(t.status, 400, "{}", t.body);
    let v: Value = serde_json::from_str(&t.body).expect("json");
    assert_eq!(v["error"], "invalid_grant");
    assert_eq!(v["error_uri"], page.as_str());
    // Akeeba's Refresh URL: the connector throws with the description.
    let a = akeeba_refresh(b, authid);
    let v: Value = serde_json::from_str(&a.body).expect("json");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains(&page),
        "Akeeba's error_description names {page}: {}",
        a.body
    );
}

/// After re-authorization: the very same authid works through `/refresh`,
/// the token endpoint and Akeeba's Refresh URL, each time with an access
/// token from the new login's grant.
fn works_again_everywhere(b: &Broker, authid: &str, before: &[String]) {
    let new = |at: &str| {
        assert!(!before.iter().any(|t| t == at), "a new access token");
        assert!(b.provider_issued(at));
    };
    b.expire_access_token(authid);
    let r = b.refresh(authid);
    assert_eq!(r.status, 200, "/refresh: {}", r.body);
    let v: Value = serde_json::from_str(&r.body).expect("json");
    new(v["access_token"].as_str().expect("access_token"));
    b.expire_access_token(authid);
    let t = token_endpoint(b, authid);
    assert_eq!(t.status, 200, "token endpoint: {}", t.body);
    let v: Value = serde_json::from_str(&t.body).expect("json");
    new(v["access_token"].as_str().expect("access_token"));
    b.expire_access_token(authid);
    let a = akeeba_refresh(b, authid);
    let (at, next) = akeeba_reads("box", &a, ("old-at", authid)).expect("Akeeba reads it");
    new(&at);
    b.remember(&next);
    let (_, s) = status_json(b, &next);
    assert_eq!(s["state"], "active", "{s}");
    assert_eq!(b.mock.stats().spent_refresh_reuse, 0);
}

/// The user's way, in Chromium at both widths: a backup says re-authorize;
/// the status page says so; its button leads to the provider and back; the
/// same authid then works at every door.
fn a_refused_grant_shows_on_status_and_is_reauthorized_in_place_in_chromium(b: &Broker) {
    let driver = Driver::start(&b.dir);
    for (width, height) in WIDTHS {
        let authid = box_grant(b);
        assert_eq!(b.refresh(&authid).status, 200);
        refused(b, &authid);
        let (r, s) = status_json(b, &authid);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("Cache-Control"), Some("no-store"));
        assert_eq!(s["state"], "reauthorization_required", "{s}");
        assert_eq!(s["reason"], "invalid_grant");
        assert!(s["reauthorization_required_since"].is_i64(), "{s}");
        assert_eq!(s["reauthorize"]["in_place"], true, "{s}");
        let before = b.mock.stats().issued_access_tokens;

        driver.set_window_size(width, height);
        driver.goto(&b.url("/status"));
        driver.type_into("#authid", &authid);
        driver.click("button[type=submit]");
        wait_for(&driver, "the status page", |s| s.contains("id=\"state\""));
        assert!(
            driver.text("#state").contains("Needs re-authorization"),
            "{width} px: {}",
            driver.text("#state")
        );
        assert!(
            !driver.source().contains(&authid),
            "{width} px: the page does not echo the authid"
        );
        assert_fits(&driver, width);
        driver.click("#reauthorize");
        wait_for(&driver, "the continue link", |s| {
            s.contains("id=\"continue\"")
        });
        assert_fits(&driver, width);
        driver.click("#continue");
        wait_for(&driver, "back from the provider", |s| {
            s.contains("id=\"reauthorized\"") || s.contains("class=\"error\"")
        });
        assert!(
            driver.current_url().contains("/callback/box.com"),
            "{width} px: {}",
            driver.current_url()
        );
        wait_for(&driver, "re-authorized", |s| {
            s.contains("id=\"reauthorized\"")
        });
        assert_fits(&driver, width);

        let (_, s) = status_json(b, &authid);
        assert_eq!(s["state"], "active", "{width} px: {s}");
        works_again_everywhere(b, &authid, &before);
    }
}

/// Polls the page source until `f` holds (90 s at most).
pub(crate) fn wait_for(driver: &Driver, what: &str, f: impl Fn(&str) -> bool) {
    for _ in 0..900 {
        if f(&driver.source()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("waited 90 s for {what}: {}", driver.source());
}

/// No horizontal scrolling at `width`.
pub(crate) fn assert_fits(driver: &Driver, width: u32) {
    let w = driver.call(
        "POST",
        "/execute/sync",
        Some(serde_json::json!({
            "script": "return document.documentElement.scrollWidth;", "args": []
        })),
    );
    assert!(
        w.as_u64().unwrap_or(u64::MAX) <= u64::from(width),
        "{width} px: the page is {w} px wide"
    );
}

/// `/reauthorize` in the browser `jar` for `authid`: the continue page, then
/// the mock's authorize; returns the callback URL (not yet followed).
fn reauthorize_to_callback(b: &Broker, jar: &mut Jar, authid: &str) -> String {
    let r = b.post_form_in(jar, "/reauthorize", &format!("authid={}", enc(authid)));
    assert_eq!(r.status, 200, "{}", r.body);
    let href = link(&r.body, "continue");
    let consent = request("GET", &href, &[], None);
    assert_eq!(consent.status, 302, "the mock consents");
    consent.header("Location").expect("callback").to_string()
}

/// The `href` of the element with `id` (HTML-unescaped).
fn link(html: &str, id: &str) -> String {
    let at = html.find(&format!("id=\"{id}\"")).expect("the link");
    let rest = &html[at..];
    let start = rest.find("href=\"").expect("href") + 6;
    let end = rest[start..].find('"').expect("end") + start;
    rest[start..end].replace("&amp;", "&")
}

/// Follows `callback` in `jar`.
fn callback(b: &Broker, jar: &mut Jar, callback: &str) -> Resp {
    let path = callback.strip_prefix(&b.base).expect("back to the broker");
    b.get_in(jar, path)
}

fn a_login_as_another_account_changes_nothing_and_says_why(b: &Broker) {
    let authid = box_grant(b);
    refused(b, &authid);
    // Bob logs in with Alice's authid (a leaked one, say).
    b.mock.set_config(Config {
        account: "bob".into(),
        ..Config::default()
    });
    let mut jar = Jar::default();
    let cb = reauthorize_to_callback(b, &mut jar, &authid);
    let r = callback(b, &mut jar, &cb);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.header("X-Error-Code"), Some("different_account"));
    assert!(r.body.contains("different account"), "{}", r.body);
    assert!(
        r.body
            .contains("id=\"reauthorize-again\" href=\"/reauthorize\""),
        "the next step is to re-authorize again: {}",
        r.body
    );
    let (_, s) = status_json(b, &authid);
    assert_eq!(
        s["state"], "reauthorization_required",
        "nothing changed: {s}"
    );
    assert_eq!(b.refresh(&authid).status, 503);
    // Alice says no at the provider: *Try again* re-authorizes, not a new login.
    b.mock.set_config(Config {
        deny: true,
        ..Config::default()
    });
    let mut jar = Jar::default();
    let cb = reauthorize_to_callback(b, &mut jar, &authid);
    let r = callback(b, &mut jar, &cb);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("id=\"try-again\" href=\"/reauthorize\""),
        "{}",
        r.body
    );
    // Alice herself then re-authorizes it.
    b.mock.set_config(Config::default());
    let before = b.mock.stats().issued_access_tokens;
    let mut jar = Jar::default();
    let cb = reauthorize_to_callback(b, &mut jar, &authid);
    let r = callback(b, &mut jar, &cb);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("id=\"reauthorized\""));
    works_again_everywhere(b, &authid, &before);
}

/// Backups refresh (single-use rotation, the provider slow) while the user's
/// re-authorization lands: every answer is a token or a retryable answer,
/// no spent refresh token ever goes upstream, and the grant refreshes after.
fn a_refresh_during_reauthorization_loses_nothing(b: &Broker) {
    let authid = box_grant(b);
    b.mock.reset_stats();
    let mut jar = Jar::default();
    let cb = reauthorize_to_callback(b, &mut jar, &authid);
    b.mock.set_config(Config {
        rotation: Rotation::SingleUse,
        delay_ms: 400,
        ..Config::default()
    });
    for round in 0..2 {
        b.expire_access_token(&authid);
        let (refreshes, reauthorized) = std::thread::scope(|s| {
            let refreshes: Vec<_> = (0..6).map(|_| s.spawn(|| b.refresh(&authid))).collect();
            std::thread::sleep(Duration::from_millis(150));
            let reauthorized = (round == 0).then(|| callback(b, &mut jar, &cb));
            (
                refreshes
                    .into_iter()
                    .map(|h| h.join().expect("client"))
                    .collect::<Vec<_>>(),
                reauthorized,
            )
        });
        for r in &refreshes {
            assert!(
                matches!(r.status, 200 | 504),
                "round {round}: {} {}",
                r.status,
                r.body
            );
        }
        if let Some(r) = reauthorized {
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    b.mock.set_config(Config::default());
    b.expire_access_token(&authid);
    assert_eq!(b.refresh(&authid).status, 200, "the grant refreshes after");
    let (_, s) = status_json(b, &authid);
    assert_eq!(s["state"], "active");
    assert_eq!(
        b.mock.stats().spent_refresh_reuse,
        0,
        "no spent-token reuse"
    );
}

fn status_answers_only_the_holder_as_json_or_a_page(b: &Broker) {
    b.mock.set_config(Config::default());
    let authid = b.login();
    let (r, s) = status_json(b, &authid);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert_eq!(s["authid_kind"], "stored");
    assert_eq!(s["provider"], "demo");
    assert_eq!(s["state"], "active");
    assert!(s["authorized_at"].is_i64());
    assert_eq!(s["reauthorize"]["in_place"], true, "{s}");
    assert!(!r.body.contains(&authid));
    // Re-authorizing asks the provider for its consent page.
    let go = b.post_form("/reauthorize", &format!("authid={}", enc(&authid)));
    assert_eq!(go.status, 200, "{}", go.body);
    assert!(link(&go.body, "continue").contains("prompt=consent"));
    // Box forgets idle grants: by when it must be used again.
    let boxed = b.login_at("/login?id=box.com");
    let (_, s) = status_json(b, &boxed);
    assert_eq!(s["idle_limit_days"], 60);
    let by = s["use_before"].as_i64().expect("use_before");
    let authorized = s["authorized_at"].as_i64().expect("authorized_at");
    assert_eq!(by - authorized, 60 * 86_400, "{s}");
    // A wrong secret half is unknown, as on /refresh: JSON on this surface.
    let last = authid.chars().last().expect("an authid");
    let wrong = format!(
        "{}{}",
        &authid[..authid.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    let (r, v) = status_json(b, &wrong);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(v["error"], "unknown_authid");
    assert!(r
        .header("Content-Type")
        .unwrap_or_default()
        .contains("json"));
    let (r, v) = status_json(b, "garbage");
    assert_eq!(
        (r.status, v["error"].as_str()),
        (400, Some("malformed_authid"))
    );
    // A pass-through authid: what it is, and that nothing is stored.
    let v2 = b.login_at("/login?id=demo&tokenversion=2");
    let calls = b.mock.stats().token_calls;
    let (r, v) = status_json(b, &v2);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(v["authid_kind"], "pass_through");
    assert_eq!(v["stored"], false);
    assert_eq!(b.mock.stats().token_calls, calls, "no provider call");
    // The page: a form with a label; the answer to its post has no authid.
    let form = b.get("/status");
    assert_eq!(form.status, 200);
    assert!(form.body.contains("<label for=\"authid\">"));
    let page = b.post_form("/status", &format!("authid={}", enc(&authid)));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("Cache-Control"), Some("no-store"));
    assert!(page.body.contains("id=\"state\""));
    assert!(
        !page.body.contains(&authid),
        "the page does not echo the authid"
    );
    let unknown = b.post_form("/status", &format!("authid={}", enc(&wrong)));
    assert_eq!(unknown.status, 401);
    assert!(
        unknown.body.contains("unknown_authid"),
        "an error page with its code"
    );
}

fn revoking_from_the_status_page_takes_its_ticket_and_a_confirmation(b: &Broker) {
    b.mock.set_config(Config::default());
    let authid = b.login();
    let mut jar = Jar::default();
    let page = b.post_form_in(&mut jar, "/status", &format!("authid={}", enc(&authid)));
    assert_eq!(page.status, 200, "{}", page.body);
    let m = "name=\"ticket\" value=\"";
    let at = page.body.find(m).expect("a ticket") + m.len();
    let end = page.body[at..].find('"').expect("end") + at;
    let ticket = page.body[at..end].to_string();
    // Not confirmed: refused, nothing revoked.
    let r = b.post_form_in(&mut jar, "/revoked", &format!("ticket={}", enc(&ticket)));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("not_confirmed"));
    // Another browser (no cookie) with the ticket: refused.
    let r = b.post_form("/revoked", &format!("ticket={}&confirm=yes", enc(&ticket)));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("invalid_ticket"));
    assert_eq!(b.refresh(&authid).status, 200, "still there");
    // Confirmed, in the browser that saw the page.
    let r = b.post_form_in(
        &mut jar,
        "/revoked",
        &format!("ticket={}&confirm=yes", enc(&ticket)),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("id=\"outcome\""));
    assert_eq!(b.refresh(&authid).status, 401, "revoked");
    assert_eq!(status_json(b, &authid).0.status, 401);
}

/// A D1 made by the previous schema (migrations up to 0011) holding a grant
/// that recorded no account, as every grant before this change: after the
/// upgrade it refreshes unchanged, and its status says it cannot be
/// re-authorized in place and what to do instead.
fn grants_from_the_previous_schema_keep_working_and_say_they_cannot_be_reauthorized(b: &Broker) {
    b.mock.set_config(Config {
        account_ids: false,
        ..Config::default()
    });
    let state = b.dir.join("previous-schema-state");
    let _ = std::fs::remove_dir_all(&state);
    let old = Broker::start_with(
        &b.mock,
        Options {
            migrations_up_to: Some("0011_last_refresh.sql"),
            state_dir: Some(state.clone()),
            ..Options::default()
        },
    );
    let applied = old.d1("SELECT name FROM d1_migrations ORDER BY id DESC LIMIT 1");
    assert_eq!(applied[0]["name"], "0011_last_refresh.sql");
    let authid = old.login_at("/login?id=box.com");
    b.remember(&authid);
    drop(old);
    b.mock.set_config(Config::default());
    let new = Broker::start_with(
        &b.mock,
        Options {
            state_dir: Some(state),
            ..Options::default()
        },
    );
    let applied = new.d1("SELECT name FROM d1_migrations ORDER BY id DESC LIMIT 1");
    assert_eq!(applied[0]["name"], "0012_last_ok.sql");
    new.expire_access_token(&authid);
    let r = new.refresh(&authid);
    assert_eq!(r.status, 200, "the old grant refreshes: {}", r.body);
    let (_, s) = status_json(&new, &authid);
    assert_eq!(s["state"], "active", "{s}");
    assert!(s["last_refresh_ok_at"].is_i64(), "{s}");
    assert_eq!(s["reauthorize"]["in_place"], false, "{s}");
    assert_eq!(s["reauthorize"]["code"], "cannot_reauthorize");
    let page = new.post_form("/status", &format!("authid={}", enc(&authid)));
    assert!(
        page.body.contains("cannot be re-authorized in place"),
        "{}",
        page.body
    );
    assert!(page.body.contains("new authid"));
    let r = new.post_form("/reauthorize", &format!("authid={}", enc(&authid)));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("cannot_reauthorize"));
    assert_eq!(new.mock.stats().spent_refresh_reuse, 0);
}

/// `/status` spends the per-grant budget (`RL_PER_GRANT`) as a refresh does,
/// so it is no way around the limit.
fn a_status_answer_counts_against_the_grants_limit_like_a_refresh(b: &Broker) {
    let limited = Broker::start_with(
        &b.mock,
        Options {
            per_grant_limit: 3,
            ..Options::default()
        },
    );
    b.mock.set_config(Config::default());
    let authid = limited.login();
    b.remember(&authid);
    let seen = crate::harness::in_one_rate_limit_window(|| {
        let mut seen: Vec<u16> = (0..3)
            .map(|_| status_json(&limited, &authid).0.status)
            .collect();
        seen.push(limited.refresh(&authid).status);
        seen.push(status_json(&limited, &authid).0.status);
        seen
    });
    assert_eq!(
        seen,
        [200, 200, 200, 429, 429],
        "three answers, then the limit"
    );
}
